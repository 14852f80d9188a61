//! One `EtcdCluster` as the pass's [`Runtime`]: members are Pods and PVCs, the intent an
//! annotation, the status the resource's status subresource, Events `events.k8s.io` Events.
//! Everything is server-side applied with the field manager `etcd-operator`; a pass with
//! nothing to change sends apply requests that change nothing, and no status write.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::api::{EtcdCluster, EtcdClusterStatus};
use crate::controller::backup::{Folders, SecretData};
use crate::controller::events::StepEvent;
use crate::controller::observe::{Resolve, Unreachable};
use crate::controller::pass::{Report, Runtime, Target};
use crate::controller::plan::{Desired, Intent, RuntimeMember};
use crate::controller::validate::Placement;
use crate::etcd::{Client, ConnectOptions};
use crate::metrics::Metrics;

use super::KubeError;
use super::members::{KubeMembers, decode_intent, member_ordinal, pod_started, runtime_members};
use super::network_policy::sync_network_policy;
use super::objects::{Blueprint, FIELD_MANAGER, client_service, disruption_budget, peer_service};
use super::reconcile::Context;
use super::restoring::NO_OPERATOR_IMAGE;

/// The Kubernetes runtime's part of the desired state; restores from stores need the
/// `operator_image` (the restore Pods' fetch container runs it).
pub fn placement(
    info: &Blueprint,
    replace_after_failures: u32,
    operator_image: Option<&str>,
) -> Placement {
    Placement {
        namespace: info.namespace.clone(),
        cluster: info.name.clone(),
        config_hash: info.config_hash(),
        peer_url_template: info.peer_url_template(),
        replace_after_failures,
        // Snapshots go to object stores only: the operator Pod has no volume for a folder.
        snapshots: Folders::Refused,
        // Files are the local runtime's; objects are fetched by restore Pods, which need the
        // operator's image: without it a cluster asking for a restore is not created empty
        // behind the user's back.
        restore_base: None,
        restore_stores: match operator_image {
            Some(_) => Ok(()),
            None => Err(NO_OPERATOR_IMAGE),
        },
        // Verification Pods fetch with the operator's image too: without it none is planned.
        verifies_snapshots: operator_image.is_some(),
    }
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let what = what.into();
    move |source| KubeError::Kube { what, source }
}

/// One `EtcdCluster` during one pass.
pub struct KubeCluster<'a> {
    ctx: &'a Context,
    cluster: &'a EtcdCluster,
    info: Blueprint,
    members: KubeMembers,
    pods: Vec<Pod>,
    pvcs: Vec<PersistentVolumeClaim>,
    /// The certificates of a TLS cluster, read or made by [`Runtime::security`].
    tls: Option<crate::tls::pki::Bundle>,
    /// root's password (`spec.auth`).
    root_password: Option<crate::controller::security::Password>,
}

impl std::fmt::Debug for KubeCluster<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("cluster", &self.info.name)
            .field("namespace", &self.info.namespace)
            .finish_non_exhaustive()
    }
}

impl<'a> KubeCluster<'a> {
    /// The cluster `info` read from `cluster`.
    pub fn new(ctx: &'a Context, cluster: &'a EtcdCluster, info: Blueprint) -> Self {
        KubeCluster {
            members: KubeMembers::new(ctx.client.clone(), info.clone(), ctx.operator_image.clone()),
            ctx,
            cluster,
            info,
            pods: Vec::new(),
            pvcs: Vec::new(),
            tls: None,
            root_password: None,
        }
    }
}

/// Applies the headless Service, the client Service and the PodDisruptionBudget.
pub async fn apply_cluster_objects(
    client: &kube::Client,
    info: &Blueprint,
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

impl Runtime for KubeCluster<'_> {
    type Error = KubeError;
    type Members = KubeMembers;

    const OBSERVE_TIMEOUT: Duration = Duration::from_secs(3);

    fn target(&self) -> Target<'_> {
        Target {
            namespace: &self.info.namespace,
            name: &self.info.name,
            spec: &self.cluster.spec,
            generation: self.cluster.metadata.generation,
            status: self.cluster.status.as_ref(),
        }
    }

    async fn security(
        &mut self,
        now: std::time::SystemTime,
    ) -> Result<crate::controller::security::Security, KubeError> {
        let spec = &self.cluster.spec;
        let mut out = crate::controller::security::Security::default();
        // Paused: nothing is written, not even a renewal or a generated password.
        let paused = spec.paused;
        if self.info.template.tls.any() && (paused || self.info.template.tls_secrets.is_some()) {
            let (bundle, not_after) =
                super::secrets::read_certificates(&self.ctx.client, &self.info).await?;
            out.not_after = not_after;
            self.tls = Some(bundle);
        } else if self.info.template.tls.any() {
            let ensured =
                super::secrets::ensure_certificates(&self.ctx.client, &self.info, now).await?;
            if !ensured.renewed.is_empty() {
                tracing::info!(
                    namespace = %self.info.namespace,
                    cluster = %self.info.name,
                    renewed = ?ensured.renewed,
                    "certificates made or renewed"
                );
            }
            out.not_after = ensured.not_after;
            self.tls = Some(ensured.bundle);
        }
        if let Some(auth) = spec.auth.as_ref().filter(|a| a.enabled) {
            let password =
                super::secrets::root_password(&self.ctx.client, &self.info, auth, !paused).await?;
            self.root_password.clone_from(&password);
            out.root_password = password;
        }
        Ok(out)
    }

    fn placement(&self) -> Placement {
        placement(
            &self.info,
            self.ctx.replace_after_failures,
            self.ctx.operator_image.as_deref(),
        )
    }

    fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    fn resolve(&self) -> Resolve<'_> {
        &*self.ctx.resolver
    }

    async fn observe_members(&mut self, desired: &Desired) -> Result<Vec<String>, KubeError> {
        if !desired.paused {
            apply_cluster_objects(&self.ctx.client, &self.info).await?;
            sync_network_policy(
                &self.ctx.client,
                &self.info,
                self.cluster.spec.network_policy.as_ref(),
                &self.ctx.operator_pods,
                &self.ctx.network_policy_absent,
            )
            .await?;
        }
        let selector = ListParams::default().labels(&self.info.member_selector_string());
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.info.namespace);
        let pvcs: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), &self.info.namespace);
        self.pods = pods
            .list(&selector)
            .await
            .map_err(kube_err("listing member Pods"))?
            .items;
        self.pvcs = pvcs
            .list(&selector)
            .await
            .map_err(kube_err("listing member PVCs"))?
            .items;
        Ok(self
            .pods
            .iter()
            .filter(|p| pod_started(p))
            .filter_map(|p| member_ordinal(desired, &p.metadata))
            .map(|o| (self.ctx.resolver)(&self.info.client_url(o)))
            .collect())
    }

    async fn connect(&mut self, endpoints: &[String]) -> Result<Client, Unreachable> {
        // Every observation read is bounded where it is made; no client-wide request timeout,
        // which would cut off a defragmentation of a large member.
        let opts = crate::controller::security::client_options(
            ConnectOptions::new()
                .with_dial_timeout(Duration::from_secs(2))
                .with_max_retries(1),
            self.tls.as_ref().filter(|_| self.info.template.tls.client),
            self.root_password.as_ref(),
        );
        match tokio::time::timeout(Self::OBSERVE_TIMEOUT, Client::connect(endpoints, opts)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(Unreachable::Connect(e.to_string())),
            Err(_) => Err(Unreachable::Connect(format!(
                "no answer within {:?}",
                Self::OBSERVE_TIMEOUT
            ))),
        }
    }

    fn runtime_members(
        &self,
        desired: &Desired,
        answered: bool,
    ) -> Result<Vec<RuntimeMember>, KubeError> {
        Ok(runtime_members(
            desired,
            self.info.template.ephemeral,
            answered,
            &self.pods,
            &self.pvcs,
        ))
    }

    fn read_intent(&self) -> Result<Option<Intent>, KubeError> {
        decode_intent(self.cluster).map_err(KubeError::Json)
    }

    async fn read_secret(&mut self, name: &str) -> Result<Option<SecretData>, KubeError> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.info.namespace);
        let secret = secrets.get_opt(name).await.map_err(kube_err(format!(
            "reading Secret {}/{name}",
            self.info.namespace
        )))?;
        Ok(secret.map(|s| {
            let mut data: std::collections::BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // stringData is write-only in the API; honoured should a server return it.
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            SecretData::new(data)
        }))
    }

    async fn write_status(&mut self, status: &EtcdClusterStatus) -> Result<(), KubeError> {
        let clusters: Api<EtcdCluster> =
            Api::namespaced(self.ctx.client.clone(), &self.info.namespace);
        let patch = serde_json::json!({
            "apiVersion": EtcdCluster::api_version(&()),
            "kind": EtcdCluster::kind(&()),
            "status": status,
        });
        clusters
            .patch_status(
                &self.info.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(kube_err("writing the status"))?;
        Ok(())
    }

    async fn publish(&mut self, event: StepEvent) {
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason,
            note: Some(event.note),
            action: event.action.to_owned(),
            secondary: None,
        };
        let reference = self.cluster.object_ref(&());
        if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(cluster = %self.cluster.name_any(), error = %e, "cannot publish an Event");
        }
    }

    fn report(&mut self, report: Report<'_>) {
        let (ns, name) = (&self.info.namespace, &self.info.name);
        match report {
            Report::Idle { .. } | Report::Failed { .. } => {}
            Report::Running { step, .. } => {
                tracing::info!(cluster = %name, namespace = %ns, step = %step, "running step");
            }
            Report::NotYet { why, .. } => {
                tracing::info!(cluster = %name, reason = %why, "step not possible yet");
            }
            Report::Maintained { done } => {
                tracing::info!(cluster = %name, namespace = %ns, "{done}");
            }
        }
    }

    fn members(&mut self) -> &mut KubeMembers {
        &mut self.members
    }
}
