//! The kube-runtime side of a pass: [`reconcile`] runs [`crate::controller::pass::pass`] over
//! one `EtcdCluster` ([`KubeCluster`]) and answers when to come back; [`error_policy`] answers
//! after a failed pass.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};

use crate::api::{EtcdCluster, EtcdClusterSpec};
use crate::controller::pass::{PassError, Passed, pass};
use crate::controller::plan::Desired;
use crate::controller::validate::{SpecError, validate};
use crate::metrics::Metrics;

use super::cluster::{KubeCluster, placement};
use super::objects::{Blueprint, BlueprintError, MANAGER};
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
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("replace_after_failures", &self.replace_after_failures)
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

/// The planner's desired state for the cluster `info` describes, from its `spec`.
pub fn desired_state(
    spec: &EtcdClusterSpec,
    info: &Blueprint,
    replace_after_failures: u32,
) -> Result<Desired, SpecError> {
    validate(spec, &placement(info, replace_after_failures)).map(|v| v.desired)
}

/// One pass over one cluster.
pub async fn reconcile(
    cluster: Arc<EtcdCluster>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector delete the members.
        return Ok(Action::await_change());
    }
    let info = Blueprint::of(&cluster).inspect_err(|_| {
        ctx.metrics.reconciled(Duration::ZERO, Some("resource"));
    })?;
    let mut runtime = KubeCluster::new(&ctx, &cluster, info);
    Ok(match pass(&mut runtime).await? {
        Passed::Idle => Action::requeue(REQUEUE_IDLE),
        Passed::Stepped | Passed::NotYet => Action::requeue(REQUEUE_AFTER_STEP),
    })
}

/// What to do after a failed pass: retry soon; an invalid spec waits for a change.
pub fn error_policy(
    _cluster: Arc<EtcdCluster>,
    error: &ReconcileError,
    _ctx: Arc<Context>,
) -> Action {
    tracing::warn!(error = %error, "reconcile failed");
    match error {
        ReconcileError::Pass(PassError::Spec(_)) => Action::await_change(),
        _ => Action::requeue(REQUEUE_AFTER_ERROR),
    }
}
