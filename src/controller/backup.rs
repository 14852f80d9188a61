//! Scheduled snapshots: where the files go (a [`SnapshotStore`]; [`LocalFolder`] for now), what
//! they are called, which are deleted.
//!
//! A snapshot of cluster `demo` taken at 2026-11-22 07:30:05 UTC from a member at revision 812
//! is `demo-20261122T073005Z-r812.db`. It is streamed to `<file>.part`, synced, and renamed to
//! its name only once the SHA-256 trailer checked out ([`crate::etcd::Client::snapshot_from_to_file`]),
//! so a `.db` file is always complete. Retention ([`retention_victims`], a pure function of the
//! file names) keeps the newest `keep` files of the cluster and never deletes the newest.

use std::path::PathBuf;

use crate::etcd::{self, Client};

/// Errors of a snapshot or its retention.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// etcd failed to send the snapshot, or it did not check out.
    #[error("streaming the snapshot from {endpoint}: {source}")]
    Etcd {
        /// The member's client URL.
        endpoint: String,
        /// The client's error.
        #[source]
        source: etcd::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

/// A snapshot file that was written completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Where it is ([`SnapshotStore::location`]).
    pub file: String,
    /// Its size in bytes (the trailer included).
    pub size: u64,
    /// The SHA-256 of the database bytes, hex.
    pub sha256: String,
    /// The member's revision when the snapshot started.
    pub revision: i64,
    /// The snapshots retention deleted (their locations).
    pub deleted: Vec<String>,
}

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

/// The files to delete so that the newest `keep` snapshot files of `cluster` remain, oldest
/// first. The newest is never among them (a `keep` of 0 counts as 1); names that are not the
/// cluster's snapshots are ignored. Names sort by time (fixed-width UTC timestamps).
pub fn retention_victims(cluster: &str, names: &[String], keep: u32) -> Vec<String> {
    let mut ours: Vec<&String> = names
        .iter()
        .filter(|n| is_snapshot_of(cluster, n))
        .collect();
    ours.sort();
    let keep = usize::try_from(keep.max(1)).unwrap_or(usize::MAX);
    let extra = ours.len().saturating_sub(keep);
    ours.into_iter().take(extra).cloned().collect()
}

/// Where snapshot files go: a local folder now, an object store later. A store holds complete
/// snapshots only (a snapshot is written under a temporary name and takes its name once
/// complete and checked), named by [`file_name`].
pub trait SnapshotStore {
    /// Where the snapshot `name` is, for the status and messages (a path, a URL).
    fn location(&self, name: &str) -> String;

    /// Streams a snapshot from the member at `endpoint` through `client` into the store as
    /// `name`, dropping what an earlier interrupted write of `cluster`'s snapshots left.
    fn write(
        &self,
        client: &Client,
        endpoint: &str,
        cluster: &str,
        name: &str,
    ) -> impl std::future::Future<Output = Result<etcd::maintenance::SnapshotInfo, BackupError>> + Send;

    /// The names of `cluster`'s snapshots in the store, oldest first.
    fn list(&self, cluster: &str) -> Result<Vec<String>, BackupError>;

    /// Deletes the snapshot `name`.
    fn delete(&self, name: &str) -> Result<(), BackupError>;
}

/// A [`SnapshotStore`] in a local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFolder {
    dir: PathBuf,
}

impl LocalFolder {
    /// The store in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalFolder { dir: dir.into() }
    }
}

impl SnapshotStore for LocalFolder {
    fn location(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    async fn write(
        &self,
        client: &Client,
        endpoint: &str,
        cluster: &str,
        name: &str,
    ) -> Result<etcd::maintenance::SnapshotInfo, BackupError> {
        let dir = &self.dir;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io(format!("creating {}", dir.display())))?;
        // A `.part` left by an operator that died mid-stream is never completed: drop it.
        if let Ok(mut entries) = tokio::fs::read_dir(dir).await {
            while let Ok(Some(e)) = entries.next_entry().await {
                let part = e.file_name();
                let part = part.to_string_lossy();
                if let Some(db) = part.strip_suffix(".part")
                    && is_snapshot_of(cluster, db)
                {
                    let _ = tokio::fs::remove_file(e.path()).await;
                }
            }
        }
        let info = client
            .snapshot_from_to_file(endpoint, &dir.join(name))
            .await
            .map_err(|source| BackupError::Etcd {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        // The rename is durable once the folder is synced (on a blocking thread).
        let d = tokio::fs::File::open(dir)
            .await
            .map_err(io(format!("syncing {}", dir.display())))?;
        d.sync_all()
            .await
            .map_err(io(format!("syncing {}", dir.display())))?;
        Ok(info)
    }

    fn list(&self, cluster: &str) -> Result<Vec<String>, BackupError> {
        let dir = &self.dir;
        let mut names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_snapshot_of(cluster, n))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(format!("listing {}", dir.display()))(e)),
        };
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<(), BackupError> {
        let path = self.dir.join(name);
        std::fs::remove_file(&path).map_err(io(format!("deleting {}", path.display())))
    }
}

/// Applies the retention to `cluster`'s snapshots in `store`: keeps the newest `keep`; answers
/// the locations of the deleted ones.
pub fn apply_retention(
    store: &impl SnapshotStore,
    cluster: &str,
    keep: u32,
) -> Result<Vec<String>, BackupError> {
    let names = store.list(cluster)?;
    let mut deleted = Vec::new();
    for victim in retention_victims(cluster, &names, keep) {
        store.delete(&victim)?;
        deleted.push(store.location(&victim));
    }
    Ok(deleted)
}

/// Takes a snapshot of `cluster` from the member at `endpoint` (observed at `revision`) into
/// `store`, then applies the retention.
pub async fn take(
    store: &(impl SnapshotStore + Sync),
    client: &Client,
    endpoint: &str,
    cluster: &str,
    revision: i64,
    keep: u32,
) -> Result<Taken, BackupError> {
    let name = file_name(cluster, k8s_openapi::jiff::Timestamp::now(), revision);
    let info = store.write(client, endpoint, cluster, &name).await?;
    let deleted = apply_retention(store, cluster, keep)?;
    Ok(Taken {
        file: store.location(&name),
        size: info.size,
        sha256: info.sha256.iter().map(|b| format!("{b:02x}")).collect(),
        revision: info.revision.unwrap_or(revision),
        deleted,
    })
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

    #[test]
    fn retention_keeps_the_newest() {
        let names: Vec<String> = [
            "demo-20261122T073005Z-r9.db",
            "demo-20261122T070000Z-r1.db",
            "other-20261122T060000Z-r1.db",
            "demo-20261122T071000Z-r5.db",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            retention_victims("demo", &names, 2),
            ["demo-20261122T070000Z-r1.db"]
        );
        assert_eq!(
            retention_victims("demo", &names, 1),
            ["demo-20261122T070000Z-r1.db", "demo-20261122T071000Z-r5.db"]
        );
        assert_eq!(retention_victims("demo", &names, 0).len(), 2);
        assert!(retention_victims("demo", &names, 3).is_empty());
    }
}
