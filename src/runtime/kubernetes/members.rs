//! Members as Pods and PersistentVolumeClaims: what the runtime observes ([`runtime_members`],
//! pure), the intent store (an annotation on the `EtcdCluster`), and [`KubeMembers`], the
//! [`MemberRuntime`] that creates and deletes Pods, PVCs and member Services by server-side
//! apply.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use crate::api::EtcdCluster;
use crate::controller::act::MemberRuntime;
use crate::controller::intent::StoredIntent;
use crate::controller::plan::{DataState, Desired, Intent, RuntimeMember, Version};

use super::KubeError;
use super::objects::{
    ANNOTATION_CONFIG_HASH, ANNOTATION_VERSION, Blueprint, DATA_MOUNT, FIELD_MANAGER, InitialState,
    LABEL_ORDINAL, RUN_AS, member_pod, member_pvc, member_service,
};
use super::restore::restore_object;

/// Annotation on the `EtcdCluster` holding the step in flight (JSON).
pub const ANNOTATION_INTENT: &str = "etcd.operator.dev/intent";

/// How long a restart waits for the old Pod to go away.
pub const POD_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// How old a member's Service must be before etcd is told about the member: time for the
/// cluster DNS to learn the new name (CoreDNS watches Services; it usually knows within a
/// second), so that the first lookup of the member's peer URL is not answered, and cached, as
/// a name that does not exist.
pub const DNS_SETTLE: Duration = Duration::from_secs(2);

/// The intent as the annotation's value.
pub fn encode_intent(intent: &Intent) -> Result<String, serde_json::Error> {
    serde_json::to_string(&StoredIntent::from(intent))
}

/// The intent recorded on a cluster, if any and readable.
pub fn decode_intent(cluster: &EtcdCluster) -> Result<Option<Intent>, serde_json::Error> {
    let Some(text) = cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_INTENT))
    else {
        return Ok(None);
    };
    let stored: StoredIntent = serde_json::from_str(text)?;
    stored.into_intent().map(Some).ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom("a member ID is not hexadecimal")
    })
}

/// The ordinal of a member Pod or PVC: its name's, which its ordinal label (when set) agrees
/// with. The one place an object's ordinal is worked out.
pub fn member_ordinal(
    desired: &Desired,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<u32> {
    let by_name = meta.name.as_deref().and_then(|n| desired.ordinal_of(n));
    let by_label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ORDINAL))
        .and_then(|o| o.parse::<u32>().ok());
    match (by_name, by_label) {
        (Some(n), Some(l)) if n == l => Some(n),
        (Some(n), None) => Some(n),
        _ => None,
    }
}

/// Whether a Pod counts as running: not being deleted, and not finished.
pub fn pod_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Failed" | "Succeeded")
        )
}

/// Whether a Pod's containers have started (phase `Running`): only then is etcd worth asking.
pub fn pod_started(pod: &Pod) -> bool {
    pod_running(pod) && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_failures(pod: &Pod) -> u32 {
    let Some(statuses) = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
    else {
        return 0;
    };
    statuses
        .iter()
        .filter(|c| c.name == "etcd" && !c.ready)
        .map(|c| u32::try_from(c.restart_count).unwrap_or(0))
        .sum()
}

/// The longest diagnosis taken from a member's last words.
const DIAGNOSIS_MAX: usize = 300;

/// Why a member Pod keeps failing, from the termination message of its etcd container (etcd's
/// last log lines: the Pod asks for `FallbackToLogsOnError`), once it restarted at least once
/// and is not ready. A volume etcd may not write is named with its remedy; anything else is
/// etcd's own last message.
pub fn pod_diagnosis(pod: &Pod) -> Option<String> {
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "etcd" && !c.ready && c.restart_count > 0)?;
    let terminated = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        s.and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.message.clone())
    };
    let message =
        terminated(status.state.as_ref()).or_else(|| terminated(status.last_state.as_ref()))?;
    let denied = message
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().contains("permission denied"));
    if let Some(line) = denied.and_then(words) {
        return Some(format!(
            "etcd cannot write its volume at {DATA_MOUNT} ({line}); the volume must be writable \
             by UID/GID {RUN_AS}: use a StorageClass whose volumes honour the Pod's fsGroup \
             (most CSI drivers, local-path), or give the volume's directory to {RUN_AS}:{RUN_AS}"
        ));
    }
    let last = message.lines().rev().find_map(words)?;
    Some(format!(
        "etcd exited {} times; its last words: {last}",
        status.restart_count
    ))
}

/// One line of an etcd log, as `msg: error` when it is one of etcd's JSON lines, at most
/// [`DIAGNOSIS_MAX`] bytes; `None` when blank.
fn words(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let text = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) if v.get("msg").is_some() => {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
            match (field("msg"), field("error")) {
                (msg, "") => msg.to_owned(),
                (msg, error) => format!("{msg}: {error}"),
            }
        }
        _ => line.to_owned(),
    };
    let mut end = text.len().min(DIAGNOSIS_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Some(text[..end].to_owned())
}

/// The runtime's members from the cluster's Pods and PVCs: a member exists when its Pod or its
/// PVC (not being deleted) does. Its data is lost when its Pod exists without its PVC (or the
/// PVC is being deleted); with ephemeral storage the data lives and dies with the Pod. The
/// operator cannot look inside a PVC: until the cluster has `answered` once (a cluster ID was
/// observed), a PVC counts as [`DataState::Empty`]. A PVC being restored (annotated with the
/// object, [`super::restore::ANNOTATION_RESTORE_OBJECT`]) without its Pod, before the cluster
/// answered, is no member yet: the restore is in flight, and the planner keeps asking for it.
pub fn runtime_members(
    desired: &Desired,
    ephemeral: bool,
    answered: bool,
    pods: &[Pod],
    pvcs: &[PersistentVolumeClaim],
) -> Vec<RuntimeMember> {
    let mut by_ordinal: BTreeMap<u32, (Option<&Pod>, Option<&PersistentVolumeClaim>)> =
        BTreeMap::new();
    for pod in pods {
        if let Some(o) = member_ordinal(desired, &pod.metadata) {
            by_ordinal.entry(o).or_default().0 = Some(pod);
        }
    }
    if !ephemeral {
        for pvc in pvcs {
            if let Some(o) = member_ordinal(desired, &pvc.metadata) {
                by_ordinal.entry(o).or_default().1 = Some(pvc);
            }
        }
    }
    by_ordinal
        .into_iter()
        // A PVC being deleted without its Pod is going away (the pvc-protection finalizer only
        // waits for Pods that use it): the member no longer exists.
        .filter(|(_, (pod, pvc))| {
            pod.is_some()
                || pvc.is_some_and(|c| {
                    // A cluster that answered is past its restore (whatever annotation a
                    // crash left behind).
                    c.metadata.deletion_timestamp.is_none()
                        && (answered || restore_object(&c.metadata).is_none())
                })
        })
        .map(|(ordinal, (pod, pvc))| {
            let annotation = |key: &str| {
                pod.and_then(|p| p.metadata.annotations.as_ref())
                    .and_then(|a| a.get(key))
                    .cloned()
            };
            let data_present = if ephemeral {
                pod.is_some_and(pod_running)
            } else {
                pvc.is_some_and(|c| c.metadata.deletion_timestamp.is_none())
            };
            RuntimeMember {
                ordinal,
                running: pod.is_some_and(pod_running),
                data: match (data_present, answered || ephemeral) {
                    (false, _) => DataState::Lost,
                    (true, true) => DataState::Present,
                    (true, false) => DataState::Empty,
                },
                version: annotation(ANNOTATION_VERSION)
                    .and_then(|v| v.parse::<Version>().ok())
                    .unwrap_or(desired.version),
                config_hash: annotation(ANNOTATION_CONFIG_HASH)
                    .unwrap_or_else(|| desired.config_hash.clone()),
                failures: pod.map_or(0, pod_failures),
                diagnosis: pod.and_then(pod_diagnosis),
            }
        })
        .collect()
}

/// Members as Pods and PVCs of one cluster.
#[derive(Clone)]
pub struct KubeMembers {
    pub(super) info: Blueprint,
    pub(super) pods: Api<Pod>,
    pub(super) pvcs: Api<PersistentVolumeClaim>,
    services: Api<Service>,
    clusters: Api<EtcdCluster>,
    /// The image restore Pods fetch the snapshot with; `None`: restores are refused.
    pub(super) operator_image: Option<String>,
}

impl std::fmt::Debug for KubeMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMembers")
            .field("cluster", &self.info.name)
            .field("namespace", &self.info.namespace)
            .finish()
    }
}

pub(super) fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Kube { what, source }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes the object `name` (`what` names its kind in errors); gone already is fine.
pub(super) async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
) -> Result<(), KubeError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(kube_err(format!("deleting {what} {name}"))(e)),
    }
}

impl KubeMembers {
    /// The runtime of the cluster `info` describes; restore Pods fetch with `operator_image`.
    pub fn new(client: kube::Client, info: Blueprint, operator_image: Option<String>) -> Self {
        let ns = info.namespace.as_str();
        KubeMembers {
            pods: Api::namespaced(client.clone(), ns),
            pvcs: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            clusters: Api::namespaced(client, ns),
            operator_image,
            info,
        }
    }

    pub(super) fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }

    pub(super) async fn ensure_pvc(&self, ordinal: u32) -> Result<(), KubeError> {
        if let Some(pvc) = member_pvc(&self.info, ordinal) {
            let name = self.info.member_name(ordinal);
            self.pvcs
                .patch(&name, &Self::apply_params(), &Patch::Apply(&pvc))
                .await
                .map_err(kube_err(format!("applying PVC {name}")))?;
        }
        Ok(())
    }

    /// Applies member `ordinal`'s Service; answers how long ago it was created.
    pub(super) async fn ensure_service(&self, ordinal: u32) -> Result<Option<Duration>, KubeError> {
        let name = self.info.member_name(ordinal);
        let svc = self
            .services
            .patch(
                &name,
                &Self::apply_params(),
                &Patch::Apply(&member_service(&self.info, ordinal)),
            )
            .await
            .map_err(kube_err(format!("applying Service {name}")))?;
        Ok(svc.metadata.creation_timestamp.and_then(|t| {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            Duration::try_from(age).ok()
        }))
    }

    /// Applies the PVC and the Service of member `ordinal`, the objects its Pod needs.
    async fn ensure_volume_and_service(&self, ordinal: u32) -> Result<(), KubeError> {
        self.ensure_pvc(ordinal).await?;
        self.ensure_service(ordinal).await?;
        Ok(())
    }

    pub(super) async fn create_pod(
        &self,
        ordinal: u32,
        version: Version,
        initial: &InitialState,
    ) -> Result<(), KubeError> {
        let pod = member_pod(&self.info, ordinal, version, initial);
        let name = self.info.member_name(ordinal);
        self.pods
            .patch(&name, &Self::apply_params(), &Patch::Apply(&pod))
            .await
            .map_err(kube_err(format!("applying Pod {name}")))?;
        Ok(())
    }

    /// The Pod of member `ordinal`, if it exists.
    async fn pod(&self, ordinal: u32) -> Result<Option<Pod>, KubeError> {
        let name = self.info.member_name(ordinal);
        self.pods
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("reading Pod {name}")))
    }

    async fn delete_pod_and_wait(&self, ordinal: u32) -> Result<(), KubeError> {
        let name = self.info.member_name(ordinal);
        let Some(pod) = self.pod(ordinal).await? else {
            return Ok(());
        };
        let uid = pod.metadata.uid.clone();
        delete_if_present(&self.pods, &name, "Pod").await?;
        let deadline = Instant::now() + POD_GONE_TIMEOUT;
        loop {
            let current = self
                .pods
                .get_opt(&name)
                .await
                .map_err(kube_err(format!("reading Pod {name}")))?;
            if current.is_none_or(|p| p.metadata.uid != uid) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(KubeError::Timeout(format!(
                    "Pod {name} still terminating after {POD_GONE_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl MemberRuntime for KubeMembers {
    type Error = KubeError;

    async fn verify_snapshot(
        &mut self,
        request: crate::controller::backup::verify::VerifyRequest<'_>,
    ) -> Result<Option<crate::controller::backup::verify::Verified>, KubeError> {
        super::verify::verify_snapshot(self, request).await
    }

    async fn restore_cluster(
        &mut self,
        members: u32,
        version: Version,
        snapshot: crate::controller::backup::RestoreSnapshot<'_>,
    ) -> Result<bool, KubeError> {
        super::restoring::restore_cluster(self, members, version, snapshot).await
    }

    async fn prepare_member(&mut self, ordinal: u32) -> Result<(), KubeError> {
        // A clock behind the API server's reads a negative age: wait the whole settle time.
        let age = self
            .ensure_service(ordinal)
            .await?
            .unwrap_or(Duration::ZERO);
        if let Some(rest) = DNS_SETTLE.checked_sub(age).filter(|d| !d.is_zero()) {
            tokio::time::sleep(rest).await;
        }
        Ok(())
    }

    async fn record_intent(&mut self, intent: Option<&Intent>) -> Result<(), KubeError> {
        let value = match intent {
            Some(i) => serde_json::Value::String(encode_intent(i).map_err(KubeError::Json)?),
            None => serde_json::Value::Null,
        };
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION_INTENT: value}}});
        self.clusters
            .patch(
                &self.info.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(kube_err("recording the intent"))?;
        Ok(())
    }

    async fn start_seed(&mut self, ordinal: u32, version: Version) -> Result<(), KubeError> {
        // A seed started again (its Pod went away before the cluster ever answered): a Pod that
        // is finished or terminating is replaced, its PVC kept.
        if self.pod(ordinal).await?.is_some_and(|p| !pod_running(&p)) {
            self.delete_pod_and_wait(ordinal).await?;
        }
        self.ensure_volume_and_service(ordinal).await?;
        self.create_pod(ordinal, version, &InitialState::New).await
    }

    async fn start_member(
        &mut self,
        ordinal: u32,
        version: Version,
        initial_cluster: &[(String, String)],
    ) -> Result<(), KubeError> {
        match self.pod(ordinal).await? {
            // Kubernetes restarts the container itself.
            Some(pod) if pod_running(&pod) => return Ok(()),
            Some(_) => self.delete_pod_and_wait(ordinal).await?,
            None => {}
        }
        self.ensure_volume_and_service(ordinal).await?;
        self.create_pod(
            ordinal,
            version,
            &InitialState::Existing(initial_cluster.to_vec()),
        )
        .await
    }

    async fn delete_member(&mut self, ordinal: u32) -> Result<(), KubeError> {
        let name = self.info.member_name(ordinal);
        delete_if_present(&self.pods, &name, "Pod").await?;
        delete_if_present(&self.pvcs, &name, "PVC").await?;
        // A member replaced at its ordinal keeps its Service (and so its address and a name
        // that never stops resolving); a member scaled away takes it along.
        if i64::from(ordinal) >= i64::from(self.info.template.replicas) {
            delete_if_present(&self.services, &name, "Service").await?;
        }
        Ok(())
    }

    async fn stop_member(&mut self, ordinal: u32, _version: Version) -> Result<(), KubeError> {
        self.delete_pod_and_wait(ordinal).await
    }

    async fn start_again(&mut self, ordinal: u32, version: Version) -> Result<(), KubeError> {
        self.ensure_volume_and_service(ordinal).await?;
        // The member has data: etcd ignores the initial cluster, which names only itself.
        let own = vec![(self.info.member_name(ordinal), self.info.peer_url(ordinal))];
        self.create_pod(ordinal, version, &InitialState::Existing(own))
            .await
    }
}
