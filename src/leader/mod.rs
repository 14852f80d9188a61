//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one acts at a time.
//!
//! [`LeaderElector::run`] campaigns for the Lease and, once it holds it, runs the caller's work.
//! The rules (the same as client-go's `leaderelection`, with fencing made explicit):
//!
//! - A standby tries to take the Lease every `retry_period`. It may take it when nobody holds it
//!   (no holder, or a holder that released it), or when the holder has not renewed it for
//!   `lease_duration` as measured on the standby's own monotonic clock from the moment it first
//!   saw the current record (so clock skew between machines does not matter).
//! - The leader renews every `retry_period`. If it cannot renew within `renew_deadline` of the
//!   start of its last successful renewal, it drops the work at once and `run` returns
//!   [`LeaderError::Lost`]; the caller should exit non-zero so it restarts as a standby. Because
//!   `renew_deadline < lease_duration`, the old leader has stopped before any standby can see the
//!   Lease as expired.
//! - On shutdown (the `shutdown` future completes, e.g. on SIGTERM) the leader drops the work
//!   and then releases the Lease (empty holder), so a standby takes it at its next retry, within
//!   one `retry_period`.
//!
//! Every update is a compare-and-swap on the Lease's `resourceVersion`, so two electors can never
//! both believe they took the same record.
//!
//! Who leads is logged (`tracing`), published on a [`tokio::sync::watch`] channel
//! ([`LeaderElector::status`]) and, when [`LeaderMetrics`] are attached, exported as the gauge
//! `etcd_operator_leader_is_leader{identity=...}`.

mod args;
mod metrics;

pub use args::{LeaderElectionArgs, parse_duration};
pub use metrics::LeaderMetrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Default lease duration: how long a standby waits after the last renewal it saw.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default renew deadline: how long the leader keeps acting without a successful renewal.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Default retry period: how often the leader renews and a standby tries to acquire.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = "etcd-operator-leader";

/// The settings of one elector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease (the operator's own namespace).
    pub namespace: String,
    /// Name of the Lease, shared by all replicas.
    pub lease_name: String,
    /// This replica's identity (the pod name); written to `spec.holderIdentity`.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (whole seconds, at least 1 s).
    pub lease_duration: Duration,
    /// How long the leader may go without a successful renewal before it stops acting.
    pub renew_deadline: Duration,
    /// Interval between renewals (leader) and acquisition attempts (standby).
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// Settings with the default timings (15 s / 10 s / 2 s).
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElectionConfig {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// Sets the three timings.
    pub fn timings(
        mut self,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = renew_deadline;
        self.retry_period = retry_period;
        self
    }

    /// Checks the settings: non-empty names, `0 < retry_period < renew_deadline < lease_duration`,
    /// and a lease duration of whole seconds (the Lease stores seconds).
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |m: String| Err(LeaderError::Config(m));
        if self.identity.is_empty() {
            return bad("the identity is empty".into());
        }
        if self.lease_name.is_empty() || self.namespace.is_empty() {
            return bad("the lease name and namespace must not be empty".into());
        }
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration.as_secs() == 0 {
            return bad(format!(
                "the lease duration must be a whole number of seconds >= 1 (got {:?})",
                self.lease_duration
            ));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return bad("the lease duration is too long".into());
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return bad(format!(
                "the retry period ({:?}) must be > 0 and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return bad(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }
}

/// The errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The settings are inconsistent.
    #[error("invalid leader election settings: {0}")]
    Config(String),
    /// The leader could not renew the Lease within the renew deadline; its work was stopped.
    #[error(
        "lost leadership of lease {lease}: not renewed within the renew deadline of {deadline:?} \
         (last problem: {last_problem})"
    )]
    Lost {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The renew deadline that passed.
        deadline: Duration,
        /// The last failed renewal, or who took the Lease.
        last_problem: String,
    },
}

/// What `run` ended with when leadership was not lost.
#[derive(Debug, PartialEq, Eq)]
pub enum RunOutcome<T> {
    /// The shutdown future completed; the work (if it ran) was stopped and the Lease released.
    Shutdown,
    /// The work finished on its own with this value; the Lease was released.
    Finished(T),
}

/// Who leads, as this elector last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderStatus {
    /// This elector holds the Lease and its work is running.
    pub leading: bool,
    /// The holder recorded in the Lease when last read (`None`: nobody).
    pub holder: Option<String>,
}

/// The part of a Lease record that election decisions read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `spec.holderIdentity`; empty or absent means free.
    pub holder: Option<String>,
    /// `spec.renewTime` as the API returned it (compared for change only, never with a clock).
    pub renew_time: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration: Option<Duration>,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
}

impl LeaseRecord {
    fn from_lease(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }
}

/// What an elector may do with a Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write itself as holder. `transition` is true when the holder changes (a new term).
    Take {
        /// The holder changes (count a transition, set a new acquire time).
        transition: bool,
    },
    /// Someone else holds a valid Lease.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides whether `me` may write itself into `record`. `unchanged_for` is how long (on the local
/// monotonic clock) the record has been seen unchanged; `default_duration` applies when the record
/// carries no duration.
pub fn decide(
    record: &LeaseRecord,
    me: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Decision {
    match &record.holder {
        None => Decision::Take { transition: true },
        Some(h) if h == me => Decision::Take { transition: false },
        Some(h) => {
            let duration = record.lease_duration.unwrap_or(default_duration);
            if unchanged_for >= duration {
                Decision::Take { transition: true }
            } else {
                Decision::Wait { holder: h.clone() }
            }
        }
    }
}

/// When this elector first saw the current record.
#[derive(Debug, Clone)]
struct Observation {
    record: LeaseRecord,
    at: Instant,
}

/// Why one acquire/renew attempt did not succeed.
#[derive(Debug)]
enum Attempt {
    /// Another holder has a valid Lease.
    HeldBy(String),
    /// An API error, a conflict or a timeout.
    Failed(String),
}

/// Campaigns for a Lease and runs work while it holds it. See the [module docs](self).
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    status: Arc<watch::Sender<LeaderStatus>>,
    metrics: Option<LeaderMetrics>,
    observed: Option<Observation>,
}

impl LeaderElector {
    /// An elector using `client` for the Lease; fails when the settings are inconsistent.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        let api = Api::namespaced(client, &config.namespace);
        let (status, _) = watch::channel(LeaderStatus::default());
        Ok(LeaderElector {
            api,
            config,
            status: Arc::new(status),
            metrics: None,
            observed: None,
        })
    }

    /// Exports the leader gauge through `metrics`.
    pub fn with_metrics(mut self, metrics: LeaderMetrics) -> Self {
        metrics.set_leading(&self.config.identity, false);
        self.metrics = Some(metrics);
        self
    }

    /// The settings.
    pub fn config(&self) -> &LeaderElectionConfig {
        &self.config
    }

    /// A receiver of this elector's view of who leads.
    pub fn status(&self) -> watch::Receiver<LeaderStatus> {
        self.status.subscribe()
    }

    /// Waits until this elector holds the Lease, then runs `work()` while it keeps it.
    ///
    /// - `shutdown` completes: the work is dropped, the Lease released, `Ok(Shutdown)`.
    /// - the work completes: the Lease is released, `Ok(Finished(value))`.
    /// - a renewal does not succeed within the renew deadline: the work is dropped at once and
    ///   `Err(Lost)` is returned (the Lease is not touched: another replica may already hold it).
    ///
    /// Dropping the returned future (e.g. aborting its task) stops the work without releasing the
    /// Lease, like a crash: a standby takes over after the lease duration.
    pub async fn run<F, Fut, T, S>(
        mut self,
        work: F,
        shutdown: S,
    ) -> Result<RunOutcome<T>, LeaderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
        S: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let term_start = tokio::select! {
            biased;
            () = &mut shutdown => {
                tracing::info!(identity = %self.config.identity, "shutdown before becoming leader");
                return Ok(RunOutcome::Shutdown);
            }
            start = self.acquire() => start,
        };
        tracing::info!(
            identity = %self.config.identity,
            lease = %self.config.lease_ref(),
            "became leader; starting work"
        );
        self.publish(true, Some(self.config.identity.clone()));

        // Boxed so that `drop` below really drops (cancels) the work, before the Lease is released.
        let mut work = Box::pin(work());
        let result = tokio::select! {
            biased;
            lost = self.keep_renewing(term_start) => Err(lost),
            () = &mut shutdown => Ok(RunOutcome::Shutdown),
            value = &mut work => Ok(RunOutcome::Finished(value)),
        };
        // Stop the work before anything else: from here on this replica does not act.
        drop(work);
        match result {
            Err(lost) => {
                tracing::error!(
                    identity = %self.config.identity,
                    error = %lost,
                    "lost leadership; work stopped"
                );
                self.publish(false, None);
                Err(lost)
            }
            Ok(outcome) => {
                self.publish(false, Some(self.config.identity.clone()));
                tracing::info!(
                    identity = %self.config.identity,
                    "stopped leading; work stopped, releasing the lease"
                );
                self.release().await;
                Ok(outcome)
            }
        }
    }

    /// Tries every retry period until the Lease is ours; returns when the winning request started.
    async fn acquire(&mut self) -> Instant {
        let mut last_logged: Option<String> = None;
        loop {
            let started = Instant::now();
            match self.attempt(self.config.renew_deadline).await {
                Ok(()) => return started,
                Err(Attempt::HeldBy(holder)) => {
                    if last_logged.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            identity = %self.config.identity,
                            leader = %holder,
                            "standing by; another replica leads"
                        );
                        last_logged = Some(holder.clone());
                    }
                    self.publish(false, Some(holder));
                }
                Err(Attempt::Failed(why)) => {
                    tracing::warn!(identity = %self.config.identity, error = %why, "acquiring the lease failed");
                }
            }
            tokio::time::sleep_until(started + self.config.retry_period).await;
        }
    }

    /// Renews every retry period; returns only when the renew deadline passed without success.
    /// `last_success` is when the request that won (or last renewed) the Lease was sent.
    async fn keep_renewing(&mut self, mut last_success: Instant) -> LeaderError {
        let mut last_problem = String::from("none");
        loop {
            let deadline = last_success + self.config.renew_deadline;
            tokio::time::sleep_until(
                (Instant::now().max(last_success + self.config.retry_period)).min(deadline),
            )
            .await;
            let started = Instant::now();
            if started >= deadline {
                return self.lost(last_problem);
            }
            match self.attempt(deadline - started).await {
                Ok(()) => last_success = started,
                Err(Attempt::HeldBy(holder)) => {
                    // Someone else holds it: our term is over, stop now.
                    return self.lost(format!("the lease is held by {holder}"));
                }
                Err(Attempt::Failed(why)) => {
                    tracing::warn!(identity = %self.config.identity, error = %why, "renewing the lease failed");
                    last_problem = why;
                    // Retry soon, but never later than the deadline.
                    let retry_at = (Instant::now() + self.config.retry_period / 4).min(deadline);
                    tokio::time::sleep_until(retry_at).await;
                    if Instant::now() >= deadline {
                        return self.lost(last_problem);
                    }
                    // Next loop iteration retries at once (last_success + retry_period is past).
                }
            }
        }
    }

    fn lost(&self, last_problem: String) -> LeaderError {
        LeaderError::Lost {
            lease: self.config.lease_ref(),
            deadline: self.config.renew_deadline,
            last_problem,
        }
    }

    /// One read-decide-write round, bounded by `limit`.
    async fn attempt(&mut self, limit: Duration) -> Result<(), Attempt> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::Failed(format!("no answer within {limit:?}"))),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<(), Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let me = self.config.identity.clone();
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let existing = self
            .api
            .get_opt(&self.config.lease_name)
            .await
            .map_err(|e| Attempt::Failed(format!("reading the lease: {e}")))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let created = self
                .api
                .create(&PostParams::default(), &lease)
                .await
                .map_err(|e| Attempt::Failed(format!("creating the lease: {e}")))?;
            self.observe(LeaseRecord::from_lease(&created));
            return Ok(());
        };

        let record = LeaseRecord::from_lease(&lease);
        let unchanged_for = self.observe(record.clone());
        match decide(&record, &me, unchanged_for, self.config.lease_duration) {
            Decision::Wait { holder } => Err(Attempt::HeldBy(holder)),
            Decision::Take { transition } => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if transition {
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(record.transitions.saturating_add(1));
                    spec.holder_identity = Some(me);
                }
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(duration_secs);
                // `replace` carries the resourceVersion we read: a concurrent writer makes it fail.
                let written = self
                    .api
                    .replace(&self.config.lease_name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| Attempt::Failed(format!("updating the lease: {e}")))?;
                self.observe(LeaseRecord::from_lease(&written));
                Ok(())
            }
        }
    }

    /// Records `record` as seen now unless it is the one already seen; returns how long it has
    /// been unchanged.
    fn observe(&mut self, record: LeaseRecord) -> Duration {
        let now = Instant::now();
        match &self.observed {
            Some(o) if o.record == record => now - o.at,
            _ => {
                self.observed = Some(Observation { record, at: now });
                Duration::ZERO
            }
        }
    }

    /// Gives the Lease up (empty holder, 1 s duration) if we still hold it; best effort.
    async fn release(&mut self) {
        let limit = self.config.renew_deadline;
        let result = tokio::time::timeout(limit, async {
            let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            self.api
                .replace(&self.config.lease_name, &PostParams::default(), &lease)
                .await?;
            Ok::<bool, kube::Error>(true)
        })
        .await;
        match result {
            Ok(Ok(true)) => {
                tracing::info!(identity = %self.config.identity, "released the lease");
                self.publish(false, None);
            }
            Ok(Ok(false)) => {
                tracing::info!(identity = %self.config.identity, "lease not held any more; nothing to release");
            }
            Ok(Err(e)) => {
                tracing::warn!(identity = %self.config.identity, error = %e, "releasing the lease failed; it expires after its duration");
            }
            Err(_) => {
                tracing::warn!(identity = %self.config.identity, "releasing the lease timed out; it expires after its duration");
            }
        }
    }

    fn publish(&self, leading: bool, holder: Option<String>) {
        if let Some(m) = &self.metrics {
            m.set_leading(&self.config.identity, leading);
            m.set_holder(holder.as_deref());
        }
        self.status.send_replace(LeaderStatus { leading, holder });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, secs: Option<u64>) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_string),
            renew_time: Some("2026-01-01T00:00:00Z".into()),
            lease_duration: secs.map(Duration::from_secs),
            transitions: 3,
        }
    }

    const D: Duration = Duration::from_secs(15);

    #[test]
    fn free_lease_is_taken_as_a_new_term() {
        assert_eq!(
            decide(&record(None, Some(15)), "a", Duration::ZERO, D),
            Decision::Take { transition: true }
        );
    }

    #[test]
    fn own_lease_is_renewed_without_transition() {
        assert_eq!(
            decide(&record(Some("a"), Some(15)), "a", Duration::ZERO, D),
            Decision::Take { transition: false }
        );
    }

    #[test]
    fn valid_foreign_lease_is_respected_until_its_duration_passes() {
        let r = record(Some("b"), Some(15));
        assert_eq!(
            decide(&r, "a", Duration::from_secs(14), D),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(&r, "a", Duration::from_secs(15), D),
            Decision::Take { transition: true }
        );
    }

    #[test]
    fn record_without_duration_uses_the_configured_one() {
        let r = record(Some("b"), None);
        assert_eq!(
            decide(&r, "a", Duration::from_secs(10), Duration::from_secs(11)),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(&r, "a", Duration::from_secs(11), Duration::from_secs(11)),
            Decision::Take { transition: true }
        );
    }

    #[test]
    fn settings_are_validated() {
        let ok = LeaderElectionConfig::new("ns", "lease", "pod-0");
        assert!(ok.validate().is_ok());
        let s = Duration::from_secs;
        for bad in [
            ok.clone().timings(s(10), s(10), s(2)),
            ok.clone().timings(s(15), s(10), s(10)),
            ok.clone().timings(s(15), s(10), Duration::ZERO),
            ok.clone()
                .timings(Duration::from_millis(15_500), s(10), s(2)),
            LeaderElectionConfig::new("ns", "lease", ""),
            LeaderElectionConfig::new("", "lease", "a"),
        ] {
            assert!(
                matches!(bad.validate(), Err(LeaderError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
