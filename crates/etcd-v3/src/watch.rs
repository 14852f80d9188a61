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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};
use tonic::Streaming;

use super::client::{Client, Inner, is_transport_failure};
use super::error::{Error, Result, ServerError};
pub use super::kv::KeyValue;
use super::kv::prefix_end;
use super::pool::Member;
use super::proto::etcdserverpb as pb;
use super::proto::mvccpb;
use super::rpc::stub;

/// The gRPC method name used in errors of the watch stream.
const METHOD: &str = "Watch/Watch";
/// Default number of batches a [`Watcher`] buffers.
const DEFAULT_BUFFER: usize = 64;
/// Commands (creates, progress requests) queued to the stream task.
const CMD_BUFFER: usize = 128;
/// Requests queued to the gRPC request stream (the rest wait in the task's outbox).
const REQ_BUFFER: usize = 64;
/// First pause before reopening a broken stream; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between attempts to reopen the stream.
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// How long opening the stream (up to the first response) may take before another member is tried.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How many times in a row a watch may be re-created after an invalid-token cancel.
const MAX_AUTH_RETRIES: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub event_type: EventType,
    /// The key after the change; for a deletion, the key with `mod_revision` set to the
    /// deletion's revision and an empty value.
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it ([`WatchOptions::with_prev_kv`])
    /// and it existed and has not been compacted.
    pub prev_kv: Option<KeyValue>,
}

impl WatchEvent {
    /// The changed key.
    pub fn key(&self) -> &[u8] {
        &self.kv.key
    }
    /// The value after the change (empty for a deletion).
    pub fn value(&self) -> &[u8] {
        &self.kv.value
    }
    /// The revision of the change.
    pub fn mod_revision(&self) -> i64 {
        self.kv.mod_revision
    }

    fn from_pb(ev: mvccpb::Event) -> WatchEvent {
        let event_type = if ev.r#type == mvccpb::event::EventType::Delete as i32 {
            EventType::Delete
        } else {
            EventType::Put
        };
        WatchEvent {
            event_type,
            kv: ev.kv.map(KeyValue::from).unwrap_or_default(),
            prev_kv: ev.prev_kv.map(KeyValue::from),
        }
    }
}

/// What one watch response delivered: the events of one or more revisions (fragments already
/// merged), or a notification without events.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The [`Watcher::id`] of the watch.
    pub watch_id: i64,
    /// The store's revision when the server sent the response (`header.revision`). For a
    /// progress notification every event up to this revision has been delivered.
    pub revision: i64,
    /// The ID of the member that sent the response.
    pub member_id: u64,
    /// The events, in revision order. Empty for `created` and progress notifications.
    pub events: Vec<WatchEvent>,
    created: bool,
}

impl WatchBatch {
    /// Whether this is the watch's `created` notification (only delivered when asked for with
    /// [`WatchOptions::with_created_notify`], and only once, even across stream resumes).
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// Whether this is a progress notification: no events, and every event of the watch up to
    /// [`WatchBatch::revision`] has been delivered.
    pub fn is_progress_notify(&self) -> bool {
        !self.created && self.events.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum RangeEnd {
    #[default]
    Key,
    Prefix,
    FromKey,
    End(Bytes),
}

/// Options of [`Client::watch`]. Build with [`WatchOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    range: RangeEnd,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    created_notify: bool,
    buffer: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            range: RangeEnd::Key,
            start_revision: 0,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: true,
            created_notify: false,
            buffer: DEFAULT_BUFFER,
        }
    }
}

impl WatchOptions {
    /// Watch the one key, from the next revision, with fragmented large responses merged.
    pub fn new() -> Self {
        Self::default()
    }
    /// Watch every key starting with the key (an empty key watches every key).
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeEnd::Prefix;
        self
    }
    /// Watch every key greater than or equal to the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeEnd::FromKey;
        self
    }
    /// Watch the keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Bytes>) -> Self {
        self.range = RangeEnd::End(end.into());
        self
    }
    /// Start at `revision` (inclusive): past revisions are replayed from history, a future one
    /// is waited for. 0 (the default) means after the current revision.
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }
    /// Include each key's previous value in its events.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Do not deliver put events (filtered on the server).
    pub fn with_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }
    /// Do not deliver delete events (filtered on the server).
    pub fn with_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
    /// Ask the server for periodic progress notifications while the watch is idle
    /// (every 10 minutes by default; the server's `--experimental-watch-progress-notify-interval`).
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
    /// Whether the server may split responses too large for one gRPC message (on by default);
    /// the pieces are merged before delivery.
    pub fn with_fragment(mut self, on: bool) -> Self {
        self.fragment = on;
        self
    }
    /// Deliver the `created` notification as the first batch ([`WatchBatch::is_created`]).
    pub fn with_created_notify(mut self) -> Self {
        self.created_notify = true;
        self
    }
    /// How many batches the watcher buffers (default 64, at least 1). A full buffer does not
    /// stall other watches: the watch is paused and replayed from history when drained.
    pub fn with_buffer(mut self, batches: usize) -> Self {
        self.buffer = batches.max(1);
        self
    }

    fn create_request(&self, key: Bytes) -> Result<pb::WatchCreateRequest> {
        if self.start_revision < 0 {
            return Err(Error::InvalidArgument(format!(
                "watch start revision {} is negative",
                self.start_revision
            )));
        }
        let (key, range_end) = match &self.range {
            RangeEnd::Key => (key, Bytes::new()),
            RangeEnd::End(end) => (key, end.clone()),
            RangeEnd::FromKey | RangeEnd::Prefix if key.is_empty() => {
                (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
            }
            RangeEnd::FromKey => (key, Bytes::from_static(b"\0")),
            RangeEnd::Prefix => {
                let end = prefix_end(&key);
                (key, end)
            }
        };
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(pb::watch_create_request::FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(pb::watch_create_request::FilterType::Nodelete as i32);
        }
        Ok(pb::WatchCreateRequest {
            key,
            range_end,
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters,
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: self.fragment,
        })
    }
}

/// A watch: yields [`WatchBatch`]es until it ends with an error (compaction, a server cancel,
/// a non-recoverable stream error) or is dropped. Dropping it cancels the watch on the server.
/// Also a [`futures::Stream`].
#[derive(Debug)]
pub struct Watcher {
    id: i64,
    created_revision: i64,
    rx: mpsc::Receiver<Result<WatchBatch>>,
    cmd: mpsc::Sender<Cmd>,
    ctl: Arc<Ctl>,
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
        self.cmd
            .send(Cmd::Progress)
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
        self.ctl.push(|q| q.cancels.push(self.id));
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
        let id = handle.ctl.next_id();
        let (tx, rx) = mpsc::channel(opts.buffer.max(1));
        let (created_tx, created_rx) = oneshot::channel();
        // Built before the create is sent, so that dropping this future cancels the watch.
        let mut watcher = Watcher {
            id,
            created_revision: 0,
            rx,
            cmd: handle.cmd.clone(),
            ctl: handle.ctl.clone(),
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
            .cmd
            .send(Cmd::Create(Box::new(new)))
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

// ---------------------------------------------------------------------------------------------
// Shared state and commands
// ---------------------------------------------------------------------------------------------

/// Per-client watch state shared by all clones (see `shared.rs`): the handle of the task that
/// owns the client's watch stream, started on first use.
#[derive(Debug, Default)]
pub(crate) struct WatchShared {
    handle: Mutex<Option<Handle>>,
}

impl WatchShared {
    fn handle(&self, inner: &Arc<Inner>) -> Handle {
        let mut g = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = g.as_ref()
            && !h.cmd.is_closed()
        {
            return h.clone();
        }
        let (cmd, cmd_rx) = mpsc::channel(CMD_BUFFER);
        let ctl = Arc::new(Ctl::default());
        tokio::spawn(Task::new(Arc::downgrade(inner), ctl.clone(), cmd_rx).run());
        let h = Handle { cmd, ctl };
        *g = Some(h.clone());
        h
    }
}

#[derive(Debug, Clone)]
struct Handle {
    cmd: mpsc::Sender<Cmd>,
    ctl: Arc<Ctl>,
}

/// State the watchers share with the task outside the command channel: the ID counter, and the
/// cancels (from `Drop`, which cannot wait) and resumes of paused watches. Both queues hold at
/// most one entry per live watch.
#[derive(Debug, Default)]
struct Ctl {
    last_id: AtomicI64,
    queue: Mutex<CtlQueue>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct CtlQueue {
    cancels: Vec<i64>,
    resumes: Vec<i64>,
}

impl Ctl {
    /// A fresh watch ID; IDs start at 1 because etcd reads a `watch_id` of 0 as "assign one".
    fn next_id(&self) -> i64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn push(&self, f: impl FnOnce(&mut CtlQueue)) {
        f(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.notify.notify_one();
    }

    fn take(&self) -> CtlQueue {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Debug)]
struct NewWatch {
    id: i64,
    req: pb::WatchCreateRequest,
    tx: mpsc::Sender<Result<WatchBatch>>,
    capacity: usize,
    created: oneshot::Sender<Result<i64>>,
    created_notify: bool,
}

#[derive(Debug)]
enum Cmd {
    Create(Box<NewWatch>),
    Progress,
}

// ---------------------------------------------------------------------------------------------
// The stream task
// ---------------------------------------------------------------------------------------------

/// One watch as the task sees it.
struct Slot {
    /// The create request (its `start_revision` and `watch_id` are set per create).
    req: pb::WatchCreateRequest,
    tx: mpsc::Sender<Result<WatchBatch>>,
    capacity: usize,
    /// Pending until the first `created` response.
    created: Option<oneshot::Sender<Result<i64>>>,
    created_notify: bool,
    /// Where a re-create starts; 0 only for a revision-0 watch not yet created.
    next_rev: i64,
    /// The revision of the last delivered event (later events at or below it are duplicates).
    last_event_rev: i64,
    /// The watch's ID on the current stream, when it is created (or being created) there.
    wire: Option<i64>,
    /// Whether the server confirmed the create under the current wire ID.
    acked: bool,
    /// Paused because its buffer was full; re-created when drained.
    paused: bool,
    /// Events of a fragmented response, until its last piece.
    frags: Vec<mvccpb::Event>,
    auth_retries: u32,
}

impl Slot {
    fn create_request(&self, wire: i64) -> pb::WatchRequest {
        let mut c = self.req.clone();
        c.start_revision = self.next_rev;
        c.watch_id = wire;
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(c)),
        }
    }
}

fn cancel_request(wire: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: wire },
        )),
    }
}

fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

fn is_progress_request(r: &pb::WatchRequest) -> bool {
    matches!(
        r.request_union,
        Some(pb::watch_request::RequestUnion::ProgressRequest(_))
    )
}

/// The etcd error in a cancel reason, which may be a bare message or a formatted gRPC error
/// (`rpc error: code = Unauthenticated desc = etcdserver: invalid auth token`).
fn reason_kind(reason: &str) -> Option<ServerError> {
    ServerError::from_message(reason).or_else(|| {
        reason
            .split_once(" desc = ")
            .and_then(|(_, desc)| ServerError::from_message(desc))
    })
}

enum Opened {
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

enum Ev {
    Cmd(Option<Cmd>),
    Ctl,
    Opened(Opened),
    Msg(std::result::Result<Option<pb::WatchResponse>, tonic::Status>),
    Capacity,
}

/// What to do with a watch after one of its responses.
enum After {
    Nothing,
    Finish(Error),
    Pause,
    Forget,
    Reauth,
}

struct Task {
    inner: Weak<Inner>,
    ctl: Arc<Ctl>,
    cmd_rx: mpsc::Receiver<Cmd>,
    slots: HashMap<i64, Slot>,
    /// Wire ID on the current stream → watch ID.
    wires: HashMap<i64, i64>,
    /// Wire IDs of creates sent on the current stream and not yet answered, in order. The
    /// server answers creates in order, and rejects one (for example for an invalid token)
    /// with `watch_id` -1, which this resolves.
    pending_creates: VecDeque<i64>,
    /// Requests for the current stream not yet handed to gRPC.
    outbox: VecDeque<pb::WatchRequest>,
    /// Set while a stream is open or being opened.
    req_tx: Option<mpsc::Sender<pb::WatchRequest>>,
    opening: Option<OpenFuture>,
    stream: Option<Streaming<pb::WatchResponse>>,
    /// The member and token generation of the current stream.
    current: Option<(Arc<Member>, u64)>,
    backoff: Duration,
    /// Refresh the token (seen at this generation) before the next open.
    refresh: Option<u64>,
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

impl Task {
    fn new(inner: Weak<Inner>, ctl: Arc<Ctl>, cmd_rx: mpsc::Receiver<Cmd>) -> Task {
        Task {
            inner,
            ctl,
            cmd_rx,
            slots: HashMap::new(),
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

    async fn run(mut self) {
        let mut commands_open = true;
        loop {
            self.apply_ctl();
            self.settle();
            if !commands_open && self.slots.is_empty() {
                return;
            }
            let want_capacity = !self.outbox.is_empty() && self.req_tx.is_some();
            let ev = tokio::select! {
                c = self.cmd_rx.recv(), if commands_open => Ev::Cmd(c),
                () = self.ctl.notify.notified() => Ev::Ctl,
                o = poll_open(&mut self.opening), if self.opening.is_some() => Ev::Opened(o),
                m = next_message(&mut self.stream), if self.stream.is_some() => Ev::Msg(m),
                () = has_capacity(&self.req_tx), if want_capacity => Ev::Capacity,
            };
            match ev {
                Ev::Cmd(None) => commands_open = false,
                Ev::Cmd(Some(Cmd::Create(new))) => self.add(*new),
                Ev::Cmd(Some(Cmd::Progress)) => {
                    if self.req_tx.is_some() && !self.outbox.iter().any(is_progress_request) {
                        self.outbox.push_back(progress_request());
                    }
                }
                Ev::Ctl | Ev::Capacity => {}
                Ev::Opened(o) => {
                    self.opening = None;
                    self.on_opened(o);
                }
                Ev::Msg(Ok(Some(resp))) => self.on_response(resp),
                Ev::Msg(Ok(None)) => {
                    // The server ended the stream without an error: reopen.
                    let st = tonic::Status::unavailable("watch stream closed by the server");
                    self.on_stream_error(st);
                }
                Ev::Msg(Err(st)) => self.on_stream_error(st),
            }
        }
    }

    /// Applies cancels (dropped watchers) and resumes (drained buffers).
    fn apply_ctl(&mut self) {
        let q = self.ctl.take();
        for id in q.cancels {
            if let Some(slot) = self.slots.remove(&id)
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
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if !slot.paused {
                continue;
            }
            slot.paused = false;
            slot.acked = false;
            if stream_up {
                let w = self.ctl.next_id();
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
        if self.slots.is_empty() {
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

    fn close_stream(&mut self) {
        self.req_tx = None;
        self.opening = None;
        self.stream = None;
        self.current = None;
        self.outbox.clear();
        self.wires.clear();
        self.pending_creates.clear();
        for slot in self.slots.values_mut() {
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
        let mut slot = Slot {
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
        self.slots.insert(id, slot);
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
        let (req_tx, req_rx) = mpsc::channel(REQ_BUFFER);
        for (&id, slot) in self.slots.iter_mut() {
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
    fn on_stream_error(&mut self, st: tonic::Status) {
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

    fn reopen_later(&mut self) {
        if self.slots.is_empty() {
            self.close_stream();
            return;
        }
        let delay = jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.open(delay);
    }

    fn fail_all(&mut self, err: impl Fn() -> Error) {
        let ids: Vec<i64> = self.slots.keys().copied().collect();
        for id in ids {
            self.finish(id, err());
        }
        self.close_stream();
    }

    /// Ends a watch with `err`, delivered after what its buffer holds.
    fn finish(&mut self, id: i64, err: Error) {
        let Some(mut slot) = self.slots.remove(&id) else {
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

    fn on_response(&mut self, resp: pb::WatchResponse) {
        self.backoff = INITIAL_BACKOFF;
        let rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let member = resp.header.as_ref().map_or(0, |h| h.member_id);
        let mut wire = resp.watch_id;
        if resp.created {
            if wire == -1 {
                // A rejected create (3.5 answers an invalid token this way): the oldest one.
                match self.pending_creates.pop_front() {
                    Some(w) => wire = w,
                    None => return,
                }
            } else if let Some(pos) = self.pending_creates.iter().position(|&w| w == wire) {
                self.pending_creates.remove(pos);
            }
        } else if wire == -1 {
            if !resp.canceled && resp.events.is_empty() && rev > 0 {
                self.broadcast_progress(rev, member);
            }
            return;
        }
        let Some(&id) = self.wires.get(&wire) else {
            return; // a canceled or replaced incarnation
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let after = Self::on_slot_response(id, slot, resp, rev, member);
        match after {
            After::Nothing => {}
            After::Finish(e) => self.finish(id, e),
            After::Forget => {
                if let Some(slot) = self.slots.remove(&id)
                    && let Some(w) = slot.wire
                {
                    self.wires.remove(&w);
                    self.outbox.push_back(cancel_request(w));
                }
            }
            After::Pause => self.pause(id),
            After::Reauth => {
                self.refresh = Some(self.current.as_ref().map_or(0, |c| c.1));
                self.reopen_later();
            }
        }
    }

    fn on_slot_response(
        id: i64,
        slot: &mut Slot,
        resp: pb::WatchResponse,
        rev: i64,
        member_id: u64,
    ) -> After {
        if resp.created {
            if resp.canceled {
                return Self::canceled(slot, &resp);
            }
            slot.auth_retries = 0;
            slot.acked = true;
            if let Some(created) = slot.created.take() {
                if slot.next_rev == 0 {
                    // The server starts a revision-0 watch at header.revision + 1.
                    slot.next_rev = rev + 1;
                }
                let _ = created.send(Ok(rev));
                if slot.created_notify {
                    let _ = slot.tx.try_send(Ok(WatchBatch {
                        watch_id: id,
                        revision: rev,
                        member_id,
                        events: Vec::new(),
                        created: true,
                    }));
                }
            }
            return After::Nothing;
        }
        if resp.canceled || resp.compact_revision != 0 {
            return Self::canceled(slot, &resp);
        }
        if resp.fragment {
            slot.frags.extend(resp.events);
            return After::Nothing;
        }
        let mut raw = std::mem::take(&mut slot.frags);
        raw.extend(resp.events);
        if raw.is_empty() {
            // A progress notification for this watch.
            if rev > 0 {
                slot.next_rev = slot.next_rev.max(rev + 1);
                let _ = slot.tx.try_send(Ok(WatchBatch {
                    watch_id: id,
                    revision: rev,
                    member_id,
                    events: Vec::new(),
                    created: false,
                }));
            }
            return After::Nothing;
        }
        let last_seen = slot.last_event_rev;
        let events: Vec<WatchEvent> = raw
            .into_iter()
            .map(WatchEvent::from_pb)
            .filter(|e| e.kv.mod_revision > last_seen)
            .collect();
        let Some(last) = events.last().map(|e| e.kv.mod_revision) else {
            return After::Nothing;
        };
        let batch = WatchBatch {
            watch_id: id,
            revision: rev,
            member_id,
            events,
            created: false,
        };
        match slot.tx.try_send(Ok(batch)) {
            Ok(()) => {
                slot.last_event_rev = last;
                slot.next_rev = slot.next_rev.max(last + 1);
                After::Nothing
            }
            Err(TrySendError::Full(_)) => After::Pause,
            Err(TrySendError::Closed(_)) => After::Forget,
        }
    }

    fn canceled(slot: &mut Slot, resp: &pb::WatchResponse) -> After {
        if resp.compact_revision != 0 {
            return After::Finish(Error::Compacted {
                compact_revision: resp.compact_revision,
            });
        }
        let kind = reason_kind(&resp.cancel_reason);
        if matches!(
            kind,
            Some(ServerError::InvalidAuthToken | ServerError::AuthOldRevision)
        ) && slot.auth_retries < MAX_AUTH_RETRIES
        {
            slot.auth_retries += 1;
            return After::Reauth;
        }
        if kind == Some(ServerError::Compacted) {
            return After::Finish(Error::Compacted {
                compact_revision: 0,
            });
        }
        After::Finish(Error::WatchCanceled {
            reason: if resp.cancel_reason.is_empty() {
                "canceled without a reason".to_string()
            } else {
                resp.cancel_reason.clone()
            },
        })
    }

    /// A full buffer: cancel the watch on the server and re-create it from its next revision
    /// once the caller has drained half the buffer (the undelivered batch is replayed then).
    fn pause(&mut self, id: i64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.paused = true;
        slot.acked = false;
        slot.frags.clear();
        if let Some(w) = slot.wire.take() {
            self.wires.remove(&w);
            self.outbox.push_back(cancel_request(w));
        }
        let tx = slot.tx.clone();
        let want = (slot.capacity / 2).max(1);
        let ctl = self.ctl.clone();
        tracing::debug!(watch_id = id, "watcher buffer full, pausing the watch");
        tokio::spawn(async move {
            if tx.reserve_many(want).await.is_ok() {
                ctl.push(|q| q.resumes.push(id));
            }
        });
    }

    /// A progress response for the whole stream: each watch created on it has received every
    /// event up to `rev`.
    fn broadcast_progress(&mut self, rev: i64, member_id: u64) {
        for (&id, slot) in self.slots.iter_mut() {
            if slot.paused || slot.wire.is_none() || !slot.acked {
                continue;
            }
            slot.next_rev = slot.next_rev.max(rev + 1);
            let _ = slot.tx.try_send(Ok(WatchBatch {
                watch_id: id,
                revision: rev,
                member_id,
                events: Vec::new(),
                created: false,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reasons_are_recognised_bare_or_wrapped() {
        assert_eq!(
            reason_kind("rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"),
            Some(ServerError::InvalidAuthToken)
        );
        assert_eq!(
            reason_kind("etcdserver: permission denied"),
            Some(ServerError::PermissionDenied)
        );
        assert_eq!(reason_kind("something else"), None);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(&prefix_end(b"a")[..], b"b");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
        let r = WatchOptions::new()
            .with_prefix()
            .create_request(Bytes::new())
            .expect("request");
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"\0"[..], &b"\0"[..]));
        assert!(
            WatchOptions::new()
                .with_start_revision(-1)
                .create_request(Bytes::from_static(b"k"))
                .is_err()
        );
    }
}
