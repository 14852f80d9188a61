//! Restores from a store: which object a restore reads ([`newest_snapshot`], pure, and
//! [`resolve_object`], one listing), what it is handed to the runtime as ([`RestoreSnapshot`]),
//! and why it could not start ([`RestoreError`]).

use std::path::Path;

use crate::snapshot_store::{ObjectInfo, SnapshotStore, StoreError};

use super::target::{BackupTarget, CredentialsError};

/// Why the store of a backup or restore could not be opened (a Secret is missing or unusable,
/// unreadable, or the store's configuration is refused).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A Secret the store or the encryption needs is missing or unusable.
    #[error("{0}")]
    Credentials(#[source] CredentialsError),
    /// A Secret could not be read (no permission, the API unreachable).
    #[error("reading Secret {name}: {source}")]
    SecretRead {
        /// The Secret (`namespace/name`).
        name: String,
        /// The runtime's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[source] StoreError),
}

/// Why a restore from a store did not start. Nothing of the cluster was created.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store could not be opened.
    #[error("{0}")]
    Open(#[from] OpenError),
    /// The store could not be listed or read, or the object is not a usable snapshot (missing,
    /// corrupt, encrypted with another key or without one given).
    #[error("{0}")]
    Store(#[source] StoreError),
    /// The object named in `spec.bootstrap.restore.object` is not in the store.
    #[error("snapshot {location} does not exist")]
    NoObject {
        /// Where it was looked for.
        location: String,
    },
    /// No object was named and the store holds no snapshot of the cluster.
    #[error("no snapshot of cluster {cluster} in {location}")]
    NoSnapshot {
        /// The cluster whose snapshots were looked for.
        cluster: String,
        /// The store and prefix listed.
        location: String,
    },
    /// The step has a store source but no store was opened (never planned so).
    #[error("no store was opened for the restore")]
    NoStore,
}

/// The snapshot a restore reads, as the act layer hands it to the runtime.
#[derive(Debug, Clone, Copy)]
pub enum RestoreSnapshot<'a> {
    /// A file the operator can read.
    File(&'a Path),
    /// An object in a store, its name resolved (listed, so it exists when the step starts).
    Store {
        /// The opened store (credentials and key read, decrypting).
        store: &'a SnapshotStore,
        /// The spec's reading of the store (the Secrets' names, for runtimes that fetch it
        /// elsewhere).
        target: &'a BackupTarget,
        /// The object's name under the prefix.
        object: &'a str,
    },
}

/// The newest snapshot of `cluster` among `objects` (names sort by time: the largest name of
/// the cluster's snapshots), if any.
pub fn newest_snapshot<'a>(cluster: &str, objects: &'a [ObjectInfo]) -> Option<&'a str> {
    objects
        .iter()
        .map(|o| o.name.as_str())
        .filter(|n| super::is_snapshot_of(cluster, n))
        .max()
}

/// The object a restore reads: `object` when it is in the store, else the newest snapshot of
/// `cluster` there.
pub async fn resolve_object(
    store: &SnapshotStore,
    object: Option<&str>,
    cluster: &str,
) -> Result<String, RestoreError> {
    let objects = store.list().await.map_err(RestoreError::Store)?;
    match object {
        Some(name) if objects.iter().any(|o| o.name == name) => Ok(name.to_owned()),
        Some(name) => Err(RestoreError::NoObject {
            location: store.location(name),
        }),
        None => newest_snapshot(cluster, &objects)
            .map(str::to_owned)
            .ok_or_else(|| RestoreError::NoSnapshot {
                cluster: cluster.to_owned(),
                location: store.location(""),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn info(name: &str) -> ObjectInfo {
        ObjectInfo {
            name: name.to_owned(),
            location: format!("s3://b/{name}"),
            size: 1,
            last_modified: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn newest_snapshot_of_the_cluster_only() {
        let objects = [
            info("demo-20261122T073005Z-r812.db"),
            info("demo-20261122T083005Z-r900.db"),
            info("demo-2-20261123T000000Z-r5.db"),
            info("demo-zz.db"),
            info("other-20271122T083005Z-r1.db"),
        ];
        assert_eq!(
            newest_snapshot("demo", &objects),
            Some("demo-20261122T083005Z-r900.db")
        );
        assert_eq!(
            newest_snapshot("demo-2", &objects),
            Some("demo-2-20261123T000000Z-r5.db")
        );
        assert_eq!(newest_snapshot("nope", &objects), None);
        assert_eq!(newest_snapshot("demo", &[]), None);
    }
}
