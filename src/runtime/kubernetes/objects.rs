//! The desired Kubernetes objects of a cluster, as pure functions of the `EtcdCluster`: a Pod,
//! a PersistentVolumeClaim and a Service per member, the headless peer Service, the client
//! Service and the PodDisruptionBudget. Every object carries the operator's labels and an owner
//! reference to the `EtcdCluster`, so that deleting the cluster deletes them.
//!
//! A member's peer and client URLs name its own Service, fully qualified
//! (`http://<cluster>-<ordinal>.<namespace>.svc.<cluster domain>:2380`). That Service is
//! created before etcd is told about the member, so the name resolves from the first lookup:
//! a name under the headless Service exists only once the Pod has an address, and a lookup
//! made before that (the leader dials a new member right after MemberAdd) is cached as a
//! negative answer for up to 30 s by a kubeadm-configured CoreDNS. Its address also stays the
//! same when the Pod is recreated elsewhere.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::api::EtcdCluster;
use crate::controller::plan::{Version, quorum};
use crate::controller::validate::{MemberTemplate, member_template};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "etcd-operator";
/// Label: the application (`etcd`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: the cluster the object belongs to.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label: who manages the object (`etcd-operator`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the object's part (`member`, `peers`, `client`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: the member's name, on its Pod, PVC and Service.
pub const LABEL_MEMBER: &str = "etcd.operator.dev/member";
/// Label: the member's ordinal, on its Pod, PVC and Service.
pub const LABEL_ORDINAL: &str = "etcd.operator.dev/ordinal";
/// Annotation: the etcd version a Pod runs.
pub const ANNOTATION_VERSION: &str = "etcd.operator.dev/version";
/// Annotation: the configuration hash a Pod was built with.
pub const ANNOTATION_CONFIG_HASH: &str = "etcd.operator.dev/config-hash";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGER: &str = "etcd-operator";

/// The client port.
pub const CLIENT_PORT: i32 = 2379;
/// The peer port.
pub const PEER_PORT: i32 = 2380;
/// The metrics and health port (`--listen-metrics-urls`).
pub const METRICS_PORT: i32 = 2381;
/// Where the member's volume is mounted.
pub const DATA_MOUNT: &str = "/var/lib/etcd";
/// The data directory on that volume.
pub const DATA_DIR: &str = "/var/lib/etcd/data";
/// The user and group etcd runs as.
pub const RUN_AS: i64 = 65532;
/// The cluster's DNS domain when `--cluster-domain` is not given.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// What every Kubernetes object of one cluster is built from, read once from the `EtcdCluster`.
#[derive(Debug, Clone, PartialEq)]
pub struct Blueprint {
    /// The cluster's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its UID (owner references, the per-incarnation cluster token).
    pub uid: String,
    /// The Kubernetes cluster's DNS domain (`cluster.local`), which member URLs end with.
    pub cluster_domain: String,
    /// What every member is started from.
    pub template: MemberTemplate,
}

/// Why [`Blueprint::of`] refused a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlueprintError {
    /// The resource has no namespace (it is namespaced).
    #[error("the EtcdCluster has no namespace")]
    NoNamespace,
    /// The resource has no UID (not read from the apiserver).
    #[error("the EtcdCluster {0} has no UID")]
    NoUid(String),
}

impl Blueprint {
    /// Reads the facts from a resource the apiserver returned; member URLs end with
    /// `cluster_domain`.
    pub fn of(cluster: &EtcdCluster, cluster_domain: &str) -> Result<Self, BlueprintError> {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        let namespace = cluster
            .metadata
            .namespace
            .clone()
            .ok_or(BlueprintError::NoNamespace)?;
        let uid = cluster
            .metadata
            .uid
            .clone()
            .ok_or_else(|| BlueprintError::NoUid(name.clone()))?;
        Ok(Blueprint {
            name,
            namespace,
            uid,
            cluster_domain: cluster_domain.to_owned(),
            template: member_template(&cluster.spec),
        })
    }

    /// The member name of an ordinal, `<cluster>-<ordinal>` (also its Pod and PVC name).
    pub fn member_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// The headless Service's name (the cluster's name).
    pub fn peer_service(&self) -> String {
        self.name.clone()
    }

    /// The client Service's name, `<cluster>-client`.
    pub fn client_service(&self) -> String {
        format!("{}-client", self.name)
    }

    /// The fully qualified DNS name of a member's own Service ([`member_service`]).
    pub fn member_host(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.svc.{}",
            self.member_name(ordinal),
            self.namespace,
            self.cluster_domain
        )
    }

    /// A member's peer URL (`https` with peer TLS).
    pub fn peer_url(&self, ordinal: u32) -> String {
        let scheme = self.template.tls.peer_scheme();
        format!("{scheme}://{}:{PEER_PORT}", self.member_host(ordinal))
    }

    /// A member's client URL as it advertises it (`https` with client TLS).
    pub fn client_url(&self, ordinal: u32) -> String {
        let scheme = self.template.tls.client_scheme();
        format!("{scheme}://{}:{CLIENT_PORT}", self.member_host(ordinal))
    }

    /// The planner's peer URL template, matching [`Blueprint::peer_url`].
    pub fn peer_url_template(&self) -> String {
        format!(
            "{}://{{name}}.{}.svc.{}:{PEER_PORT}",
            self.template.tls.peer_scheme(),
            self.namespace,
            self.cluster_domain
        )
    }

    /// The Secret of a certificate kind: the user's (`spec.tls.source.secrets`), else
    /// `<cluster>-ca`, `<cluster>-server`, `<cluster>-peer`, `<cluster>-operator-client`.
    pub fn tls_secret(&self, kind: crate::tls::pki::Kind) -> String {
        use crate::tls::pki::Kind;
        if let Some(user) = &self.template.tls_secrets {
            return match kind {
                Kind::Ca => user.ca.clone(),
                Kind::Server => user.server.clone(),
                Kind::Peer => user.peer.clone(),
                Kind::Client => user.operator_client.clone(),
            };
        }
        match kind {
            Kind::Client => format!("{}-operator-client", self.name),
            k => format!("{}-{}", self.name, k.as_str()),
        }
    }

    /// The container image: the spec's, or the official one for the version.
    pub fn image(&self, version: Version) -> String {
        match &self.template.image {
            Some(image) if !image.is_empty() => image.clone(),
            _ => format!("gcr.io/etcd-development/etcd:v{version}"),
        }
    }

    /// The initial cluster token: the cluster's name and UID, so that a cluster deleted and
    /// created again under the same name never talks to members of the old one.
    pub fn cluster_token(&self) -> String {
        format!("{}-{}", self.name, self.uid)
    }

    /// The labels every object of the cluster carries.
    pub fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "etcd".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
            (LABEL_COMPONENT.to_owned(), component.to_owned()),
        ])
    }

    /// The selector of the member Pods.
    pub fn member_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "etcd".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_COMPONENT.to_owned(), "member".to_owned()),
        ])
    }

    /// The label selector (as a string) of the member Pods and PVCs.
    pub fn member_selector_string(&self) -> String {
        self.member_selector()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The owner reference to the `EtcdCluster` (the controller).
    pub fn owner_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: EtcdCluster::api_version(&()).into_owned(),
            kind: EtcdCluster::kind(&()).into_owned(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    pub(super) fn meta(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner_reference()]),
            ..ObjectMeta::default()
        }
    }

    /// A hash of everything a member Pod is built from except the version and the
    /// per-member facts: a Pod with another hash is restarted.
    pub fn config_hash(&self) -> String {
        self.template.pod_hash.clone()
    }
}

/// How a member starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialState {
    /// The seed of a new cluster: `--initial-cluster-state=new`, only itself in the cluster.
    New,
    /// Joining a running cluster: `--initial-cluster-state=existing` with these `name=peerURL`
    /// pairs (ignored by etcd when the data directory already holds data).
    Existing(Vec<(String, String)>),
}

/// The etcd command line of a member.
pub fn etcd_args(info: &Blueprint, ordinal: u32, initial: &InitialState) -> Vec<String> {
    let name = info.member_name(ordinal);
    let (state, pairs) = match initial {
        InitialState::New => ("new", vec![(name.clone(), info.peer_url(ordinal))]),
        InitialState::Existing(pairs) => {
            // In a stable order, whatever order etcd listed the members in.
            let mut pairs = pairs.clone();
            pairs.sort();
            ("existing", pairs)
        }
    };
    let initial_cluster = pairs
        .iter()
        .map(|(n, u)| format!("{n}={u}"))
        .collect::<Vec<_>>()
        .join(",");
    let tls = info.template.tls;
    let mut args = vec![
        format!("--name={name}"),
        format!("--data-dir={DATA_DIR}"),
        format!(
            "--listen-peer-urls={}://0.0.0.0:{PEER_PORT}",
            tls.peer_scheme()
        ),
        format!(
            "--listen-client-urls={}://0.0.0.0:{CLIENT_PORT}",
            tls.client_scheme()
        ),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
        format!("--advertise-client-urls={}", info.client_url(ordinal)),
        format!("--initial-advertise-peer-urls={}", info.peer_url(ordinal)),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--initial-cluster-token={}", info.cluster_token()),
    ];
    args.extend(crate::tls::etcd_flags(tls, &super::tls_mounts::tls_paths()));
    args.extend(info.template.flags.iter().cloned());
    args
}

/// Whether a version serves `/readyz` and `/livez` (3.5.11 and later).
pub fn has_readyz(version: Version) -> bool {
    version >= Version::new(3, 5, 11)
}

fn http_probe(path: &str) -> Option<HTTPGetAction> {
    Some(HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::Int(METRICS_PORT),
        scheme: Some("HTTP".to_owned()),
        ..HTTPGetAction::default()
    })
}

/// The readiness, liveness and startup probes of a member running `version`.
pub fn probes(version: Version) -> (Probe, Probe, Probe) {
    let ready = has_readyz(version);
    let readiness = Probe {
        http_get: http_probe(if ready { "/readyz" } else { "/health" }),
        period_seconds: Some(5),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    // Gentle: a member that lost quorum is alive; only a process that stops answering is not.
    let alive = || {
        if ready {
            (http_probe("/livez"), None)
        } else {
            (
                None,
                Some(TCPSocketAction {
                    port: IntOrString::Int(CLIENT_PORT),
                    ..TCPSocketAction::default()
                }),
            )
        }
    };
    let (http_get, tcp_socket) = alive();
    let liveness = Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(6),
        ..Probe::default()
    };
    let (http_get, tcp_socket) = alive();
    // A member replaying a large WAL or a learner receiving a snapshot may take minutes.
    let startup = Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(5),
        timeout_seconds: Some(5),
        failure_threshold: Some(60),
        ..Probe::default()
    };
    (readiness, liveness, startup)
}

fn default_affinity(info: &Blueprint) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(info.member_selector()),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// The Pod of member `ordinal` running `version`.
pub fn member_pod(info: &Blueprint, ordinal: u32, version: Version, initial: &InitialState) -> Pod {
    let name = info.member_name(ordinal);
    let template = &info.template.pod_template;
    let mut meta = info.meta(name.clone(), "member");
    let mut labels = template.labels.clone();
    labels.extend(info.labels("member"));
    labels.insert(LABEL_MEMBER.to_owned(), name.clone());
    labels.insert(LABEL_ORDINAL.to_owned(), ordinal.to_string());
    meta.labels = Some(labels);
    let mut annotations = template.annotations.clone();
    annotations.insert(ANNOTATION_VERSION.to_owned(), version.to_string());
    annotations.insert(ANNOTATION_CONFIG_HASH.to_owned(), info.config_hash());
    meta.annotations = Some(annotations);

    let (readiness, liveness, startup) = probes(version);
    let data_volume = if info.template.ephemeral {
        Volume {
            name: "data".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }
    } else {
        Volume {
            name: "data".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        }
    };
    let (tls_volumes, tls_mounts) = super::tls_mounts::tls_volumes(info);
    let mut volume_mounts = vec![VolumeMount {
        name: "data".to_owned(),
        mount_path: DATA_MOUNT.to_owned(),
        ..VolumeMount::default()
    }];
    volume_mounts.extend(tls_mounts);
    let mut volumes = vec![data_volume];
    volumes.extend(tls_volumes);
    let container = Container {
        name: "etcd".to_owned(),
        image: Some(info.image(version)),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["/usr/local/bin/etcd".to_owned()]),
        args: Some(crate::api::versions::render_flags(
            &etcd_args(info, ordinal, initial),
            version,
        )),
        env: Some(vec![EnvVar {
            name: "ETCDCTL_API".to_owned(),
            value: Some("3".to_owned()),
            ..EnvVar::default()
        }]),
        ports: Some(vec![
            port("client", CLIENT_PORT),
            port("peer", PEER_PORT),
            port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        startup_probe: Some(startup),
        resources: info.template.resources.clone(),
        volume_mounts: Some(volume_mounts),
        // etcd's last log lines become the termination message: the runtime reads why a
        // member cannot start (a volume it may not write) from the Pod's status.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            hostname: Some(name),
            subdomain: Some(info.peer_service()),
            containers: vec![container],
            volumes: Some(volumes),
            affinity: Some(
                template
                    .affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(info)),
            ),
            tolerations: Some(template.tolerations.clone()).filter(|v| !v.is_empty()),
            node_selector: Some(template.node_selector.clone()).filter(|m| !m.is_empty()),
            priority_class_name: template.priority_class_name.clone(),
            topology_spread_constraints: Some(template.topology_spread_constraints.clone())
                .filter(|v| !v.is_empty()),
            termination_grace_period_seconds: Some(30),
            enable_service_links: Some(false),
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The PersistentVolumeClaim of member `ordinal` (none for ephemeral storage).
pub fn member_pvc(info: &Blueprint, ordinal: u32) -> Option<PersistentVolumeClaim> {
    if info.template.ephemeral {
        return None;
    }
    let name = info.member_name(ordinal);
    let mut meta = info.meta(name.clone(), "member");
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(LABEL_MEMBER.to_owned(), name);
        labels.insert(LABEL_ORDINAL.to_owned(), ordinal.to_string());
    }
    Some(PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: info.template.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    info.template.storage_size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    })
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The headless Service giving members their DNS names; it publishes members before they are
/// ready, since members must reach each other to become ready.
pub fn peer_service(info: &Blueprint) -> Service {
    Service {
        metadata: info.meta(info.peer_service(), "peers"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(info.member_selector()),
            ports: Some(vec![
                service_port("client", CLIENT_PORT),
                service_port("peer", PEER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Service of member `ordinal`: a stable address and a DNS name that exist before the
/// member's Pod does, so that etcd can be told about the member before its Pod starts. It
/// publishes the member before it is ready (a learner or a restarting member must be reached
/// to become ready).
pub fn member_service(info: &Blueprint, ordinal: u32) -> Service {
    let name = info.member_name(ordinal);
    let mut meta = info.meta(name.clone(), "member");
    if let Some(labels) = meta.labels.as_mut() {
        labels.insert(LABEL_MEMBER.to_owned(), name.clone());
        labels.insert(LABEL_ORDINAL.to_owned(), ordinal.to_string());
    }
    let mut selector = info.member_selector();
    selector.insert(LABEL_MEMBER.to_owned(), name);
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(vec![
                service_port("client", CLIENT_PORT),
                service_port("peer", PEER_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The client Service: ready members only.
pub fn client_service(info: &Blueprint) -> Service {
    Service {
        metadata: info.meta(info.client_service(), "client"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(info.member_selector()),
            ports: Some(vec![service_port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The PodDisruptionBudget: voluntary evictions may never take the cluster below quorum.
pub fn disruption_budget(info: &Blueprint) -> PodDisruptionBudget {
    let replicas = usize::try_from(info.template.replicas.max(1)).unwrap_or(1);
    let min = i32::try_from(quorum(replicas)).unwrap_or(i32::MAX);
    PodDisruptionBudget {
        metadata: info.meta(info.name.clone(), "member"),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min)),
            selector: Some(LabelSelector {
                match_labels: Some(info.member_selector()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
