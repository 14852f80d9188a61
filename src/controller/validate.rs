//! validate: the one place the raw `EtcdCluster` spec is read for the planner. It yields the
//! planner's [`Desired`] state (members, version, maintenance, backups, bootstrap) or a
//! [`SpecError`] that says which field the operator cannot act on.
//!
//! What differs between runtimes is passed in as a [`Placement`]: how members are addressed,
//! the hash of what a member is started with, whether snapshots may go to a local folder and
//! whether restores run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sha2::{Digest, Sha256};

use crate::api::rules;
use crate::api::{EtcdClusterSpec, PodTemplateSpec, RestoreSpec};

use super::backup::{BackupTarget, Folders, store_target, target};
use super::flags::option_flags;

use super::plan::{
    BackupSchedule, Bootstrap, DEFAULT_QUOTA_BACKEND_BYTES, Desired, Maintenance, RestoreSource,
    Version,
};

/// Why a spec cannot be acted on (possible only when the admission rules were bypassed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `spec.version` is not an etcd version.
    #[error("spec.version: {0}")]
    Version(String),
    /// `spec.replicas` is negative.
    #[error("replicas {0} is negative")]
    Replicas(i32),
    /// `spec.networkPolicy` names labels Kubernetes refuses (admission cannot check map keys).
    #[error("{0}")]
    NetworkPolicy(String),
}

/// What differs between runtimes in the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The cluster's namespace (the default object prefix of its snapshots is
    /// `<namespace>/<cluster>`).
    pub namespace: String,
    /// The cluster's name.
    pub cluster: String,
    /// A hash of everything a member is started with except its version.
    pub config_hash: String,
    /// See [`Desired::peer_url_template`].
    pub peer_url_template: String,
    /// See [`Desired::replace_after_failures`].
    pub replace_after_failures: u32,
    /// Whether snapshots may go to a local folder, and which.
    pub snapshots: Folders,
    /// What a relative `spec.bootstrap.restore.path` is relative to; `None` when this runtime
    /// cannot restore (a cluster asking for it is then not created at all).
    pub restore_base: Option<PathBuf>,
    /// Whether this runtime restores from an object in a store
    /// (`spec.bootstrap.restore.destination`): `Err` says why not (the status message; nothing
    /// is created).
    pub restore_stores: Result<(), &'static str>,
    /// Whether this runtime verifies snapshots (`spec.backup.verify`); when not, none is planned.
    pub verifies_snapshots: bool,
}

/// What every member is started from, read from the spec once: the parts of a member that do
/// not depend on its ordinal or version.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberTemplate {
    /// How many members the spec asks for (as written; the planner's count is
    /// [`Desired::replicas`]).
    pub replicas: i32,
    /// The container image, when the spec names one.
    pub image: Option<String>,
    /// The etcd container's resources.
    pub resources: Option<ResourceRequirements>,
    /// What the member Pods are built from besides the operator's own fields.
    pub pod_template: PodTemplateSpec,
    /// Data lives and dies with the member (no PVC).
    pub ephemeral: bool,
    /// The PVC's size.
    pub storage_size: Quantity,
    /// The PVC's storage class.
    pub storage_class_name: Option<String>,
    /// The etcd flags from `spec.etcd` ([`option_flags`]).
    pub flags: Vec<String>,
    /// What `spec.tls` asks for (URL schemes and certificate flags).
    pub tls: crate::tls::TlsSettings,
    /// The user's certificate Secrets (`spec.tls.source.secrets`); `None`: operator-managed.
    pub tls_secrets: Option<crate::api::TlsSecretsSource>,
    /// A hash of everything a member Pod is built from except the version and the per-member
    /// facts (image, resources, pod template, etcd options, storage kind): a Pod with another
    /// hash is restarted.
    pub pod_hash: String,
}

/// What the etcd container requests when `spec.resources` is not set: a modest guaranteed share
/// (the scheduler counts it; no limits, so nothing is throttled or killed for using more).
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (
                "cpu".to_owned(),
                Quantity(rules::DEFAULT_CPU_REQUEST.to_owned()),
            ),
            (
                "memory".to_owned(),
                Quantity(rules::DEFAULT_MEMORY_REQUEST.to_owned()),
            ),
        ])),
        ..ResourceRequirements::default()
    }
}

/// The member template of `spec`.
pub fn member_template(spec: &EtcdClusterSpec) -> MemberTemplate {
    let input = serde_json::json!({
        "image": spec.image,
        "resources": spec.resources,
        "podTemplate": spec.pod_template,
        "etcd": spec.etcd,
        "ephemeral": spec.storage.ephemeral,
        "tls": spec.tls,
    });
    let digest = Sha256::digest(input.to_string().as_bytes());
    MemberTemplate {
        replicas: spec.replicas,
        image: spec.image.clone(),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        pod_template: spec.pod_template.clone().unwrap_or_default(),
        ephemeral: spec.storage.ephemeral,
        storage_size: spec.storage.size.clone(),
        storage_class_name: spec.storage.storage_class_name.clone(),
        flags: option_flags(&spec.etcd),
        tls: crate::tls::TlsSettings::of(spec),
        tls_secrets: spec.tls.as_ref().and_then(|t| t.source.secrets.clone()),
        pod_hash: digest.iter().take(8).map(|b| format!("{b:02x}")).collect(),
    }
}

/// The desired state and what the status reports about the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The planner's desired state.
    pub desired: Desired,
    /// Set when `spec.backup` asks for something this runtime does not run.
    pub backup_unsupported: Option<&'static str>,
    /// What every member is started from.
    pub template: MemberTemplate,
}

/// What `spec.bootstrap.restore.path` is refused with in a runtime that cannot read files.
pub const RESTORE_UNSUPPORTED: &str = "spec.bootstrap.restore.path (a file) is supported by the \
local runtime only: name the backup's store in spec.bootstrap.restore.destination instead; nothing \
is created";
/// What `spec.bootstrap.restore.destination` is refused with in a runtime that cannot restore
/// from stores.
pub const RESTORE_STORE_UNSUPPORTED: &str = "spec.bootstrap.restore.destination is not \
supported by this runtime yet; nothing is created";
/// What a restore from a local folder is refused with in a runtime without folders.
pub const RESTORE_FOLDER_REFUSED: &str = "spec.bootstrap.restore.destination.local cannot be \
used by the Kubernetes runtime, whose Pod has no volume for it; use s3, gcs or azure; nothing is \
created";

/// Reads `spec` once: the desired state for `placement`, or why the spec cannot be acted on.
pub fn validate(spec: &EtcdClusterSpec, placement: &Placement) -> Result<Validated, SpecError> {
    let version: Version = spec
        .version
        .parse()
        .map_err(|e| SpecError::Version(format!("{e}")))?;
    let replicas = u32::try_from(spec.replicas).map_err(|_| SpecError::Replicas(spec.replicas))?;
    let policy = crate::api::validation::network_policy_errors(spec);
    if !policy.is_empty() {
        let all: Vec<String> = policy.iter().map(ToString::to_string).collect();
        return Err(SpecError::NetworkPolicy(all.join("; ")));
    }
    let mut desired = Desired::new(
        placement.cluster.clone(),
        replicas,
        version,
        placement.config_hash.clone(),
        placement.peer_url_template.clone(),
    );
    desired.paused = spec.paused;
    desired.replace_after_failures = placement.replace_after_failures;
    desired.maintenance = maintenance(spec);
    desired.snapshot_count = spec
        .etcd
        .snapshot_count
        .and_then(|c| u64::try_from(c).ok())
        .filter(|c| *c > 0);
    let mut backup_unsupported = None;
    if let Some(b) = &spec.backup {
        match target(
            b,
            &placement.snapshots,
            &placement.namespace,
            &placement.cluster,
        ) {
            Ok(t) => {
                desired.backup = backup(spec, t).map(|mut b| {
                    if !placement.verifies_snapshots {
                        b.verify_every_nth = 0;
                    }
                    b
                });
            }
            Err(why) => backup_unsupported = Some(why),
        }
    }
    if let Some(restore) = spec.bootstrap.as_ref().and_then(|b| b.restore.as_ref()) {
        desired.bootstrap = match restore_source(restore, placement) {
            Ok(source) => Bootstrap::Restore { source },
            Err(why) => Bootstrap::Unsupported(why.to_owned()),
        };
    }
    Ok(Validated {
        desired,
        backup_unsupported,
        template: member_template(spec),
    })
}

/// `path` as given, or taken from `base` when relative.
pub fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Where the snapshot `restore` names is, for a runtime with `placement`; or why this runtime
/// cannot restore from it.
pub fn restore_source(
    restore: &RestoreSpec,
    placement: &Placement,
) -> Result<RestoreSource, &'static str> {
    if let Some(path) = &restore.path {
        return match &placement.restore_base {
            Some(base) => Ok(RestoreSource::File(resolve(base, path))),
            None => Err(RESTORE_UNSUPPORTED),
        };
    }
    let Some(d) = &restore.destination else {
        // Refused by admission (exactly one of path and destination).
        return Err("spec.bootstrap.restore names no snapshot: set path or destination");
    };
    placement.restore_stores?;
    let cluster = restore
        .cluster
        .clone()
        .unwrap_or_else(|| placement.cluster.clone());
    let target = store_target(
        d,
        restore.encryption.as_ref(),
        &placement.snapshots,
        format!("{}/{cluster}", placement.namespace),
    )
    .map_err(|_| RESTORE_FOLDER_REFUSED)?
    .from_field("spec.bootstrap.restore");
    Ok(RestoreSource::Store {
        target: Box::new(target),
        object: restore.object.clone(),
        cluster,
    })
}

/// The backup schedule for `spec.backup`, its snapshots going to `target` (the runtime's reading
/// of the destination). `None` when no backup is asked for or `every` does not parse (the
/// admission rules refuse that).
pub fn backup(spec: &EtcdClusterSpec, target: BackupTarget) -> Option<BackupSchedule> {
    let b = spec.backup.as_ref()?;
    let every = crate::api::validation::parse_every(&b.every)?;
    Some(BackupSchedule {
        every: every.max(std::time::Duration::from_secs(rules::BACKUP_EVERY_MIN_SECS)),
        keep: u32::try_from(b.keep.clamp(rules::BACKUP_KEEP.0, rules::BACKUP_KEEP.1)).unwrap_or(1),
        target,
        verify_every_nth: u32::try_from(
            b.verify
                .as_ref()
                .map_or(crate::api::DEFAULT_VERIFY_EVERY_NTH, |v| v.every_nth),
        )
        .unwrap_or(0),
    })
}

/// The maintenance the planner may run for `spec`: `spec.maintenance`, with the quota from
/// `spec.etcd.quotaBackendBytes` (etcd's default 2 GiB when unset). Out-of-range numbers (the
/// admission rules refuse them) are clamped to what the planner can use.
pub fn maintenance(spec: &EtcdClusterSpec) -> Maintenance {
    let defrag = &spec.maintenance.defragmentation;
    Maintenance {
        defragment: defrag.enabled,
        defrag_min_db_size: u64::try_from(defrag.min_db_size_bytes).unwrap_or(0),
        defrag_max_fragmentation_percent: u64::try_from(defrag.max_fragmentation_percent.clamp(
            rules::DEFRAG_MAX_FRAGMENTATION_PERCENT.0,
            rules::DEFRAG_MAX_FRAGMENTATION_PERCENT.1,
        ))
        .unwrap_or(1),
        handle_no_space: spec.maintenance.alarms.handle_no_space,
        quota_backend_bytes: spec
            .etcd
            .quota_backend_bytes
            .and_then(|q| u64::try_from(q).ok())
            .filter(|q| *q > 0)
            .unwrap_or(DEFAULT_QUOTA_BACKEND_BYTES),
        corruption_check_every: corruption_check_every(spec),
    }
}

/// The interval of `spec.maintenance.corruptionCheck` (at least the admission rules' minimum);
/// `None` when it is off or `every` does not parse (the admission rules refuse that).
fn corruption_check_every(spec: &EtcdClusterSpec) -> Option<std::time::Duration> {
    let c = &spec.maintenance.corruption_check;
    if !c.enabled {
        return None;
    }
    let every = crate::api::validation::parse_every(&c.every)?;
    Some(every.max(std::time::Duration::from_secs(
        rules::CORRUPTION_CHECK_EVERY_MIN_SECS,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_fields() {
        let spec = EtcdClusterSpec::default();
        assert_eq!(maintenance(&spec), Maintenance::default());
        let mut spec = EtcdClusterSpec::default();
        spec.etcd.quota_backend_bytes = Some(32 << 20);
        spec.maintenance.defragmentation.enabled = false;
        spec.maintenance.defragmentation.min_db_size_bytes = 1 << 20;
        spec.maintenance.defragmentation.max_fragmentation_percent = 30;
        spec.maintenance.alarms.handle_no_space = false;
        let m = maintenance(&spec);
        assert_eq!(
            m,
            Maintenance {
                defragment: false,
                defrag_min_db_size: 1 << 20,
                defrag_max_fragmentation_percent: 30,
                handle_no_space: false,
                quota_backend_bytes: 32 << 20,
                corruption_check_every: Some(std::time::Duration::from_secs(300)),
            }
        );
    }

    #[test]
    fn bad_version_and_replicas_are_typed_errors() {
        let placement = Placement {
            namespace: "ns".into(),
            cluster: "c".into(),
            config_hash: "h".into(),
            peer_url_template: "http://{name}:2380".into(),
            replace_after_failures: 5,
            snapshots: Folders::Refused,
            restore_base: None,
            restore_stores: Err(RESTORE_STORE_UNSUPPORTED),
            verifies_snapshots: false,
        };
        let spec = EtcdClusterSpec {
            version: "latest".into(),
            ..EtcdClusterSpec::default()
        };
        assert!(matches!(
            validate(&spec, &placement),
            Err(SpecError::Version(_))
        ));
        let spec = EtcdClusterSpec {
            replicas: -1,
            ..EtcdClusterSpec::default()
        };
        assert_eq!(validate(&spec, &placement), Err(SpecError::Replicas(-1)));
    }
}
