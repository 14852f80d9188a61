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
}
