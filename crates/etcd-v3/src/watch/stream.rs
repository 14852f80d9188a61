//! The task that owns a client's watch stream: opens it on a healthy member, re-creates every
//! watch on it from its next revision, hands requests to gRPC, and reopens it with backoff when
//! it breaks.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tonic::Streaming;

use super::METHOD;
use super::dispatch::{ActiveWatch, cancel_request, is_progress_request, progress_request};
use super::signals::{Command, NewWatch, WatcherSignals};
use crate::client::{Client, Inner, is_transport_failure};
use crate::error::{Error, ServerError};
use crate::pool::Member;
use crate::proto::etcdserverpb as pb;
use crate::rpc::stub;

/// Requests queued to the gRPC request stream (the rest wait in the task's outbox).
const REQUEST_BUFFER: usize = 64;
/// First pause before reopening a broken stream; doubles up to [`MAX_BACKOFF`].
pub(super) const INITIAL_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between attempts to reopen the stream.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long opening the stream (up to the first response) may take before another member is tried.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// How an attempt to open the stream ended.
pub(super) enum Opened {
    Stream {
        member: Arc<Member>,
        generation: u64,
        stream: Streaming<pb::WatchResponse>,
    },
    Failed {
        member: Option<Arc<Member>>,
        generation: u64,
        status: tonic::Status,
    },
    /// Re-authentication failed.
    Auth(Error, u64),
}

type OpenFuture = Pin<Box<dyn Future<Output = Opened> + Send>>;

/// What woke the task.
enum TaskEvent {
    /// A command, or `None` once every handle is gone.
    Command(Option<Command>),
    /// A watcher queued a cancel or a resume.
    Signal,
    /// An attempt to open the stream ended.
    Opened(Opened),
    /// The stream delivered a response, ended, or failed.
    Response(std::result::Result<Option<pb::WatchResponse>, tonic::Status>),
    /// The request stream has room again.
    Capacity,
}

/// The task owning a client's watch stream and every watch on it.
pub(super) struct StreamTask {
    pub(super) inner: Weak<Inner>,
    pub(super) signals: Arc<WatcherSignals>,
    pub(super) command_rx: mpsc::Receiver<Command>,
    pub(super) watches: HashMap<i64, ActiveWatch>,
    /// Wire ID on the current stream → watch ID.
    pub(super) wires: HashMap<i64, i64>,
    /// Wire IDs of creates sent on the current stream and not yet answered, in order. The
    /// server answers creates in order, and rejects one (for example for an invalid token)
    /// with `watch_id` -1, which this resolves.
    pub(super) pending_creates: VecDeque<i64>,
    /// Requests for the current stream not yet handed to gRPC.
    pub(super) outbox: VecDeque<pb::WatchRequest>,
    /// Set while a stream is open or being opened.
    pub(super) req_tx: Option<mpsc::Sender<pb::WatchRequest>>,
    pub(super) opening: Option<OpenFuture>,
    pub(super) stream: Option<Streaming<pb::WatchResponse>>,
    /// The member and token generation of the current stream.
    pub(super) current: Option<(Arc<Member>, u64)>,
    pub(super) backoff: Duration,
    /// Refresh the token (seen at this generation) before the next open.
    pub(super) refresh: Option<u64>,
}

async fn poll_open(f: &mut Option<OpenFuture>) -> Opened {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn next_message(
    s: &mut Option<Streaming<pb::WatchResponse>>,
) -> std::result::Result<Option<pb::WatchResponse>, tonic::Status> {
    match s {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

async fn has_capacity(tx: &Option<mpsc::Sender<pb::WatchRequest>>) {
    match tx {
        Some(tx) => drop(tx.reserve().await),
        None => std::future::pending().await,
    }
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

impl StreamTask {
    pub(super) fn new(
        inner: Weak<Inner>,
        signals: Arc<WatcherSignals>,
        command_rx: mpsc::Receiver<Command>,
    ) -> StreamTask {
        StreamTask {
            inner,
            signals,
            command_rx,
            watches: HashMap::new(),
            wires: HashMap::new(),
            pending_creates: VecDeque::new(),
            outbox: VecDeque::new(),
            req_tx: None,
            opening: None,
            stream: None,
            current: None,
            backoff: INITIAL_BACKOFF,
            refresh: None,
        }
    }

    pub(super) async fn run(mut self) {
        let mut commands_open = true;
        loop {
            self.apply_signals();
            self.settle();
            if !commands_open && self.watches.is_empty() {
                return;
            }
            let want_capacity = !self.outbox.is_empty() && self.req_tx.is_some();
            let ev = tokio::select! {
                c = self.command_rx.recv(), if commands_open => TaskEvent::Command(c),
                () = self.signals.notify.notified() => TaskEvent::Signal,
                o = poll_open(&mut self.opening), if self.opening.is_some() => TaskEvent::Opened(o),
                m = next_message(&mut self.stream), if self.stream.is_some() => TaskEvent::Response(m),
                () = has_capacity(&self.req_tx), if want_capacity => TaskEvent::Capacity,
            };
            match ev {
                TaskEvent::Command(None) => commands_open = false,
                TaskEvent::Command(Some(Command::Create(new))) => self.add(*new),
                TaskEvent::Command(Some(Command::Progress)) => {
                    if self.req_tx.is_some() && !self.outbox.iter().any(is_progress_request) {
                        self.outbox.push_back(progress_request());
                    }
                }
                TaskEvent::Signal | TaskEvent::Capacity => {}
                TaskEvent::Opened(o) => {
                    self.opening = None;
                    self.on_opened(o);
                }
                TaskEvent::Response(Ok(Some(resp))) => self.on_response(resp),
                TaskEvent::Response(Ok(None)) => {
                    // The server ended the stream without an error: reopen.
                    let st = tonic::Status::unavailable("watch stream closed by the server");
                    self.on_stream_error(st);
                }
                TaskEvent::Response(Err(st)) => self.on_stream_error(st),
            }
        }
    }

    /// Applies cancels (dropped watchers) and resumes (drained buffers).
    fn apply_signals(&mut self) {
        let q = self.signals.take();
        for id in q.cancels {
            if let Some(slot) = self.watches.remove(&id)
                && let Some(w) = slot.wire
            {
                self.wires.remove(&w);
                if self.req_tx.is_some() {
                    self.outbox.push_back(cancel_request(w));
                }
            }
        }
        for id in q.resumes {
            let stream_up = self.req_tx.is_some();
            let Some(slot) = self.watches.get_mut(&id) else {
                continue;
            };
            if !slot.paused {
                continue;
            }
            slot.paused = false;
            slot.acked = false;
            if stream_up {
                let w = self.signals.next_id();
                slot.wire = Some(w);
                self.wires.insert(w, id);
                self.pending_creates.push_back(w);
                self.outbox.push_back(slot.create_request(w));
            }
        }
    }

    /// Opens the stream when watches need one, closes it when none is left, and hands queued
    /// requests to gRPC.
    fn settle(&mut self) {
        if self.watches.is_empty() {
            if self.req_tx.is_some() {
                self.close_stream();
            }
        } else if self.req_tx.is_none() {
            self.open(Duration::ZERO);
        }
        self.flush();
    }

    fn flush(&mut self) {
        let Some(tx) = &self.req_tx else {
            self.outbox.clear();
            return;
        };
        while let Some(req) = self.outbox.pop_front() {
            match tx.try_send(req) {
                Ok(()) => {}
                Err(TrySendError::Full(req)) => {
                    self.outbox.push_front(req);
                    break;
                }
                Err(TrySendError::Closed(_)) => {
                    // The call is gone; its error arrives through the stream or the open.
                    self.outbox.clear();
                    break;
                }
            }
        }
    }

    pub(super) fn close_stream(&mut self) {
        self.req_tx = None;
        self.opening = None;
        self.stream = None;
        self.current = None;
        self.outbox.clear();
        self.wires.clear();
        self.pending_creates.clear();
        for slot in self.watches.values_mut() {
            slot.wire = None;
            slot.acked = false;
            slot.frags.clear();
        }
    }

    fn add(&mut self, new: NewWatch) {
        let NewWatch {
            id,
            req,
            tx,
            capacity,
            created,
            created_notify,
        } = new;
        if tx.is_closed() {
            return; // the caller gave up already
        }
        let mut slot = ActiveWatch {
            next_rev: req.start_revision,
            req,
            tx,
            capacity,
            created: Some(created),
            created_notify,
            last_event_rev: 0,
            wire: None,
            acked: false,
            paused: false,
            frags: Vec::new(),
            auth_retries: 0,
        };
        if self.req_tx.is_some() {
            slot.wire = Some(id);
            self.wires.insert(id, id);
            self.pending_creates.push_back(id);
            self.outbox.push_back(slot.create_request(id));
        }
        // Otherwise `settle` opens a stream, which creates every watch.
        self.watches.insert(id, slot);
    }

    /// Starts opening a stream after `delay`; every watch that is not paused is (re-)created on
    /// it from its next revision.
    fn open(&mut self, delay: Duration) {
        self.close_stream();
        let Some(inner) = self.inner.upgrade() else {
            self.fail_all(|| Error::Closed);
            return;
        };
        let client = Client { inner };
        let (req_tx, req_rx) = mpsc::channel(REQUEST_BUFFER);
        for (&id, slot) in self.watches.iter_mut() {
            if slot.paused {
                continue;
            }
            slot.wire = Some(id);
            self.wires.insert(id, id);
            self.pending_creates.push_back(id);
            self.outbox.push_back(slot.create_request(id));
        }
        self.req_tx = Some(req_tx);
        let refresh = self.refresh.take();
        self.opening = Some(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(seen) = refresh
                && let Err(e) = client.refresh_token(seen).await
            {
                return Opened::Auth(e, seen);
            }
            let (member, meta) = client.pick();
            let generation = meta.token_generation();
            let mut wc = stub::watch(&client.inner.opts, member.channel.clone());
            let call = wc.watch(meta.request(tokio_stream::wrappers::ReceiverStream::new(req_rx)));
            match tokio::time::timeout(OPEN_TIMEOUT, call).await {
                Ok(Ok(resp)) => Opened::Stream {
                    member,
                    generation,
                    stream: resp.into_inner(),
                },
                Ok(Err(status)) => Opened::Failed {
                    member: Some(member),
                    generation,
                    status,
                },
                Err(_) => Opened::Failed {
                    member: Some(member),
                    generation,
                    status: tonic::Status::unavailable("opening the watch stream timed out"),
                },
            }
        }));
    }

    fn on_opened(&mut self, o: Opened) {
        match o {
            Opened::Stream {
                member,
                generation,
                stream,
            } => {
                self.stream = Some(stream);
                self.current = Some((member, generation));
            }
            Opened::Failed {
                member,
                generation,
                status,
            } => {
                self.current = member.map(|m| (m, generation));
                self.on_stream_error(status);
            }
            Opened::Auth(e, seen) => {
                let retry = e.code() == Some(tonic::Code::Unavailable)
                    || matches!(e, Error::Rpc { ref status, .. } if is_transport_failure(status));
                if retry {
                    self.refresh = Some(seen);
                    self.reopen_later();
                } else {
                    let msg = e.to_string();
                    self.fail_all(|| Error::WatchCanceled {
                        reason: format!("re-authentication failed: {msg}"),
                    });
                }
            }
        }
    }

    /// The stream (or its opening) failed: reopen on another member when the failure is
    /// recoverable, else end every watch with the error.
    pub(super) fn on_stream_error(&mut self, st: tonic::Status) {
        let current = self.current.take();
        let kind = ServerError::from_message(st.message());
        match kind {
            Some(ServerError::InvalidAuthToken | ServerError::AuthOldRevision) => {
                self.refresh = Some(current.as_ref().map_or(0, |c| c.1));
                tracing::debug!(status = %st, "watch stream: auth token rejected, refreshing");
                self.reopen_later();
            }
            None if st.code() == tonic::Code::Unavailable || is_transport_failure(&st) => {
                if let Some((m, _)) = &current
                    && is_transport_failure(&st)
                {
                    m.mark_unhealthy();
                }
                tracing::debug!(status = %st, "watch stream broken, reopening");
                self.reopen_later();
            }
            _ => {
                tracing::debug!(status = %st, "watch stream failed");
                self.close_stream();
                self.fail_all(|| Error::from_status(METHOD, st.clone()));
            }
        }
    }

    pub(super) fn reopen_later(&mut self) {
        if self.watches.is_empty() {
            self.close_stream();
            return;
        }
        let delay = jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.open(delay);
    }

    pub(super) fn fail_all(&mut self, err: impl Fn() -> Error) {
        let ids: Vec<i64> = self.watches.keys().copied().collect();
        for id in ids {
            self.finish(id, err());
        }
        self.close_stream();
    }

    /// Ends a watch with `err`, delivered after what its buffer holds.
    pub(super) fn finish(&mut self, id: i64, err: Error) {
        let Some(mut slot) = self.watches.remove(&id) else {
            return;
        };
        if let Some(w) = slot.wire.take() {
            self.wires.remove(&w);
        }
        if let Some(created) = slot.created.take() {
            let _ = created.send(Err(err));
            return;
        }
        match slot.tx.try_send(Err(err)) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(item)) => {
                let tx = slot.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(item).await;
                });
            }
        }
    }
}
