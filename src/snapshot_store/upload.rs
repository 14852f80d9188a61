//! A streaming upload of one snapshot: an [`AsyncWrite`] the etcd client writes the snapshot
//! into, committed only after the SHA-256 trailer checked out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncWrite;

use super::crypto::Encryptor;
use super::integrity::{TrailerCheck, hex};
use super::{StoreError, Stored};

type Starting = BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>;

/// Where the bytes go: a snapshot that fits in one part is held and sent with one request at
/// commit; a larger one switches to a multipart upload (and stays in it).
enum Sink {
    /// Everything so far fits in one part.
    Held(Vec<u8>),
    /// Past one part: the multipart upload is being started; the held bytes go first.
    Starting(Starting, Vec<u8>),
    /// A multipart upload in progress.
    Parts(WriteMultipart),
    /// Committed or aborted.
    Done,
}

/// One snapshot being uploaded (see [`super::SnapshotStore::upload`]).
///
/// Write the snapshot stream into it (it is an [`AsyncWrite`]: pass `&mut upload` to the etcd
/// client's `snapshot_from`), then call [`Upload::commit`]: the object becomes visible only if
/// the stream ended with a matching SHA-256 trailer. On any failure call [`Upload::abort`] (or
/// drop it): the multipart upload is aborted and no object appears. A snapshot no larger than
/// one part is sent with a single request at commit. Memory is bounded by the store's part size
/// times (concurrency + 1), whatever the snapshot's size.
pub struct Upload {
    name: String,
    location: String,
    store: Arc<dyn ObjectStore>,
    path: Path,
    part_size: usize,
    sink: Sink,
    check: TrailerCheck,
    encryptor: Option<Encryptor>,
    key_id: Option<String>,
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
        store: Arc<dyn ObjectStore>,
        path: Path,
        (part_size, max_concurrency): (usize, usize),
        encryptor: Option<Encryptor>,
    ) -> Self {
        let mut held = Vec::new();
        let key_id = encryptor.as_ref().map(|enc| {
            held.extend_from_slice(enc.header());
            hex(&enc.header()[8..24])
        });
        Upload {
            name,
            location,
            store,
            path,
            part_size,
            stored: held.len() as u64,
            sink: Sink::Held(held),
            check: TrailerCheck::default(),
            encryptor,
            key_id,
            max_concurrency,
        }
    }

    /// Snapshot bytes received so far.
    pub fn received(&self) -> u64 {
        self.check.total()
    }

    /// Checks the SHA-256 trailer and, only if it matches, completes the upload: the object
    /// appears whole or not at all. A failed check or completion aborts the upload.
    pub async fn commit(mut self) -> Result<Stored, StoreError> {
        let sink = std::mem::replace(&mut self.sink, Sink::Done);
        let sink = match sink {
            Sink::Done => return Err(StoreError::Finished(self.location.clone())),
            // Not reachable after a completed write, but finish the start to abort cleanly.
            Sink::Starting(fut, held) => match fut.await {
                Ok(mp) => {
                    let mut w = WriteMultipart::new_with_chunk_size(mp, self.part_size);
                    w.write(&held);
                    Sink::Parts(w)
                }
                Err(e) => {
                    return Err(StoreError::store(format!(
                        "starting the upload of {}",
                        self.location
                    ))(e));
                }
            },
            other => other,
        };
        let mut last = Vec::new();
        let checked =
            std::mem::take(&mut self.check)
                .finish()
                .and_then(|ok| match self.encryptor.take() {
                    Some(enc) => enc.finish(&mut last).map(|()| ok),
                    None => Ok(ok),
                });
        let (size, sha256) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                if let Sink::Parts(w) = sink {
                    let _ = w.abort().await;
                }
                return Err(e);
            }
        };
        self.stored += last.len() as u64;
        let context = format!("completing {}", self.location);
        match sink {
            Sink::Held(mut held) => {
                held.extend_from_slice(&last);
                self.store
                    .put(&self.path, PutPayload::from(held))
                    .await
                    .map_err(StoreError::store(context))?;
            }
            Sink::Parts(mut w) => {
                w.write(&last);
                w.finish().await.map_err(StoreError::store(context))?;
            }
            Sink::Starting(..) | Sink::Done => {
                return Err(StoreError::Finished(self.location.clone()));
            }
        }
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
        let context = format!("aborting {}", self.location);
        match std::mem::replace(&mut self.sink, Sink::Done) {
            Sink::Parts(w) => w.abort().await.map_err(StoreError::store(context)),
            Sink::Starting(fut, _) => match fut.await {
                Ok(mut mp) => mp.abort().await.map_err(StoreError::store(context)),
                Err(_) => Ok(()),
            },
            Sink::Held(_) | Sink::Done => Ok(()),
        }
    }

    /// Hashes, encrypts if asked, and hands `buf` to the sink (which is `Held` or `Parts`).
    fn accept(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.check.update(buf);
        let mut scratch;
        let bytes = match self.encryptor.as_mut() {
            Some(enc) => {
                scratch = Vec::with_capacity(buf.len() + 64);
                enc.push(buf, &mut scratch).map_err(std::io::Error::other)?;
                &scratch[..]
            }
            None => buf,
        };
        self.stored += bytes.len() as u64;
        match &mut self.sink {
            Sink::Held(held) => held.extend_from_slice(bytes),
            Sink::Parts(w) => w.write(bytes),
            Sink::Starting(..) | Sink::Done => {
                return Err(std::io::Error::other("the upload is not writable"));
            }
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Dropped without commit or abort (a cancelled task): abort in the background when a
        // runtime is there; otherwise the incomplete upload stays invisible until the store's
        // own clean-up (S3 lifecycle rules, GCS/Azure expiry of uncommitted parts).
        let sink = std::mem::replace(&mut self.sink, Sink::Done);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match sink {
            Sink::Parts(w) => drop(rt.spawn(async move {
                let _ = w.abort().await;
            })),
            Sink::Starting(fut, _) => drop(rt.spawn(async move {
                if let Ok(mut mp) = fut.await {
                    let _ = mp.abort().await;
                }
            })),
            Sink::Held(_) | Sink::Done => {}
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
        loop {
            match &mut this.sink {
                Sink::Held(held) if held.len() + buf.len() <= this.part_size => break,
                Sink::Held(held) => {
                    // Past one part: start the multipart upload, the held bytes go first.
                    let held = std::mem::take(held);
                    let (store, path) = (this.store.clone(), this.path.clone());
                    let fut = async move { store.put_multipart(&path).await }.boxed();
                    this.sink = Sink::Starting(fut, held);
                }
                Sink::Starting(fut, held) => {
                    let started = ready!(fut.poll_unpin(cx));
                    let held = std::mem::take(held);
                    // The future is spent either way: never poll it again.
                    this.sink = Sink::Done;
                    let mut w = WriteMultipart::new_with_chunk_size(
                        started.map_err(std::io::Error::other)?,
                        this.part_size,
                    );
                    w.write(&held);
                    this.sink = Sink::Parts(w);
                }
                Sink::Parts(w) => {
                    // Back-pressure: wait while too many parts are in flight (bounds memory).
                    ready!(w.poll_for_capacity(cx, this.max_concurrency))
                        .map_err(std::io::Error::other)?;
                    break;
                }
                Sink::Done => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the upload is already finished",
                    )));
                }
            }
        }
        this.accept(buf)?;
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
