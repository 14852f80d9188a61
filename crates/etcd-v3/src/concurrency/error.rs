//! The error type of the concurrency recipes.

use std::time::Duration;

use super::queue::LostReason;

/// Result of a concurrency recipe call.
pub type Result<T, E = ConcurrencyError> = std::result::Result<T, E>;

/// An error of a [`Session`](super::Session), [`Mutex`](super::Mutex),
/// [`Election`](super::Election) or [`Stm`](super::Stm) call.
#[derive(Debug, thiserror::Error)]
pub enum ConcurrencyError {
    /// The etcd client failed.
    #[error(transparent)]
    Client(#[from] crate::Error),
    /// The session's lease is gone (expired, revoked, not renewed in time, or the session was
    /// closed or orphaned), so nothing can be held with it any more.
    #[error("session (lease {lease:x}) expired: {reason}")]
    SessionExpired {
        /// The session's lease ID.
        lease: i64,
        /// Why the session ended.
        reason: String,
    },
    /// [`Mutex::try_lock`](super::Mutex::try_lock) found the lock held (or waited for) by
    /// someone else.
    #[error("lock {prefix} is held by {holder}")]
    Locked {
        /// The lock's prefix.
        prefix: String,
        /// The key of the current holder (or of the first waiter when the holder just left).
        holder: String,
    },
    /// The mutex or election handle holds nothing to release or fence with.
    #[error("{0} is not held by this handle")]
    NotHeld(&'static str),
    /// What was held is gone: the key was deleted or the session ended. A fenced operation
    /// (unlock, resign, proclaim) found its key gone or replaced.
    #[error("ownership lost: {0}")]
    OwnershipLost(LostReason),
    /// [`Election::proclaim`](super::Election::proclaim) by a candidate that is not the leader.
    #[error("not the leader of election {prefix}")]
    NotLeader {
        /// The election's prefix.
        prefix: String,
    },
    /// [`Election::leader`](super::Election::leader) found no candidate.
    #[error("election {prefix} has no leader")]
    NoLeader {
        /// The election's prefix.
        prefix: String,
    },
    /// An STM transaction kept conflicting with concurrent writers and gave up.
    #[error("STM transaction conflicted {attempts} times in a row; giving up")]
    Conflict {
        /// How many times the apply function ran.
        attempts: u32,
    },
    /// A bounded wait ran out; what was queued has been withdrawn.
    #[error("gave up after waiting {0:?}")]
    Timeout(Duration),
    /// An STM apply function aborted the transaction; nothing was written.
    #[error("STM transaction aborted: {0}")]
    Aborted(String),
    /// A watch needed by the recipe ended.
    #[error("watch on {key} ended unexpectedly")]
    WatchEnded {
        /// The watched key.
        key: String,
    },
}
