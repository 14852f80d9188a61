//! The operator's Prometheus metrics (prometheus-client, OpenMetrics text) and a small HTTP
//! endpoint serving them (`/metrics`), liveness (`/healthz`: the process answers) and readiness
//! (`/readyz`: the process has a working connection to the Kubernetes API; standbys are ready
//! too, see [`Readiness`]).
//!
//! - `etcd_operator_reconciles_total{outcome}`: reconcile passes, `ok` or `error`.
//! - `etcd_operator_reconcile_errors_total{kind}`: failed passes by error kind.
//! - `etcd_operator_reconcile_duration_seconds`: time per pass.
//! - `etcd_operator_steps_total{step, outcome}`: planner steps run (`done`, `not_yet`, `error`),
//!   maintenance included (`Compact`, `Defragment`, `DisarmAlarm`).
//! - `etcd_operator_members{namespace, cluster, role, healthy}`: members per cluster by role
//!   (`leader`, `follower`, `learner`) and health.
//! - `etcd_operator_backups_total{namespace, cluster}` and
//!   `etcd_operator_backup_failures_total{namespace, cluster}`: scheduled snapshots stored and
//!   failed attempts;
//!   `etcd_operator_backup_last_success_timestamp_seconds`, `etcd_operator_backup_last_size_bytes`
//!   and `etcd_operator_backup_last_duration_seconds` (same labels): the last one stored.
//! - `etcd_operator_backup_verifications_total{namespace, cluster, result}` (`passed`,
//!   `failed`) and `etcd_operator_backup_last_verification_duration_seconds`: snapshots
//!   verified by a restore into a throwaway etcd.
//! - `etcd_operator_leader_is_leader{identity}` and `etcd_operator_leader_acquisitions_total`:
//!   whether this replica leads (see [`crate::leader::LeaderMetrics`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::leader::LeaderMetrics;

/// Labels of `etcd_operator_reconciles_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or `error`.
    pub outcome: String,
}

/// Labels of `etcd_operator_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error kind.
    pub kind: String,
}

/// Labels of `etcd_operator_steps_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step's kind (`StartSeed`, `AddLearner`, ...).
    pub step: String,
    /// `done`, `not_yet` or `error`.
    pub outcome: String,
}

/// Labels of `etcd_operator_members`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    /// The cluster's namespace.
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
    /// `leader`, `follower` or `learner`.
    pub role: String,
    /// `true` or `false`.
    pub healthy: String,
}

/// Labels of the backup metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The cluster's namespace.
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
}

/// The backup metrics.
#[derive(Debug, Default)]
struct BackupMetrics {
    taken: Family<ClusterLabels, Counter>,
    failures: Family<ClusterLabels, Counter>,
    last_success: Family<ClusterLabels, Gauge>,
    last_size: Family<ClusterLabels, Gauge>,
    last_duration: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    verified: Family<VerificationLabels, Counter>,
    last_verification_duration: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// Labels of the backup verification counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerificationLabels {
    /// The cluster's namespace.
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
    /// `passed` or `failed`.
    pub result: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    steps: Family<StepLabels, Counter>,
    members: Family<MemberLabels, Gauge>,
    backups: BackupMetrics,
    leader: LeaderMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The roles a member can have, as the `role` label spells them.
pub const ROLES: [&str; 3] = ["leader", "follower", "learner"];

impl Metrics {
    /// A registry with every metric registered at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let leader = LeaderMetrics::register(&mut root);
        let registry = root.sub_registry_with_prefix("etcd_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let steps = Family::<StepLabels, Counter>::default();
        let members = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "reconciles",
            "Reconcile passes by outcome",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconcile passes by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            duration.clone(),
        );
        registry.register(
            "steps",
            "Planner steps run, by step and outcome",
            steps.clone(),
        );
        registry.register(
            "members",
            "Members per cluster by role and health",
            members.clone(),
        );
        let backups = BackupMetrics::default();
        registry.register(
            "backups",
            "Scheduled snapshots stored",
            backups.taken.clone(),
        );
        registry.register(
            "backup_failures",
            "Failed scheduled snapshot attempts",
            backups.failures.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the last scheduled snapshot was stored (Unix time)",
            backups.last_success.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Size of the last scheduled snapshot stored",
            backups.last_size.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "Time the last scheduled snapshot took to stream and commit",
            backups.last_duration.clone(),
        );
        registry.register(
            "backup_verifications",
            "Snapshots verified by a restore into a throwaway etcd, by result",
            backups.verified.clone(),
        );
        registry.register(
            "backup_last_verification_duration_seconds",
            "Time the last verification of a snapshot took",
            backups.last_verification_duration.clone(),
        );
        Metrics {
            registry: root,
            backups,
            reconciles,
            errors,
            duration,
            steps,
            members,
            leader,
        }
    }

    /// The leader-election metrics, registered in this registry.
    pub fn leader(&self) -> &LeaderMetrics {
        &self.leader
    }

    /// Counts a reconcile pass that took `elapsed`; `error` names the error kind of a failed one.
    pub fn reconciled(&self, elapsed: Duration, error: Option<&str>) {
        self.duration.observe(elapsed.as_secs_f64());
        let outcome = if error.is_some() { "error" } else { "ok" };
        self.reconciles
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        if let Some(kind) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// Counts a step run with its outcome.
    pub fn step(&self, step: &str, outcome: &str) {
        self.steps
            .get_or_create(&StepLabels {
                step: step.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the member gauges of one cluster from `(role, healthy)` pairs, one per member;
    /// combinations without members are set to 0.
    pub fn set_members(&self, namespace: &str, cluster: &str, members: &[(&str, bool)]) {
        for role in ROLES {
            for healthy in [true, false] {
                let n = members
                    .iter()
                    .filter(|(r, h)| *r == role && *h == healthy)
                    .count();
                self.members
                    .get_or_create(&MemberLabels {
                        namespace: namespace.to_owned(),
                        cluster: cluster.to_owned(),
                        role: role.to_owned(),
                        healthy: healthy.to_string(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Records a snapshot of `namespace/cluster` stored at `when` (Unix seconds): `size` bytes,
    /// in `duration`.
    pub fn backup_taken(
        &self,
        namespace: &str,
        cluster: &str,
        when: i64,
        size: u64,
        duration: Duration,
    ) {
        let labels = ClusterLabels {
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
        };
        let b = &self.backups;
        b.taken.get_or_create(&labels).inc();
        b.last_success.get_or_create(&labels).set(when);
        b.last_size
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        b.last_duration
            .get_or_create(&labels)
            .set(duration.as_secs_f64());
    }

    /// Counts a verification of a snapshot of `namespace/cluster` (`passed` or not) that took
    /// `duration`.
    pub fn backup_verified(
        &self,
        namespace: &str,
        cluster: &str,
        passed: bool,
        duration: Duration,
    ) {
        let b = &self.backups;
        b.verified
            .get_or_create(&VerificationLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
                result: if passed { "passed" } else { "failed" }.to_owned(),
            })
            .inc();
        b.last_verification_duration
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
            })
            .set(duration.as_secs_f64());
    }

    /// Counts a failed snapshot attempt of `namespace/cluster`.
    pub fn backup_failed(&self, namespace: &str, cluster: &str) {
        self.backups
            .failures
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_owned(),
                cluster: cluster.to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Whether the process may be sent traffic: it has a working connection to the Kubernetes API.
/// Leading plays no part (a standby is ready: it takes over without a restart). Cheap to clone;
/// every clone shares the state.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<Mutex<Result<(), String>>>);

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// Not ready yet: the API has not been reached.
    pub fn new() -> Self {
        Readiness(Arc::new(Mutex::new(Err(
            "the Kubernetes API has not been reached yet".to_owned(),
        ))))
    }

    /// Records the last check: `Ok` when the API answered, else why not.
    pub fn set(&self, state: Result<(), String>) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *guard = state;
    }

    /// The last check.
    pub fn get(&self) -> Result<(), String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The answer to one request path: status line, content type, body.
pub fn respond(
    path: &str,
    metrics: &Metrics,
    ready: &Readiness,
) -> (&'static str, &'static str, String) {
    match path {
        "/metrics" => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
        "/readyz" => match ready.get() {
            Ok(()) => ("200 OK", "text/plain", "ok\n".to_owned()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, ready: Readiness) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = respond(path, &metrics, &ready);
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_last_api_check_and_healthz_is_always_ok() {
        let m = Metrics::new();
        let r = Readiness::new();
        assert_eq!(respond("/healthz", &m, &r).0, "200 OK");
        let (status, _, body) = respond("/readyz", &m, &r);
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("has not been reached"), "{body}");
        r.set(Ok(()));
        assert_eq!(
            respond("/readyz", &m, &r),
            ("200 OK", "text/plain", "ok\n".into())
        );
        r.set(Err("connection refused".into()));
        assert!(respond("/readyz", &m, &r).2.contains("connection refused"));
        assert_eq!(respond("/nope", &m, &r).0, "404 Not Found");
    }

    #[test]
    fn leader_and_operator_metrics_share_one_endpoint_without_double_prefix() {
        let m = Metrics::new();
        m.leader().set_leading("pod-a", true);
        m.reconciled(Duration::from_millis(3), None);
        let text = m.encode();
        assert!(
            text.contains("etcd_operator_leader_is_leader{identity=\"pod-a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("etcd_operator_reconciles_total{outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(!text.contains("etcd_operator_etcd_operator"), "{text}");
    }
}
