//! The state directory: what the local runtime remembers across restarts.
//!
//! ```text
//! <state-dir>/<namespace>/<name>/cluster.yaml        ports and token, chosen once
//! <state-dir>/<namespace>/<name>/intent.yaml         the step in flight (absent when none)
//! <state-dir>/<namespace>/<name>/status.yaml         the last status written
//! <state-dir>/<namespace>/<name>/members/<ordinal>/member.yaml   how the member is started
//! <state-dir>/<namespace>/<name>/members/<ordinal>/data/         etcd's data directory
//! <state-dir>/<namespace>/<name>/members/<ordinal>/etcd.log      etcd's output
//! <state-dir>/<namespace>/<name>/members/<ordinal>/pid           the running process
//! ```
//!
//! Every file is written to a temporary name, synced and renamed, so a crash never leaves a
//! half-written record.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::controller::intent::StoredIntent;
use crate::controller::plan::Intent;

use super::LocalError;
use super::ports::{Allocator, PORTS_PER_CLUSTER};

/// A cluster's block of loopback ports and its `--initial-cluster-token`, written once, when the
/// cluster is first seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBlock {
    /// Member `o` listens for clients on `clientBasePort + o`.
    pub client_base_port: u16,
    /// Member `o` listens for peers on `peerBasePort + o`.
    pub peer_base_port: u16,
    /// The `--initial-cluster-token` of this incarnation.
    pub token: String,
    /// Members serve clients over TLS (`spec.tls.client.enabled` when the cluster was created;
    /// fixed from then on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_tls: bool,
    /// Members talk to each other over TLS (`spec.tls.peer.enabled` at creation).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peer_tls: bool,
}

impl PortBlock {
    fn scheme(tls: bool) -> &'static str {
        if tls { "https" } else { "http" }
    }

    /// The client URL of an ordinal.
    pub fn client_url(&self, ordinal: u32) -> String {
        format!(
            "{}://127.0.0.1:{}",
            Self::scheme(self.client_tls),
            port(self.client_base_port, ordinal)
        )
    }

    /// The peer URL of an ordinal.
    pub fn peer_url(&self, ordinal: u32) -> String {
        format!(
            "{}://127.0.0.1:{}",
            Self::scheme(self.peer_tls),
            port(self.peer_base_port, ordinal)
        )
    }

    /// The planner's peer URL template for these ports.
    pub fn peer_url_template(&self) -> String {
        format!(
            "{}://127.0.0.1:{{port:{}}}",
            Self::scheme(self.peer_tls),
            self.peer_base_port
        )
    }
}

fn port(base: u16, ordinal: u32) -> u32 {
    u32::from(base) + ordinal
}

/// How a member is started; written when the member is created and when it is restarted on a
/// new version or configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberRecord {
    /// The etcd version it runs.
    pub version: String,
    /// The configuration hash it was started with.
    pub config_hash: String,
    /// `new` for the seed, `existing` for a member that joins.
    pub initial_cluster_state: String,
    /// The `--initial-cluster` it was created with.
    pub initial_cluster: String,
    /// Whether etcd has written its data directory at least once; from then on a missing data
    /// directory means the data is lost, and the member is never started on an empty one.
    #[serde(default)]
    pub initialized: bool,
    /// The option flags (from `spec.etcd`) it runs with.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// The files of one cluster.
#[derive(Debug, Clone)]
pub struct StateFolder {
    root: PathBuf,
}

impl StateFolder {
    /// The folder of `namespace/name` under `state_dir`.
    pub fn new(state_dir: &Path, namespace: &str, name: &str) -> Self {
        Self {
            root: state_dir.join(namespace).join(name),
        }
    }

    /// The cluster's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `status.yaml`.
    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.yaml")
    }

    /// The folder of member `ordinal`.
    pub fn member_dir(&self, ordinal: u32) -> PathBuf {
        self.root.join("members").join(ordinal.to_string())
    }

    /// The data directory of member `ordinal`.
    pub fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.member_dir(ordinal).join("data")
    }

    /// Whether etcd's data of `ordinal` exists (its `member` folder).
    pub fn has_data(&self, ordinal: u32) -> bool {
        self.data_dir(ordinal).join("member").is_dir()
    }

    /// Reads `cluster.yaml`, or chooses a free block of ports with `ports` (under its locks,
    /// see [`super::ports`]) and a token and writes it, with the TLS of `tls` (client, peer).
    /// Blocks: call it from a blocking thread.
    pub fn load_or_create_record(
        &self,
        state_dir: &Path,
        ports: &Allocator,
        namespace: &str,
        name: &str,
        tls: (bool, bool),
    ) -> Result<PortBlock, LocalError> {
        let path = self.root.join("cluster.yaml");
        ports.load_or_allocate(state_dir, &path, |base| {
            let suffix: u32 = rand::rng().random();
            PortBlock {
                client_base_port: base,
                peer_base_port: base + PORTS_PER_CLUSTER / 2,
                token: format!("{namespace}-{name}-{suffix:08x}"),
                client_tls: tls.0,
                peer_tls: tls.1,
            }
        })
    }

    /// The ordinals that have a member folder, ascending.
    pub fn member_ordinals(&self) -> Result<Vec<u32>, LocalError> {
        let dir = self.root.join("members");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LocalError::io(format!("reading {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| LocalError::io(format!("reading {}", dir.display()), e))?;
            if let Some(o) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
                && entry.path().join("member.yaml").is_file()
            {
                out.push(o);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Reads the record of member `ordinal`.
    pub fn read_member(&self, ordinal: u32) -> Result<MemberRecord, LocalError> {
        read_yaml(&self.member_dir(ordinal).join("member.yaml"))
    }

    /// Writes the record of member `ordinal`, creating its folder.
    pub fn write_member(&self, ordinal: u32, record: &MemberRecord) -> Result<(), LocalError> {
        write_yaml(&self.member_dir(ordinal).join("member.yaml"), record)
    }

    /// Deletes member `ordinal`'s folder with its data.
    pub fn delete_member(&self, ordinal: u32) -> Result<(), LocalError> {
        let dir = self.member_dir(ordinal);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::io(format!("deleting {}", dir.display()), e)),
        }
    }

    /// The recorded intent, if any.
    pub fn read_intent(&self) -> Result<Option<Intent>, LocalError> {
        let path = self.root.join("intent.yaml");
        if !path.exists() {
            return Ok(None);
        }
        let stored: StoredIntent = read_yaml(&path)?;
        match stored.into_intent() {
            Some(i) => Ok(Some(i)),
            None => Err(LocalError::Corrupt(format!(
                "{}: a member ID is not hexadecimal",
                path.display()
            ))),
        }
    }

    /// Records (or with `None` removes) the intent, durably.
    pub fn write_intent(&self, intent: Option<&Intent>) -> Result<(), LocalError> {
        let path = self.root.join("intent.yaml");
        match intent {
            Some(i) => write_yaml(&path, &StoredIntent::from(i)),
            None => match std::fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.root),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(LocalError::io(format!("removing {}", path.display()), e)),
            },
        }
    }
}

/// Runs blocking file work (writes, fsyncs, deletions of data directories) on tokio's blocking
/// threads, so that no cluster's task, and no other cluster sharing its thread, waits on the
/// disk. `f` must not spawn processes (see [`super::run`]).
pub async fn blocking<T: Send + 'static>(
    context: &str,
    f: impl FnOnce() -> Result<T, LocalError> + Send + 'static,
) -> Result<T, LocalError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LocalError::Task {
            context: context.to_owned(),
            reason: e.to_string(),
        })?
}

/// Reads a YAML file.
pub fn read_yaml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LocalError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LocalError::io(format!("reading {}", path.display()), e))?;
    serde_saphyr::from_str(&text)
        .map_err(|e| LocalError::Corrupt(format!("{}: {e}", path.display())))
}

/// Writes a YAML file atomically (temporary file, fsync, rename, fsync of the folder).
pub fn write_yaml<T: Serialize>(path: &Path, value: &T) -> Result<(), LocalError> {
    let text = serde_saphyr::to_string(value)
        .map_err(|e| LocalError::Corrupt(format!("serializing {}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` through a temporary file and a rename, without syncing: a reader
/// never sees half a file, but a power loss may lose it (for advisory files such as pid files).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let tmp = path.with_extension("tmp");
    let io = |e| LocalError::io(format!("writing {}", path.display()), e);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension("tmp");
    let io = |e| LocalError::io(format!("writing {}", path.display()), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), LocalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LocalError::io(format!("syncing {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip_through_yaml() {
        let i = Intent::RemoveMember {
            ordinal: 1,
            member_id: u64::MAX,
        };
        let text = serde_saphyr::to_string(&StoredIntent::from(&i)).expect("yaml");
        assert!(text.contains("ffffffffffffffff"), "{text}");
        let back: StoredIntent = serde_saphyr::from_str(&text).expect("parse");
        assert_eq!(back.into_intent(), Some(i));
    }
}
