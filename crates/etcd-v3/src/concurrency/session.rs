//! Session: a lease kept alive for as long as the session lives, whose end is signalled.
//!
//! Locks and elections attach their keys to a session's lease, so the keys vanish when the
//! holder stops renewing it (crash, partition, [`Session::orphan`] and TTL) or revokes it
//! ([`Session::close`]).

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use super::error::{ConcurrencyError, Result};
use crate::Client;

/// TTL of a session's lease when none is chosen, in seconds (as in etcd's Go client).
pub const DEFAULT_TTL_SECS: i64 = 60;

/// Options of [`Session::with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    ttl: i64,
    lease: Option<i64>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            ttl: DEFAULT_TTL_SECS,
            lease: None,
        }
    }
}

impl SessionOptions {
    /// A new lease with the default TTL of 60 s.
    pub fn new() -> Self {
        Self::default()
    }
    /// The TTL of the new lease, in seconds (the server raises it to its minimum, 2 s with
    /// default timings). Values ≤ 0 keep the default.
    pub fn with_ttl(mut self, ttl_secs: i64) -> Self {
        if ttl_secs > 0 {
            self.ttl = ttl_secs;
        }
        self
    }
    /// Use (and keep alive) an existing lease instead of granting one. Unlike Go's client, an
    /// unknown lease is an error at once.
    pub fn with_lease(mut self, lease_id: i64) -> Self {
        self.lease = Some(lease_id);
        self
    }
}

/// A lease kept alive in the background. Cheap to clone; clones share the lease. The lease stops
/// being renewed (without being revoked) when [`Session::orphan`] is called or every clone is
/// dropped, and is revoked by [`Session::close`].
#[derive(Debug, Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    lease: i64,
    ttl: i64,
    /// `Some(reason)` once the session has ended.
    done: watch::Receiver<Option<String>>,
    /// Dropping or firing this stops the keepalive task.
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl Session {
    /// A session on a new lease with the default TTL (60 s).
    pub async fn new(client: &Client) -> Result<Session> {
        Self::with_options(client, SessionOptions::new()).await
    }

    /// A session with the given options.
    pub async fn with_options(client: &Client, opts: SessionOptions) -> Result<Session> {
        let (lease, ttl, existing) = match opts.lease {
            Some(id) => {
                let t = client.lease_time_to_live(id, false).await?;
                if !t.exists() {
                    return Err(ConcurrencyError::SessionExpired {
                        lease: id,
                        reason: "the lease does not exist".into(),
                    });
                }
                (id, t.granted_ttl, true)
            }
            None => {
                let g = client.lease_grant(opts.ttl, None).await?;
                (g.id, g.ttl, false)
            }
        };
        let mut keeper = client.lease_keep_alive(lease).await?;
        if existing {
            // The lease may have ended between the check and the first renewal.
            if let Err(e) = keeper.changed().await {
                return Err(ConcurrencyError::SessionExpired {
                    lease,
                    reason: e.to_string(),
                });
            }
        }
        let (done_tx, done) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let reason = tokio::select! {
                lost = keeper.lost() => lost.to_string(),
                _ = stop_rx => "the session was orphaned or closed".to_string(),
            };
            drop(keeper);
            done_tx.send_replace(Some(reason));
        });
        Ok(Session {
            inner: Arc::new(Inner {
                client: client.clone(),
                lease,
                ttl,
                done,
                stop: std::sync::Mutex::new(Some(stop)),
            }),
        })
    }

    /// The client the session uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The session's lease ID.
    pub fn lease_id(&self) -> i64 {
        self.inner.lease
    }

    /// The lease's granted TTL, in seconds.
    pub fn ttl(&self) -> i64 {
        self.inner.ttl
    }

    /// Whether the session has ended (see [`Session::done`]).
    pub fn is_done(&self) -> bool {
        self.inner.done.borrow().is_some()
    }

    /// Resolves when the session ends: its lease expired or was revoked (the keepalive got TTL 0),
    /// no renewal was answered before the lease's deadline, or the session was orphaned or closed.
    /// Returns [`ConcurrencyError::SessionExpired`] with the reason. Cancel-safe.
    pub async fn done(&self) -> ConcurrencyError {
        let mut rx = self.inner.done.clone();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "the keepalive task stopped".to_string(),
        };
        self.expired(reason)
    }

    /// Stops renewing the lease without revoking it: keys attached to it live until its TTL runs
    /// out. [`Session::done`] fires at once.
    pub fn orphan(&self) {
        if let Ok(mut stop) = self.inner.stop.lock()
            && let Some(tx) = stop.take()
        {
            let _ = tx.send(());
        }
    }

    /// Stops renewing and revokes the lease, deleting every key attached to it (locks held and
    /// candidacies included) in one revision. A lease already gone is not an error.
    pub async fn close(&self) -> Result<()> {
        self.orphan();
        match self.inner.client.lease_revoke(self.inner.lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.server_error() == Some(crate::ServerError::LeaseNotFound) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn expired(&self, reason: impl Into<String>) -> ConcurrencyError {
        ConcurrencyError::SessionExpired {
            lease: self.inner.lease,
            reason: reason.into(),
        }
    }
}
