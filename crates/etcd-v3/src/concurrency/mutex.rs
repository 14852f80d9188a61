//! Mutex: a distributed lock on a key prefix, served in request order.
//!
//! Compared with etcd's Go `concurrency.Mutex`:
//! - waiting writes nothing and polls nothing: a waiter watches only the key queued just before
//!   its own, and stops early if its own key or session goes away;
//! - [`Mutex::try_lock`] writes nothing when the lock is taken (Go's writes and deletes a key,
//!   two revisions per failed try);
//! - every handle has its own key, so two handles on one session exclude each other;
//! - [`Mutex::unlock`] is fenced: it deletes only the key version of this acquisition, so a
//!   retried unlock never releases a newer acquisition;
//! - losing the lock (key deleted, session ended) is signalled by [`Mutex::lost`], and
//!   [`Mutex::is_owner`] gives the guard to fence the holder's own writes with.

use std::time::Duration;

use bytes::Bytes;

use super::error::{ConcurrencyError, Result};
use super::queue::{self, Held, LostReason};
use super::session::Session;
use crate::kv::{Compare, CompareOp, Op, PutOptions, Txn};

/// A distributed lock on a prefix, bound to a [`Session`]. While held, the holder's key
/// (`<prefix>/<lease hex>-<random>`) exists; it is deleted by [`Mutex::unlock`], by revoking
/// the session, or when the session's lease expires. Dropping a `Mutex` that holds the lock does
/// **not** release it (the protected state may be half-updated): call [`Mutex::unlock`], or close
/// the session.
///
/// ```no_run
/// # async fn demo(client: etcd_v3::Client) -> etcd_v3::concurrency::Result<()> {
/// use std::time::Duration;
/// use etcd_v3::concurrency::{Mutex, Session};
/// use etcd_v3::kv::{Op, PutOptions, Txn};
/// let session = Session::new(&client).await?;
/// let mut lock = Mutex::new(&session, "/locks/backup");
/// lock.lock_timeout(Duration::from_secs(30)).await?;
/// // Fence writes: they apply only while this acquisition still holds the lock.
/// let txn = Txn::new()
///     .when([lock.is_owner()])
///     .and_then([Op::put("/backup/state", "running", PutOptions::new())]);
/// let written = client.txn(txn).await?.succeeded;
/// lock.unlock().await?;
/// # let _ = written; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mutex {
    session: Session,
    prefix: String,
    held: Option<Held>,
}

impl Mutex {
    /// A lock on `prefix` ("/" is appended unless present) held through `session`.
    pub fn new(session: &Session, prefix: &str) -> Mutex {
        Mutex {
            session: session.clone(),
            prefix: queue::normalize_prefix(prefix),
            held: None,
        }
    }

    /// The lock's prefix (ending with "/").
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the current acquisition, if held.
    pub fn key(&self) -> Option<&[u8]> {
        self.held.as_ref().map(|h| &h.key[..])
    }

    /// The create revision of the current acquisition's key, if held.
    pub fn revision(&self) -> Option<i64> {
        self.held.as_ref().map(|h| h.rev)
    }

    /// Whether this handle holds the lock (and has not been told it lost it).
    pub fn is_held(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.lost_now().is_none())
    }

    /// Acquires the lock, waiting (with no writes and no polling) until every earlier request is
    /// gone. Fails with [`ConcurrencyError::SessionExpired`] if the session ends or this request's
    /// key disappears meanwhile. Cancel-safe: if the returned future is dropped before it
    /// completes, the request is withdrawn in the background. Acquiring a lock this handle already
    /// holds returns at once.
    pub async fn lock(&mut self) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        self.held = None;
        self.held = Some(queue::acquire(&self.session, &self.prefix, Bytes::new()).await?);
        Ok(())
    }

    /// [`Mutex::lock`], giving up after `timeout` with [`ConcurrencyError::Timeout`] (the request
    /// is then withdrawn). Prefer this to a [`Mutex::try_lock`] loop: it waits in line with no
    /// load on etcd, and is served in order.
    pub async fn lock_timeout(&mut self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.lock()).await {
            Ok(r) => r,
            Err(_) => Err(ConcurrencyError::Timeout(timeout)),
        }
    }

    /// Acquires the lock only if nobody holds or waits for it, in one txn that writes nothing when
    /// it fails: [`ConcurrencyError::Locked`] names the holder. (Go's `TryLock` creates and then
    /// deletes a key on every failure: two revisions each.)
    pub async fn try_lock(&mut self) -> Result<()> {
        if self.is_held() {
            return Ok(());
        }
        self.held = None;
        let key = queue::contender_key(&self.prefix, self.session.lease_id());
        let put = PutOptions::new().with_lease(self.session.lease_id());
        // A range compare on an empty range compares against a missing key (create revision 0),
        // so this holds exactly when no key exists under the prefix.
        let txn = Txn::new()
            .when([Compare::create_revision(&self.prefix, CompareOp::Equal, 0).with_prefix()])
            .and_then([Op::put(&key, Bytes::new(), put)])
            .or_else([queue::first_op(&self.prefix)]);
        let r = self.session.client().txn(txn).await.map_err(|e| {
            if e.server_error() == Some(crate::ServerError::LeaseNotFound) {
                self.session.expired("the session's lease was not found")
            } else {
                e.into()
            }
        })?;
        if !r.succeeded {
            let holder = r
                .responses
                .first()
                .and_then(|o| o.as_get())
                .and_then(|g| g.first())
                .map(|kv| kv.key_str().into_owned())
                .unwrap_or_default();
            return Err(ConcurrencyError::Locked {
                prefix: self.prefix.clone(),
                holder,
            });
        }
        let rev = r.header.revision;
        self.held = Some(Held::start(&self.session, key, rev, rev));
        Ok(())
    }

    /// Releases the lock: deletes this acquisition's key only if it is still this version (a
    /// fenced delete). [`ConcurrencyError::NotHeld`] if this handle holds nothing;
    /// [`ConcurrencyError::OwnershipLost`] if the key was already gone (the lock had been lost).
    pub async fn unlock(&mut self) -> Result<()> {
        let Some(held) = self.held.take() else {
            return Err(ConcurrencyError::NotHeld("the lock"));
        };
        if queue::delete_fenced(self.session.client(), &held.key, held.rev).await? {
            Ok(())
        } else {
            Err(ConcurrencyError::OwnershipLost(
                held.lost_now()
                    .unwrap_or(LostReason::KeyDeleted { revision: 0 }),
            ))
        }
    }

    /// A txn guard that holds only while this acquisition holds the lock (its key exists with
    /// the create revision it got). Put it in every write the holder makes, so a holder that
    /// lost the lock without knowing it yet cannot write. Never holds when nothing is held.
    pub fn is_owner(&self) -> Compare {
        match &self.held {
            Some(h) => queue::fence(&h.key, h.rev),
            // No key has create revision -1, so this guard never holds.
            None => Compare::create_revision(&self.prefix, CompareOp::Equal, -1),
        }
    }

    /// Resolves when the held lock is lost: its key was deleted (lease revoked or expired, or
    /// deleted by someone), or the session ended. Resolves at once with
    /// [`LostReason::Released`] when nothing is held. Cancel-safe.
    pub async fn lost(&self) -> LostReason {
        match &self.held {
            Some(h) => h.lost().await,
            None => LostReason::Released,
        }
    }
}
