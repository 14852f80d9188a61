//! Routing each response of the stream to its watch: `created` answers, events (fragments
//! merged, duplicates after a resume dropped), progress notifications, cancels; and pausing a
//! watch whose buffer is full.

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

use super::options::{WatchBatch, WatchEvent};
use super::stream::{INITIAL_BACKOFF, StreamTask};
use crate::error::{Error, Result, ServerError};
use crate::proto::{etcdserverpb as pb, mvccpb};

/// How many times in a row a watch may be re-created after an invalid-token cancel.
const MAX_AUTH_RETRIES: u32 = 3;

/// One watch as the task sees it.
pub(super) struct ActiveWatch {
    /// The create request (its `start_revision` and `watch_id` are set per create).
    pub(super) req: pb::WatchCreateRequest,
    pub(super) tx: mpsc::Sender<Result<WatchBatch>>,
    pub(super) capacity: usize,
    /// Pending until the first `created` response.
    pub(super) created: Option<oneshot::Sender<Result<i64>>>,
    pub(super) created_notify: bool,
    /// Where a re-create starts; 0 only for a revision-0 watch not yet created.
    pub(super) next_rev: i64,
    /// The revision of the last delivered event (later events at or below it are duplicates).
    pub(super) last_event_rev: i64,
    /// The watch's ID on the current stream, when it is created (or being created) there.
    pub(super) wire: Option<i64>,
    /// Whether the server confirmed the create under the current wire ID.
    pub(super) acked: bool,
    /// Paused because its buffer was full; re-created when drained.
    pub(super) paused: bool,
    /// Events of a fragmented response, until its last piece.
    pub(super) frags: Vec<mvccpb::Event>,
    pub(super) auth_retries: u32,
}

impl ActiveWatch {
    pub(super) fn create_request(&self, wire: i64) -> pb::WatchRequest {
        let mut c = self.req.clone();
        c.start_revision = self.next_rev;
        c.watch_id = wire;
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(c)),
        }
    }
}

pub(super) fn cancel_request(wire: i64) -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: wire },
        )),
    }
}

pub(super) fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

pub(super) fn is_progress_request(r: &pb::WatchRequest) -> bool {
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

/// What to do with a watch after one of its responses.
enum NextStep {
    /// Keep going.
    Nothing,
    /// End the watch with this error.
    Finish(Error),
    /// Its buffer is full: cancel it on the server until the caller drains it.
    Pause,
    /// Its watcher is gone: cancel it on the server and forget it.
    Forget,
    /// The server refused the token: refresh it and reopen the stream.
    Reauth,
}

impl StreamTask {
    pub(super) fn on_response(&mut self, resp: pb::WatchResponse) {
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
        let Some(slot) = self.watches.get_mut(&id) else {
            return;
        };
        let after = Self::on_slot_response(id, slot, resp, rev, member);
        match after {
            NextStep::Nothing => {}
            NextStep::Finish(e) => self.finish(id, e),
            NextStep::Forget => {
                if let Some(slot) = self.watches.remove(&id)
                    && let Some(w) = slot.wire
                {
                    self.wires.remove(&w);
                    self.outbox.push_back(cancel_request(w));
                }
            }
            NextStep::Pause => self.pause(id),
            NextStep::Reauth => {
                self.refresh = Some(self.current.as_ref().map_or(0, |c| c.1));
                self.reopen_later();
            }
        }
    }

    fn on_slot_response(
        id: i64,
        slot: &mut ActiveWatch,
        resp: pb::WatchResponse,
        rev: i64,
        member_id: u64,
    ) -> NextStep {
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
            return NextStep::Nothing;
        }
        if resp.canceled || resp.compact_revision != 0 {
            return Self::canceled(slot, &resp);
        }
        if resp.fragment {
            slot.frags.extend(resp.events);
            return NextStep::Nothing;
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
            return NextStep::Nothing;
        }
        let last_seen = slot.last_event_rev;
        let events: Vec<WatchEvent> = raw
            .into_iter()
            .map(WatchEvent::from_pb)
            .filter(|e| e.kv.mod_revision > last_seen)
            .collect();
        let Some(last) = events.last().map(|e| e.kv.mod_revision) else {
            return NextStep::Nothing;
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
                NextStep::Nothing
            }
            Err(TrySendError::Full(_)) => NextStep::Pause,
            Err(TrySendError::Closed(_)) => NextStep::Forget,
        }
    }

    fn canceled(slot: &mut ActiveWatch, resp: &pb::WatchResponse) -> NextStep {
        if resp.compact_revision != 0 {
            return NextStep::Finish(Error::Compacted {
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
            return NextStep::Reauth;
        }
        if kind == Some(ServerError::Compacted) {
            return NextStep::Finish(Error::Compacted {
                compact_revision: 0,
            });
        }
        NextStep::Finish(Error::WatchCanceled {
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
        let Some(slot) = self.watches.get_mut(&id) else {
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
        let signals = self.signals.clone();
        tracing::debug!(watch_id = id, "watcher buffer full, pausing the watch");
        tokio::spawn(async move {
            if tx.reserve_many(want).await.is_ok() {
                signals.push(|q| q.resumes.push(id));
            }
        });
    }

    /// A progress response for the whole stream: each watch created on it has received every
    /// event up to `rev`.
    fn broadcast_progress(&mut self, rev: i64, member_id: u64) {
        for (&id, slot) in self.watches.iter_mut() {
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
}
