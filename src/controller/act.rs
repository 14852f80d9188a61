//! act: run the planner's one [`Step`] against etcd and a runtime.
//!
//! A runtime ([`MemberRuntime`]) runs members (local processes, or Pods and PVCs) and keeps the
//! intent store. Before a step that mutates etcd and must be followed by a runtime change
//! (AddLearner, RemoveMember) the intent is recorded; the planner resumes from it on the next
//! pass, so an operator that crashes between the two halves finishes the step instead of
//! repeating it. Every step is idempotent: a step that fails leaves things as they were (or as
//! the recorded intent describes) and the next pass plans it again.
//!
//! Maintenance steps (Compact, Defragment, DisarmAlarm) need no intent: each is idempotent on
//! its own (compacting to a compacted revision, defragmenting twice, disarming an absent alarm
//! change nothing) and answers [`Outcome::Maintained`] with what it did, for the status
//! ([`super::status::record_maintenance`]), an Event and the log.
//!
//! Crash injection for tests: with `ETCD_OPERATOR_CRASH_AT=<point>` the process exits at once
//! (status 99) when it reaches a [`CrashPoint`] (see [`super::crash`]).

use std::future::Future;
use std::time::Duration;

use crate::etcd::maintenance::AlarmType;
use crate::etcd::{self, Client, ServerError};

use super::crash::CrashPoint;
use super::observe::EtcdView;
use super::plan::{Alarm, Desired, Intent, Step, Version, mib};

/// Where members run, as the act layer needs it.
pub trait MemberRuntime {
    /// The runtime's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Records (or, with `None`, clears) the step in flight, durably, before etcd is changed.
    fn record_intent(
        &mut self,
        intent: Option<&Intent>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Creates and starts the seed member `ordinal` of a new cluster
    /// (`--initial-cluster-state=new`, itself the only member of the initial cluster).
    fn start_seed(
        &mut self,
        ordinal: u32,
        version: Version,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Starts member `ordinal`: again, when its runtime member exists; otherwise created with
    /// `--initial-cluster-state=existing` and `initial_cluster` (`name=peerURL` pairs).
    fn start_member(
        &mut self,
        ordinal: u32,
        version: Version,
        initial_cluster: &[(String, String)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops member `ordinal` and deletes its data; nothing to do when it does not exist.
    fn delete_member(
        &mut self,
        ordinal: u32,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stops member `ordinal` gracefully, keeping its data, to start it again on `version` with
    /// the desired configuration ([`MemberRuntime::start_again`]). Refused before anything is
    /// stopped when `version` cannot run.
    fn stop_member(
        &mut self,
        ordinal: u32,
        version: Version,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Starts member `ordinal`, stopped by [`MemberRuntime::stop_member`], on `version` with
    /// the desired configuration.
    fn start_again(
        &mut self,
        ordinal: u32,
        version: Version,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Creates members `0..members` of a new cluster from the snapshot at `path`: every
    /// member's data is restored from it with the full initial cluster, then every member is
    /// started. Refused when any member exists; a snapshot that cannot be restored starts
    /// nothing.
    fn restore_cluster(
        &mut self,
        members: u32,
        version: Version,
        path: &std::path::Path,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Errors of the act layer.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// An etcd call failed.
    #[error("{step}: etcd: {source}")]
    Etcd {
        /// The step.
        step: String,
        /// The client's error.
        #[source]
        source: etcd::Error,
    },
    /// An etcd call did not answer in time.
    #[error("{step}: etcd did not answer within {timeout:?}")]
    Timeout {
        /// The step.
        step: String,
        /// The bound.
        timeout: Duration,
    },
    /// The runtime failed.
    #[error("{step}: {source}")]
    Runtime {
        /// The step.
        step: String,
        /// The runtime's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The step needs etcd, and no member answered.
    #[error("{0}: etcd is unreachable")]
    Unreachable(String),
    /// The step names a member the observation has no client URL for.
    #[error("{0}: the member has no client URL to reach it at")]
    NoEndpoint(String),
    /// A snapshot step without a backup schedule (never planned so).
    #[error("{0}: no backup is configured")]
    NoBackup(String),
    /// Writing the snapshot or applying the retention failed.
    #[error("{step}: {source}")]
    Backup {
        /// The step.
        step: String,
        /// What failed.
        #[source]
        source: super::backup::BackupError,
    },
}

/// What running a step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step ran.
    Done,
    /// etcd refused for now (a learner not caught up, a cluster not ready for a change); the
    /// next pass retries. The text says why.
    NotYet(String),
    /// A maintenance step ran; what it did, for the status, an Event and the log.
    Maintained(Maintained),
}

/// What a maintenance step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maintained {
    /// The history was compacted to `revision` (or already was).
    Compacted {
        /// The compaction revision.
        revision: i64,
    },
    /// A member was defragmented.
    Defragmented {
        /// The member's name.
        member: String,
        /// Its database file size before, in bytes.
        db_size_before: i64,
        /// Its database file size after, in bytes, if it answered `Status` right after.
        db_size_after: Option<i64>,
        /// The store revision when it ran.
        revision: i64,
    },
    /// An alarm was disarmed.
    Disarmed {
        /// The member's name.
        member: String,
        /// The alarm.
        alarm: Alarm,
    },
    /// A snapshot was written (and the retention applied).
    Snapshotted {
        /// The member it was taken from.
        member: String,
        /// The file.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// The member's revision when it started.
        revision: i64,
        /// The SHA-256 of the database bytes, hex.
        sha256: String,
        /// How many older files retention deleted.
        deleted: usize,
    },
}

impl Maintained {
    /// The Event reason: `Compacted`, `Defragmented` or `AlarmDisarmed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Maintained::Compacted { .. } => "Compacted",
            Maintained::Defragmented { .. } => "Defragmented",
            Maintained::Disarmed { .. } => "AlarmDisarmed",
            Maintained::Snapshotted { .. } => "SnapshotTaken",
        }
    }
}

impl std::fmt::Display for Maintained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |b: i64| mib(u64::try_from(b).unwrap_or(0));
        match self {
            Maintained::Compacted { revision } => {
                write!(f, "Compacted the history to revision {revision}")
            }
            Maintained::Defragmented {
                member,
                db_size_before,
                db_size_after,
                ..
            } => match db_size_after {
                Some(after) => write!(
                    f,
                    "Defragmented member {member}: {} → {}",
                    size(*db_size_before),
                    size(*after)
                ),
                None => write!(
                    f,
                    "Defragmented member {member} ({} before)",
                    size(*db_size_before)
                ),
            },
            Maintained::Disarmed { member, alarm } => {
                write!(f, "Disarmed the {alarm} alarm of member {member}")
            }
            Maintained::Snapshotted {
                member,
                file,
                size,
                revision,
                deleted,
                ..
            } => write!(
                f,
                "Snapshot of member {member} at revision {revision} written to {file} ({}); \
                 {deleted} older file(s) deleted by retention",
                mib(*size)
            ),
        }
    }
}

/// How long one etcd mutation may take.
pub const ETCD_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a defragmentation or a physical compaction may take (they scale with the database).
pub const MAINTENANCE_CALL_TIMEOUT: Duration = Duration::from_secs(300);

async fn long_call<T>(
    step: &Step,
    fut: impl Future<Output = etcd::Result<T>>,
) -> Result<etcd::Result<T>, ActError> {
    tokio::time::timeout(MAINTENANCE_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| ActError::Timeout {
            step: step.to_string(),
            timeout: MAINTENANCE_CALL_TIMEOUT,
        })
}

async fn call<T>(
    step: &Step,
    fut: impl Future<Output = etcd::Result<T>>,
) -> Result<etcd::Result<T>, ActError> {
    tokio::time::timeout(ETCD_CALL_TIMEOUT, fut)
        .await
        .map_err(|_| ActError::Timeout {
            step: step.to_string(),
            timeout: ETCD_CALL_TIMEOUT,
        })
}

fn rt_err<E: std::error::Error + Send + Sync + 'static>(step: &Step) -> impl FnOnce(E) -> ActError {
    let step = step.to_string();
    move |e| ActError::Runtime {
        step,
        source: Box::new(e),
    }
}

fn etcd_err(step: &Step) -> impl FnOnce(etcd::Error) -> ActError {
    let step = step.to_string();
    move |source| ActError::Etcd { step, source }
}

/// The `initial-cluster` pairs for a member joining: every member of `view` by name (the
/// unstarted one by the name its ordinal gives), the joining member included.
pub fn initial_cluster(
    desired: &Desired,
    view: &EtcdView,
    member_id: u64,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for m in &view.members {
        let name = if !m.member.name.is_empty() {
            m.member.name.clone()
        } else if let Some(o) = m
            .member
            .peer_urls
            .iter()
            .find_map(|u| desired.ordinal_of_peer_url(u))
        {
            desired.member_name(o)
        } else {
            continue;
        };
        if m.member.name.is_empty() && m.member.id != member_id {
            // Another member that has not started: etcd refuses an initial cluster naming it.
            continue;
        }
        for url in &m.member.peer_urls {
            pairs.push((name.clone(), url.clone()));
        }
    }
    pairs
}

/// Whether a member matching `pred` is listed; `None` when the list cannot be read.
async fn listed(
    client: &Client,
    pred: impl Fn(&crate::etcd::cluster::Member) -> bool,
) -> Option<bool> {
    let members = tokio::time::timeout(ETCD_CALL_TIMEOUT, client.member_list())
        .await
        .ok()?
        .ok()?;
    Some(members.iter().any(pred))
}

/// The ID of the member with `peer_url`, if the member list has one.
async fn added_id(client: &Client, peer_url: &str) -> Option<u64> {
    let members = tokio::time::timeout(ETCD_CALL_TIMEOUT, client.member_list())
        .await
        .ok()?
        .ok()?;
    members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == peer_url))
        .map(|m| m.id)
}

/// Runs one step. `client` and `view` are the observation the plan came from.
pub async fn act<R: MemberRuntime>(
    step: &Step,
    desired: &Desired,
    client: Option<&Client>,
    view: Option<&EtcdView>,
    runtime: &mut R,
) -> Result<Outcome, ActError> {
    let need_client = || client.ok_or_else(|| ActError::Unreachable(step.to_string()));
    match step {
        Step::StartSeed { ordinal, version } => {
            runtime
                .start_seed(*ordinal, *version)
                .await
                .map_err(rt_err(step))?;
        }
        Step::AddLearner { ordinal, peer_url } => {
            let client = need_client()?;
            let mut intent = step.intent();
            runtime
                .record_intent(intent.as_ref())
                .await
                .map_err(rt_err(step))?;
            let added = match call(step, client.member_add([peer_url.as_str()], true)).await? {
                Ok(added) => added.member.id,
                Err(e) => {
                    // The answer was lost: the member list tells whether the learner was added.
                    let found = if e.is_outcome_unknown() {
                        added_id(client, peer_url).await
                    } else {
                        None
                    };
                    match found {
                        Some(id) => id,
                        None => {
                            let server = e.server_error();
                            if !e.is_outcome_unknown() {
                                // Certainly not applied: the intent is obsolete.
                                runtime.record_intent(None).await.map_err(rt_err(step))?;
                            }
                            return match server {
                                Some(
                                    ServerError::TooManyLearners
                                    | ServerError::Unhealthy
                                    | ServerError::MemberNotEnoughStarted,
                                ) => Ok(Outcome::NotYet(format!("adding member {ordinal}: {e}"))),
                                _ => Err(etcd_err(step)(e)),
                            };
                        }
                    }
                }
            };
            CrashPoint::AfterMemberAdd.check();
            if let Some(Intent::AddLearner { member_id, .. }) = intent.as_mut() {
                *member_id = Some(added);
            }
            runtime
                .record_intent(intent.as_ref())
                .await
                .map_err(rt_err(step))?;
        }
        Step::StartMember {
            ordinal,
            member_id,
            version,
        } => {
            let pairs = view
                .map(|v| initial_cluster(desired, v, *member_id))
                .unwrap_or_default();
            let joining = view
                .and_then(|v| v.member(*member_id))
                .is_some_and(|m| m.member.is_learner);
            runtime
                .start_member(*ordinal, *version, &pairs)
                .await
                .map_err(rt_err(step))?;
            if joining {
                CrashPoint::AfterStartBeforePromote.check();
            }
        }
        Step::PromoteLearner { member_id } => {
            let client = need_client()?;
            match call(step, client.member_promote(*member_id)).await? {
                Ok(_) => {}
                Err(e) => {
                    return match e.server_error() {
                        Some(
                            ServerError::LearnerNotReady
                            | ServerError::Unhealthy
                            | ServerError::MemberNotEnoughStarted,
                        ) => Ok(Outcome::NotYet(format!("promoting {member_id:x}: {e}"))),
                        // Promoted by a call whose answer was lost.
                        Some(ServerError::MemberNotLearner) => Ok(Outcome::Done),
                        _ => Err(etcd_err(step)(e)),
                    };
                }
            }
        }
        Step::MoveLeader { to, .. } => {
            let client = need_client()?;
            call(step, client.move_leader(*to))
                .await?
                .map_err(etcd_err(step))?;
        }
        Step::RemoveMember { member_id, .. } => {
            let client = need_client()?;
            runtime
                .record_intent(step.intent().as_ref())
                .await
                .map_err(rt_err(step))?;
            match call(step, client.member_remove(*member_id)).await? {
                Ok(_) => {}
                Err(e) if e.server_error() == Some(ServerError::MemberNotFound) => {}
                // The answer was lost (often because the member that served the call was the
                // one removed, and stopped): the member list tells whether it was applied.
                Err(e)
                    if e.is_outcome_unknown()
                        && listed(client, |m| m.id == *member_id).await == Some(false) => {}
                Err(e) => {
                    return match e.server_error() {
                        Some(ServerError::Unhealthy | ServerError::MemberNotEnoughStarted) => {
                            runtime.record_intent(None).await.map_err(rt_err(step))?;
                            Ok(Outcome::NotYet(format!("removing {member_id:x}: {e}")))
                        }
                        _ => Err(etcd_err(step)(e)),
                    };
                }
            }
            CrashPoint::AfterMemberRemove.check();
        }
        Step::DeleteMember { ordinal } => {
            runtime
                .delete_member(*ordinal)
                .await
                .map_err(rt_err(step))?;
        }
        Step::StartStopped { ordinal, version } => {
            // The member has data: etcd ignores the initial cluster, which names only itself.
            let own = [(desired.member_name(*ordinal), desired.peer_url(*ordinal))];
            runtime
                .start_member(*ordinal, *version, &own)
                .await
                .map_err(rt_err(step))?;
        }
        Step::RestartMember { ordinal, version } => {
            runtime
                .stop_member(*ordinal, *version)
                .await
                .map_err(rt_err(step))?;
            CrashPoint::MidUpgrade.check();
            runtime
                .start_again(*ordinal, *version)
                .await
                .map_err(rt_err(step))?;
        }
        Step::ClearIntent => {
            runtime.record_intent(None).await.map_err(rt_err(step))?;
        }
        Step::Compact { revision } => {
            let client = need_client()?;
            return match long_call(step, client.compact(*revision, true)).await? {
                // Already compacted to it (or beyond): nothing to do.
                Ok(_) => Ok(Outcome::Maintained(Maintained::Compacted {
                    revision: *revision,
                })),
                Err(e) if e.server_error() == Some(ServerError::Compacted) => {
                    Ok(Outcome::Maintained(Maintained::Compacted {
                        revision: *revision,
                    }))
                }
                Err(e) if e.server_error() == Some(ServerError::FutureRev) => Ok(Outcome::NotYet(
                    format!("compacting to revision {revision}: {e}"),
                )),
                Err(e) => Err(etcd_err(step)(e)),
            };
        }
        Step::Defragment { member_id, .. } => {
            let client = need_client()?;
            let member = view.and_then(|v| v.member(*member_id));
            let endpoint = member
                .and_then(|m| m.endpoint.clone())
                .ok_or_else(|| ActError::NoEndpoint(step.to_string()))?;
            let name = member.map_or_else(String::new, |m| m.member.name.clone());
            let before = member
                .and_then(|m| m.status.as_ref())
                .map_or(0, |s| s.db_size);
            long_call(step, client.defragment(&endpoint))
                .await?
                .map_err(etcd_err(step))?;
            let after = tokio::time::timeout(ETCD_CALL_TIMEOUT, client.status(&endpoint))
                .await
                .ok()
                .and_then(Result::ok)
                .filter(|s| s.member_id == *member_id);
            let observed_revision = view.map_or(0, |v| v.revision);
            return Ok(Outcome::Maintained(Maintained::Defragmented {
                member: name,
                db_size_before: before,
                db_size_after: after.as_ref().map(|s| s.db_size),
                revision: after.map_or(observed_revision, |s| s.revision.max(observed_revision)),
            }));
        }
        Step::DisarmAlarm { member_id, alarm } => {
            let client = need_client()?;
            let wire = match alarm {
                Alarm::NoSpace => AlarmType::NoSpace,
                Alarm::Corrupt => AlarmType::Corrupt,
            };
            // Disarming an alarm that is no longer raised answers with nothing disarmed.
            call(step, client.alarm_disarm(*member_id, wire))
                .await?
                .map_err(etcd_err(step))?;
            let member = view
                .and_then(|v| v.member(*member_id))
                .map_or_else(|| format!("{member_id:x}"), |m| m.member.name.clone());
            return Ok(Outcome::Maintained(Maintained::Disarmed {
                member,
                alarm: *alarm,
            }));
        }
        Step::Snapshot { member_id, .. } => {
            let client = need_client()?;
            let backup = desired
                .backup
                .as_ref()
                .ok_or_else(|| ActError::NoBackup(step.to_string()))?;
            let member = view.and_then(|v| v.member(*member_id));
            let endpoint = member
                .and_then(|m| m.endpoint.clone())
                .ok_or_else(|| ActError::NoEndpoint(step.to_string()))?;
            let revision = member
                .and_then(|m| m.status.as_ref())
                .map_or(0, |s| s.revision);
            let taken = tokio::time::timeout(
                MAINTENANCE_CALL_TIMEOUT,
                super::backup::take(
                    &super::backup::LocalFolder::new(&backup.directory),
                    client,
                    &endpoint,
                    &desired.cluster,
                    revision,
                    backup.keep,
                ),
            )
            .await
            .map_err(|_| ActError::Timeout {
                step: step.to_string(),
                timeout: MAINTENANCE_CALL_TIMEOUT,
            })?
            .map_err(|source| ActError::Backup {
                step: step.to_string(),
                source,
            })?;
            return Ok(Outcome::Maintained(Maintained::Snapshotted {
                member: member.map_or_else(|| format!("{member_id:x}"), |m| m.member.name.clone()),
                file: taken.file,
                size: taken.size,
                revision: taken.revision,
                sha256: taken.sha256,
                deleted: taken.deleted.len(),
            }));
        }
        Step::RestoreCluster {
            members,
            version,
            path,
        } => {
            runtime
                .restore_cluster(*members, *version, path)
                .await
                .map_err(rt_err(step))?;
        }
    }
    Ok(Outcome::Done)
}
