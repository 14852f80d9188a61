//! How watchers reach the stream task: the per-client handle of the task (started on first
//! use), the commands sent to it, and the signals a watcher raises without waiting (cancel on
//! drop, resume after a drained buffer).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, oneshot};

use super::WatchBatch;
use super::stream::StreamTask;
use crate::client::Inner;
use crate::error::Result;
use crate::proto::etcdserverpb as pb;

/// Commands (creates, progress requests) queued to the stream task.
const COMMAND_BUFFER: usize = 128;

/// Per-client watch state shared by all clones ([`Client::shared`](crate::Client)): the handle
/// of the task that owns the client's watch stream, started on first use.
#[derive(Debug, Default)]
pub(crate) struct WatchShared {
    handle: Mutex<Option<TaskHandle>>,
}

impl WatchShared {
    pub(super) fn handle(&self, inner: &Arc<Inner>) -> TaskHandle {
        let mut g = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = g.as_ref()
            && !h.commands.is_closed()
        {
            return h.clone();
        }
        let (commands, command_rx) = mpsc::channel(COMMAND_BUFFER);
        let signals = Arc::new(WatcherSignals::default());
        tokio::spawn(StreamTask::new(Arc::downgrade(inner), signals.clone(), command_rx).run());
        let h = TaskHandle { commands, signals };
        *g = Some(h.clone());
        h
    }
}

/// Where a new watch is sent: the task's command channel and its signals.
#[derive(Debug, Clone)]
pub(super) struct TaskHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) signals: Arc<WatcherSignals>,
}

/// State the watchers share with the task outside the command channel: the ID counter, and the
/// cancels (from `Drop`, which cannot wait) and resumes of paused watches. Both queues hold at
/// most one entry per live watch.
#[derive(Debug, Default)]
pub(super) struct WatcherSignals {
    last_id: AtomicI64,
    queue: Mutex<SignalQueue>,
    /// Wakes the task when a signal was queued.
    pub(super) notify: Notify,
}

/// The signals queued since the task last looked.
#[derive(Debug, Default)]
pub(super) struct SignalQueue {
    /// Watches whose [`Watcher`](super::Watcher) was dropped.
    pub(super) cancels: Vec<i64>,
    /// Paused watches whose buffer was drained.
    pub(super) resumes: Vec<i64>,
}

impl WatcherSignals {
    /// A fresh watch ID; IDs start at 1 because etcd reads a `watch_id` of 0 as "assign one".
    pub(super) fn next_id(&self) -> i64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(super) fn push(&self, f: impl FnOnce(&mut SignalQueue)) {
        f(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        self.notify.notify_one();
    }

    pub(super) fn take(&self) -> SignalQueue {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A watch to create, as [`Client::watch`](crate::Client::watch) hands it to the task.
#[derive(Debug)]
pub(super) struct NewWatch {
    pub(super) id: i64,
    pub(super) req: pb::WatchCreateRequest,
    pub(super) tx: mpsc::Sender<Result<WatchBatch>>,
    pub(super) capacity: usize,
    /// Answered with the `created` revision, or the error that prevented the create.
    pub(super) created: oneshot::Sender<Result<i64>>,
    pub(super) created_notify: bool,
}

/// What a watcher asks the task for through the command channel.
#[derive(Debug)]
pub(super) enum Command {
    /// Create a watch.
    Create(Box<NewWatch>),
    /// Ask the server for a progress notification.
    Progress,
}
