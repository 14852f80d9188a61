//! What a watch asks for ([`WatchOptions`]) and what it yields ([`WatchBatch`]es of
//! [`WatchEvent`]s).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::kv::{KeyValue, prefix_end};
use crate::proto::{etcdserverpb as pb, mvccpb};

/// Default number of batches a [`Watcher`](super::Watcher) buffers.
const DEFAULT_BUFFER: usize = 64;

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

    pub(super) fn from_pb(ev: mvccpb::Event) -> WatchEvent {
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
    /// The [`Watcher::id`](super::Watcher::id) of the watch.
    pub watch_id: i64,
    /// The store's revision when the server sent the response (`header.revision`). For a
    /// progress notification every event up to this revision has been delivered.
    pub revision: i64,
    /// The ID of the member that sent the response.
    pub member_id: u64,
    /// The events, in revision order. Empty for `created` and progress notifications.
    pub events: Vec<WatchEvent>,
    pub(super) created: bool,
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

/// Options of [`Client::watch`](crate::Client::watch). Build with [`WatchOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    range: RangeEnd,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    pub(super) created_notify: bool,
    pub(super) buffer: usize,
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

    pub(super) fn create_request(&self, key: Bytes) -> Result<pb::WatchCreateRequest> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
