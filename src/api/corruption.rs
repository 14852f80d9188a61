//! `spec.maintenance.corruptionCheck` and `status.corruptionCheck`: the operator's periodic
//! consistency check of the members' key-value stores (`HashKV` of every voter at one revision)
//! and what it found.
//!
//! The admission rules live next to the fields (schema bounds) and in [`super::rules`] (CEL);
//! [`super::validation`] applies the same rules for the local runtime.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The interval of the consistency check when `spec.maintenance.corruptionCheck.every` is not
/// set.
pub const DEFAULT_CORRUPTION_CHECK_EVERY: &str = "5m";

fn default_every() -> String {
    DEFAULT_CORRUPTION_CHECK_EVERY.to_owned()
}

fn default_true() -> bool {
    true
}

/// The periodic consistency check. It writes nothing to etcd: every voter is asked for the hash
/// of its key-value store up to one common revision (`HashKV`, answered by each member from its
/// own backend), and the hashes of members at the same compaction are compared. A member whose
/// hash differs from a majority's is reported (the `Degraded` condition with reason
/// `MemberCorrupt`, an Event), removed and added back empty as a learner that receives the
/// healthy majority's data, and a `CORRUPT` alarm left on it is disarmed. Nothing is replaced
/// when the others are not a healthy majority, or when no hash is shared by a majority (then the
/// check reports and waits for a person).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CorruptionCheckSpec {
    /// Run the check (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often: hours, minutes and seconds such as `5m`, `1h` or `30s` (default `5m`; at
    /// least 10s).
    #[serde(default = "default_every")]
    #[schemars(
        length(min = 2, max = super::rules::CORRUPTION_CHECK_EVERY_MAX_LEN),
        regex(pattern = super::rules::BACKUP_EVERY_PATTERN)
    )]
    #[x_kube(validation = Rule::new(super::rules::corruption_check_every_rule()).message(Message::Message(super::rules::corruption_check_every_message())))]
    pub every: String,
}

impl Default for CorruptionCheckSpec {
    fn default() -> Self {
        CorruptionCheckSpec {
            enabled: true,
            every: default_every(),
        }
    }
}

/// The last consistency check the operator ran.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorruptionCheckStatus {
    /// When it ran (RFC 3339).
    pub last_check_time: String,
    /// The revision the hashes were taken at.
    #[serde(default)]
    pub revision: i64,
    /// `Consistent`, `MemberCorrupt`, `NoMajority` or `Incomparable` (too few members answered
    /// at the same compaction to compare).
    pub result: String,
    /// A sentence for people.
    #[serde(default)]
    pub message: String,
    /// The members found corrupt (etcd member IDs, hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt_members: Vec<String>,
    /// Each member's answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<MemberHashRecord>,
}

/// One member's `HashKV` answer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberHashRecord {
    /// `<cluster>-<ordinal>` (empty when the member matches no ordinal).
    pub name: String,
    /// etcd member ID (hex).
    pub id: String,
    /// The hash (hex).
    pub hash: String,
    /// The member's compaction revision when it answered.
    pub compact_revision: i64,
}
