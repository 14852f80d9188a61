//! A streaming upload of one snapshot: an [`AsyncWrite`] the etcd client writes the snapshot
//! into, committed only after the SHA-256 trailer checked out.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use object_store::WriteMultipart;
use tokio::io::AsyncWrite;

use super::crypto::Encryptor;
use super::integrity::{TrailerCheck, hex};
use super::{StoreError, Stored};

/// One snapshot being uploaded (see [`super::SnapshotStore::upload`]).
///
/// Write the snapshot stream into it (it is an [`AsyncWrite`]: pass `&mut upload` to the etcd
/// client's `snapshot_from`), then call [`Upload::commit`]: the object becomes visible only if
/// the stream ended with a matching SHA-256 trailer. On any failure call [`Upload::abort`] (or
/// drop it): the multipart upload is aborted and no object appears. Memory is bounded by the
/// store's part size times (concurrency + 1), whatever the snapshot's size.
pub struct Upload {
    name: String,
    location: String,
    writer: Option<WriteMultipart>,
    check: TrailerCheck,
    encryptor: Option<Encryptor>,
    key_id: Option<String>,
    scratch: Vec<u8>,
    max_concurrency: usize,
    stored: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("location", &self.location)
            .field("received", &self.check.total())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Upload {
    pub(crate) fn new(
        name: String,
        location: String,
        writer: WriteMultipart,
        encryptor: Option<Encryptor>,
        max_concurrency: usize,
    ) -> Self {
        let mut up = Upload {
            name,
            location,
            writer: Some(writer),
            check: TrailerCheck::default(),
            key_id: None,
            encryptor: None,
            scratch: Vec::new(),
            max_concurrency,
            stored: 0,
        };
        if let Some(enc) = encryptor {
            up.key_id = Some(hex(&enc.header()[8..24]));
            up.put(&enc.header().to_vec());
            up.encryptor = Some(enc);
        }
        up
    }

    fn put(&mut self, bytes: &[u8]) {
        if let Some(w) = self.writer.as_mut() {
            w.write(bytes);
            self.stored += bytes.len() as u64;
        }
    }

    /// Snapshot bytes received so far.
    pub fn received(&self) -> u64 {
        self.check.total()
    }

    /// Checks the SHA-256 trailer and, only if it matches, completes the upload: the object
    /// appears whole or not at all. A failed check or completion aborts the upload.
    pub async fn commit(mut self) -> Result<Stored, StoreError> {
        let Some(mut writer) = self.writer.take() else {
            return Err(StoreError::Finished(self.location.clone()));
        };
        let checked = std::mem::take(&mut self.check).finish();
        let (size, sha256) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        if let Some(enc) = self.encryptor.take() {
            let mut last = Vec::new();
            if let Err(e) = enc.finish(&mut last) {
                let _ = writer.abort().await;
                return Err(e);
            }
            writer.write(&last);
            self.stored += last.len() as u64;
        }
        writer
            .finish()
            .await
            .map_err(StoreError::store(format!("completing {}", self.location)))?;
        Ok(Stored {
            name: self.name.clone(),
            location: self.location.clone(),
            size,
            stored_size: self.stored,
            sha256: hex(&sha256),
            key_id: self.key_id.clone(),
        })
    }

    /// Aborts the upload: nothing is left visible. Errors from the store are returned but the
    /// upload is abandoned either way.
    pub async fn abort(mut self) -> Result<(), StoreError> {
        match self.writer.take() {
            Some(w) => w
                .abort()
                .await
                .map_err(StoreError::store(format!("aborting {}", self.location))),
            None => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Dropped without commit or abort (a cancelled task): abort in the background when a
        // runtime is there; otherwise the incomplete upload stays invisible until the store's
        // own clean-up (S3 lifecycle rules, GCS/Azure expiry of uncommitted parts).
        if let Some(w) = self.writer.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            drop(rt.spawn(async move {
                let _ = w.abort().await;
            }));
        }
    }
}

impl AsyncWrite for Upload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let max = this.max_concurrency;
        let Some(writer) = this.writer.as_mut() else {
            return Poll::Ready(Err(std::io::Error::other("the upload is already finished")));
        };
        // Back-pressure: wait while too many parts are in flight (bounds memory).
        ready!(writer.poll_for_capacity(cx, max)).map_err(std::io::Error::other)?;
        this.check.update(buf);
        match this.encryptor.as_mut() {
            Some(enc) => {
                this.scratch.clear();
                enc.push(buf, &mut this.scratch)
                    .map_err(std::io::Error::other)?;
                writer.write(&this.scratch);
                this.stored += this.scratch.len() as u64;
            }
            None => {
                writer.write(buf);
                this.stored += buf.len() as u64;
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Does not commit: the object is committed only by [`Upload::commit`].
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
