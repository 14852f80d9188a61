//! The I/O of one scheduled snapshot: stream it from a member into the store's upload, commit
//! it (the store checks etcd's SHA-256 trailer first), then apply the retention.
//!
//! Nothing half-written stays: a failed or timed-out stream aborts the upload before the error
//! is returned (a local folder's staging file is removed then, not by a background task), and
//! staging files an operator killed mid-stream left in a local folder are removed before the
//! next snapshot. A committed snapshot is always reported (and so recorded in the status), even
//! when the retention after it fails.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::etcd::{self, Client};
use crate::snapshot_store::{SnapshotStore, StoreError, Stored};

use super::target::CredentialsError;
use super::{file_name, is_snapshot_of};

/// How long committing an upload (the last part, the completion request) may take.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the retention (a listing and the deletions) may take.
pub const RETENTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a snapshot was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A Secret the destination or the encryption needs is missing or unusable; no snapshot was
    /// attempted.
    #[error("{0}; no snapshot was attempted")]
    Credentials(#[source] CredentialsError),
    /// A Secret could not be read (no permission, the API unreachable).
    #[error("reading Secret {name}: {source}; no snapshot was attempted")]
    SecretRead {
        /// The Secret.
        name: String,
        /// The runtime's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// This runtime cannot use the destination the spec asks for.
    #[error("{0}")]
    Unsupported(String),
    /// The store could not be opened, written, committed or read.
    #[error("{0}")]
    Store(#[source] StoreError),
    /// etcd failed to send the snapshot (the upload was aborted: nothing was stored).
    #[error("streaming the snapshot from {endpoint}: {source}; nothing was stored")]
    Etcd {
        /// The member's client URL.
        endpoint: String,
        /// The client's error.
        #[source]
        source: etcd::Error,
    },
    /// The stream or the commit took too long (the upload was aborted: nothing was stored).
    #[error("{what} took longer than {timeout:?}; nothing was stored")]
    Timeout {
        /// What was cut.
        what: &'static str,
        /// The bound.
        timeout: Duration,
    },
}

impl From<super::OpenError> for BackupError {
    fn from(e: super::OpenError) -> Self {
        match e {
            super::OpenError::Credentials(c) => BackupError::Credentials(c),
            super::OpenError::SecretRead { name, source } => {
                BackupError::SecretRead { name, source }
            }
            super::OpenError::Store(s) => BackupError::Store(s),
        }
    }
}

/// A snapshot that was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The object as committed.
    pub stored: Stored,
    /// Where it is, for the status: the file's path in a local folder, else the store's URL.
    pub location: String,
    /// The member's revision when the snapshot started.
    pub revision: i64,
    /// The member's etcd version (as it sent it, or as observed).
    pub etcd_version: Option<String>,
    /// How long streaming and committing took.
    pub duration: Duration,
    /// The snapshots retention deleted (names).
    pub deleted: Vec<String>,
    /// Why the retention failed, when it did (the snapshot is stored all the same).
    pub retention_error: Option<String>,
}

/// What one snapshot is taken from and kept as.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The member's client URL.
    pub endpoint: &'a str,
    /// The cluster (the snapshot names' prefix).
    pub cluster: &'a str,
    /// The member's revision as observed.
    pub revision: i64,
    /// The member's version as observed.
    pub version: Option<&'a str>,
}

/// Removes what an interrupted write of `cluster`'s snapshots left in the folder `dir`: the
/// `.part` files of earlier versions and the store's `<name>#<n>` staging files.
pub fn remove_leftovers(dir: &Path, cluster: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let staged = name
            .rsplit_once('#')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .map(|(base, _)| base);
        let base = name.strip_suffix(".part").or(staged);
        if base.is_some_and(|b| is_snapshot_of(cluster, b)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Streams a snapshot from `source` into `store`, commits it, and keeps the newest `keep` of
/// the cluster's snapshots. `stream_timeout` bounds the stream; `local_dir` is the folder of a
/// local store (its leftovers are removed first, and the status names the file by its path).
pub async fn take(
    store: &SnapshotStore,
    client: &Client,
    source: Source<'_>,
    keep: u32,
    stream_timeout: Duration,
    local_dir: Option<&Path>,
) -> Result<Taken, BackupError> {
    if let Some(dir) = local_dir {
        // Folder listing and deletions on a blocking thread, not the pass's.
        let (dir, cluster) = (dir.to_path_buf(), source.cluster.to_owned());
        let _ = tokio::task::spawn_blocking(move || remove_leftovers(&dir, &cluster)).await;
    }
    let started = Instant::now();
    let name = file_name(
        source.cluster,
        k8s_openapi::jiff::Timestamp::now(),
        source.revision,
    );
    let mut upload = store.upload(&name).await.map_err(BackupError::Store)?;
    let streamed = tokio::time::timeout(
        stream_timeout,
        client.snapshot_from(source.endpoint, &mut upload),
    )
    .await;
    let info = match streamed {
        Ok(Ok(info)) => info,
        failed => {
            // Abort here, not in a background task: nothing is left once the error is reported.
            if let Err(e) = upload.abort().await {
                tracing::warn!("aborting the upload of {name}: {e}");
            }
            return Err(match failed {
                Ok(Err(e)) => BackupError::Etcd {
                    endpoint: source.endpoint.to_owned(),
                    source: e,
                },
                _ => BackupError::Timeout {
                    what: "streaming the snapshot",
                    timeout: stream_timeout,
                },
            });
        }
    };
    let stored = tokio::time::timeout(COMMIT_TIMEOUT, upload.commit())
        .await
        .map_err(|_| BackupError::Timeout {
            what: "committing the snapshot",
            timeout: COMMIT_TIMEOUT,
        })?
        .map_err(BackupError::Store)?;
    let duration = started.elapsed();
    let cluster = source.cluster;
    let retention = tokio::time::timeout(
        RETENTION_TIMEOUT,
        store.retain_newest(usize::try_from(keep.max(1)).unwrap_or(1), |n| {
            is_snapshot_of(cluster, n)
        }),
    )
    .await;
    let (deleted, retention_error) = match retention {
        Ok(Ok(deleted)) => (deleted, None),
        Ok(Err(e)) => (Vec::new(), Some(format!("retention: {e}"))),
        Err(_) => (
            Vec::new(),
            Some(format!("retention took longer than {RETENTION_TIMEOUT:?}")),
        ),
    };
    let location = match local_dir {
        Some(dir) => dir.join(&stored.name).display().to_string(),
        None => stored.location.clone(),
    };
    Ok(Taken {
        location,
        revision: info.revision.unwrap_or(source.revision),
        etcd_version: info.version.or_else(|| source.version.map(str::to_owned)),
        duration,
        deleted,
        retention_error,
        stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_the_cluster_only_are_removed() {
        let dir = std::env::temp_dir().join(format!("eo-leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let keep = [
            "demo-20261122T073005Z-r812.db",
            "other-20261122T073005Z-r1.db.part",
            "demo-20261122T073005Z-r812.db#x",
            "notes.txt",
        ];
        let gone = [
            "demo-20261122T073005Z-r9.db.part",
            "demo-20261122T073005Z-r10.db#1",
        ];
        for n in keep.iter().chain(gone.iter()) {
            std::fs::write(dir.join(n), b"x").expect("write");
        }
        remove_leftovers(&dir, "demo");
        for n in keep {
            assert!(dir.join(n).exists(), "{n} was removed");
        }
        for n in gone {
            assert!(!dir.join(n).exists(), "{n} was left");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
