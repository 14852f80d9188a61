//! The `EtcdCluster` resource: spec, status, defaults.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The etcd version a cluster gets when `spec.version` is not set.
pub const DEFAULT_VERSION: &str = "3.5.16";
/// The member count a cluster gets when `spec.replicas` is not set.
pub const DEFAULT_REPLICAS: i32 = 3;

fn default_replicas() -> i32 {
    DEFAULT_REPLICAS
}

fn default_version() -> String {
    DEFAULT_VERSION.to_string()
}

/// An etcd cluster: the desired member count and version, and how members run.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "etcd.operator.dev",
    version = "v1alpha1",
    kind = "EtcdCluster",
    plural = "etcdclusters",
    shortname = "etcd",
    namespaced,
    status = "EtcdClusterStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyMembers"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterSpec {
    /// Number of voting members (1 to 9; odd numbers tolerate failures best).
    #[serde(default = "default_replicas")]
    pub replicas: i32,
    /// etcd version, `major.minor.patch` (default 3.5.16). Upgrades move one minor version at a
    /// time; downgrades are refused.
    #[serde(default = "default_version")]
    pub version: String,
    /// Container image; derived from the version when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Only report status; take no action.
    #[serde(default)]
    pub paused: bool,
    /// etcd settings.
    #[serde(default)]
    pub etcd: EtcdOptions,
}

/// etcd server settings the operator passes as flags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdOptions {
    /// Backend quota in bytes (`--quota-backend-bytes`; etcd's default is 2 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_backend_bytes: Option<i64>,
    /// Applied entries between snapshots (`--snapshot-count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<i64>,
    /// Heartbeat interval in milliseconds (`--heartbeat-interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<i64>,
    /// Election timeout in milliseconds (`--election-timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election_timeout_ms: Option<i64>,
    /// Auto-compaction mode: `periodic` or `revision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_mode: Option<String>,
    /// Auto-compaction retention (`1h`, `30m` for periodic; a revision count for revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_compaction_retention: Option<String>,
    /// Further flags, `--name=value`. Flags the operator owns (names, URLs, data dir, initial
    /// cluster) are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_flags: Vec<String>,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// A one-word summary: Bootstrapping, Scaling, Upgrading, Healthy, Degraded, Unavailable,
    /// Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Conditions `Available`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Healthy voting members.
    #[serde(default)]
    pub ready_members: i32,
    /// The cluster ID (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Name of the leading member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The lowest version any member runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Per member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
}

/// A status condition (Kubernetes API conventions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
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
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
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
    /// Whether the member answers and has a leader.
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
}
