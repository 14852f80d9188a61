//! Snapshot stores: where backups go. One type, [`SnapshotStore`], over S3 and S3-compatible
//! servers, Google Cloud Storage, Azure Blob Storage and a local folder (a PVC in a Pod), built
//! on the `object_store` crate's one trait for all of them.
//!
//! - [`StoreConfig`]: the destination (bucket/container/folder, prefix, endpoint, region,
//!   path style) and [`Credentials`] (redacted in `Debug`).
//! - [`SnapshotStore::upload`]: a streaming, multipart [`Upload`] the etcd client writes the
//!   snapshot into; [`Upload::commit`] checks etcd's SHA-256 trailer before completing it, so a
//!   cut or corrupt stream leaves no object. Memory is bounded ([`SnapshotStore::memory_bound`]).
//! - Optional client-side encryption ([`EncryptionKey`], AES-256-GCM in authenticated chunks,
//!   see [`crypto`]); reads decrypt, a wrong key is [`StoreError::WrongKey`].
//! - [`SnapshotStore::list`], [`SnapshotStore::get`] (a stream),
//!   [`SnapshotStore::download_to_file`] (checked, `.part` + rename), [`SnapshotStore::delete`]
//!   and [`SnapshotStore::retain_newest`] for retention.

pub mod config;
pub mod crypto;
mod error;
pub mod integrity;
mod open;
mod upload;

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

pub use config::{Credentials, Destination, Secret, StoreConfig};
pub use crypto::EncryptionKey;
pub use error::StoreError;
pub use upload::Upload;

use crypto::{Decryptor, Encryptor};
use integrity::{TrailerCheck, hex};

/// Default multipart part size: 8 MiB (S3 wants at least 5 MiB for every part but the last).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Default number of parts uploaded at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// A snapshot committed to a store: what a backup's status records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The object's name inside the store's prefix (e.g. `demo-20261122T073005Z-r812.db`).
    pub name: String,
    /// Where it is, as a URL without credentials (e.g. `s3://bucket/prefix/demo-….db`).
    pub location: String,
    /// Snapshot bytes (the database and its 32-byte SHA-256 trailer, as `etcdctl snapshot save`
    /// writes them).
    pub size: u64,
    /// Bytes stored (larger than `size` when encrypted).
    pub stored_size: u64,
    /// Hex SHA-256 of the database, checked against etcd's trailer.
    pub sha256: String,
    /// The id of the encryption key, when encrypted.
    pub key_id: Option<String>,
}

/// An object in a store, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The name inside the store's prefix.
    pub name: String,
    /// Where it is (URL without credentials).
    pub location: String,
    /// Bytes stored.
    pub size: u64,
    /// When it was last written.
    pub last_modified: SystemTime,
}

/// A snapshot read back to a file by [`SnapshotStore::download_to_file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// Snapshot bytes written (trailer included).
    pub size: u64,
    /// Hex SHA-256 of the database (checked against the trailer).
    pub sha256: String,
    /// The key id recorded in the object, when it was encrypted.
    pub key_id: Option<String>,
}

/// A place to put snapshots: one of the [`Destination`]s, under a prefix, optionally encrypting.
/// Cheap to clone.
#[derive(Clone)]
pub struct SnapshotStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    base_url: String,
    key: Option<EncryptionKey>,
    part_size: usize,
    concurrency: usize,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("url", &self.base_url)
            .field("prefix", &self.prefix.as_ref())
            .field("key", &self.key)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// Checks an object name: one non-empty path segment without `/`, `\`, `#`, or a leading `.`.
fn check_name(name: &str) -> Result<(), StoreError> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\', '#'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(StoreError::Config(format!(
            "invalid snapshot object name {name:?}: one path segment, no '/', '\\', '#' or leading '.'"
        )));
    }
    Ok(())
}

impl SnapshotStore {
    /// Opens the store `config` describes. No request is made: a bad bucket or credential shows
    /// on the first operation.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let store = open::build(config)?;
        let prefix: Path = config
            .prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/")
            .into();
        let mut base_url = config.destination.url();
        if !prefix.as_ref().is_empty() {
            base_url = format!("{}/{}", base_url.trim_end_matches('/'), prefix.as_ref());
        }
        Ok(SnapshotStore {
            store,
            prefix,
            base_url,
            key: None,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
        })
    }

    /// Encrypts what is uploaded from now on, and decrypts with this key on reads.
    pub fn with_encryption(mut self, key: EncryptionKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the multipart part size (at least 5 MiB for S3) and how many parts go at once.
    pub fn with_parts(mut self, part_size: usize, concurrency: usize) -> Self {
        self.part_size = part_size.max(1);
        self.concurrency = concurrency.max(1);
        self
    }

    /// The most snapshot bytes one upload holds in memory: the part being filled plus the parts
    /// in flight (40 MiB with the defaults).
    pub fn memory_bound(&self) -> usize {
        self.part_size * (self.concurrency + 1)
    }

    /// The encryption key's id, when uploads are encrypted.
    pub fn key_id(&self) -> Option<String> {
        self.key.as_ref().map(EncryptionKey::id)
    }

    /// Where the object `name` is (a URL without credentials).
    pub fn location(&self, name: &str) -> String {
        format!("{}/{}", self.base_url.trim_end_matches('/'), name)
    }

    fn path(&self, name: &str) -> Result<Path, StoreError> {
        check_name(name)?;
        Ok(self.prefix.clone().join(name))
    }

    /// Starts the upload of the snapshot `name` (nothing is visible until [`Upload::commit`];
    /// no request is made before the first part is full).
    pub async fn upload(&self, name: &str) -> Result<Upload, StoreError> {
        let path = self.path(name)?;
        let encryptor = self.key.as_ref().map(Encryptor::new);
        Ok(Upload::new(
            name.to_string(),
            self.location(name),
            self.store.clone(),
            path,
            (self.part_size, self.concurrency),
            encryptor,
        ))
    }

    /// The objects directly under the prefix, sorted by name (incomplete uploads are not
    /// objects and are not listed).
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(StoreError::store(format!("listing {}", self.base_url)))?;
        let mut out: Vec<ObjectInfo> = listed
            .objects
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?.to_string();
                Some(ObjectInfo {
                    location: self.location(&name),
                    name,
                    size: m.size,
                    last_modified: m.last_modified.into(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The snapshot `name` as a stream of bytes, decrypted when it was encrypted (a wrong or
    /// missing key, a changed or truncated object end the stream with an error). The bytes
    /// are not checked against the trailer here: [`SnapshotStore::download_to_file`] does that.
    pub async fn get(
        &self,
        name: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let path = self.path(name)?;
        let location = self.location(name);
        let got = self
            .store
            .get(&path)
            .await
            .map_err(StoreError::store(location.clone()))?;
        let raw = got.into_stream();
        let state = (raw, Some(Decryptor::new(self.key.clone())), location);
        let stream = futures::stream::unfold(state, |(mut raw, mut dec, location)| async move {
            loop {
                // `None`: the object ended (or failed) and the decryptor is finished.
                let mut current = dec.take()?;
                let mut out = Vec::new();
                let step = match raw.next().await {
                    Some(Ok(chunk)) => current.push(&chunk, &mut out).map(|()| Some(current)),
                    Some(Err(e)) => Err(StoreError::store(format!("reading {location}"))(e)),
                    None => current.finish(&mut out).map(|()| None),
                };
                match step {
                    Err(e) => return Some((Err(e), (raw, None, location))),
                    Ok(next) => {
                        dec = next;
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (raw, dec, location)));
                        }
                    }
                }
            }
        });
        Ok(stream.boxed())
    }

    /// Reads the snapshot `name` into the file `dest` (via `dest.part`, synced and renamed only
    /// when the object decrypted and its SHA-256 trailer matched; removed on error).
    pub async fn download_to_file(
        &self,
        name: &str,
        dest: impl AsRef<FsPath>,
    ) -> Result<Downloaded, StoreError> {
        let dest = dest.as_ref();
        let mut part = dest.as_os_str().to_owned();
        part.push(".part");
        let part = std::path::PathBuf::from(part);
        let result = self.download_checked(name, &part, dest).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }

    async fn download_checked(
        &self,
        name: &str,
        part: &FsPath,
        dest: &FsPath,
    ) -> Result<Downloaded, StoreError> {
        let path = self.path(name)?;
        let location = self.location(name);
        let mut raw = self
            .store
            .get(&path)
            .await
            .map_err(StoreError::store(location.clone()))?
            .into_stream();
        let mut f = tokio::fs::File::create(part)
            .await
            .map_err(StoreError::io(format!("creating {}", part.display())))?;
        let mut dec = Decryptor::new(self.key.clone());
        let mut check = TrailerCheck::default();
        let mut out = Vec::new();
        let mut key_id = None;
        loop {
            out.clear();
            let more = match raw.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(StoreError::store(format!("reading {location}")))?;
                    dec.push(&chunk, &mut out)?;
                    key_id = key_id.or_else(|| dec.key_id());
                    true
                }
                None => false,
            };
            if !more {
                std::mem::replace(&mut dec, Decryptor::new(None)).finish(&mut out)?;
            }
            check.update(&out);
            f.write_all(&out)
                .await
                .map_err(StoreError::io(format!("writing {}", part.display())))?;
            if !more {
                break;
            }
        }
        let (size, sha) = check.finish()?;
        f.sync_all()
            .await
            .map_err(StoreError::io(format!("syncing {}", part.display())))?;
        drop(f);
        tokio::fs::rename(part, dest)
            .await
            .map_err(StoreError::io(format!("renaming to {}", dest.display())))?;
        Ok(Downloaded {
            size,
            sha256: hex(&sha),
            key_id,
        })
    }

    /// Deletes the object `name`; deleting a missing object is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::store(format!(
                "deleting {}",
                self.location(name)
            ))(e)),
        }
    }

    /// Retention: of the objects whose name `belongs` (e.g. one cluster's snapshots), keeps the
    /// `keep` newest by name (snapshot names sort by time) and deletes the rest, oldest first.
    /// Returns the names deleted. `keep == 0` deletes nothing (no retention).
    pub async fn retain_newest(
        &self,
        keep: usize,
        belongs: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        if keep == 0 {
            return Ok(Vec::new());
        }
        let names: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .map(|o| o.name)
            .filter(|n| belongs(n))
            .collect();
        let victims = names[..names.len().saturating_sub(keep)].to_vec();
        for v in &victims {
            self.delete(v).await?;
        }
        Ok(victims)
    }
}

#[cfg(test)]
mod tests;
