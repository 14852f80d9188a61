//! pass: one reconcile pass over one cluster, written once for both runtimes.
//!
//! validate the spec → observe (the runtime's members, etcd's view, the intent in flight, the
//! members' hashes when a consistency check is due) →
//! plan → write the status when it changed → run the one step → record what it did (status,
//! Event, metrics). A [`Runtime`] supplies only what differs between Kubernetes and local
//! processes: where members are and how they are reached, where the intent and the status are
//! kept, how Events are published and log lines written, and how a step's runtime half runs
//! ([`MemberRuntime`]).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::api::{EtcdClusterSpec, EtcdClusterStatus};
use crate::etcd::Client;
use crate::metrics::Metrics;

use super::act::{ActError, Maintained, MemberRuntime, Outcome, act};
use super::backup::verify::{Verified, mark_backup, unverified_snapshot};
use super::backup::{BackupTarget, OpenError, ReadSecrets, SecretData, store_config};
use super::corruption::{
    check_if_due, finding_event, mark_corruption, record_check, recorded_verdict,
};
use super::events::{StepEvent, capitalize, event_reason, step_kind};
use super::observe::{EtcdView, Resolve, Unreachable, observe_etcd};
use super::plan::{
    Desired, Intent, Observed, Plan, RestoreSource, RuntimeMember, Step, consistency, plan,
};
use super::security::{AuthError, Security, auth_on, enable_auth, should_enable_auth, tls_status};
use super::status::{
    StatusInput, blocked_status, build_status, invalid_status, last_snapshot_time,
    mark_defragmented, mark_failed, record_backup_error, record_backup_failure, record_maintenance,
    same_status, snapshot_retry_at, v3_log_from_index,
};
use super::validate::{Placement, SpecError, validate};
use crate::snapshot_store::SnapshotStore;

/// The condition reason of a restore that failed.
pub const RESTORE_FAILED: &str = "RestoreFailed";
/// The condition reason of members that keep failing (with the runtime's diagnosis).
pub const MEMBER_FAILING: &str = "MemberFailing";
/// The condition and Event reason of certificates or a root password that cannot be read or
/// made.
pub const SECURITY_UNAVAILABLE: &str = "CertificatesUnavailable";
/// The condition and Event reason of a step in flight whose record cannot be read.
pub const INTENT_UNREADABLE: &str = "IntentUnreadable";

pub use super::clock::Now;

/// What a pass tells the runtime to log (each runtime words and de-duplicates its own lines).
#[derive(Debug)]
pub enum Report<'a> {
    /// Nothing to do.
    Idle {
        /// The planner's answer.
        plan: &'a Plan,
    },
    /// A step is about to run.
    Running {
        /// The planner's answer.
        plan: &'a Plan,
        /// The step.
        step: &'a Step,
        /// etcd's view, if a member answered.
        view: Option<&'a EtcdView>,
    },
    /// etcd asked to wait.
    NotYet {
        /// The step.
        step: &'a Step,
        /// Why.
        why: &'a str,
    },
    /// A maintenance step ran.
    Maintained {
        /// What it did.
        done: &'a Maintained,
    },
    /// The step failed; the next pass retries.
    Failed {
        /// The step.
        step: &'a Step,
        /// Why.
        error: &'a ActError,
    },
}

/// The `EtcdCluster` a pass is about, as the runtime read it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The spec as the user wrote it.
    pub spec: &'a EtcdClusterSpec,
    /// The generation the status describes.
    pub generation: Option<i64>,
    /// The status written before, if any.
    pub status: Option<&'a EtcdClusterStatus>,
}

/// Where members run, as one pass needs it: everything that differs between runtimes.
pub trait Runtime: Send {
    /// The runtime's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Runs the runtime half of steps.
    type Members: MemberRuntime + Send;

    /// How long each etcd read of the observation may take.
    const OBSERVE_TIMEOUT: Duration;

    /// The `EtcdCluster` this pass is about.
    fn target(&self) -> Target<'_>;
    /// The runtime's part of the desired state.
    fn placement(&self) -> Placement;
    /// Makes or renews the cluster's certificates where the runtime keeps them (`spec.tls`)
    /// and reads (or generates) root's password (`spec.auth`); [`Runtime::connect`] uses both
    /// from then on.
    fn security(
        &mut self,
        now: SystemTime,
    ) -> impl Future<Output = Result<Security, Self::Error>> + Send;
    /// The operator's metrics.
    fn metrics(&self) -> &Metrics;
    /// Maps a member's advertised client URL to the URL the operator dials.
    fn resolve(&self) -> Resolve<'_>;

    /// Reads the runtime's members (and applies what the cluster needs around them, when not
    /// paused); answers the client URLs of the members that started.
    fn observe_members(
        &mut self,
        desired: &Desired,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;
    /// A client for `endpoints` (kept between passes where the runtime can).
    fn connect(
        &mut self,
        endpoints: &[String],
    ) -> impl Future<Output = Result<Client, Unreachable>> + Send;
    /// The members as the planner sees them; `answered` tells whether the cluster ever answered.
    fn runtime_members(
        &self,
        desired: &Desired,
        answered: bool,
    ) -> Result<Vec<RuntimeMember>, Self::Error>;
    /// The step in flight, as recorded.
    fn read_intent(&self) -> Result<Option<Intent>, Self::Error>;
    /// The Secret `name` in the cluster's namespace (the backup credentials and encryption
    /// key); `None` when it does not exist. Its values are never logged.
    fn read_secret(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretData>, Self::Error>> + Send;
    /// Writes the status.
    fn write_status(
        &mut self,
        status: &EtcdClusterStatus,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Publishes an Event (failures are logged, never fatal).
    fn publish(&mut self, event: StepEvent) -> impl Future<Output = ()> + Send;
    /// Writes the log lines of a pass.
    fn report(&mut self, report: Report<'_>);
    /// The runtime half of steps.
    fn members(&mut self) -> &mut Self::Members;
}

/// Why a pass failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum PassError<E: std::error::Error + 'static> {
    /// The spec cannot be acted on.
    #[error("invalid spec: {0}")]
    Spec(#[source] SpecError),
    /// The runtime's members could not be read.
    #[error("observing the members: {0}")]
    Observe(#[source] E),
    /// The recorded intent could not be read.
    #[error("reading the intent: {0}")]
    Intent(#[source] E),
    /// The status could not be written.
    #[error("writing the status: {0}")]
    Status(#[source] E),
    /// The step failed.
    #[error("{0}")]
    Act(#[source] ActError),
    /// The certificates or the root password could not be prepared.
    #[error("preparing TLS and auth: {0}")]
    Security(#[source] E),
    /// Authentication could not be enabled.
    #[error("{0}")]
    Auth(#[source] AuthError),
}

impl<E: std::error::Error + 'static> PassError<E> {
    /// The error metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            PassError::Spec(_) => "spec",
            PassError::Observe(_) => "observe",
            PassError::Intent(_) => "intent",
            PassError::Status(_) => "status",
            PassError::Security(_) => "security",
            PassError::Auth(_) => "etcd",
            PassError::Act(ActError::Etcd { .. } | ActError::Timeout { .. }) => "etcd",
            PassError::Act(ActError::Unreachable(_) | ActError::NoEndpoint(_)) => "unreachable",
            PassError::Act(ActError::NoBackup(_) | ActError::Backup { .. }) => "backup",
            PassError::Act(ActError::Restore { .. }) => "restore",
            PassError::Act(ActError::Runtime { .. }) => "runtime",
        }
    }
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// Nothing to do.
    Idle,
    /// A step ran: come back soon.
    Stepped,
    /// etcd asked to wait.
    NotYet,
}

/// One pass over the cluster `runtime` holds; counted in the metrics.
pub async fn pass<R: Runtime>(runtime: &mut R) -> Result<Passed, PassError<R::Error>> {
    let started = Instant::now();
    let result = run(runtime).await;
    let kind = result.as_ref().err().map(PassError::kind);
    runtime.metrics().reconciled(started.elapsed(), kind);
    result
}

async fn run<R: Runtime>(rt: &mut R) -> Result<Passed, PassError<R::Error>> {
    let now = Now::current();
    let target = rt.target();
    let (namespace, name) = (target.namespace.to_owned(), target.name.to_owned());
    let generation = target.generation;
    let has_backup = target.spec.backup.is_some();
    let paused = target.spec.paused;
    let previous = target.status.cloned();
    let previous = previous.as_ref();
    let validated = match validate(target.spec, &rt.placement()) {
        Ok(v) => v,
        Err(e) => {
            let status = invalid_status(previous, generation, &e.to_string(), &now.text);
            if previous.is_none_or(|old| !same_status(old, &status)) {
                rt.write_status(&status).await.map_err(PassError::Status)?;
            }
            return Err(PassError::Spec(e));
        }
    };
    let desired = validated.desired;
    let security = match rt.security(now.system).await {
        Ok(s) => s,
        Err(e) => {
            // Members cannot be started or reached without their certificates (or root's
            // password): say so in the status and once as an Event, not at every retry.
            let why = format!("{e}; nothing is changed until it is fixed");
            let blocked = Blocked {
                reason: SECURITY_UNAVAILABLE,
                action: "PrepareTls",
            };
            blocked.report(rt, previous, generation, &now, why).await?;
            return Err(PassError::Security(e));
        }
    };

    let endpoints = rt
        .observe_members(&desired)
        .await
        .map_err(PassError::Observe)?;
    let intent = match rt.read_intent() {
        Ok(intent) => intent,
        Err(e) => {
            // A half-done membership step may be behind it: nothing is planned until a person
            // looked, and says so once (the status changes, an Event), not at every retry.
            let why = format!(
                "the record of the step in flight cannot be read ({e}); nothing is changed until \
                 it is repaired or removed (the etcd.operator.dev/intent annotation, or \
                 intent.yaml in the local runtime), after checking the member list"
            );
            let blocked = Blocked {
                reason: INTENT_UNREADABLE,
                action: "ReadIntent",
            };
            blocked.report(rt, previous, generation, &now, why).await?;
            return Err(PassError::Intent(e));
        }
    };
    let (client, view) = if endpoints.is_empty() {
        (None, Err(Unreachable::NoMember))
    } else {
        match rt.connect(&endpoints).await {
            Ok(client) => {
                let view = observe_etcd(&client, R::OBSERVE_TIMEOUT, rt.resolve()).await;
                (Some(client), view)
            }
            Err(why) => (None, Err(why)),
        }
    };
    if let Err(why) = &view {
        tracing::debug!(%namespace, cluster = %name, reason = %why, "etcd is unreachable");
    }
    let view = view.ok();
    // Whether the cluster ever answered: until then no member data is known to exist.
    let answered = view.as_ref().is_some_and(|v| v.cluster_id.is_some())
        || previous.is_some_and(|s| s.cluster_id.is_some());
    // The consistency check (reads only: HashKV of every voter), when due.
    let check = match (&client, &view) {
        (Some(client), Some(v)) => {
            check_if_due(
                client,
                v,
                &desired,
                previous,
                &now.system,
                R::OBSERVE_TIMEOUT,
            )
            .await
        }
        _ => None,
    };
    let fresh = check.as_ref().map(consistency);
    let verdict = fresh.clone().or_else(|| recorded_verdict(previous));
    let mut membership = view.as_ref().map(EtcdView::membership);
    if let Some(m) = membership.as_mut() {
        mark_defragmented(m, previous);
    }
    let observed = Observed {
        etcd: membership,
        runtime: rt
            .runtime_members(&desired, answered)
            .map_err(PassError::Observe)?,
        intent,
        now: Some(now.system),
        last_snapshot: last_snapshot_time(previous),
        // A spec change tries again at once.
        snapshot_retry_at: snapshot_retry_at(previous)
            .filter(|_| previous.is_some_and(|p| p.observed_generation == generation)),
        v3_log_from_index: v3_log_from_index(previous),
        unverified_snapshot: unverified_snapshot(previous),
        corruption: verdict.clone(),
    };
    let the_plan = plan(&desired, &observed);

    let mut status = build_status(StatusInput {
        desired: &desired,
        plan: &the_plan,
        view: view.as_ref(),
        previous,
        generation,
        now: &now.text,
    });
    let failing: Vec<String> = observed
        .runtime
        .iter()
        .filter_map(|m| {
            let why = m.diagnosis.as_ref()?;
            Some(format!("{}: {why}", desired.member_name(m.ordinal)))
        })
        .collect();
    if !failing.is_empty() {
        mark_failed(&mut status, MEMBER_FAILING, &failing.join("; "), &now.text);
    }
    if let (Some(check), Some(fresh), Some(v)) = (&check, &fresh, &view) {
        record_check(&mut status, &desired, v, check, fresh, &now.text);
    }
    mark_corruption(&mut status, verdict.as_ref(), &now.text);
    if let Some(why) = validated.backup_unsupported {
        record_backup_error(&mut status, why);
    } else if !has_backup && let Some(b) = status.backup.as_mut() {
        // No schedule (any more): nothing fails.
        b.last_error = None;
        b.consecutive_failures = 0;
        b.next_attempt = None;
    }
    let verifying = desired
        .backup
        .as_ref()
        .is_some_and(|b| b.verify_every_nth > 0);
    mark_backup(&mut status, previous, &now.text, verifying);
    status.tls = tls_status(&security.not_after);
    let restoring = matches!(the_plan.next, Some(Step::RestoreCluster { .. }));
    let restore_failure = restore_failure(previous).filter(|_| restoring);
    if let Some(why) = &restore_failure {
        mark_failed(&mut status, RESTORE_FAILED, why, &now.text);
    }
    // A restore this runtime refuses: nothing was created, and the reason is the restore's.
    if let super::plan::Bootstrap::Unsupported(why) = &desired.bootstrap
        && the_plan.next.is_none()
        && observed.runtime.is_empty()
        && observed.intent.is_none()
    {
        mark_failed(&mut status, RESTORE_FAILED, why, &now.text);
    }
    let roles: Vec<(&str, bool)> = status
        .members
        .iter()
        .map(|m| (m.role.as_deref().unwrap_or("follower"), m.healthy))
        .collect();
    rt.metrics().set_members(&namespace, &name, &roles);
    if previous.is_none_or(|old| !same_status(old, &status)) {
        rt.write_status(&status).await.map_err(PassError::Status)?;
    }
    if let Some(event) = fresh.as_ref().and_then(|f| finding_event(f, &status)) {
        rt.publish(event).await;
    }

    let Some(step) = the_plan.next.as_ref() else {
        rt.report(Report::Idle { plan: &the_plan });
        let available = client.is_some() && view.is_some() && is_available(&status);
        if let Some(password) = &security.root_password
            && should_enable_auth(!paused, previous, available)
            && let Some(client) = client.as_ref()
        {
            let enabled = match enable_auth(client, password).await {
                Ok(enabled) => enabled,
                Err(e) => {
                    rt.publish(StepEvent {
                        warning: true,
                        reason: "AuthEnableFailed".to_owned(),
                        note: e.to_string(),
                        action: "EnableAuth",
                    })
                    .await;
                    return Err(PassError::Auth(e));
                }
            };
            status.auth = Some(auth_on());
            rt.write_status(&status).await.map_err(PassError::Status)?;
            if enabled {
                rt.publish(normal(
                    "AuthEnabled",
                    "Enabled etcd authentication with the root user".to_owned(),
                    "EnableAuth",
                ))
                .await;
                return Ok(Passed::Stepped);
            }
        }
        return Ok(Passed::Idle);
    };
    rt.report(Report::Running {
        plan: &the_plan,
        step,
        view: view.as_ref(),
    });
    let kind = step_kind(step);
    let client = client.as_ref().filter(|_| view.is_some());
    let store = match (step, desired.backup.as_ref()) {
        (Step::Snapshot { .. } | Step::VerifySnapshot { .. }, Some(schedule)) => Some(
            open_store(rt, &namespace, &schedule.target)
                .await
                .map_err(|e| ActError::Backup {
                    step: step.to_string(),
                    source: e.into(),
                }),
        ),
        (
            Step::RestoreCluster {
                source: RestoreSource::Store { target, .. },
                ..
            },
            _,
        ) => Some(
            open_store(rt, &namespace, target)
                .await
                .map_err(|e| ActError::Restore {
                    step: step.to_string(),
                    source: Box::new(e.into()),
                }),
        ),
        _ => None,
    };
    let outcome = match store {
        Some(Err(e)) => Err(e),
        Some(Ok(store)) => {
            act(
                step,
                &desired,
                client,
                view.as_ref(),
                rt.members(),
                Some(&store),
            )
            .await
        }
        None => act(step, &desired, client, view.as_ref(), rt.members(), None).await,
    };
    match outcome {
        Ok(Outcome::Done) => {
            rt.metrics().step(kind, "done");
            if let Some(reason) = event_reason(step) {
                rt.publish(normal(reason, capitalize(&step.to_string()), kind))
                    .await;
            }
            Ok(Passed::Stepped)
        }
        Ok(Outcome::Maintained(done)) => {
            rt.metrics().step(kind, "done");
            rt.report(Report::Maintained { done: &done });
            rt.publish(StepEvent {
                warning: done.is_warning(),
                ..normal(done.reason(), done.to_string(), kind)
            })
            .await;
            let done_at = Now::current();
            record_maintenance(&mut status, &done, &done_at.text);
            if let Maintained::Snapshotted { taken, .. } = &done {
                let when = done_at
                    .system
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                rt.metrics().backup_taken(
                    &namespace,
                    &name,
                    when,
                    taken.stored.size,
                    taken.duration,
                );
                // Rebuilt from this pass: the failure marked before the success is gone, a
                // failed retention is marked.
                status.conditions = build_status(StatusInput {
                    desired: &desired,
                    plan: &the_plan,
                    view: view.as_ref(),
                    previous,
                    generation,
                    now: &now.text,
                })
                .conditions;
            }
            if let Maintained::Verified(v) = &done {
                rt.metrics()
                    .backup_verified(&namespace, &name, v.passed(), v.duration);
            }
            mark_backup(&mut status, previous, &now.text, verifying);
            rt.write_status(&status).await.map_err(PassError::Status)?;
            Ok(Passed::Stepped)
        }
        Ok(Outcome::NotYet(why)) => {
            rt.metrics().step(kind, "not_yet");
            rt.report(Report::NotYet { step, why: &why });
            Ok(Passed::NotYet)
        }
        Err(e) => {
            rt.metrics().step(kind, "error");
            let snapshot = matches!(step, Step::Snapshot { .. });
            rt.publish(StepEvent {
                warning: true,
                reason: if snapshot {
                    "BackupFailed"
                } else {
                    "StepFailed"
                }
                .to_owned(),
                note: e.to_string(),
                action: kind,
            })
            .await;
            match step {
                Step::Snapshot { .. } => {
                    rt.metrics().backup_failed(&namespace, &name);
                    record_backup_failure(&mut status, &e.to_string(), SystemTime::now());
                    mark_backup(&mut status, previous, &now.text, verifying);
                    rt.write_status(&status).await.map_err(PassError::Status)?;
                }
                Step::VerifySnapshot { snapshot } => {
                    // Recorded, not retried pass after pass: the next snapshot is verified anew.
                    let failed = Verified::unopened(snapshot, e.to_string());
                    rt.metrics()
                        .backup_verified(&namespace, &name, false, Duration::ZERO);
                    record_maintenance(
                        &mut status,
                        &Maintained::Verified(Box::new(failed)),
                        &now.text,
                    );
                    mark_backup(&mut status, previous, &now.text, verifying);
                    rt.write_status(&status).await.map_err(PassError::Status)?;
                }
                Step::RestoreCluster { .. } => {
                    let why = format!("{e}; nothing was started");
                    if restore_failure.as_deref() != Some(why.as_str()) {
                        mark_failed(&mut status, RESTORE_FAILED, &why, &now.text);
                        rt.write_status(&status).await.map_err(PassError::Status)?;
                    }
                }
                _ => {}
            }
            rt.report(Report::Failed { step, error: &e });
            Err(PassError::Act(e))
        }
    }
}

/// Opens the store of a backup or restore `target`, reading the Secrets it names through the
/// runtime.
async fn open_store<R: Runtime>(
    rt: &mut R,
    namespace: &str,
    target: &BackupTarget,
) -> Result<SnapshotStore, OpenError> {
    let mut secrets = ReadSecrets::new();
    for name in target.secrets() {
        let data = rt
            .read_secret(name)
            .await
            .map_err(|e| OpenError::SecretRead {
                name: format!("{namespace}/{name}"),
                source: Box::new(e),
            })?;
        secrets.insert(name.to_owned(), data);
    }
    let (config, key) =
        store_config(target, namespace, &secrets).map_err(OpenError::Credentials)?;
    let store = SnapshotStore::open(&config).map_err(OpenError::Store)?;
    Ok(match key {
        Some(key) => store.with_encryption(key),
        None => store,
    })
}

/// A pass that stops before planning until a person fixes something: the cluster says why in a
/// `Degraded` condition and in one warning Event, written when the status changes (not at
/// every retry).
struct Blocked {
    /// The condition and Event reason.
    reason: &'static str,
    /// The Event's action.
    action: &'static str,
}

impl Blocked {
    async fn report<R: Runtime>(
        &self,
        rt: &mut R,
        previous: Option<&EtcdClusterStatus>,
        generation: Option<i64>,
        now: &Now,
        why: String,
    ) -> Result<(), PassError<R::Error>> {
        let status = blocked_status(previous, generation, self.reason, &why, &now.text);
        if previous.is_none_or(|old| !same_status(old, &status)) {
            rt.write_status(&status).await.map_err(PassError::Status)?;
            rt.publish(StepEvent {
                warning: true,
                reason: self.reason.to_owned(),
                note: why,
                action: self.action,
            })
            .await;
        }
        Ok(())
    }
}

fn normal(reason: &str, note: String, action: &'static str) -> StepEvent {
    StepEvent {
        warning: false,
        reason: reason.to_owned(),
        note,
        action,
    }
}

/// Whether the status says a quorum is healthy (the Available condition).
fn is_available(status: &EtcdClusterStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == "Available" && c.status == "True")
}

/// Why the last restore failed, as the status written before says (its `Degraded` condition).
fn restore_failure(previous: Option<&EtcdClusterStatus>) -> Option<String> {
    previous?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == RESTORE_FAILED)
        .map(|c| c.message.clone())
}
