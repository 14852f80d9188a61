//! Watch: streams of changes over a key or a key range.
//!
//! All watches of one client share **one** gRPC `Watch` stream, owned by a background task:
//!
//! - [`Client::watch`] registers the watch with the task, which sends a `WatchCreateRequest`
//!   carrying a client-chosen `watch_id` (etcd 3.4+), so creates are pipelined rather than sent one
//!   at a time; responses are routed by `watch_id`, and fragmented responses are merged.
//! - When the stream breaks (transport failure, `Unavailable`), the task reopens it on the next
//!   healthy member with backoff and re-creates every watch from its *next revision*: the last
//!   delivered event's `mod_revision + 1`, or the revision of the last progress notification + 1,
//!   or — for a watch that has seen nothing yet — the revision in its `created` response + 1 (the
//!   server starts a revision-0 watch at exactly that revision). Events are delivered exactly once
//!   and in order; duplicate `created` responses after a resume are not shown.
//! - Each [`Watcher`] has a bounded buffer. When it is full the task does not block the other
//!   watches of the stream: it cancels that watch on the server, drops the batch it could not
//!   deliver, and re-creates the watch from its next revision once the caller has drained half of
//!   the buffer (events are then replayed from etcd's history; if they have been compacted
//!   meanwhile the watcher ends with [`Error::Compacted`]).
//! - Dropping a [`Watcher`] sends a `WatchCancelRequest` for it; the stream is closed when no
//!   watch is left and reopened by the next [`Client::watch`].
//!
//! The pieces: `options.rs` (what a watch asks for and what it yields), `signals.rs` (how
//! watchers reach the stream task), `stream.rs` (the task that owns the stream: opening,
//! reopening, closing) and `dispatch.rs` (routing each response to its watch).

mod dispatch;
mod options;
mod signals;
mod stream;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::error::{Error, Result};
pub use super::kv::KeyValue;
pub use options::{EventType, WatchBatch, WatchEvent, WatchOptions};
use signals::{Command, NewWatch, WatchShared, WatcherSignals};

/// The gRPC method name used in errors of the watch stream.
const METHOD: &str = "Watch/Watch";

/// A watch: yields [`WatchBatch`]es until it ends with an error (compaction, a server cancel,
/// a non-recoverable stream error) or is dropped. Dropping it cancels the watch on the server.
/// Also a [`futures::Stream`].
#[derive(Debug)]
pub struct Watcher {
    id: i64,
    created_revision: i64,
    rx: mpsc::Receiver<Result<WatchBatch>>,
    commands: mpsc::Sender<Command>,
    signals: Arc<WatcherSignals>,
}

impl Watcher {
    /// The client-assigned ID of the watch, unique among the client's watches. It is the
    /// `watch_id` of the watch on the wire, except after the watch was paused by a full buffer
    /// and re-created under a new wire ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The store's revision in the server's `created` response. For a watch from revision 0,
    /// events start at the revision after it.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }

    /// The next batch; `None` once the watch has ended (after its final error, if any).
    /// An ending error is [`Error::Compacted`] when the next revision was compacted,
    /// [`Error::WatchCanceled`] when the server canceled the watch for another reason, or the
    /// stream's error when it failed in a way that retrying cannot fix.
    pub async fn next(&mut self) -> Option<Result<WatchBatch>> {
        self.rx.recv().await
    }

    /// Asks the server for a progress notification on the stream. Since etcd 3.5.13 the server
    /// answers only when every watch on the stream has caught up, and otherwise ignores the
    /// request, so do not wait for the answer without a timeout. Every watch of the stream
    /// receives the answer as a [`WatchBatch::is_progress_notify`] batch.
    pub async fn request_progress(&self) -> Result<()> {
        self.commands
            .send(Command::Progress)
            .await
            .map_err(|_| Error::Closed)
    }
}

impl futures::Stream for Watcher {
    type Item = Result<WatchBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.signals.push(|q| q.cancels.push(self.id));
    }
}

impl Client {
    /// Watches `key` (or the range the options describe). Returns once the server has created
    /// the watch, so every change after [`Watcher::created_revision`] will be delivered (or an
    /// earlier `start_revision`'s history replayed). Waits across stream reconnects, bounded by
    /// the client's request timeout when one is set.
    pub async fn watch(&self, key: impl Into<Bytes>, opts: WatchOptions) -> Result<Watcher> {
        let req = opts.create_request(key.into())?;
        let handle = self.shared::<WatchShared>().handle(&self.inner);
        let id = handle.signals.next_id();
        let (tx, rx) = mpsc::channel(opts.buffer.max(1));
        let (created_tx, created_rx) = oneshot::channel();
        // Built before the create is sent, so that dropping this future cancels the watch.
        let mut watcher = Watcher {
            id,
            created_revision: 0,
            rx,
            commands: handle.commands.clone(),
            signals: handle.signals.clone(),
        };
        let new = NewWatch {
            id,
            req,
            tx,
            capacity: opts.buffer.max(1),
            created: created_tx,
            created_notify: opts.created_notify,
        };
        handle
            .commands
            .send(Command::Create(Box::new(new)))
            .await
            .map_err(|_| Error::Closed)?;
        let created = match self.inner.opts.request_timeout {
            Some(t) => tokio::time::timeout(t, created_rx)
                .await
                .map_err(|_| Error::Timeout {
                    method: METHOD,
                    timeout: t,
                })?,
            None => created_rx.await,
        };
        watcher.created_revision = created.map_err(|_| Error::Closed)??;
        Ok(watcher)
    }
}
