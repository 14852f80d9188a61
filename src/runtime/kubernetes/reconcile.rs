//! The kube-runtime side of a pass: [`reconcile`] runs [`crate::controller::pass::pass`] over
//! one `EtcdCluster` ([`KubeCluster`]) and answers when to come back; [`error_policy`] answers
//! after a failed pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use crate::api::{EtcdCluster, EtcdClusterSpec};
use crate::controller::pass::{PassError, Passed, pass};
use crate::controller::plan::Desired;
use crate::controller::validate::{SpecError, validate};
use crate::metrics::Metrics;

use super::cluster::{KubeCluster, placement};
use super::network_policy::{KnownAbsent, OperatorPods};
use super::objects::{Blueprint, BlueprintError, DEFAULT_CLUSTER_DOMAIN, MANAGER};
use super::pacing::{Pacing, PassEnd};
use super::{KubeError, Resolver, process_identity};

/// The pause before the next pass after a step ran.
pub const REQUEUE_AFTER_STEP: Duration = Duration::from_secs(2);
/// The pause between passes when nothing happens (health is re-read this often).
pub const REQUEUE_IDLE: Duration = Duration::from_secs(15);
/// The pause after a failed pass.
pub const REQUEUE_AFTER_ERROR: Duration = Duration::from_secs(5);

/// What every reconcile pass shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Maps the client URLs members advertise to the addresses the operator dials.
    pub resolver: Resolver,
    /// [`Desired::replace_after_failures`] for every cluster.
    pub replace_after_failures: u32,
    /// The Kubernetes cluster's DNS domain, which member URLs end with.
    pub cluster_domain: String,
    /// The operator's own image, which restore Pods fetch snapshots with; `None`: restores
    /// from stores are refused.
    pub operator_image: Option<String>,
    /// When each cluster's next pass may run (back-off of refused steps; the operator's own
    /// writes do not re-run a pass at once).
    pub pacing: Pacing,
    /// The operator's Pods, which NetworkPolicies let in.
    pub operator_pods: OperatorPods,
    /// Clusters known to have no NetworkPolicy.
    pub network_policy_absent: KnownAbsent,
}

impl Context {
    /// A context whose Events are reported by `etcd-operator` (instance: this process).
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        resolver: Resolver,
        replace_after_failures: u32,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_owned(),
            // events.k8s.io/v1 requires a reporting instance.
            instance: Some(process_identity()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            resolver,
            replace_after_failures,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            operator_image: None,
            pacing: Pacing::default(),
            operator_pods: OperatorPods::default(),
            network_policy_absent: KnownAbsent::default(),
        }
    }

    /// The same context, whose clusters' NetworkPolicies let `pods` in.
    pub fn with_operator_pods(mut self, pods: OperatorPods) -> Self {
        self.operator_pods = pods;
        self
    }

    /// The same context, whose restore Pods fetch snapshots with `image` (the operator's own).
    pub fn with_operator_image(mut self, image: Option<String>) -> Self {
        self.operator_image = image;
        self
    }

    /// The same context for a Kubernetes cluster whose DNS domain is `domain`.
    pub fn with_cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("replace_after_failures", &self.replace_after_failures)
            .field("operator_image", &self.operator_image)
            .finish_non_exhaustive()
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The `EtcdCluster` lacks a namespace or UID.
    #[error("{0}")]
    Resource(#[from] BlueprintError),
    /// A stage of the pass failed.
    #[error("{0}")]
    Pass(#[from] PassError<KubeError>),
}

/// The planner's desired state for the cluster `info` describes, from its `spec` (restores
/// from stores refused: no operator image).
pub fn desired_state(
    spec: &EtcdClusterSpec,
    info: &Blueprint,
    replace_after_failures: u32,
) -> Result<Desired, SpecError> {
    validate(spec, &placement(info, replace_after_failures, None)).map(|v| v.desired)
}

/// One pass over one cluster; answers when to come back.
pub async fn reconcile(
    cluster: Arc<EtcdCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    Ok(match run_pass(&cluster, &ctx).await? {
        None => Action::await_change(),
        Some(PassEnd::Idle) => Action::requeue(REQUEUE_IDLE),
        Some(PassEnd::Stepped | PassEnd::NotYet) => Action::requeue(REQUEUE_AFTER_STEP),
    })
}

/// [`reconcile`] as the controller runs it: paced by [`Context::pacing`], so that a wake-up
/// before the pause after the last pass (often this operator's own status write) waits for the
/// rest of that pause, and a step etcd keeps refusing is retried less and less often.
pub async fn reconcile_paced(
    cluster: Arc<EtcdCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let uid = cluster.metadata.uid.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;
    if cluster.metadata.deletion_timestamp.is_none()
        && let Some(wait) = ctx.pacing.wait(&uid, generation, Instant::now())
    {
        return Ok(Action::requeue(wait));
    }
    Ok(match run_pass(&cluster, &ctx).await? {
        None => {
            ctx.pacing.forget(&uid);
            Action::await_change()
        }
        Some(end) => match ctx.pacing.record(&uid, generation, end, Instant::now()) {
            None => Action::requeue(REQUEUE_IDLE),
            Some(pause) => Action::requeue(pause.max(REQUEUE_AFTER_STEP)),
        },
    })
}

/// Runs the pass; `None` when the cluster is being deleted (nothing to do).
async fn run_pass(cluster: &EtcdCluster, ctx: &Context) -> Result<Option<PassEnd>, ReconcileError> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector delete the members.
        return Ok(None);
    }
    let info = Blueprint::of(cluster, &ctx.cluster_domain).inspect_err(|_| {
        ctx.metrics.reconciled(Duration::ZERO, Some("resource"));
    })?;
    let mut runtime = KubeCluster::new(ctx, cluster, info);
    Ok(Some(match pass(&mut runtime).await? {
        Passed::Idle => PassEnd::Idle,
        Passed::Stepped => PassEnd::Stepped,
        Passed::NotYet => PassEnd::NotYet,
    }))
}

/// What to do after a failed pass: retry soon; an invalid spec or an unreadable intent waits
/// for a change (a person must edit the resource).
pub fn error_policy(
    _cluster: Arc<EtcdCluster>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(error = %error, "reconcile failed");
    match error {
        ReconcileError::Pass(PassError::Spec(_) | PassError::Intent(_)) => Action::await_change(),
        _ => Action::requeue(REQUEUE_AFTER_ERROR),
    }
}
