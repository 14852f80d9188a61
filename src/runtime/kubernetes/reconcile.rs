//! One reconcile pass of one `EtcdCluster`: apply the cluster-level objects (Services, PDB),
//! observe the Pods, PVCs and etcd, plan, write the status when it changed, run the step, and
//! record an Event for it.
//!
//! Everything is server-side applied with the field manager `etcd-operator`; a pass with nothing
//! to change sends apply requests that change nothing, and no status write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};

use crate::api::{EtcdCluster, EtcdClusterStatus};
use crate::controller::act::{Outcome, act};
use crate::controller::observe::{EtcdView, observe_etcd};
use crate::controller::plan::{Desired, Observed, Step, Version, plan};
use crate::controller::status::{StatusInput, build_status, same_status};
use crate::etcd::{Client, ConnectOptions};
use crate::metrics::Metrics;

use super::members::{KubeRuntime, decode_intent, pod_started, runtime_members};
use super::objects::{ClusterInfo, FIELD_MANAGER, client_service, disruption_budget, peer_service};
use super::{KubeError, Resolver};

/// How long reading etcd's view may take per call.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause before the next pass after a step ran.
pub const REQUEUE_AFTER_STEP: Duration = Duration::from_secs(2);
/// The pause between passes when nothing happens (health is re-read this often).
pub const REQUEUE_IDLE: Duration = Duration::from_secs(15);

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
    /// A context whose Events are reported by `etcd-operator`.
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        resolver: Resolver,
        replace_after_failures: u32,
    ) -> Self {
        let reporter = kube::runtime::events::Reporter {
            controller: super::objects::MANAGER.to_owned(),
            // events.k8s.io/v1 requires a reporting instance.
            instance: Some(
                std::env::var("POD_NAME")
                    .or_else(|_| std::env::var("HOSTNAME"))
                    .unwrap_or_else(|_| super::objects::MANAGER.to_owned()),
            ),
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

/// The kind of a step, as metrics and Events name it.
pub fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::StartSeed { .. } => "StartSeed",
        Step::AddLearner { .. } => "AddLearner",
        Step::StartMember { .. } => "StartMember",
        Step::PromoteLearner { .. } => "PromoteLearner",
        Step::MoveLeader { .. } => "MoveLeader",
        Step::RemoveMember { .. } => "RemoveMember",
        Step::DeleteMember { .. } => "DeleteMember",
        Step::StartStopped { .. } => "StartStopped",
        Step::RestartMember { .. } => "RestartMember",
        Step::ClearIntent => "ClearIntent",
        Step::Compact { .. } => "Compact",
        Step::Defragment { .. } => "Defragment",
        Step::DisarmAlarm { .. } => "DisarmAlarm",
        Step::Snapshot { .. } => "Snapshot",
        Step::RestoreCluster { .. } => "RestoreCluster",
    }
}

/// The Event reason recorded after a step ran, if the step is worth an Event (every membership,
/// member or version change is).
pub fn event_reason(step: &Step) -> Option<&'static str> {
    Some(match step {
        Step::StartSeed { .. } => "SeedStarted",
        Step::AddLearner { .. } => "LearnerAdded",
        Step::StartMember { .. } => "MemberStarted",
        Step::PromoteLearner { .. } => "LearnerPromoted",
        Step::MoveLeader { .. } => "LeaderMoved",
        Step::RemoveMember { .. } => "MemberRemoved",
        Step::DeleteMember { .. } => "MemberDeleted",
        Step::StartStopped { .. } => "StoppedMemberStarted",
        Step::RestartMember { .. } => "MemberRestarted",
        Step::ClearIntent => return None,
        // Maintenance steps publish their own Event, with what they did.
        Step::Compact { .. }
        | Step::Defragment { .. }
        | Step::DisarmAlarm { .. }
        | Step::Snapshot { .. } => return None,
        Step::RestoreCluster { .. } => "ClusterRestored",
    })
}

/// What `status.backup.lastError` says when `spec.backup` is set on a Kubernetes cluster.
pub const BACKUP_UNSUPPORTED: &str =
    "spec.backup is run by the local runtime only for now; no snapshot is taken";

/// The planner's desired state for a cluster.
pub fn desired_state(
    info: &ClusterInfo,
    replace_after_failures: u32,
) -> Result<Desired, KubeError> {
    let version: Version = info
        .spec
        .version
        .parse()
        .map_err(|e| KubeError::Invalid(format!("{e}")))?;
    let replicas = u32::try_from(info.spec.replicas)
        .map_err(|_| KubeError::Invalid(format!("replicas {} is negative", info.spec.replicas)))?;
    let mut desired = Desired::new(
        info.name.clone(),
        replicas,
        version,
        info.config_hash(),
        info.peer_url_template(),
    );
    desired.paused = info.spec.paused;
    desired.replace_after_failures = replace_after_failures;
    desired.maintenance = crate::controller::policy::maintenance(&info.spec);
    // Scheduled snapshots and restores run in the local runtime only for now: no Snapshot step
    // is planned here (spec.backup is ignored), and a cluster asking for a restore is not
    // created empty behind the user's back.
    if crate::controller::policy::restore_path(&info.spec).is_some() {
        desired.bootstrap = crate::controller::plan::Bootstrap::Unsupported(
            "spec.bootstrap.restore is supported by the local runtime only for now; nothing is \
             created"
                .to_owned(),
        );
    }
    Ok(desired)
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Kube { what, source }
}

/// Applies the headless Service, the client Service and the PodDisruptionBudget.
pub async fn apply_cluster_objects(
    client: &kube::Client,
    info: &ClusterInfo,
) -> Result<(), KubeError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let services: Api<Service> = Api::namespaced(client.clone(), &info.namespace);
    for svc in [peer_service(info), client_service(info)] {
        let name = svc.metadata.name.clone().unwrap_or_default();
        services
            .patch(&name, &pp, &Patch::Apply(&svc))
            .await
            .map_err(kube_err(format!("applying Service {name}")))?;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &info.namespace);
    let pdb = disruption_budget(info);
    pdbs.patch(&info.name, &pp, &Patch::Apply(&pdb))
        .await
        .map_err(kube_err(format!(
            "applying PodDisruptionBudget {}",
            info.name
        )))?;
    Ok(())
}

/// Connects to the members whose Pods have started and reads etcd's view; `None` when no Pod
/// has started or no member answered.
async fn observe(
    info: &ClusterInfo,
    pods: &[Pod],
    desired: &Desired,
    resolver: &Resolver,
) -> (Option<Client>, Option<EtcdView>) {
    let endpoints: Vec<String> = pods
        .iter()
        .filter(|p| pod_started(p))
        .filter_map(|p| {
            p.metadata
                .name
                .as_deref()
                .and_then(|n| desired.ordinal_of(n))
        })
        .map(|o| resolver(&info.client_url(o)))
        .collect();
    if endpoints.is_empty() {
        return (None, None);
    }
    // Every observation read is bounded by OBSERVE_TIMEOUT where it is made; no client-wide
    // request timeout, which would cut off a defragmentation of a large member.
    let opts = ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(2))
        .with_max_retries(1);
    let client =
        match tokio::time::timeout(OBSERVE_TIMEOUT, Client::connect(&endpoints, opts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(cluster = %info.name, error = %e, "cannot connect to etcd");
                return (None, None);
            }
            Err(_) => return (None, None),
        };
    let view = observe_etcd(&client, OBSERVE_TIMEOUT, &**resolver).await;
    (Some(client), view)
}

async fn publish(
    ctx: &Context,
    cluster: &EtcdCluster,
    type_: EventType,
    reason: &str,
    note: String,
    action: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(cluster = %cluster.name_any(), error = %e, "cannot publish an Event");
    }
}

async fn write_status(
    client: &kube::Client,
    info: &ClusterInfo,
    status: &EtcdClusterStatus,
) -> Result<(), KubeError> {
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &info.namespace);
    let patch = serde_json::json!({
        "apiVersion": EtcdCluster::api_version(&()),
        "kind": EtcdCluster::kind(&()),
        "status": status,
    });
    clusters
        .patch_status(
            &info.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err("writing the status"))?;
    Ok(())
}

/// The status of a cluster whose spec the operator cannot act on (possible only when the
/// admission rules were bypassed): phase Degraded, reason `InvalidSpec`; the observed members
/// are kept.
pub fn invalid_status(
    previous: Option<&EtcdClusterStatus>,
    generation: Option<i64>,
    message: &str,
    now: &str,
) -> EtcdClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let old = |t: &str| previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == t).cloned());
    let condition = |type_: &str, on: bool, reason: &str, message: &str| {
        let value = if on { "True" } else { "False" };
        let last = match old(type_) {
            Some(c) if c.status == value => c.last_transition_time,
            _ => Some(now.to_owned()),
        };
        crate::api::Condition {
            type_: type_.to_owned(),
            status: value.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: last,
            observed_generation: generation,
        }
    };
    let available = old("Available").is_some_and(|c| c.status == "True");
    status.conditions = vec![
        old("Available").unwrap_or_else(|| {
            condition(
                "Available",
                available,
                "QuorumLost",
                "no member answered yet",
            )
        }),
        condition("Progressing", false, "InvalidSpec", message),
        condition("Degraded", true, "InvalidSpec", message),
    ];
    status.phase = Some("Degraded".to_owned());
    status.observed_generation = generation;
    status
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One pass over one cluster.
pub async fn reconcile(cluster: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, KubeError> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    let kind = result.as_ref().err().map(KubeError::kind);
    ctx.metrics.reconciled(started.elapsed(), kind);
    result
}

async fn reconcile_inner(cluster: &EtcdCluster, ctx: &Context) -> Result<Action, KubeError> {
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector delete the members.
        return Ok(Action::await_change());
    }
    let info = ClusterInfo::of(cluster).map_err(KubeError::Info)?;
    let client = &ctx.client;
    let desired = match desired_state(&info, ctx.replace_after_failures) {
        Ok(d) => d,
        Err(e) => {
            let status = invalid_status(
                cluster.status.as_ref(),
                cluster.metadata.generation,
                &e.to_string(),
                &now_rfc3339(),
            );
            if cluster
                .status
                .as_ref()
                .is_none_or(|old| !same_status(old, &status))
            {
                write_status(client, &info, &status).await?;
            }
            return Err(e);
        }
    };

    if !desired.paused {
        apply_cluster_objects(client, &info).await?;
    }

    let selector = ListParams::default().labels(&info.member_selector_string());
    let pods: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &info.namespace);
    let pod_list = pods
        .list(&selector)
        .await
        .map_err(kube_err("listing member Pods"))?
        .items;
    let pvc_list = pvcs
        .list(&selector)
        .await
        .map_err(kube_err("listing member PVCs"))?
        .items;
    let intent = decode_intent(cluster).map_err(KubeError::Json)?;
    let (etcd, view) = observe(&info, &pod_list, &desired, &ctx.resolver).await;
    // Whether the cluster ever answered: until then no PVC holds member data the operator knows of.
    let answered = view.as_ref().is_some_and(|v| v.cluster_id.is_some())
        || cluster
            .status
            .as_ref()
            .is_some_and(|s| s.cluster_id.is_some());
    let runtime = runtime_members(
        &desired,
        info.spec.storage.ephemeral,
        answered,
        &pod_list,
        &pvc_list,
    );
    let mut etcd_view = view.as_ref().map(EtcdView::membership);
    if let Some(m) = etcd_view.as_mut() {
        crate::controller::status::mark_defragmented(m, cluster.status.as_ref());
    }
    let observed = Observed {
        etcd: etcd_view,
        runtime,
        intent,
        ..Observed::default()
    };
    let the_plan = plan(&desired, &observed);

    let now = now_rfc3339();
    let mut status = build_status(StatusInput {
        desired: &desired,
        plan: &the_plan,
        view: view.as_ref(),
        previous: cluster.status.as_ref(),
        generation: cluster.metadata.generation,
        now: &now,
    });
    if info.spec.backup.is_some() {
        crate::controller::status::record_backup_error(&mut status, BACKUP_UNSUPPORTED);
    }
    let members: Vec<(&str, bool)> = status
        .members
        .iter()
        .map(|m| (m.role.as_deref().unwrap_or("follower"), m.healthy))
        .collect();
    ctx.metrics
        .set_members(&info.namespace, &info.name, &members);
    let changed = cluster
        .status
        .as_ref()
        .is_none_or(|old| !same_status(old, &status));
    if changed {
        write_status(client, &info, &status).await?;
    }

    let Some(step) = the_plan.next else {
        return Ok(Action::requeue(REQUEUE_IDLE));
    };
    let kind = step_kind(&step);
    let mut runtime = KubeRuntime::new(client.clone(), info.clone());
    tracing::info!(cluster = %info.name, namespace = %info.namespace, step = %step, "running step");
    match act(&step, &desired, etcd.as_ref(), view.as_ref(), &mut runtime).await {
        Ok(Outcome::Done) => {
            ctx.metrics.step(kind, "done");
            if let Some(reason) = event_reason(&step) {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    reason,
                    capitalize(&step.to_string()),
                    kind,
                )
                .await;
            }
            Ok(Action::requeue(REQUEUE_AFTER_STEP))
        }
        Ok(Outcome::Maintained(done)) => {
            ctx.metrics.step(kind, "done");
            tracing::info!(cluster = %info.name, namespace = %info.namespace, "{done}");
            publish(
                ctx,
                cluster,
                EventType::Normal,
                done.reason(),
                done.to_string(),
                kind,
            )
            .await;
            let mut status = status;
            crate::controller::status::record_maintenance(&mut status, &done, &now_rfc3339());
            write_status(client, &info, &status).await?;
            Ok(Action::requeue(REQUEUE_AFTER_STEP))
        }
        Ok(Outcome::NotYet(why)) => {
            ctx.metrics.step(kind, "not_yet");
            tracing::info!(cluster = %info.name, reason = %why, "step not possible yet");
            Ok(Action::requeue(REQUEUE_AFTER_STEP))
        }
        Err(e) => {
            ctx.metrics.step(kind, "error");
            publish(
                ctx,
                cluster,
                EventType::Warning,
                "StepFailed",
                format!("{e}"),
                kind,
            )
            .await;
            Err(KubeError::Act(e))
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What to do after a failed pass: retry soon; an invalid spec waits for a change.
pub fn error_policy(_cluster: Arc<EtcdCluster>, error: &KubeError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, "reconcile failed");
    match error {
        KubeError::Invalid(_) => Action::await_change(),
        _ => Action::requeue(Duration::from_secs(5)),
    }
}
