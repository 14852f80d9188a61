//! The Kubernetes runtime: `etcd-operator run`.
//!
//! A kube-runtime `Controller` watches `EtcdCluster`s and the objects they own (Pods, PVCs,
//! Services, PodDisruptionBudgets, selected by the `app.kubernetes.io/managed-by=etcd-operator`
//! label) and runs [`reconcile::reconcile`] for each cluster: the shared pass
//! ([`crate::controller::pass`]) decides, [`members::KubeMembers`] creates and deletes Pods and
//! PVCs, and [`objects`] builds every object as a pure function.
//!
//! - [`objects`]: the desired Pod, PVC, Services and PDB, with owner references.
//! - [`members`]: Pods and PVCs as the planner's runtime members, the intent store (annotation
//!   `etcd.operator.dev/intent` on the `EtcdCluster`), and the [`MemberRuntime`] implementation.
//! - [`cluster`]: one `EtcdCluster` as the pass's [`Runtime`] (observe Pods and PVCs, status,
//!   Events, the intent annotation).
//! - [`reconcile`]: the kube-runtime `reconcile` and `error_policy`.
//!
//! [`MemberRuntime`]: crate::controller::act::MemberRuntime
//! [`Runtime`]: crate::controller::pass::Runtime

pub mod cluster;
pub mod members;
pub mod network_policy;
pub mod objects;
pub mod pacing;
pub mod reconcile;
pub mod restore;
mod restoring;
pub mod secrets;
pub mod tls_mounts;
pub mod verify;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;

use crate::api::EtcdCluster;
use crate::leader::{
    LeaderElectionArgs, LeaderElectionConfig, LeaderElector, LeaderError, RunOutcome,
};
use crate::metrics::{Metrics, Readiness};
use crate::telemetry::LogFormat;

use objects::{LABEL_MANAGED_BY, MANAGER};
use reconcile::Context;

/// Arguments of `etcd-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log lines as `text` or `json` (filtered by `RUST_LOG`, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Leader election among replicas (`--leader-elect`, `--leader-election-*`).
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// Replace a member after this many consecutive failures (0: never for failures alone).
    #[arg(long, default_value_t = crate::controller::plan::DEFAULT_REPLACE_AFTER_FAILURES)]
    pub replace_after_failures: u32,
    /// The Kubernetes cluster's DNS domain: member URLs are fully qualified names under it
    /// (`http://<cluster>-<ordinal>.<namespace>.svc.<domain>:2380`).
    #[arg(long, default_value = objects::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The operator's own image (`REPOSITORY:TAG`), which the init container of restore Pods
    /// runs (`etcd-operator snapshot fetch`); without it, restores from a store are refused.
    #[arg(long, value_name = "IMAGE")]
    pub operator_image: Option<String>,
    /// The labels of the operator's own Pods (`k=v,k2=v2`), which the NetworkPolicy of a
    /// cluster with `spec.networkPolicy` lets in to the client port, in the namespace
    /// `POD_NAMESPACE` names (any namespace when unset).
    #[arg(
        long,
        value_name = "LABELS",
        default_value = "app.kubernetes.io/name=etcd-operator"
    )]
    pub operator_pod_labels: String,
    /// Dial `HOST:PORT` at `ADDR:PORT` instead (repeatable), for running outside the cluster
    /// network: `--resolve demo-0.default.svc.cluster.local:2379=127.0.0.1:32379`.
    #[arg(long = "resolve", value_name = "HOST:PORT=ADDR:PORT")]
    pub resolve: Vec<String>,
}

/// Maps the client URL a member advertises (`http://<member>.<ns>.svc.<domain>:2379`) to the URL
/// the operator dials.
pub type Resolver = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Resolves a member URL through `overrides` (`host:port` to `addr:port`): the one place member
/// addresses are resolved, so that a test stand-in can point Pod DNS names at loopback.
pub fn resolve_member_url(url: &str, overrides: &BTreeMap<String, String>) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match overrides.get(authority) {
        Some(to) => format!("{scheme}://{to}{path}"),
        None => url.to_owned(),
    }
}

/// A [`Resolver`] from `--resolve` arguments.
pub fn resolver_from_args(args: &[String]) -> Result<Resolver, StartError> {
    let mut overrides = BTreeMap::new();
    for a in args {
        let (from, to) = a
            .split_once('=')
            .filter(|(f, t)| !f.is_empty() && !t.is_empty())
            .ok_or_else(|| {
                StartError::Resolve(format!("--resolve {a:?}: expected HOST:PORT=ADDR:PORT"))
            })?;
        overrides.insert(from.to_owned(), to.to_owned());
    }
    Ok(Arc::new(move |url: &str| {
        resolve_member_url(url, &overrides)
    }))
}

/// Errors of the Kubernetes runtime during a pass.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The intent annotation could not be encoded or decoded.
    #[error("intent annotation: {0}")]
    Json(#[source] serde_json::Error),
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
    /// A step this runtime cannot run (never planned here).
    #[error("{0}")]
    Unsupported(String),
    /// The cluster's certificates could not be made or read.
    #[error("certificates: {0}")]
    Tls(#[source] crate::tls::pki::PkiError),
    /// The root password Secret is missing or has no password.
    #[error("{0}")]
    Auth(String),
    /// A restore Pod failed: nothing is started.
    #[error("restore Pod {pod} failed: {message}")]
    RestoreFailed {
        /// The Pod.
        pod: String,
        /// Its termination message.
        message: String,
    },
}

/// Errors starting `etcd-operator run`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A `--resolve` argument is malformed.
    #[error("invalid: {0}")]
    Resolve(String),
    /// `--operator-pod-labels` is malformed.
    #[error("invalid --operator-pod-labels: {0}")]
    OperatorPodLabels(String),
    /// No Kubernetes client could be configured.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// Leader election is misconfigured, or this replica lost the Lease (it stopped reconciling
    /// at once; the process exits non-zero and restarts as a standby).
    #[error("leader election: {0}")]
    Leader(#[source] LeaderError),
    /// The metrics endpoint could not be bound.
    #[error("binding the metrics endpoint {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How often `/readyz` re-checks the Kubernetes API.
pub const READINESS_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// This process's name when leader election is off: `POD_NAME`, else `HOSTNAME`, else
/// `etcd-operator` (the same name Events report as their instance).
pub fn process_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| MANAGER.to_owned())
}

/// Runs the operator with the client from the environment (in-cluster or `KUBECONFIG`) until
/// SIGINT or SIGTERM, serving `/metrics`, `/healthz` and `/readyz`.
///
/// With `--leader-elect` the controller runs only while this replica holds the Lease: on
/// SIGINT/SIGTERM the leader stops the controller and then releases the Lease (`Ok`); a leader
/// that cannot renew stops the controller at once and this returns [`StartError::Leader`] (the
/// process exits non-zero). Without it the controller runs directly.
pub async fn run(args: RunArgs) -> Result<(), StartError> {
    let election = args.leader_election.config().map_err(StartError::Leader)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| StartError::Config(e.to_string()))?;
    let metrics = Arc::new(Metrics::new());
    let listener = crate::metrics::bind(args.metrics_addr)
        .await
        .map_err(|source| StartError::Metrics {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics, /healthz and /readyz");
    let ready = Readiness::new();
    let server = tokio::spawn(crate::metrics::serve(
        listener,
        metrics.clone(),
        ready.clone(),
    ));
    let checker = tokio::spawn(check_api(client.clone(), args.namespace.clone(), ready));
    let result = match election {
        None => {
            let identity = process_identity();
            tracing::info!(
                identity = %identity,
                "leader election off: this process runs the controller"
            );
            metrics.leader().set_leading(&identity, true);
            metrics.leader().set_holder(Some(&identity));
            run_controller(client, args, metrics, shutdown_signal()).await
        }
        Some(config) => run_elected(client, config, args, metrics).await,
    };
    checker.abort();
    server.abort();
    result
}

/// Campaigns for the Lease and runs the controller while this replica leads.
async fn run_elected(
    client: kube::Client,
    config: LeaderElectionConfig,
    args: RunArgs,
    metrics: Arc<Metrics>,
) -> Result<(), StartError> {
    tracing::info!(
        identity = %config.identity,
        lease = %format!("{}/{}", config.namespace, config.lease_name),
        "leader election on: standing by until this replica holds the lease"
    );
    let elector = LeaderElector::new(client.clone(), config)
        .map_err(StartError::Leader)?
        .with_metrics(metrics.leader().clone());
    // The elector drops the controller future to stop it (in-flight passes are cancelled), before
    // it releases the Lease; so the controller itself never waits for a shutdown signal.
    let work = move || run_controller(client, args, metrics, std::future::pending::<()>());
    match elector.run(work, shutdown_signal()).await {
        Ok(RunOutcome::Shutdown) => Ok(()),
        Ok(RunOutcome::Finished(result)) => result,
        Err(lost) => Err(StartError::Leader(lost)),
    }
}

/// Keeps `ready` up to date: `EtcdCluster`s in the watched namespace (all when `None`) could
/// be listed within the period, so the controller can watch them: the API answers, the CRD is
/// installed and RBAC allows it. A replica that cannot list them reconciles nothing and says
/// so.
async fn check_api(client: kube::Client, namespace: Option<String>, ready: Readiness) {
    let clusters: Api<EtcdCluster> = match namespace.as_deref() {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let probe = kube::api::ListParams::default().limit(1);
    loop {
        let state =
            match tokio::time::timeout(READINESS_PERIOD, clusters.list_metadata(&probe)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("listing EtcdClusters failed: {e}")),
                Err(_) => Err(format!(
                    "the Kubernetes API did not answer within {READINESS_PERIOD:?}"
                )),
            };
        if let Err(why) = &state {
            tracing::warn!(reason = %why, "not ready");
        }
        ready.set(state);
        tokio::time::sleep(READINESS_PERIOD).await;
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the controller with `client` until `shutdown` completes.
pub async fn run_controller(
    client: kube::Client,
    args: RunArgs,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let resolver = resolver_from_args(&args.resolve)?;
    let operator_pods = network_policy::OperatorPods::parse(
        &args.operator_pod_labels,
        std::env::var("POD_NAMESPACE").ok(),
    )
    .map_err(StartError::OperatorPodLabels)?;
    fn api<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = args.namespace.as_deref();
    let clusters: Api<EtcdCluster> = api(&client, ns);
    let pods: Api<Pod> = api(&client, ns);
    let pvcs: Api<PersistentVolumeClaim> = api(&client, ns);
    let services: Api<Service> = api(&client, ns);
    let pdbs: Api<PodDisruptionBudget> = api(&client, ns);
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            metrics,
            resolver,
            args.replace_after_failures,
        )
        .with_cluster_domain(args.cluster_domain.clone())
        .with_operator_image(args.operator_image.clone())
        .with_operator_pods(operator_pods),
    );
    let owned = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    tracing::info!(namespace = ?args.namespace, "starting the EtcdCluster controller");
    Controller::new(clusters, watcher::Config::default())
        .owns(pods, owned.clone())
        .owns(pvcs, owned.clone())
        .owns(services, owned.clone())
        .owns(pdbs, owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_logged, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj.name, "reconciled"),
                // A failed pass is logged by error_policy; controller-level failures (a watch
                // that cannot list, say the CRD is missing) are worth a warning of their own:
                // nothing reconciles while they last.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::warn!(error = %e, "controller error"),
            }
        })
        .await;
    Ok(())
}

/// [`reconcile::reconcile`], with a debug line when each pass starts (the trace of which
/// replica acted when).
async fn reconcile_logged(
    cluster: Arc<EtcdCluster>,
    ctx: Arc<Context>,
) -> Result<kube::runtime::controller::Action, reconcile::ReconcileError> {
    tracing::debug!(
        cluster = %cluster.metadata.name.as_deref().unwrap_or_default(),
        namespace = %cluster.metadata.namespace.as_deref().unwrap_or_default(),
        "reconciling"
    );
    reconcile::reconcile_paced(cluster, ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn run_flags_are_consistent_and_include_leader_election() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "run",
            "--metrics-addr=127.0.0.1:9000",
            "--log-format=json",
            "--leader-elect",
            "--leader-election-lease=l",
            "--leader-election-namespace=ops",
            "--leader-election-identity=pod-1",
            "--leader-election-lease-duration=4s",
            "--leader-election-renew-deadline=3s",
            "--leader-election-retry-period=500ms",
        ])
        .expect("parses");
        assert_eq!(cli.run.log_format, LogFormat::Json);
        let config = cli
            .run
            .leader_election
            .config()
            .expect("valid")
            .expect("on");
        assert_eq!(config.identity, "pod-1");
        assert_eq!(config.namespace, "ops");
        assert_eq!(config.retry_period, std::time::Duration::from_millis(500));
        let off = Cli::try_parse_from(["run", "--leader-elect=false"]).expect("parses");
        assert!(off.run.leader_election.config().expect("valid").is_none());
        assert!(Cli::try_parse_from(["run", "--log-format=xml"]).is_err());
    }
}
