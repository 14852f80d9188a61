//! Election: leader election on a key prefix, with fenced leadership and an observer that sees
//! every change.
//!
//! Compared with etcd's Go `concurrency.Election`:
//! - [`Election::campaign`] re-checks its own key after waiting, so it never reports leadership
//!   its session has already lost, and stops waiting when its key or session goes away;
//! - [`Election::resign`] and [`Election::proclaim`] are fenced on this campaign's key version;
//!   proclaiming without leading is [`ConcurrencyError::NotLeader`];
//! - every handle has its own key, so two handles on one session are two candidates;
//! - [`Election::observe`] replays the prefix's history revision by revision, so it reports every
//!   leader in order (Go's skips short-lived ones) and ends with its error instead of silently.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::error::{ConcurrencyError, Result};
use super::queue::{self, Held, LostReason};
use super::session::Session;
use crate::Client;
use crate::kv::{GetOptions, KeyValue, Op, PutOptions, Txn};
use crate::watch::{EventType, WatchEvent, WatchOptions, Watcher};

/// A candidate in the election on a prefix, bound to a [`Session`].
///
/// ```no_run
/// # async fn demo(client: etcd_v3::Client) -> etcd_v3::concurrency::Result<()> {
/// use etcd_v3::concurrency::{Election, Session};
/// let session = Session::new(&client).await?;
/// let mut election = Election::new(&session, "/elections/operator");
/// election.campaign("pod-a").await?;
/// tokio::select! {
///     reason = election.lost() => eprintln!("leadership lost: {reason}"),
///     _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => election.resign().await?,
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Election {
    session: Session,
    prefix: String,
    held: Option<Held>,
}

impl Election {
    /// A candidate on `prefix` ("/" is appended unless present), campaigning through `session`.
    pub fn new(session: &Session, prefix: &str) -> Election {
        Election {
            session: session.clone(),
            prefix: queue::normalize_prefix(prefix),
            held: None,
        }
    }

    /// The election's prefix (ending with "/").
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This candidate's key while it leads.
    pub fn key(&self) -> Option<&[u8]> {
        self.held.as_ref().map(|h| &h.key[..])
    }

    /// Whether this handle leads (and has not been told it lost leadership).
    pub fn is_leader(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.lost_now().is_none())
    }

    /// Campaigns with `value` and waits (writing nothing) until this candidate leads. Fails with
    /// [`ConcurrencyError::SessionExpired`] when the session ends or the candidacy's key
    /// disappears while waiting, and re-checks the key once its turn comes. Cancel-safe: if the
    /// future is dropped before it completes, the candidacy is withdrawn in the background. A
    /// handle that already leads proclaims `value` instead.
    pub async fn campaign(&mut self, value: impl Into<Bytes>) -> Result<()> {
        let value = value.into();
        if self.is_leader() {
            return self.proclaim(value).await;
        }
        self.held = None;
        self.held = Some(queue::acquire(&self.session, &self.prefix, value).await?);
        Ok(())
    }

    /// Replaces the leader's value, fenced on this campaign's key: fails with
    /// [`ConcurrencyError::NotLeader`] when this handle does not lead or its key is gone.
    pub async fn proclaim(&mut self, value: impl Into<Bytes>) -> Result<()> {
        let Some(h) = &self.held else {
            return Err(self.not_leader());
        };
        let put = PutOptions::new().with_lease(self.session.lease_id());
        let txn = Txn::new()
            .when([queue::fence(&h.key, h.rev)])
            .and_then([Op::put(&h.key, value.into(), put)]);
        if self.session.client().txn(txn).await?.succeeded {
            Ok(())
        } else {
            self.held = None;
            Err(self.not_leader())
        }
    }

    /// Gives up leadership: deletes this campaign's key if it is still this version (fenced, so a
    /// retried resign never removes a later campaign). [`ConcurrencyError::NotHeld`] when this
    /// handle does not lead; [`ConcurrencyError::OwnershipLost`] when its key was already gone.
    pub async fn resign(&mut self) -> Result<()> {
        let Some(h) = self.held.take() else {
            return Err(ConcurrencyError::NotHeld("leadership"));
        };
        if queue::delete_fenced(self.session.client(), &h.key, h.rev).await? {
            Ok(())
        } else {
            Err(ConcurrencyError::OwnershipLost(
                h.lost_now()
                    .unwrap_or(LostReason::KeyDeleted { revision: 0 }),
            ))
        }
    }

    /// A txn guard that holds only while this campaign leads; fence the leader's writes with it.
    /// Never holds when this handle does not lead.
    pub fn is_leader_guard(&self) -> crate::kv::Compare {
        match &self.held {
            Some(h) => queue::fence(&h.key, h.rev),
            None => {
                crate::kv::Compare::create_revision(&self.prefix, crate::kv::CompareOp::Equal, -1)
            }
        }
    }

    /// Resolves when leadership held by this handle is lost (key deleted or session ended); at
    /// once with [`LostReason::Released`] when it does not lead. Cancel-safe.
    pub async fn lost(&self) -> LostReason {
        match &self.held {
            Some(h) => h.lost().await,
            None => LostReason::Released,
        }
    }

    /// The current leader: the first candidate by create revision.
    /// [`ConcurrencyError::NoLeader`] when there is none.
    pub async fn leader(&self) -> Result<KeyValue> {
        leader(self.session.client(), &self.prefix).await
    }

    /// Follows the election's leadership: see [`Observer`].
    pub async fn observe(&self) -> Result<Observer> {
        Observer::start(self.session.client(), &self.prefix).await
    }

    fn not_leader(&self) -> ConcurrencyError {
        ConcurrencyError::NotLeader {
            prefix: self.prefix.clone(),
        }
    }
}

/// The current leader of the election on `prefix` (normalized to end with "/"), without being a
/// candidate. [`ConcurrencyError::NoLeader`] when there is none.
pub async fn leader(client: &Client, prefix: &str) -> Result<KeyValue> {
    let prefix = queue::normalize_prefix(prefix);
    let r = client.op(queue::first_op(&prefix)).await?;
    r.as_get()
        .and_then(|g| g.first())
        .cloned()
        .ok_or(ConcurrencyError::NoLeader { prefix })
}

/// One leadership state of an election, as seen by an [`Observer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    /// The revision at which this state began.
    pub revision: i64,
    /// The leader's key and value, or `None` when nobody campaigns.
    pub leader: Option<KeyValue>,
}

/// Every change of an election's leader or of the leader's value, in order: reads the candidates
/// at one revision, then applies the prefix's watch events revision by revision, so no leader that
/// held office at some revision is skipped. The first item is the state when observing began.
/// Ends with an error (for example [`crate::Error::Compacted`] if it fell too far behind)
/// instead of silently.
#[derive(Debug)]
pub struct Observer {
    tracker: Tracker,
    watcher: Watcher,
    pending: std::collections::VecDeque<LeaderChange>,
    ended: bool,
}

impl Observer {
    /// Starts observing the election on `prefix` (normalized to end with "/").
    pub async fn start(client: &Client, prefix: &str) -> Result<Observer> {
        let prefix = queue::normalize_prefix(prefix);
        let r = client.get(&prefix, GetOptions::new().with_prefix()).await?;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(r.header.revision + 1);
        let watcher = client.watch(prefix.clone(), opts).await?;
        let mut tracker = Tracker::default();
        let first = tracker.reset(r.kvs, r.header.revision);
        Ok(Observer {
            tracker,
            watcher,
            pending: first.into_iter().collect(),
            ended: false,
        })
    }

    /// The next leadership state; `None` after the observer has ended (after its error).
    pub async fn next(&mut self) -> Option<Result<LeaderChange>> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(Ok(c));
            }
            if self.ended {
                return None;
            }
            match self.watcher.next().await {
                Some(Ok(batch)) => self.pending.extend(self.tracker.apply(&batch.events)),
                Some(Err(e)) => {
                    self.ended = true;
                    return Some(Err(e.into()));
                }
                None => {
                    self.ended = true;
                    return Some(Err(ConcurrencyError::WatchEnded {
                        key: "the election prefix".into(),
                    }));
                }
            }
        }
    }
}

/// The candidates of an election, replayed from watch events: which leadership states they went
/// through (a pure model, no I/O).
#[derive(Debug, Default)]
struct Tracker {
    /// Candidates by (create revision, key).
    candidates: BTreeMap<(i64, Bytes), KeyValue>,
    /// The last reported leader's (key, mod revision); `Some(None)` = reported "no leader".
    last: Option<Option<(Bytes, i64)>>,
}

impl Tracker {
    /// Starts from the candidates read at `revision`; returns the initial state.
    fn reset(&mut self, kvs: Vec<KeyValue>, revision: i64) -> Option<LeaderChange> {
        self.candidates = kvs
            .into_iter()
            .map(|kv| ((kv.create_revision, kv.key.clone()), kv))
            .collect();
        self.last = None;
        self.record(revision)
    }

    /// Applies events (in revision order), returning the state after each revision at which the
    /// leader or its value changed.
    fn apply(&mut self, events: &[WatchEvent]) -> Vec<LeaderChange> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let rev = events[i].mod_revision();
            while i < events.len() && events[i].mod_revision() == rev {
                let ev = &events[i];
                match ev.event_type {
                    EventType::Put => {
                        self.candidates
                            .insert((ev.kv.create_revision, ev.kv.key.clone()), ev.kv.clone());
                    }
                    EventType::Delete => self.candidates.retain(|(_, k), _| k != ev.key()),
                }
                i += 1;
            }
            out.extend(self.record(rev));
        }
        out
    }

    fn record(&mut self, revision: i64) -> Option<LeaderChange> {
        let leader = self.candidates.values().next().cloned();
        let id = leader.as_ref().map(|kv| (kv.key.clone(), kv.mod_revision));
        if self.last.as_ref() == Some(&id) {
            return None;
        }
        self.last = Some(id);
        Some(LeaderChange { revision, leader })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str, create: i64, rev: i64) -> WatchEvent {
        WatchEvent {
            event_type: EventType::Put,
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                value: Bytes::copy_from_slice(value.as_bytes()),
                create_revision: create,
                mod_revision: rev,
                version: 1,
                lease: 1,
            },
            prev_kv: None,
        }
    }

    fn del(key: &str, rev: i64) -> WatchEvent {
        WatchEvent {
            event_type: EventType::Delete,
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                mod_revision: rev,
                ..Default::default()
            },
            prev_kv: None,
        }
    }

    fn values(changes: &[LeaderChange]) -> Vec<(i64, Option<String>)> {
        changes
            .iter()
            .map(|c| {
                (
                    c.revision,
                    c.leader.as_ref().map(|kv| kv.value_str().into_owned()),
                )
            })
            .collect()
    }

    #[test]
    fn tracker_reports_every_leader_even_short_lived_ones_in_one_batch() {
        let mut t = Tracker::default();
        assert_eq!(t.reset(vec![], 1).map(|c| c.leader), Some(None));
        // One batch: a leads, b queues, a resigns (b leads), b resigns and c arrives in one txn.
        let batch = [
            put("e/a", "a", 2, 2),
            put("e/b", "b", 3, 3),
            del("e/a", 4),
            del("e/b", 5),
            put("e/c", "c", 5, 5),
            put("e/c", "c2", 5, 6),
        ];
        let got = values(&t.apply(&batch));
        let want = vec![
            (2, Some("a".to_string())),
            (4, Some("b".to_string())),
            (5, Some("c".to_string())),
            (6, Some("c2".to_string())),
        ];
        assert_eq!(got, want);
        // A change of a non-leader is not a leadership change.
        assert!(t.apply(&[put("e/d", "d", 7, 7)]).is_empty());
        assert_eq!(
            values(&t.apply(&[del("e/c", 8)])),
            vec![(8, Some("d".into()))]
        );
        assert_eq!(values(&t.apply(&[del("e/d", 9)])), vec![(9, None)]);
    }
}
