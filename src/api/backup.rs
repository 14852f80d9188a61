//! `spec.backup` and `status.backup`: scheduled snapshots, where they go (an object store or a
//! local folder), the Secrets holding the store's credentials and the encryption key, and what
//! the operator recorded of them.
//!
//! The admission rules live next to the fields (schema bounds) and in [`super::rules`] (CEL);
//! [`super::validation`] applies the same rules for the local runtime.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The number of snapshots kept when `spec.backup.keep` is not set.
pub const DEFAULT_BACKUP_KEEP: i32 = 5;

fn default_backup_keep() -> i32 {
    DEFAULT_BACKUP_KEEP
}

/// Scheduled snapshots. A snapshot is taken from a healthy follower (the leader only in a
/// single-member cluster) once the last successful one is older than `every`, and only while
/// the cluster is healthy with a leader and nothing else is under way. It is streamed straight
/// to the destination and committed there only once etcd's SHA-256 trailer checked out. A failed
/// attempt is retried after 1, 2, 4 ... seconds, at most 5 minutes apart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(super::rules::BACKUP_DIRECTORY_OR_DESTINATION_RULE).message(super::rules::BACKUP_DIRECTORY_OR_DESTINATION_MESSAGE))]
pub struct BackupSpec {
    /// How often to take a snapshot: hours, minutes and seconds such as `6h`, `30m`, `1h30m` or
    /// `45s`; at least 10s.
    #[schemars(
        length(min = 2, max = super::rules::BACKUP_EVERY_MAX_LEN),
        regex(pattern = super::rules::BACKUP_EVERY_PATTERN)
    )]
    #[x_kube(validation = Rule::new(super::rules::backup_every_rule()).message(Message::Message(super::rules::backup_every_message())))]
    pub every: String,
    /// How many snapshots to keep (default 5; 1 to 1000). After each successful snapshot the
    /// oldest of this cluster's snapshots beyond this count are deleted from the destination;
    /// the newest is never deleted, and other objects or files are left alone.
    #[serde(default = "default_backup_keep")]
    #[schemars(range(min = super::rules::BACKUP_KEEP.0, max = super::rules::BACKUP_KEEP.1))]
    pub keep: i32,
    /// Shorthand for `destination.local.directory` (local runtime only): the folder snapshot
    /// files go to (a relative path is taken from the state directory). Without it and without
    /// `destination`, the local runtime writes to `<state dir>/<namespace>/<name>/backups`.
    /// Files are named `<cluster>-<UTC time>-r<revision>.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = super::rules::PATH_MAX_LEN))]
    pub directory: Option<String>,
    /// Where snapshots go: exactly one of `s3`, `gcs`, `azure` or `local`, with the Secret that
    /// holds the store's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
    /// Client-side encryption of every snapshot (AES-256-GCM, streaming; the key id is recorded
    /// in the object and in the status). Restores need the same key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BackupEncryption>,
    /// Verification of the snapshots by a restore into a throwaway etcd (default: every
    /// snapshot; `everyNth: 0` turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<BackupVerify>,
}

/// How often a snapshot is verified when `spec.backup.verify` (or its `everyNth`) is not set:
/// every snapshot. A backup that was never restored is a hope, not a backup: the failures a
/// verification finds (an object the store corrupted or replaced, a key that no longer opens
/// it, an `etcdutl` that refuses it) are the ones found otherwise only during the outage the
/// backup was for. A restore costs about what the snapshot did (the object read back, the
/// database written once more and a throwaway etcd started for a few seconds), so verifying
/// every snapshot is the safe default; clusters with large databases on short schedules can
/// verify one in N, and `everyNth: 0` turns it off.
pub const DEFAULT_VERIFY_EVERY_NTH: i32 = 1;

fn default_verify_every_nth() -> i32 {
    DEFAULT_VERIFY_EVERY_NTH
}

/// Verification of snapshots: after a snapshot is stored and recorded, the operator reads the
/// object back (decrypting it), restores it with the version's `etcdutl snapshot restore` into
/// a throwaway etcd (a process in the local runtime) and checks that it starts and serves, that
/// the object's SHA-256 is the one recorded and that its revision is the one recorded. The
/// result is recorded in `status.backup.lastSnapshot.verification` and
/// `status.backup.lastVerification`; a failed verification sets the `Degraded` condition with
/// reason `BackupVerificationFailed` until a later one passes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerify {
    /// Verify one snapshot in N: 1 (the default) verifies every snapshot, 3 the first snapshot
    /// and every third after it, 0 none (0 to 1000).
    #[serde(default = "default_verify_every_nth")]
    #[schemars(range(min = super::rules::VERIFY_EVERY_NTH.0, max = super::rules::VERIFY_EVERY_NTH.1))]
    #[x_kube(validation = Rule::new(super::rules::VERIFY_EVERY_NTH_RULE).message(super::rules::VERIFY_EVERY_NTH_MESSAGE))]
    pub every_nth: i32,
}

impl Default for BackupVerify {
    fn default() -> Self {
        BackupVerify {
            every_nth: DEFAULT_VERIFY_EVERY_NTH,
        }
    }
}

/// Where snapshots go: exactly one store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::BACKUP_ONE_DESTINATION_RULE).message(super::rules::BACKUP_ONE_DESTINATION_MESSAGE),
    validation = Rule::new(super::rules::BACKUP_LOCAL_CREDENTIALS_RULE).message(super::rules::BACKUP_LOCAL_CREDENTIALS_MESSAGE)
)]
pub struct BackupDestination {
    /// Amazon S3 or an S3-compatible server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
    /// Google Cloud Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsDestination>,
    /// Azure Blob Storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureDestination>,
    /// A folder on the operator's machine (local runtime only: the operator Pod has no volume
    /// for it, so the Kubernetes runtime refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalDestination>,
    /// The Secret (in the cluster's namespace) with the store's credentials. Keys: for `s3`,
    /// `accessKeyId` and `secretAccessKey` (and `sessionToken` for temporary credentials); for
    /// `gcs`, `serviceAccountJson` (a service-account key file); for `azure`, `accountKey` or
    /// `sasToken` (and `accountName` when `azure.account` is not set). Without it the store's
    /// ambient credentials are used (instance or workload identity, the provider's environment
    /// variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = super::rules::SECRET_NAME_MAX_LEN),
        regex(pattern = super::rules::SECRET_NAME_PATTERN)
    )]
    pub credentials_secret: Option<String>,
}

/// An S3 bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// The bucket.
    #[schemars(length(min = 1, max = super::rules::BUCKET_MAX_LEN))]
    pub bucket: String,
    /// A folder-like prefix for the objects (default `<namespace>/<cluster>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::rules::PREFIX_MAX_LEN))]
    pub prefix: Option<String>,
    /// The endpoint URL of an S3-compatible server (`http://` or `https://`); AWS when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = super::rules::ENDPOINT_MAX_LEN),
        regex(pattern = super::rules::ENDPOINT_PATTERN)
    )]
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones
    /// (`bucket.endpoint/key`). Default: true when `endpoint` is set (most S3-compatible servers
    /// want it), false for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
}

/// A Google Cloud Storage bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GcsDestination {
    /// The bucket.
    #[schemars(length(min = 1, max = super::rules::BUCKET_MAX_LEN))]
    pub bucket: String,
    /// A folder-like prefix for the objects (default `<namespace>/<cluster>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::rules::PREFIX_MAX_LEN))]
    pub prefix: Option<String>,
    /// The API base URL of a GCS-compatible server; Google's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = super::rules::ENDPOINT_MAX_LEN),
        regex(pattern = super::rules::ENDPOINT_PATTERN)
    )]
    pub endpoint: Option<String>,
}

/// An Azure Blob Storage container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureDestination {
    /// The container.
    #[schemars(length(min = 1, max = super::rules::BUCKET_MAX_LEN))]
    pub container: String,
    /// A folder-like prefix for the blobs (default `<namespace>/<cluster>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::rules::PREFIX_MAX_LEN))]
    pub prefix: Option<String>,
    /// The storage account; when unset, the key `accountName` of the credentials Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub account: Option<String>,
    /// The account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite; when
    /// unset, `https://<account>.blob.core.windows.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = super::rules::ENDPOINT_MAX_LEN),
        regex(pattern = super::rules::ENDPOINT_PATTERN)
    )]
    pub endpoint: Option<String>,
}

/// A local folder (local runtime only).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalDestination {
    /// The folder (created if missing; a relative path is taken from the state directory).
    #[schemars(length(min = 1, max = super::rules::PATH_MAX_LEN))]
    pub directory: String,
}

/// Client-side encryption of the snapshots.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupEncryption {
    /// The Secret (in the cluster's namespace) whose key `key` holds the 256-bit key: 32 bytes,
    /// or 64 hexadecimal characters (`openssl rand -hex 32`), or 44 characters of base64.
    #[schemars(
        length(min = 1, max = super::rules::SECRET_NAME_MAX_LEN),
        regex(pattern = super::rules::SECRET_NAME_PATTERN)
    )]
    pub key_secret: String,
}

/// What the scheduled snapshots did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The last snapshot that was stored completely (its SHA-256 checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<SnapshotRecord>,
    /// Why the last attempt failed, if it did (cleared by the next success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: i32,
    /// After a failure: when the next attempt may start (RFC 3339); failures back off 1, 2,
    /// 4 ... seconds up to 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// The last verification of a snapshot (`spec.backup.verify`), whichever snapshot it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<VerificationRecord>,
}

/// What a verification of a snapshot found.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum VerificationResult {
    /// The snapshot restored, the throwaway etcd served it, and what was checked matched.
    #[default]
    Passed,
    /// Something did not: the message says what.
    Failed,
}

/// One verification of a snapshot: restored into a throwaway etcd and checked.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRecord {
    /// When it finished (RFC 3339).
    pub time: String,
    /// The snapshot's object name.
    pub name: String,
    /// Where the snapshot is (as in `lastSnapshot.location`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    /// `Passed` or `Failed`.
    pub result: VerificationResult,
    /// What was checked, or why it failed.
    pub message: String,
    /// The revision the throwaway etcd served, if it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The number of keys it served, if it started and they could be counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<i64>,
    /// How long the verification took, in milliseconds.
    #[serde(default)]
    pub duration_ms: i64,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// A snapshot the operator stored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecord {
    /// When it was committed (RFC 3339).
    pub time: String,
    /// Where it is: the file's path for a local folder, a URL without credentials for an object
    /// store (`s3://bucket/prefix/name`, `gs://…`, `azure://account/container/…`).
    #[serde(alias = "file")]
    pub location: String,
    /// The object's name inside the destination's prefix (or folder).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its size in bytes (the 32-byte SHA-256 trailer included), before any encryption.
    pub size: i64,
    /// Bytes stored (larger than `size` when encrypted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<i64>,
    /// The member's store revision when the snapshot started (the snapshot holds at least it).
    pub revision: i64,
    /// The SHA-256 of the database bytes (hex), as checked against etcd's trailer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The member it was taken from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub member: String,
    /// The etcd version of that member.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_version: String,
    /// The cluster ID (hex).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    /// How long streaming and committing took, in milliseconds.
    #[serde(default)]
    pub duration_ms: i64,
    /// The id of the encryption key, when encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The schedule's count of recorded snapshots, this one included (1 for the first; 0 when
    /// an operator that did not count recorded it): `spec.backup.verify.everyNth` counts it.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub sequence: i64,
    /// Its verification, once it ran (`spec.backup.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationRecord>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}
