//! The planner's [`Maintenance`] policy from an `EtcdCluster` spec, shared by both runtimes.

use crate::api::EtcdClusterSpec;

use super::plan::{BackupSchedule, DEFAULT_QUOTA_BACKEND_BYTES, Maintenance};

/// The snapshot file `spec.bootstrap.restore.path` names, if any.
pub fn restore_path(spec: &EtcdClusterSpec) -> Option<&str> {
    spec.bootstrap
        .as_ref()?
        .restore
        .as_ref()
        .map(|r| r.path.as_str())
}

/// The backup schedule for `spec.backup`, with `directory` the folder the runtime chose (the
/// spec's, resolved, or its default). `None` when no backup is asked for or `every` does not
/// parse (the admission rules refuse that).
pub fn backup(spec: &EtcdClusterSpec, directory: std::path::PathBuf) -> Option<BackupSchedule> {
    let b = spec.backup.as_ref()?;
    let every = crate::api::validation::parse_every(&b.every)?;
    Some(BackupSchedule {
        every: every.max(std::time::Duration::from_secs(
            crate::api::rules::BACKUP_EVERY_MIN_SECS,
        )),
        keep: u32::try_from(b.keep).unwrap_or(1).clamp(1, 1000),
        directory,
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
        defrag_max_fragmentation_percent: u64::try_from(defrag.max_fragmentation_percent)
            .unwrap_or(0)
            .clamp(1, 99),
        handle_no_space: spec.maintenance.alarms.handle_no_space,
        quota_backend_bytes: spec
            .etcd
            .quota_backend_bytes
            .and_then(|q| u64::try_from(q).ok())
            .filter(|q| *q > 0)
            .unwrap_or(DEFAULT_QUOTA_BACKEND_BYTES),
    }
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
            }
        );
    }
}
