//! The CEL rules of the `EtcdCluster` schema (`x-kubernetes-validations`) and their messages.
//!
//! The apiserver evaluates them on create and update; rules that use `oldSelf` are transition
//! rules, evaluated on update only. Each rule guards against malformed input that the schema
//! already rejects (a malformed version is reported by the schema's pattern, not by a CEL
//! evaluation error).

/// The longest cluster name: member names add `-<ordinal>` and the client Service `-client`,
/// and all must stay DNS labels (63 characters).
pub const MAX_NAME_LEN: usize = 50;

/// A cluster name: lower-case letters, digits and '-', starting with a letter and ending with a
/// letter or digit.
pub const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// The root rule: the cluster's name must fit in the names derived from it
/// ([`MAX_NAME_LEN`], [`NAME_PATTERN`]).
pub fn name_rule() -> String {
    format!(
        "self.metadata.name.size() <= {MAX_NAME_LEN} && self.metadata.name.matches('{NAME_PATTERN}')"
    )
}

/// Message of [`name_rule`].
pub fn name_message() -> String {
    format!(
        "metadata.name must be at most {MAX_NAME_LEN} characters of lower-case letters, digits and \
         '-', starting with a letter: members are named <name>-<ordinal> and the client Service \
         <name>-client"
    )
}

/// An etcd version: `major.minor.patch` of plain numbers (no leading `v`).
pub const VERSION_PATTERN: &str = r"^[0-9]+\.[0-9]+\.[0-9]+$";
/// The longest version string.
pub const VERSION_MAX_LEN: usize = 32;

/// The replica range.
pub const REPLICAS: (i32, i32) = (1, 9);
/// The etcd container's CPU request when `spec.resources` is not set.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// The etcd container's memory request when `spec.resources` is not set.
pub const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// The range of `spec.etcd.quotaBackendBytes` (1 MiB to 64 GiB).
pub const QUOTA_BACKEND_BYTES: (i64, i64) = (1_048_576, 68_719_476_736);
/// The range of `spec.maintenance.defragmentation.minDbSizeBytes` (0 to 64 GiB).
pub const DEFRAG_MIN_DB_SIZE_BYTES: (i64, i64) = (0, 68_719_476_736);
/// The range of `spec.maintenance.defragmentation.maxFragmentationPercent`.
pub const DEFRAG_MAX_FRAGMENTATION_PERCENT: (i32, i32) = (1, 99);
/// The range of `spec.etcd.snapshotCount`.
pub const SNAPSHOT_COUNT: (i64, i64) = (1, 10_000_000);
/// The range of `spec.etcd.heartbeatIntervalMs`.
pub const HEARTBEAT_INTERVAL_MS: (i64, i64) = (10, 5_000);
/// The range of `spec.etcd.electionTimeoutMs`.
pub const ELECTION_TIMEOUT_MS: (i64, i64) = (50, 50_000);
/// etcd's default heartbeat interval (ms), used by the election rule when the field is unset.
pub const DEFAULT_HEARTBEAT_MS: i64 = 100;
/// etcd's default election timeout (ms), used by the election rule when the field is unset.
pub const DEFAULT_ELECTION_MS: i64 = 1000;
/// The compaction retention: a Go duration, or a bare number (hours for `periodic`, revisions
/// for `revision`).
pub const RETENTION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$|^[0-9]+$";
/// The longest compaction retention.
pub const RETENTION_MAX_LEN: usize = 32;
/// An extra flag: `--name` or `--name=value`.
pub const EXTRA_FLAG_PATTERN: &str = r"^--[a-z0-9][a-z0-9-]*(=.*)?$";
/// The most extra flags.
pub const MAX_EXTRA_FLAGS: usize = 64;
/// The longest extra flag.
pub const EXTRA_FLAG_MAX_LEN: usize = 1024;
/// `spec.backup.every`: hours, minutes and seconds (`6h`, `30m`, `1h30m`, `45s`), each at most
/// six digits.
pub const BACKUP_EVERY_PATTERN: &str = "^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$";
/// The longest `spec.backup.every`.
pub const BACKUP_EVERY_MAX_LEN: usize = 24;
/// The shortest interval between scheduled snapshots, in seconds.
pub const BACKUP_EVERY_MIN_SECS: u64 = 10;
/// The range of `spec.backup.keep`.
pub const BACKUP_KEEP: (i32, i32) = (1, 1000);
/// The range of `spec.backup.verify.everyNth`.
pub const VERIFY_EVERY_NTH: (i32, i32) = (0, 1000);
/// `spec.backup.verify.everyNth` is within [`VERIFY_EVERY_NTH`].
pub const VERIFY_EVERY_NTH_RULE: &str = "self >= 0 && self <= 1000";
/// Message of [`VERIFY_EVERY_NTH_RULE`] (and of the local runtime's check).
pub const VERIFY_EVERY_NTH_MESSAGE: &str = "backup.verify.everyNth must be between 0 and 1000: \
1 verifies every snapshot, N the first and every Nth after it, 0 none";
/// The longest file path in the spec (`spec.backup.directory`, `spec.bootstrap.restore.path`).
pub const PATH_MAX_LEN: usize = 4096;

/// `spec.backup.every` is at least [`BACKUP_EVERY_MIN_SECS`] (a malformed value is reported by
/// the pattern).
pub fn backup_every_rule() -> String {
    format!(
        "!self.matches('{BACKUP_EVERY_PATTERN}') || self.size() < 2 \
         || duration(self) >= duration('{BACKUP_EVERY_MIN_SECS}s')"
    )
}
/// Message of [`backup_every_rule`].
pub fn backup_every_message() -> String {
    format!("backup.every must be at least {BACKUP_EVERY_MIN_SECS}s")
}

/// The longest `spec.maintenance.corruptionCheck.every`.
pub const CORRUPTION_CHECK_EVERY_MAX_LEN: usize = 24;
/// The shortest interval between consistency checks, in seconds.
pub const CORRUPTION_CHECK_EVERY_MIN_SECS: u64 = 10;

/// `spec.maintenance.corruptionCheck.every` is at least [`CORRUPTION_CHECK_EVERY_MIN_SECS`] (a
/// malformed value is reported by the pattern).
pub fn corruption_check_every_rule() -> String {
    format!(
        "!self.matches('{BACKUP_EVERY_PATTERN}') || self.size() < 2 \
         || duration(self) >= duration('{CORRUPTION_CHECK_EVERY_MIN_SECS}s')"
    )
}
/// Message of [`corruption_check_every_rule`].
pub fn corruption_check_every_message() -> String {
    format!("maintenance.corruptionCheck.every must be at least {CORRUPTION_CHECK_EVERY_MIN_SECS}s")
}

/// `spec.backup.directory` is the shorthand of a local destination: not both.
pub const BACKUP_DIRECTORY_OR_DESTINATION_RULE: &str =
    "!has(self.directory) || !has(self.destination)";
/// Message of [`BACKUP_DIRECTORY_OR_DESTINATION_RULE`].
pub const BACKUP_DIRECTORY_OR_DESTINATION_MESSAGE: &str = "backup.directory is the shorthand of \
backup.destination.local.directory: set backup.directory or backup.destination, not both";

/// `spec.backup.destination` names exactly one store.
pub const BACKUP_ONE_DESTINATION_RULE: &str = "(has(self.s3) ? 1 : 0) + (has(self.gcs) ? 1 : 0) \
+ (has(self.azure) ? 1 : 0) + (has(self.local) ? 1 : 0) == 1";
/// Message of [`BACKUP_ONE_DESTINATION_RULE`].
pub const BACKUP_ONE_DESTINATION_MESSAGE: &str =
    "backup.destination must name exactly one store: s3, gcs, azure or local";

/// A local folder has no credentials.
pub const BACKUP_LOCAL_CREDENTIALS_RULE: &str = "!has(self.local) || !has(self.credentialsSecret)";
/// Message of [`BACKUP_LOCAL_CREDENTIALS_RULE`].
pub const BACKUP_LOCAL_CREDENTIALS_MESSAGE: &str = "backup.destination.credentialsSecret cannot be set with local: a local folder needs no credentials";

/// A Secret name: a DNS subdomain (lower-case letters, digits, '-' and '.', starting and
/// ending with a letter or digit).
pub const SECRET_NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// The longest Secret name.
pub const SECRET_NAME_MAX_LEN: usize = 253;
/// The longest bucket or container name (GCS allows 222 characters; S3 and Azure fewer, which
/// the stores themselves report).
pub const BUCKET_MAX_LEN: usize = 222;
/// The longest object prefix.
pub const PREFIX_MAX_LEN: usize = 512;
/// An endpoint URL: `http://` or `https://`, then no whitespace.
pub const ENDPOINT_PATTERN: &str = r"^https?://[^\s]+$";
/// The longest endpoint URL.
pub const ENDPOINT_MAX_LEN: usize = 2048;

/// `spec.bootstrap.restore` names exactly one snapshot: a file or a store.
pub const RESTORE_ONE_SOURCE_RULE: &str = "has(self.path) != has(self.destination)";
/// Message of [`RESTORE_ONE_SOURCE_RULE`].
pub const RESTORE_ONE_SOURCE_MESSAGE: &str =
    "bootstrap.restore must name exactly one snapshot: a path or a destination";
/// `object`, `cluster` and `encryption` describe an object in a store.
pub const RESTORE_STORE_FIELDS_RULE: &str =
    "has(self.destination) || !(has(self.object) || has(self.cluster) || has(self.encryption))";
/// Message of [`RESTORE_STORE_FIELDS_RULE`].
pub const RESTORE_STORE_FIELDS_MESSAGE: &str =
    "bootstrap.restore.object, cluster and encryption need a destination";
/// An object is named, or the newest of a cluster's snapshots is taken, not both.
pub const RESTORE_OBJECT_OR_CLUSTER_RULE: &str = "!(has(self.object) && has(self.cluster))";
/// Message of [`RESTORE_OBJECT_OR_CLUSTER_RULE`].
pub const RESTORE_OBJECT_OR_CLUSTER_MESSAGE: &str =
    "bootstrap.restore names an object or the cluster whose newest snapshot to take, not both";
/// The longest object name in `spec.bootstrap.restore.object`.
pub const OBJECT_NAME_MAX_LEN: usize = 1024;

/// `spec.bootstrap` is fixed (transition rule): it is read only when the cluster is created.
pub const BOOTSTRAP_IMMUTABLE_RULE: &str = "self == oldSelf";
/// Message of [`BOOTSTRAP_IMMUTABLE_RULE`].
pub const BOOTSTRAP_IMMUTABLE_MESSAGE: &str =
    "bootstrap cannot change after creation: it is read only when the cluster is created";

/// `spec.tls`: client and peer TLS stay as they were created (transition rule on the spec).
pub const TLS_IMMUTABLE_RULE: &str = "(has(self.tls) && has(self.tls.client) && \
self.tls.client.enabled) == (has(oldSelf.tls) && has(oldSelf.tls.client) && \
oldSelf.tls.client.enabled) && (has(self.tls) && has(self.tls.peer) && self.tls.peer.enabled) == \
(has(oldSelf.tls) && has(oldSelf.tls.peer) && oldSelf.tls.peer.enabled)";
/// Message of [`TLS_IMMUTABLE_RULE`].
pub const TLS_IMMUTABLE_MESSAGE: &str = "tls.client.enabled and tls.peer.enabled cannot change \
after creation (every member's URLs would change at once): to move this cluster to or from TLS, \
take a snapshot (spec.backup or etcdctl snapshot save) and restore it into a new EtcdCluster with \
the TLS settings wanted (spec.bootstrap.restore), then point clients at it";

/// At most one certificate source.
pub const TLS_ONE_SOURCE_RULE: &str = "[has(self.operatorManaged), has(self.secrets), has(self.certManager)].filter(x, x).size() <= 1";
/// Message of [`TLS_ONE_SOURCE_RULE`].
pub const TLS_ONE_SOURCE_MESSAGE: &str =
    "tls.source names at most one of operatorManaged, secrets and certManager";

/// cert-manager is not a source yet.
pub const TLS_CERT_MANAGER_RULE: &str = "!has(self.certManager)";
/// Message of [`TLS_CERT_MANAGER_RULE`].
pub const TLS_CERT_MANAGER_MESSAGE: &str = "tls.source.certManager is not supported yet: leave \
tls.source empty (or set operatorManaged: {}) and the operator makes and renews the certificates";

/// `spec.auth.enabled` cannot go back to false (transition rule on the spec).
pub const AUTH_OFF_RULE: &str =
    "!(has(oldSelf.auth) && oldSelf.auth.enabled) || (has(self.auth) && self.auth.enabled)";
/// Message of [`AUTH_OFF_RULE`].
pub const AUTH_OFF_MESSAGE: &str = "auth.enabled cannot be turned off by the operator once on: \
run `etcdctl auth disable` as root yourself if you must, or restore a snapshot into a new cluster \
without auth";

/// The longest image reference.
pub const IMAGE_MAX_LEN: usize = 512;

/// `spec.version` may not go down (transition rule).
pub const VERSION_DOWNGRADE_RULE: &str = "!self.matches('^[0-9]+[.][0-9]+[.][0-9]+$') \
|| !oldSelf.matches('^[0-9]+[.][0-9]+[.][0-9]+$') \
|| int(self.split('.')[0]) > int(oldSelf.split('.')[0]) \
|| (int(self.split('.')[0]) == int(oldSelf.split('.')[0]) \
&& (int(self.split('.')[1]) > int(oldSelf.split('.')[1]) \
|| (int(self.split('.')[1]) == int(oldSelf.split('.')[1]) \
&& int(self.split('.')[2]) >= int(oldSelf.split('.')[2]))))";
/// Message expression of [`VERSION_DOWNGRADE_RULE`].
pub const VERSION_DOWNGRADE_MESSAGE: &str = "'version cannot go down from ' + oldSelf + ' to ' + self \
+ ': etcd does not support downgrades'";

/// `spec.version` may move at most one minor version (transition rule).
pub const VERSION_JUMP_RULE: &str = "!self.matches('^[0-9]+[.][0-9]+[.][0-9]+$') \
|| !oldSelf.matches('^[0-9]+[.][0-9]+[.][0-9]+$') \
|| (int(self.split('.')[0]) == int(oldSelf.split('.')[0]) \
? int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1 \
: int(self.split('.')[0]) < int(oldSelf.split('.')[0]))";
/// Message expression of [`VERSION_JUMP_RULE`].
pub const VERSION_JUMP_MESSAGE: &str = "'version cannot jump from ' + oldSelf + ' to ' + self \
+ ': upgrade one minor version at a time (for example 3.4.x to 3.5.x)'";

/// `spec.storage.size` is fixed (transition rule).
pub const STORAGE_SIZE_IMMUTABLE_RULE: &str =
    "!has(self.size) || !has(oldSelf.size) || self.size == oldSelf.size";
/// Message of [`STORAGE_SIZE_IMMUTABLE_RULE`].
pub const STORAGE_SIZE_IMMUTABLE_MESSAGE: &str =
    "storage.size cannot change after creation: member volumes are not resized";

/// `spec.storage.storageClassName` is fixed (transition rule).
pub const STORAGE_CLASS_IMMUTABLE_RULE: &str = "has(self.storageClassName) == has(oldSelf.storageClassName) \
&& (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)";
/// Message of [`STORAGE_CLASS_IMMUTABLE_RULE`].
pub const STORAGE_CLASS_IMMUTABLE_MESSAGE: &str =
    "storage.storageClassName cannot change after creation";

/// `spec.storage.ephemeral` is fixed (transition rule).
pub const STORAGE_EPHEMERAL_IMMUTABLE_RULE: &str =
    "(has(self.ephemeral) && self.ephemeral) == (has(oldSelf.ephemeral) && oldSelf.ephemeral)";
/// Message of [`STORAGE_EPHEMERAL_IMMUTABLE_RULE`].
pub const STORAGE_EPHEMERAL_IMMUTABLE_MESSAGE: &str =
    "storage.ephemeral cannot change after creation";

/// An ephemeral member has no volume, so no StorageClass.
pub const STORAGE_EPHEMERAL_CLASS_RULE: &str =
    "!(has(self.ephemeral) && self.ephemeral && has(self.storageClassName))";
/// Message of [`STORAGE_EPHEMERAL_CLASS_RULE`].
pub const STORAGE_EPHEMERAL_CLASS_MESSAGE: &str = "storage.storageClassName cannot be set with storage.ephemeral: ephemeral members have no volume";

/// Labels the operator sets on its objects and selects by.
pub const RESERVED_LABELS: [&str; 4] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
];

/// `spec.podTemplate.labels` may not set the operator's labels.
pub const LABELS_RULE: &str = "self.all(k, !(k in ['app.kubernetes.io/name', 'app.kubernetes.io/instance', \
'app.kubernetes.io/managed-by', 'app.kubernetes.io/component']) && !k.startsWith('etcd.operator.dev/'))";
/// Message of [`LABELS_RULE`].
pub const LABELS_MESSAGE: &str = "podTemplate.labels cannot set the operator's labels \
(app.kubernetes.io/name, instance, managed-by, component, or etcd.operator.dev/*)";

/// `spec.podTemplate.annotations` may not use the operator's prefix.
pub const ANNOTATIONS_RULE: &str = "self.all(k, !k.startsWith('etcd.operator.dev/'))";
/// Message of [`ANNOTATIONS_RULE`].
pub const ANNOTATIONS_MESSAGE: &str =
    "podTemplate.annotations cannot use the reserved prefix etcd.operator.dev/";

/// etcd refuses an election timeout under five heartbeats.
pub fn election_rule() -> String {
    format!(
        "(has(self.electionTimeoutMs) ? self.electionTimeoutMs : {DEFAULT_ELECTION_MS}) \
         >= 5 * (has(self.heartbeatIntervalMs) ? self.heartbeatIntervalMs : {DEFAULT_HEARTBEAT_MS})"
    )
}
/// Message of [`election_rule`].
pub const ELECTION_MESSAGE: &str = "etcd.electionTimeoutMs must be at least 5 times \
etcd.heartbeatIntervalMs (defaults: 1000 and 100)";

/// `revision` compaction keeps a number of revisions.
pub const REVISION_RETENTION_RULE: &str = "!has(self.autoCompactionMode) || self.autoCompactionMode != 'revision' \
|| !has(self.autoCompactionRetention) || self.autoCompactionRetention.matches('^[0-9]+$')";
/// Message of [`REVISION_RETENTION_RULE`].
pub const REVISION_RETENTION_MESSAGE: &str = "with etcd.autoCompactionMode revision, \
etcd.autoCompactionRetention must be a number of revisions, such as 1000";

/// The compaction modes etcd knows.
pub const COMPACTION_MODE_RULE: &str = "self in ['periodic', 'revision']";
/// Message of [`COMPACTION_MODE_RULE`].
pub const COMPACTION_MODE_MESSAGE: &str = "etcd.autoCompactionMode must be periodic or revision";

/// Flags the operator sets on every member; `extraFlags` may not set them.
pub const OWNED_FLAGS: [&str; 28] = [
    "--name",
    "--data-dir",
    "--wal-dir",
    "--listen-peer-urls",
    "--listen-client-urls",
    "--listen-client-http-urls",
    "--listen-metrics-urls",
    "--advertise-client-urls",
    "--initial-advertise-peer-urls",
    "--initial-cluster",
    "--initial-cluster-state",
    "--initial-cluster-token",
    "--discovery",
    "--discovery-srv",
    "--discovery-token",
    "--discovery-endpoints",
    "--force-new-cluster",
    "--config-file",
    // TLS comes from spec.tls (the URLs' scheme and the certificate files go together).
    "--cert-file",
    "--key-file",
    "--trusted-ca-file",
    "--client-cert-auth",
    "--auto-tls",
    "--peer-cert-file",
    "--peer-key-file",
    "--peer-trusted-ca-file",
    "--peer-client-cert-auth",
    "--peer-auto-tls",
];

/// A CEL rule refusing extra flags whose name (the part before `=`) is one of `flags`.
fn flags_rule(flags: &[&str]) -> String {
    let list = flags
        .iter()
        .map(|f| format!("'{f}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("self.all(f, !(f.split('=')[0] in [{list}]))")
}

/// `extraFlags` may not set [`OWNED_FLAGS`].
pub fn owned_flags_rule() -> String {
    flags_rule(&OWNED_FLAGS)
}
/// Message of [`owned_flags_rule`].
pub const OWNED_FLAGS_MESSAGE: &str = "etcd.extraFlags cannot set flags the operator owns: --name, \
--data-dir, --wal-dir, listen/advertise URLs, --initial-cluster*, --discovery*, --force-new-cluster, \
--config-file, and the TLS flags (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth, \
--auto-tls and their --peer-* forms: use spec.tls)";

/// Flags with a typed field in `spec.etcd`.
pub const TYPED_FLAGS: [&str; 6] = [
    "--quota-backend-bytes",
    "--snapshot-count",
    "--heartbeat-interval",
    "--election-timeout",
    "--auto-compaction-mode",
    "--auto-compaction-retention",
];

/// `extraFlags` may not set [`TYPED_FLAGS`].
pub fn typed_flags_rule() -> String {
    flags_rule(&TYPED_FLAGS)
}
/// Message of [`typed_flags_rule`].
pub const TYPED_FLAGS_MESSAGE: &str = "etcd.extraFlags cannot set a flag that has a field in spec.etcd \
(quotaBackendBytes, snapshotCount, heartbeatIntervalMs, electionTimeoutMs, autoCompactionMode, \
autoCompactionRetention): use the field";

/// A quantity field (`x-kubernetes-int-or-string`) holds a number or a Kubernetes quantity
/// (`8Gi`, `500m`, `1.5`), not any string.
pub const QUANTITY_RULE: &str = "type(self) != string || isQuantity(self)";
/// Message expression of [`QUANTITY_RULE`] on `spec.storage.size`.
pub const STORAGE_SIZE_QUANTITY_MESSAGE: &str = "'storage.size must be a Kubernetes quantity \
such as 8Gi or 500Mi, not ' + string(self)";

/// Message expression of [`QUANTITY_RULE`] on an entry of `spec.resources.limits` or
/// `requests` (the apiserver puts the entry's path in front).
pub const RESOURCE_QUANTITY_MESSAGE: &str =
    "'must be a Kubernetes quantity such as 500m, 2Gi or 1.5, not ' + string(self)";
/// The most entries in `spec.resources.limits` or `requests`.
pub const MAX_RESOURCES: usize = 32;
/// The longest quantity in `spec.resources`.
pub const QUANTITY_MAX_LEN: usize = 64;

/// A `spec.networkPolicy.clients` entry selects something.
pub const NETWORK_CLIENT_RULE: &str = "has(self.podLabels) || has(self.namespaceLabels)";
/// Message of [`NETWORK_CLIENT_RULE`].
pub const NETWORK_CLIENT_MESSAGE: &str = "each networkPolicy.clients entry needs podLabels, \
namespaceLabels or both (an entry with neither would select nothing)";

/// What the label keys and values of `spec.networkPolicy.clients` must look like (checked by the
/// operator: a CEL rule over a map's keys exceeds the apiserver's cost budget).
pub const SELECTOR_LABELS_MESSAGE: &str = "label keys are an optional DNS-subdomain prefix and \
'/', then 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; \
values are empty or the same 1 to 63 characters";
