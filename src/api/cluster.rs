//! The `EtcdCluster` resource: spec, status, defaults, and the admission rules (OpenAPI schema
//! constraints and CEL rules) the apiserver enforces.
//!
//! The rules live next to the fields they guard; [`super::rules`] holds the longer CEL
//! expressions and their messages, so that tests can name them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::backup::{BackupSpec, BackupStatus};
use super::network::NetworkPolicySpec;
use super::security::{AuthSpec, AuthStatus, TlsSpec, TlsStatus};

/// The etcd version a cluster gets when `spec.version` is not set.
/// 3.6 is etcd's stable line (3.6.0 shipped in May 2025; 3.7 is newer but younger), and 3.6.16
/// is its latest patch: above the 3.6.11 floor etcd's guide names for the later step to 3.7.
pub const DEFAULT_VERSION: &str = "3.6.16";
/// The member count a cluster gets when `spec.replicas` is not set.
pub const DEFAULT_REPLICAS: i32 = 3;
/// The volume size a member gets when `spec.storage.size` is not set.
pub const DEFAULT_STORAGE_SIZE: &str = "8Gi";

fn default_replicas() -> i32 {
    DEFAULT_REPLICAS
}

fn default_version() -> String {
    DEFAULT_VERSION.to_string()
}

fn default_storage_size() -> Quantity {
    Quantity(DEFAULT_STORAGE_SIZE.to_owned())
}

/// The smallest backend a threshold defragmentation considers when
/// `spec.maintenance.defragmentation.minDbSizeBytes` is not set (64 MiB: below it the space a
/// defragmentation gives back is not worth blocking a member for).
pub const DEFAULT_DEFRAG_MIN_DB_SIZE_BYTES: i64 = 64 * 1024 * 1024;
/// The fragmentation a member may have before it is defragmented when
/// `spec.maintenance.defragmentation.maxFragmentationPercent` is not set.
pub const DEFAULT_DEFRAG_MAX_FRAGMENTATION_PERCENT: i32 = 50;

fn default_true() -> bool {
    true
}

fn default_defrag_min_db_size() -> i64 {
    DEFAULT_DEFRAG_MIN_DB_SIZE_BYTES
}

fn default_defrag_max_fragmentation() -> i32 {
    DEFAULT_DEFRAG_MAX_FRAGMENTATION_PERCENT
}

/// An etcd cluster: the desired member count and version, and how members run.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "etcd.operator.dev",
    version = "v1alpha1",
    kind = "EtcdCluster",
    plural = "etcdclusters",
    shortname = "etcd",
    category = "all",
    namespaced,
    doc = "An etcd cluster run by etcd-operator: one Pod and one PersistentVolumeClaim per member, \
           a headless Service for peers, a client Service and a PodDisruptionBudget.",
    status = "EtcdClusterStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyMembers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Whether a quorum of members is healthy (the Available condition)",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Members",
        type_ = "string",
        description = "Healthy voting members / desired members",
        json_path = ".status.memberSummary"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        description = "The lowest etcd version a member runs",
        json_path = ".status.currentVersion"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        description = "The leading member",
        json_path = ".status.leader"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        description = "What the cluster is doing",
        json_path = ".status.phase"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new(super::rules::name_rule()).message(Message::Message(super::rules::name_message()))
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::versions::extra_flags_rule((3, 5))).message(Message::Expression(super::versions::extra_flags_message((3, 5)))),
    validation = Rule::new(super::versions::extra_flags_rule((3, 6))).message(Message::Expression(super::versions::extra_flags_message((3, 6)))),
    validation = Rule::new(super::versions::extra_flags_rule((3, 7))).message(Message::Expression(super::versions::extra_flags_message((3, 7)))),
    validation = Rule::new(super::rules::TLS_IMMUTABLE_RULE).message(super::rules::TLS_IMMUTABLE_MESSAGE),
    validation = Rule::new(super::rules::AUTH_OFF_RULE).message(super::rules::AUTH_OFF_MESSAGE)
)]
pub struct EtcdClusterSpec {
    /// Number of voting members, 1 to 9. Odd numbers tolerate failures best: 3 members survive
    /// the loss of one, 5 the loss of two. Scaling adds one learner at a time and removes a
    /// follower first.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = super::rules::REPLICAS.0, max = super::rules::REPLICAS.1))]
    pub replicas: i32,
    /// etcd version, `major.minor.patch` (default 3.6.16; 3.5, 3.6 and 3.7 are supported).
    /// Patch upgrades are free; a minor upgrade moves one minor version at a time (3.5 to 3.6, not
    /// 3.5 to 3.7) and only from the patch etcd's upgrade guide names (3.5.26 or later before
    /// 3.6, 3.6.11 or later before 3.7). Members restart one by one, followers first, each with
    /// the flags its new version knows; downgrades are refused.
    #[serde(default = "default_version")]
    #[schemars(
        length(max = super::rules::VERSION_MAX_LEN),
        regex(pattern = super::rules::VERSION_PATTERN)
    )]
    #[x_kube(
        validation = Rule::new(super::rules::VERSION_DOWNGRADE_RULE).message(Message::Expression(super::rules::VERSION_DOWNGRADE_MESSAGE.into())),
        validation = Rule::new(super::rules::VERSION_JUMP_RULE).message(Message::Expression(super::rules::VERSION_JUMP_MESSAGE.into())),
        validation = Rule::new(super::versions::upgrade_floor_rule()).message(Message::Expression(super::versions::upgrade_floor_message()))
    )]
    pub version: String,
    /// Container image with the etcd binaries; when empty, `gcr.io/etcd-development/etcd:v<version>`.
    /// The image must hold the version given in `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = super::rules::IMAGE_MAX_LEN))]
    pub image: Option<String>,
    /// Only observe and report status; create, delete and change nothing.
    #[serde(default)]
    pub paused: bool,
    /// Where members keep their data. The fields are fixed at creation.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory requests and limits of the etcd container; each a Kubernetes quantity
    /// (`500m`, `2Gi`). Unset: requests of 100m CPU and 128Mi memory, no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::resources")]
    pub resources: Option<ResourceRequirements>,
    /// Settings applied to every member Pod: labels, annotations and scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplateSpec>,
    /// etcd server settings.
    #[serde(default)]
    pub etcd: EtcdOptions,
    /// Operator-driven maintenance: defragmentation of fragmented members and recovery from the
    /// NOSPACE alarm. On by default.
    #[serde(default)]
    pub maintenance: MaintenanceSpec,
    /// Snapshots of the keyspace on a schedule, with retention, to an object store (S3, GCS,
    /// Azure Blob) or (local runtime) a folder. Absent: no backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// How a new cluster is created: empty (the default) or restored from a snapshot. Read only
    /// when the cluster is first created; fixed from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(super::rules::BOOTSTRAP_IMMUTABLE_RULE).message(super::rules::BOOTSTRAP_IMMUTABLE_MESSAGE))]
    pub bootstrap: Option<BootstrapSpec>,
    /// TLS for clients and peers, with operator-managed certificates. Absent: plaintext.
    /// Fixed at creation (see `tls.client.enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// etcd authentication with a root user the operator creates. Absent: no authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// A NetworkPolicy for the member Pods: peers among themselves; the client and metrics
    /// ports for the operator and the clients named. Absent: no NetworkPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// How a new cluster is created.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Create the cluster from a snapshot instead of empty: every member's data directory is
    /// restored from it (`etcdutl snapshot restore`) before any member starts. The snapshot is
    /// a file (`path`, local runtime) or an object in a store (`destination`, both runtimes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreSpec>,
}

/// The snapshot a new cluster is restored from: a file (`path`) or an object in a store
/// (`destination`, the same shape as `spec.backup.destination`), exactly one of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::RESTORE_ONE_SOURCE_RULE).message(super::rules::RESTORE_ONE_SOURCE_MESSAGE),
    validation = Rule::new(super::rules::RESTORE_STORE_FIELDS_RULE).message(super::rules::RESTORE_STORE_FIELDS_MESSAGE),
    validation = Rule::new(super::rules::RESTORE_OBJECT_OR_CLUSTER_RULE).message(super::rules::RESTORE_OBJECT_OR_CLUSTER_MESSAGE)
)]
pub struct RestoreSpec {
    /// The snapshot file (as written by `etcdctl snapshot save` or by `spec.backup`); a relative
    /// path is taken from the state directory. Local runtime only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = super::rules::PATH_MAX_LEN))]
    pub path: Option<String>,
    /// The store holding the snapshot: exactly one of `s3`, `gcs`, `azure` or `local` (local
    /// runtime only), with the Secret holding its credentials, as in `spec.backup.destination`.
    /// The default prefix is `<namespace>/<cluster>` with `cluster` below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<super::BackupDestination>,
    /// The encryption key the snapshot was written with (as `spec.backup.encryption`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<super::BackupEncryption>,
    /// The object's name under the prefix; absent: the newest snapshot of `cluster` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = super::rules::OBJECT_NAME_MAX_LEN))]
    pub object: Option<String>,
    /// The cluster whose backups to take (default this cluster's own name): the newest object
    /// named `<cluster>-<UTC time>-r<revision>.db` is restored, and the default prefix is
    /// `<namespace>/<cluster>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub cluster: Option<String>,
}

impl Default for EtcdClusterSpec {
    fn default() -> Self {
        EtcdClusterSpec {
            replicas: DEFAULT_REPLICAS,
            version: default_version(),
            image: None,
            paused: false,
            storage: StorageSpec::default(),
            resources: None,
            pod_template: None,
            etcd: EtcdOptions::default(),
            maintenance: MaintenanceSpec::default(),
            backup: None,
            bootstrap: None,
            tls: None,
            auth: None,
            network_policy: None,
        }
    }
}

/// What the operator does to keep the members' backends healthy. Maintenance runs only while
/// every voting member is healthy, the leader is known and no membership change, rolling restart
/// or other step is under way; it touches one member per pass, followers first and the leader
/// last.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceSpec {
    /// Defragmentation of members whose backend has much free space inside it (after
    /// compaction, the database file keeps its size until it is defragmented).
    #[serde(default)]
    pub defragmentation: DefragmentationSpec,
    /// What the operator does about etcd alarms.
    #[serde(default)]
    pub alarms: AlarmsSpec,
    /// The periodic consistency check of the members' data (on by default, every 5m).
    #[serde(default)]
    pub corruption_check: super::CorruptionCheckSpec,
}

/// When a member is defragmented.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationSpec {
    /// Defragment members whose fragmentation exceeds `maxFragmentationPercent` (default true).
    /// A member blocks reads and writes while it is defragmented (seconds for a large database),
    /// so members go one at a time, followers first, the leader last.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Only members whose database file is at least this large are defragmented (default
    /// 67108864, 64 MiB; 0 to 68719476736).
    #[serde(default = "default_defrag_min_db_size")]
    #[schemars(range(
        min = super::rules::DEFRAG_MIN_DB_SIZE_BYTES.0,
        max = super::rules::DEFRAG_MIN_DB_SIZE_BYTES.1
    ))]
    pub min_db_size_bytes: i64,
    /// A member is defragmented when the free share of its database file,
    /// `(dbSize - dbSizeInUse) / dbSize`, exceeds this percentage (default 50; 1 to 99).
    #[serde(default = "default_defrag_max_fragmentation")]
    #[schemars(range(
        min = super::rules::DEFRAG_MAX_FRAGMENTATION_PERCENT.0,
        max = super::rules::DEFRAG_MAX_FRAGMENTATION_PERCENT.1
    ))]
    pub max_fragmentation_percent: i32,
}

impl Default for DefragmentationSpec {
    fn default() -> Self {
        DefragmentationSpec {
            enabled: true,
            min_db_size_bytes: DEFAULT_DEFRAG_MIN_DB_SIZE_BYTES,
            max_fragmentation_percent: DEFAULT_DEFRAG_MAX_FRAGMENTATION_PERCENT,
        }
    }
}

/// What the operator does about etcd alarms.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlarmsSpec {
    /// Recover from the NOSPACE alarm (default true): compact to the current revision, defragment
    /// every member (one at a time, the leader last), then disarm the alarm once every member's
    /// database is under 95% of `etcd.quotaBackendBytes` (etcd's default quota is 2 GiB). While
    /// the data itself does not fit, the alarm stays and the Degraded condition says why.
    #[serde(default = "default_true")]
    pub handle_no_space: bool,
}

impl Default for AlarmsSpec {
    fn default() -> Self {
        AlarmsSpec {
            handle_no_space: true,
        }
    }
}

/// Member storage: a PersistentVolumeClaim per member, or (for development) an emptyDir.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::STORAGE_SIZE_IMMUTABLE_RULE).message(super::rules::STORAGE_SIZE_IMMUTABLE_MESSAGE),
    validation = Rule::new(super::rules::STORAGE_CLASS_IMMUTABLE_RULE).message(super::rules::STORAGE_CLASS_IMMUTABLE_MESSAGE),
    validation = Rule::new(super::rules::STORAGE_EPHEMERAL_IMMUTABLE_RULE).message(super::rules::STORAGE_EPHEMERAL_IMMUTABLE_MESSAGE),
    validation = Rule::new(super::rules::STORAGE_EPHEMERAL_CLASS_RULE).message(super::rules::STORAGE_EPHEMERAL_CLASS_MESSAGE)
)]
pub struct StorageSpec {
    /// Size of each member's volume (default 8Gi). Keep it above `etcd.quotaBackendBytes`.
    /// Fixed at creation.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new(super::rules::QUANTITY_RULE).message(Message::Expression(super::rules::STORAGE_SIZE_QUANTITY_MESSAGE.into())))]
    pub size: Quantity,
    /// StorageClass of the members' volumes; the cluster's default class when unset. Fixed at
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Keep data in an emptyDir instead of a PersistentVolumeClaim: a member whose Pod is
    /// deleted loses its data and is replaced. For development only. Fixed at creation.
    #[serde(default)]
    pub ephemeral: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            ephemeral: false,
        }
    }
}

/// Settings copied into every member Pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Labels added to every member Pod. The operator's own labels (`app.kubernetes.io/name`,
    /// `app.kubernetes.io/instance`, `app.kubernetes.io/managed-by`, `etcd.operator.dev/*`)
    /// cannot be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64), inner(length(max = 317)))]
    #[x_kube(validation = Rule::new(super::rules::LABELS_RULE).message(super::rules::LABELS_MESSAGE))]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every member Pod (keys under `etcd.operator.dev/` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(super::rules::ANNOTATIONS_RULE).message(super::rules::ANNOTATIONS_MESSAGE))]
    pub annotations: BTreeMap<String, String>,
    /// Scheduling affinity; when unset, members prefer distinct nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the member Pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node labels a member's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// PriorityClass of the member Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// How members spread across topology domains (zones, nodes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
}

/// etcd server settings the operator passes as flags.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::election_rule()).message(super::rules::ELECTION_MESSAGE),
    validation = Rule::new(super::rules::REVISION_RETENTION_RULE).message(super::rules::REVISION_RETENTION_MESSAGE)
)]
pub struct EtcdOptions {
    /// Backend quota in bytes (`--quota-backend-bytes`; etcd's default is 2 GiB, its suggested
    /// maximum 8 GiB). Writes fail with NOSPACE beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(
        min = super::rules::QUOTA_BACKEND_BYTES.0,
        max = super::rules::QUOTA_BACKEND_BYTES.1
    ))]
    pub quota_backend_bytes: Option<i64>,
    /// Applied entries between snapshots (`--snapshot-count`; etcd's default is 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(
        min = super::rules::SNAPSHOT_COUNT.0,
        max = super::rules::SNAPSHOT_COUNT.1
    ))]
    pub snapshot_count: Option<i64>,
    /// Heartbeat interval in milliseconds (`--heartbeat-interval`; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(
        min = super::rules::HEARTBEAT_INTERVAL_MS.0,
        max = super::rules::HEARTBEAT_INTERVAL_MS.1
    ))]
    pub heartbeat_interval_ms: Option<i64>,
    /// Election timeout in milliseconds (`--election-timeout`; default 1000); at least five
    /// heartbeat intervals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(
        min = super::rules::ELECTION_TIMEOUT_MS.0,
        max = super::rules::ELECTION_TIMEOUT_MS.1
    ))]
    pub election_timeout_ms: Option<i64>,
    /// Auto-compaction mode (`--auto-compaction-mode`): `periodic` (retention is a duration) or
    /// `revision` (retention is a revision count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(super::rules::COMPACTION_MODE_RULE).message(super::rules::COMPACTION_MODE_MESSAGE))]
    pub auto_compaction_mode: Option<String>,
    /// Auto-compaction retention (`--auto-compaction-retention`): a duration such as `1h` or
    /// `30m` for `periodic` (a bare number means hours), a revision count for `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = super::rules::RETENTION_MAX_LEN),
        regex(pattern = super::rules::RETENTION_PATTERN)
    )]
    pub auto_compaction_retention: Option<String>,
    /// Further flags, each `--name=value` or `--name`. Flags the operator owns (member name, URLs,
    /// data directory, initial cluster) and flags with a field above are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = super::rules::MAX_EXTRA_FLAGS),
        inner(
            length(max = super::rules::EXTRA_FLAG_MAX_LEN),
            regex(pattern = super::rules::EXTRA_FLAG_PATTERN)
        )
    )]
    #[x_kube(
        validation = Rule::new(super::rules::owned_flags_rule()).message(super::rules::OWNED_FLAGS_MESSAGE),
        validation = Rule::new(super::rules::typed_flags_rule()).message(super::rules::TYPED_FLAGS_MESSAGE)
    )]
    pub extra_flags: Vec<String>,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary: Bootstrapping, Scaling, Replacing, Upgrading, Healthy, Degraded,
    /// Unavailable, Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Conditions `Available` (a quorum of voters is healthy), `Progressing` (a step is under
    /// way) and `Degraded` (members are missing or failing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Healthy voting members.
    #[serde(default)]
    pub ready_members: i32,
    /// Healthy voting members / desired members, for example `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_summary: Option<String>,
    /// The cluster ID (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Name of the leading member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The lowest version any member runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Per member, as etcd reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The cluster-wide maintenance the operator ran last (compaction, alarm disarm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceStatus>,
    /// The scheduled snapshots (`spec.backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The certificates' expiry (TLS clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Whether the operator turned authentication on (`spec.auth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthStatus>,
    /// What the operator knows of the members' logs that limits upgrades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::api::versions::UpgradeStatus>,
    /// The last consistency check (`spec.maintenance.corruptionCheck`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corruption_check: Option<super::CorruptionCheckStatus>,
}

/// The cluster-wide maintenance the operator ran last.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceStatus {
    /// The last compaction the operator ran (while recovering from NOSPACE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_compaction: Option<CompactionRecord>,
    /// The last alarm the operator disarmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_alarm_disarmed: Option<AlarmRecord>,
}

/// A compaction the operator ran.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompactionRecord {
    /// When it finished (RFC 3339).
    pub time: String,
    /// The revision compacted to.
    pub revision: i64,
}

/// An alarm the operator disarmed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmRecord {
    /// When it was disarmed (RFC 3339).
    pub time: String,
    /// The alarm, e.g. `NOSPACE`.
    pub alarm: String,
    /// The member it was raised on.
    pub member: String,
}

/// A defragmentation the operator ran on one member.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefragmentationRecord {
    /// When it finished (RFC 3339).
    pub time: String,
    /// The database file size before, in bytes.
    pub db_size_before: i64,
    /// The database file size after, in bytes (0 when the member did not answer right after).
    pub db_size_after: i64,
    /// The store revision when it ran.
    #[serde(default)]
    pub revision: i64,
}

/// A status condition (Kubernetes API conventions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Available`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// A sentence for people.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One member as observed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// `<cluster>-<ordinal>`.
    pub name: String,
    /// etcd member ID (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Peer URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url: Option<String>,
    /// Client URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_url: Option<String>,
    /// `leader`, `follower` or `learner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether the member answers Status with a leader and (voters) its gRPC health service is
    /// SERVING.
    #[serde(default)]
    pub healthy: bool,
    /// The etcd version the member runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Backend size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_size: Option<i64>,
    /// Backend bytes in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_size_in_use: Option<i64>,
    /// Raft committed index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_index: Option<u64>,
    /// Raft term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft_term: Option<u64>,
    /// Active alarms (`NOSPACE`, `CORRUPT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// The last defragmentation the operator ran on this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_defragmentation: Option<DefragmentationRecord>,
    /// Whether the last consistency check found this member's data differing from the
    /// majority's (it is being replaced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub corrupt: bool,
}
