//! Scheduled snapshots: where they go ([`mod@target`]: a [`crate::snapshot_store::SnapshotStore`]
//! over S3, GCS, Azure Blob or a local folder, with the credentials and encryption key from the
//! Secrets the spec names), what they are called, when a failed one is retried ([`mod@backoff`]),
//! and the one I/O function that streams a snapshot from a member into the store, commits it
//! and applies the retention ([`take::take`]); restores from a store ([`mod@restore`]); the
//! verification of stored snapshots by a restore into a throwaway etcd ([`mod@verify`]).
//!
//! A snapshot of cluster `demo` taken at 2026-11-22 07:30:05 UTC from a member at revision 812
//! is `demo-20261122T073005Z-r812.db`. It is streamed into the store's [`Upload`] and becomes
//! visible only once the SHA-256 trailer etcd sends checked out; a failed or cut stream is
//! aborted and leaves nothing. Retention keeps the newest `keep` of the cluster's snapshots
//! (names sort by time) and never deletes the newest.
//!
//! [`Upload`]: crate::snapshot_store::Upload

pub mod backoff;
pub mod fetch;
pub mod restore;
pub mod take;
pub mod target;
pub mod verify;

pub use backoff::backoff;
pub use restore::{OpenError, RestoreError, RestoreSnapshot, newest_snapshot, resolve_object};
pub use take::{BackupError, Taken, take};
pub use target::{
    BackupTarget, CredentialsError, Folders, ReadSecrets, SecretData, store_config, store_target,
    target,
};

/// The file name of a snapshot of `cluster` finished at `time` from a member at `revision`.
pub fn file_name(cluster: &str, time: k8s_openapi::jiff::Timestamp, revision: i64) -> String {
    format!(
        "{cluster}-{}-r{revision}.db",
        time.strftime("%Y%m%dT%H%M%SZ")
    )
}

/// Whether `name` is a snapshot file of `cluster` as [`file_name`] writes them.
pub fn is_snapshot_of(cluster: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(cluster)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_suffix(".db"))
    else {
        return false;
    };
    let b = rest.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() >= 19
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && &b[15..18] == b"Z-r"
        && digits(18..b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_files_are_ignored() {
        let t: k8s_openapi::jiff::Timestamp = "2026-11-22T07:30:05Z".parse().expect("time");
        let name = file_name("demo", t, 812);
        assert_eq!(name, "demo-20261122T073005Z-r812.db");
        assert!(is_snapshot_of("demo", &name));
        assert!(!is_snapshot_of("demo-2", &name));
        assert!(!is_snapshot_of("demo", "demo-2-20261122T073005Z-r812.db"));
        assert!(!is_snapshot_of(
            "demo",
            "demo-20261122T073005Z-r812.db.part"
        ));
        assert!(!is_snapshot_of("demo", "demo-20261122T073005Z-r.db"));
        assert!(!is_snapshot_of("demo", "notes.txt"));
    }
}
