//! The queue under a prefix that Mutex and Election share: each contender owns one key attached to
//! its session's lease, contenders are served in create-revision order, and a contender waits
//! by watching only the key just before its own for deletion (no polling, no writes while
//! waiting, no thundering herd). Once served, its key is watched so that losing it is reported.

use bytes::Bytes;
use tokio::sync::watch;

use super::error::{ConcurrencyError, Result};
use super::session::Session;
use crate::kv::{
    Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, Op, OpResponse, PutOptions, SortOrder,
    SortTarget, Txn,
};
use crate::watch::{EventType, WatchOptions, Watcher};
use crate::{Client, Error};

/// Why a held lock or leadership was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The key was deleted (by a lease revocation or expiry, or by someone else) at `revision`.
    KeyDeleted {
        /// The revision of the deletion.
        revision: i64,
    },
    /// The session ended (see [`Session::done`]).
    SessionEnded(String),
    /// The key could no longer be watched; ownership is assumed lost to stay on the safe side.
    MonitorFailed(String),
    /// It was released through this handle.
    Released,
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostReason::KeyDeleted { revision } => {
                write!(f, "the key was deleted at revision {revision}")
            }
            LostReason::SessionEnded(r) => write!(f, "the session ended: {r}"),
            LostReason::MonitorFailed(r) => write!(f, "the key could not be watched: {r}"),
            LostReason::Released => write!(f, "released through this handle"),
        }
    }
}

/// `prefix` followed by "/" unless it already ends with one.
pub(crate) fn normalize_prefix(prefix: &str) -> String {
    if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

/// The key of one contender: `<prefix><lease hex>-<random hex>`. Unique per handle and per
/// acquisition, so two handles on one session never share a key (unlike Go, where they do and
/// both believe they hold the lock), and a key is never reused across acquisitions.
pub(crate) fn contender_key(prefix: &str, lease: i64) -> Bytes {
    let nonce: u64 = rand::random();
    Bytes::from(format!("{prefix}{lease:x}-{nonce:016x}"))
}

/// Guard of `key` at `create_rev`: holds only while this exact key version exists.
pub(crate) fn fence(key: &[u8], create_rev: i64) -> Compare {
    Compare::create_revision(key, CompareOp::Equal, create_rev)
}

/// The first key under `prefix` by create revision (the holder or leader).
pub(crate) fn first_op(prefix: &str) -> Op {
    Op::get(
        prefix,
        GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1),
    )
}

fn get_of(r: Option<&OpResponse>) -> Option<&KeyValue> {
    r.and_then(OpResponse::as_get).and_then(|g| g.first())
}

/// A queued key.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The key.
    pub(crate) key: Bytes,
    /// Its create revision (the fence).
    pub(crate) rev: i64,
    /// The first key under the prefix when it was queued.
    pub(crate) first: Option<KeyValue>,
}

/// Creates `key` with `value` on the session's lease and reads the first key of the queue,
/// in one txn (one revision).
pub(crate) async fn enqueue(
    session: &Session,
    prefix: &str,
    key: Bytes,
    value: Bytes,
) -> Result<Queued> {
    let put = PutOptions::new().with_lease(session.lease_id());
    let txn = Txn::new()
        .when([Compare::create_revision(&key, CompareOp::Equal, 0)])
        .and_then([Op::put(&key, value, put), first_op(prefix)])
        .or_else([Op::get(&key, GetOptions::new()), first_op(prefix)]);
    let r = match session.client().txn(txn).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_outcome_unknown() {
                // The key may exist now and would block the queue until the session ends. It is
                // unique to this attempt, so deleting it unfenced touches nobody else.
                let client = session.client().clone();
                tokio::spawn(async move { client.delete(&key, DeleteOptions::new()).await });
            }
            return Err(on_lease(session, e));
        }
    };
    let rev = if r.succeeded {
        r.header.revision
    } else {
        get_of(r.responses.first()).map_or(0, |kv| kv.create_revision)
    };
    Ok(Queued {
        key,
        rev,
        first: get_of(r.responses.get(1)).cloned(),
    })
}

/// Maps a put refused because the lease is gone to [`ConcurrencyError::SessionExpired`].
fn on_lease(session: &Session, e: Error) -> ConcurrencyError {
    if e.server_error() == Some(crate::ServerError::LeaseNotFound) {
        session.expired("the session's lease was not found")
    } else {
        e.into()
    }
}

/// Deletes `key` if it still is the version created at `rev`; whether it did.
pub(crate) async fn delete_fenced(client: &Client, key: &[u8], rev: i64) -> Result<bool> {
    let txn = Txn::new()
        .when([fence(key, rev)])
        .and_then([Op::delete(key, DeleteOptions::new())]);
    Ok(client.txn(txn).await?.succeeded)
}

/// Deletes `key` at `rev` in the background: used when a wait is abandoned (its future dropped),
/// so that the queue does not stay blocked by a contender that left.
pub(crate) fn withdraw_in_background(client: &Client, key: Bytes, rev: i64) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let client = client.clone();
        rt.spawn(async move {
            if let Err(e) = delete_fenced(&client, &key, rev).await {
                tracing::warn!(error = %e, "could not withdraw an abandoned lock or campaign key");
            }
        });
    }
}

/// Deletes the queued key when dropped unless disarmed (cancel-safety of a wait).
struct WithdrawOnDrop<'a> {
    client: &'a Client,
    key: Bytes,
    rev: i64,
    armed: bool,
}

impl Drop for WithdrawOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            withdraw_in_background(self.client, self.key.clone(), self.rev);
        }
    }
}

async fn watch_deletes(client: &Client, key: &[u8], from: i64) -> Result<Watcher> {
    let opts = WatchOptions::new()
        .with_no_put()
        .with_start_revision(from)
        .with_buffer(4);
    Ok(client.watch(Bytes::copy_from_slice(key), opts).await?)
}

/// The revision of the first delete in the next batch, or an error when the watch ended.
async fn next_delete(w: &mut Watcher, key: &[u8]) -> Result<Option<i64>> {
    match w.next().await {
        Some(Ok(b)) => Ok(b
            .events
            .iter()
            .find(|e| e.event_type == EventType::Delete)
            .map(|e| e.mod_revision())),
        Some(Err(e)) => Err(e.into()),
        None => Err(ConcurrencyError::WatchEnded {
            key: String::from_utf8_lossy(key).into_owned(),
        }),
    }
}

/// Waits until every key created before `q` under `prefix` is gone, then checks that `q` itself
/// still exists (its session may have ended meanwhile). Ends early with
/// [`ConcurrencyError::SessionExpired`] when the session ends or `q`'s key is deleted while
/// waiting (Go keeps waiting then). Writes nothing. Returns the revision at which ownership was
/// confirmed.
pub(crate) async fn wait_turn(session: &Session, prefix: &str, q: &Queued) -> Result<i64> {
    let client = session.client();
    let mut own = watch_deletes(client, &q.key, q.rev + 1).await?;
    loop {
        let opts = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_max_create_revision(q.rev - 1)
            .with_limit(1)
            .with_keys_only();
        let r = client.get(prefix, opts).await?;
        let Some(pred) = r.first() else { break };
        let mut w = watch_deletes(client, &pred.key, r.header.revision + 1).await?;
        loop {
            tokio::select! {
                d = next_delete(&mut w, &pred.key) => if d?.is_some() { break },
                d = next_delete(&mut own, &q.key) => if let Some(rev) = d? {
                    return Err(session.expired(format!(
                        "the queued key was deleted at revision {rev} while waiting"
                    )));
                },
                e = session.done() => return Err(e),
            }
        }
    }
    let r = client.get(&q.key, GetOptions::new()).await?;
    match r.first() {
        Some(kv) if kv.create_revision == q.rev => Ok(r.header.revision),
        _ => Err(session.expired("the queued key was gone when its turn came")),
    }
}

/// Queues a new contender key under `prefix` (bound to the session's lease, holding `value`),
/// waits for its turn without writing, and returns it held. Cancelled (dropped) before its turn,
/// the key is withdrawn in the background; failing while waiting, it is withdrawn before the
/// error is returned.
pub(crate) async fn acquire(session: &Session, prefix: &str, value: Bytes) -> Result<Held> {
    let key = contender_key(prefix, session.lease_id());
    let q = enqueue(session, prefix, key, value).await?;
    let mut guard = WithdrawOnDrop {
        client: session.client(),
        key: q.key.clone(),
        rev: q.rev,
        armed: true,
    };
    let confirmed = if q.first.as_ref().is_some_and(|f| f.create_revision == q.rev) {
        q.rev
    } else {
        match wait_turn(session, prefix, &q).await {
            Ok(c) => c,
            Err(e) => {
                guard.armed = false;
                delete_fenced(session.client(), &q.key, q.rev).await?;
                return Err(e);
            }
        }
    };
    guard.armed = false;
    drop(guard);
    Ok(Held::start(session, q.key, q.rev, confirmed))
}

/// Watches a held key from `from` and reports, once, why it was lost (see [`LostReason`]).
/// Survives compaction by re-reading the key.
pub(crate) async fn monitor(session: Session, key: Bytes, rev: i64, from: i64) -> LostReason {
    let client = session.client().clone();
    let mut from = from;
    loop {
        let mut w = match watch_deletes(&client, &key, from).await {
            Ok(w) => w,
            Err(e) => return LostReason::MonitorFailed(e.to_string()),
        };
        let err = loop {
            tokio::select! {
                d = next_delete(&mut w, &key) => match d {
                    Ok(Some(revision)) => return LostReason::KeyDeleted { revision },
                    Ok(None) => {}
                    Err(e) => break e,
                },
                e = session.done() => return LostReason::SessionEnded(match e {
                    ConcurrencyError::SessionExpired { reason, .. } => reason,
                    other => other.to_string(),
                }),
            }
        };
        let ConcurrencyError::Client(Error::Compacted { .. }) = err else {
            return LostReason::MonitorFailed(err.to_string());
        };
        match client.get(&key, GetOptions::new()).await {
            Ok(r) if r.first().is_some_and(|kv| kv.create_revision == rev) => {
                from = r.header.revision + 1;
            }
            Ok(r) => {
                return LostReason::KeyDeleted {
                    revision: r.header.revision,
                };
            }
            Err(e) => return LostReason::MonitorFailed(e.to_string()),
        }
    }
}

/// A held key with its monitor: the signal when it is lost.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) key: Bytes,
    pub(crate) rev: i64,
    lost: watch::Receiver<Option<LostReason>>,
    task: tokio::task::JoinHandle<()>,
}

impl Held {
    /// Starts monitoring `key` at `rev`, confirmed held at revision `confirmed`.
    pub(crate) fn start(session: &Session, key: Bytes, rev: i64, confirmed: i64) -> Held {
        let (tx, lost) = watch::channel(None);
        let (s, k) = (session.clone(), key.clone());
        let task = tokio::spawn(async move {
            let reason = monitor(s, k, rev, confirmed + 1).await;
            tx.send_replace(Some(reason));
        });
        Held {
            key,
            rev,
            lost,
            task,
        }
    }

    pub(crate) fn lost_now(&self) -> Option<LostReason> {
        self.lost.borrow().clone()
    }

    pub(crate) async fn lost(&self) -> LostReason {
        let mut rx = self.lost.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(LostReason::Released),
            Err(_) => LostReason::Released,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_with_one_slash() {
        assert_eq!(normalize_prefix("/locks/a"), "/locks/a/");
        assert_eq!(normalize_prefix("/locks/a/"), "/locks/a/");
    }

    #[test]
    fn contender_keys_are_unique_per_handle_and_under_the_prefix() {
        let a = contender_key("/l/", 0xabc);
        let b = contender_key("/l/", 0xabc);
        assert_ne!(a, b);
        let s = String::from_utf8_lossy(&a);
        assert!(
            s.starts_with("/l/abc-") && s.len() == "/l/abc-".len() + 16,
            "{s}"
        );
    }

    #[test]
    fn fence_compares_the_exact_create_revision() {
        use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
        let c = fence(b"/l/k", 42).to_proto();
        assert_eq!(c.target, CompareTarget::Create as i32);
        assert_eq!(c.result, CompareResult::Equal as i32);
        assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(42)));
    }
}
