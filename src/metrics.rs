//! The operator's Prometheus metrics (prometheus-client, OpenMetrics text) and a small HTTP
//! endpoint serving them (`/metrics`) and liveness (`/healthz`).
//!
//! - `etcd_operator_reconciles_total{outcome}`: reconcile passes, `ok` or `error`.
//! - `etcd_operator_reconcile_errors_total{kind}`: failed passes by error kind.
//! - `etcd_operator_reconcile_duration_seconds`: time per pass.
//! - `etcd_operator_steps_total{step, outcome}`: planner steps run (`done`, `not_yet`, `error`).
//! - `etcd_operator_members{namespace, cluster, role, healthy}`: members per cluster by role
//!   (`leader`, `follower`, `learner`) and health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    steps: Family<StepLabels, Counter>,
    members: Family<MemberLabels, Gauge>,
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
        let mut registry = Registry::with_prefix("etcd_operator");
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
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            steps,
            members,
        }
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

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = match path {
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.encode(),
                ),
                "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
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
