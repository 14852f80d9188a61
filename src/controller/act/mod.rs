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
//! Crash injection for tests (builds with the `crash-points` feature only): with
//! `ETCD_OPERATOR_CRASH_AT=<point>` the process exits at once (status 99) when it reaches a
//! [`CrashPoint`](super::crash::CrashPoint).

mod steps;

use std::future::Future;
use std::time::Duration;

use crate::etcd::{self, Client};

use super::backup::RestoreSnapshot;
use super::backup::verify::{Verified, VerifyRequest};
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

    /// Makes member `ordinal` reachable at its peer URL before etcd is told about it (the
    /// Kubernetes runtime creates the member's Service, whose DNS name then resolves from the
    /// first lookup); called after the intent is recorded, before MemberAdd. Nothing to do by
    /// default.
    fn prepare_member(
        &mut self,
        ordinal: u32,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = ordinal;
        async { Ok(()) }
    }

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

    /// Creates members `0..members` of a new cluster from `snapshot`: every member's data is
    /// restored from it with the full initial cluster, then every member is started. Refused
    /// when any member exists; a snapshot that cannot be restored starts nothing. A runtime
    /// whose restore takes several passes answers `Ok(false)` until every member started.
    fn restore_cluster(
        &mut self,
        members: u32,
        version: Version,
        snapshot: RestoreSnapshot<'_>,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Verifies a stored snapshot: reads it back, restores it into a throwaway etcd, checks it
    /// ([`super::backup::verify::check`]) and removes whatever it made, on every path, within
    /// [`super::backup::verify::VERIFY_TIMEOUT`]. A snapshot that fails is an `Ok` answer; an
    /// `Err` is the runtime failing (retried by the next pass); `Ok(None)`: still running (a
    /// runtime whose verification takes several passes). By default the runtime does not
    /// verify (the planner plans no verification for it).
    fn verify_snapshot(
        &mut self,
        request: VerifyRequest<'_>,
    ) -> impl Future<Output = Result<Option<Verified>, Self::Error>> + Send {
        let error = super::backup::verify::VerifyError::Serve {
            location: request.snapshot.location.clone(),
            why: "this runtime does not verify snapshots".to_owned(),
        };
        let failed = Verified::failed(request.snapshot, &error, Duration::ZERO);
        async move { Ok(Some(failed)) }
    }
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
    /// The snapshot was not stored (credentials, the store, the stream).
    #[error("{step}: {source}")]
    Backup {
        /// The step.
        step: String,
        /// What failed.
        #[source]
        source: super::backup::BackupError,
    },
    /// A restore from a store did not start (credentials, the store, the object).
    #[error("{step}: {source}")]
    Restore {
        /// The step.
        step: String,
        /// What failed.
        #[source]
        source: Box<super::backup::RestoreError>,
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
    /// A snapshot was stored (and the retention applied).
    Snapshotted {
        /// The member it was taken from.
        member: String,
        /// The cluster ID (hex), as observed.
        cluster_id: String,
        /// What was stored.
        taken: Box<super::backup::Taken>,
    },
    /// A snapshot was verified (passed or failed: see [`Verified::result`]).
    Verified(Box<Verified>),
}

impl Maintained {
    /// The Event reason: `Compacted`, `Defragmented`, `AlarmDisarmed`, `SnapshotTaken`,
    /// `SnapshotVerified` or `SnapshotVerificationFailed`.
    pub fn reason(&self) -> &'static str {
        match self {
            Maintained::Compacted { .. } => "Compacted",
            Maintained::Defragmented { .. } => "Defragmented",
            Maintained::Disarmed { .. } => "AlarmDisarmed",
            Maintained::Snapshotted { .. } => "SnapshotTaken",
            Maintained::Verified(v) if v.passed() => "SnapshotVerified",
            Maintained::Verified(_) => "SnapshotVerificationFailed",
        }
    }

    /// Whether its Event is a warning (a failed verification).
    pub fn is_warning(&self) -> bool {
        matches!(self, Maintained::Verified(v) if !v.passed())
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
            Maintained::Verified(v) => write!(f, "{v}"),
            Maintained::Snapshotted { member, taken, .. } => {
                write!(
                    f,
                    "Snapshot of member {member} at revision {} written to {} ({}, {} ms); {} \
                     older snapshot(s) deleted by retention",
                    taken.revision,
                    taken.location,
                    mib(taken.stored.size),
                    taken.duration.as_millis(),
                    taken.deleted.len()
                )?;
                match &taken.retention_error {
                    Some(e) => write!(f, "; {e}"),
                    None => Ok(()),
                }
            }
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

/// Takes member `ordinal` out of `client`'s endpoints before it is stopped. The client keeps a
/// gRPC health stream open to every member it balances over, and etcd's graceful stop waits
/// for open streams up to its request timeout (5 s + 2 election timeouts: 7 s with the
/// defaults) before it exits; without the stream it stops at once. The next pass's connect
/// lists the member again. Nothing to do without a view, for an unknown member, or when it is
/// the only endpoint.
fn release_member(
    client: Option<&Client>,
    view: Option<&EtcdView>,
    desired: &Desired,
    ordinal: u32,
) {
    let (Some(client), Some(view)) = (client, view) else {
        return;
    };
    let name = desired.member_name(ordinal);
    let Some(endpoint) = view
        .members
        .iter()
        .find(|m| m.member.name == name)
        .and_then(|m| m.endpoint.as_deref())
    else {
        return;
    };
    let same = |a: &str| a.trim_end_matches('/') == endpoint.trim_end_matches('/');
    let rest: Vec<String> = client
        .endpoints()
        .into_iter()
        .filter(|e| !same(e))
        .collect();
    if !rest.is_empty() && rest.len() < client.endpoints().len() {
        // Cannot fail with a non-empty list of endpoints the client already had.
        let _ = client.set_endpoints(&rest);
    }
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

/// Runs one step. `client` and `view` are the observation the plan came from; `store` is the
/// opened snapshot store of the backup schedule (needed by [`Step::Snapshot`] only).
pub async fn act<R: MemberRuntime>(
    step: &Step,
    desired: &Desired,
    client: Option<&Client>,
    view: Option<&EtcdView>,
    runtime: &mut R,
    store: Option<&crate::snapshot_store::SnapshotStore>,
) -> Result<Outcome, ActError> {
    let need_client = || client.ok_or_else(|| ActError::Unreachable(step.to_string()));
    match step {
        Step::StartSeed { ordinal, version } => {
            steps::start_seed(step, runtime, *ordinal, *version).await
        }
        Step::AddLearner { ordinal, peer_url } => {
            steps::add_learner(step, runtime, need_client()?, *ordinal, peer_url).await
        }
        Step::StartMember {
            ordinal,
            member_id,
            version,
        } => {
            steps::start_member(step, runtime, desired, view, *ordinal, *member_id, *version).await
        }
        Step::PromoteLearner { member_id } => {
            steps::promote_learner(step, need_client()?, *member_id).await
        }
        Step::MoveLeader { to, .. } => steps::move_leader(step, need_client()?, *to).await,
        Step::RemoveMember { member_id, .. } => {
            steps::remove_member(step, runtime, need_client()?, *member_id).await
        }
        Step::DeleteMember { ordinal } => steps::delete_member(step, runtime, *ordinal).await,
        Step::StartStopped { ordinal, version } => {
            steps::start_stopped(step, runtime, desired, *ordinal, *version).await
        }
        Step::RestartMember { ordinal, version } => {
            release_member(client, view, desired, *ordinal);
            steps::restart_member(step, runtime, *ordinal, *version).await
        }
        Step::ClearIntent => steps::clear_intent(step, runtime).await,
        Step::Compact { revision } => steps::compact(step, need_client()?, *revision).await,
        Step::Defragment { member_id, .. } => {
            steps::defragment(step, need_client()?, view, *member_id).await
        }
        Step::DisarmAlarm { member_id, alarm } => {
            steps::disarm_alarm(step, need_client()?, view, *member_id, *alarm).await
        }
        Step::Snapshot { member_id, .. } => {
            let store = store.ok_or_else(|| ActError::NoBackup(step.to_string()))?;
            steps::snapshot(step, need_client()?, desired, view, *member_id, store).await
        }
        Step::AdvanceRaftLog { entries } => {
            steps::advance_raft_log(step, need_client()?, *entries).await
        }
        Step::VerifySnapshot { snapshot } => {
            let store = store.ok_or_else(|| ActError::NoBackup(step.to_string()))?;
            let backup = desired
                .backup
                .as_ref()
                .ok_or_else(|| ActError::NoBackup(step.to_string()))?;
            let request = VerifyRequest {
                store,
                snapshot,
                version: desired.version,
                target: &backup.target,
            };
            let verified = runtime
                .verify_snapshot(request)
                .await
                .map_err(rt_err(step))?;
            Ok(match verified {
                Some(v) => {
                    super::crash::CrashPoint::AfterVerify.check();
                    Outcome::Maintained(Maintained::Verified(Box::new(v)))
                }
                None => Outcome::NotYet("the verification runs".to_owned()),
            })
        }
        Step::RestoreCluster {
            members,
            version,
            source,
        } => steps::restore_cluster(step, runtime, *members, *version, source, store).await,
    }
}
