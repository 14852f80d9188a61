//! Lease calls: grant, revoke, time-to-live, list, and keepalives.
//!
//! Kept-alive leases share **one** bidirectional `LeaseKeepAlive` stream per client (clones
//! included), opened lazily by a background task when the first [`LeaseKeeper`] is made:
//!
//! - the first renewal of a lease is sent at once; after each answer the next one is sent
//!   **TTL/3** later (etcd's client rounds this up to its 500 ms poll; this one is exact);
//! - a failed stream is reopened on the next member (round-robin over healthy members) after
//!   500 ms, and every kept lease is renewed at once on the new stream; a stream on which a
//!   renewal stays unanswered for TTL/3 (clamped to 0.5–2 s; 1 s before the first answer) is
//!   abandoned and reopened on the next member at once, so a hung (paused or partitioned)
//!   member does not cost the lease;
//! - a lease is **lost** when the server answers TTL ≤ 0 (expired, revoked, or unknown), or when no
//!   renewal was answered before its **deadline**. The deadline is conservative: the send time of
//!   the last answered renewal plus the TTL it returned (the server restarted the TTL no earlier
//!   than that send). Before the first answer the deadline is the dial timeout + 1 s after
//!   [`Client::lease_keep_alive`] was called, as in etcd's client. A lost lease is not renewed
//!   again.
//!
//! A [`LeaseKeeper`] shows the latest state as a value (a `tokio::sync::watch`), not a queue:
//! nothing piles up when it is not read. Several keepers of one lease share one renewal; when the
//! last is dropped the lease is no longer renewed (and not revoked: it expires after its TTL).
//!
//! ```no_run
//! # async fn demo(client: etcd_v3::Client) -> etcd_v3::Result<()> {
//! let lease = client.lease_grant(10, None).await?;
//! let keeper = client.lease_keep_alive(lease.id).await?;
//! tokio::select! {
//!     lost = keeper.lost() => eprintln!("{lost}"),
//!     _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
//!         keeper.revoke().await?;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::client::{Client, Meta, is_transport_failure};
use super::error::{Error, Result, ServerError};
use super::kv::Header;
use super::pool::Member;
use super::proto::etcdserverpb as pb;
use super::rpc::{Rpc, stub};

const KEEPALIVE_METHOD: &str = <pb::LeaseKeepAliveRequest as Rpc>::METHOD;
/// Pause before reopening a keepalive stream that failed.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);
/// Bounds of the time a renewal may stay unanswered before the stream is abandoned.
const MIN_STALL: Duration = Duration::from_millis(500);
const MAX_STALL: Duration = Duration::from_secs(2);
/// Stall limit before the first answer for a lease (its TTL is not known yet).
const FIRST_STALL: Duration = Duration::from_secs(1);
/// Requests queued on one stream before it is considered stuck.
const STREAM_QUEUE: usize = 256;

/// Result of [`Client::lease_grant`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseGrant {
    /// Response header.
    pub header: Header,
    /// The lease ID (chosen by the server unless one was asked for).
    pub id: i64,
    /// The TTL granted, in seconds (at least the server's minimum, 2 s with default timings).
    pub ttl: i64,
}

/// Result of [`Client::lease_revoke`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRevoke {
    /// Response header; `header.revision` is the revision at which the lease's keys were deleted
    /// (all of them at once).
    pub header: Header,
}

/// Result of [`Client::lease_time_to_live`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseTimeToLive {
    /// Response header.
    pub header: Header,
    /// The lease ID.
    pub id: i64,
    /// Seconds left; **-1 when the lease does not exist** (expired, revoked, or never granted).
    pub ttl: i64,
    /// The TTL the lease was granted with (0 when it does not exist).
    pub granted_ttl: i64,
    /// The keys attached to the lease (only when asked for).
    pub keys: Vec<Bytes>,
}

impl LeaseTimeToLive {
    /// Whether the lease exists.
    pub fn exists(&self) -> bool {
        self.ttl >= 0
    }
}

impl Client {
    /// Grants a lease of `ttl_secs` seconds, with the ID `id` or (for `None`) one chosen by the
    /// server. The server raises TTLs below its minimum (`ceil(1.5 × election timeout)`), and
    /// refuses TTLs above 9 000 000 000 s ([`ServerError::LeaseTtlTooLarge`]) and IDs in use
    /// ([`ServerError::LeaseExist`]). Retried on `Unavailable` like etcd's client does; a retry of a
    /// grant that was applied leaves an orphan lease that expires after its TTL.
    pub async fn lease_grant(&self, ttl_secs: i64, id: Option<i64>) -> Result<LeaseGrant> {
        let req = pb::LeaseGrantRequest {
            ttl: ttl_secs,
            id: id.unwrap_or(0),
        };
        let resp = self.call(req).await?;
        if !resp.error.is_empty() {
            let st = tonic::Status::unknown(resp.error);
            return Err(Error::from_status("Lease/LeaseGrant", st));
        }
        Ok(LeaseGrant {
            header: resp.header.into(),
            id: resp.id,
            ttl: resp.ttl,
        })
    }

    /// Revokes a lease: the lease ends and every key attached to it is deleted, all in one
    /// revision. An unknown lease is [`ServerError::LeaseNotFound`]. Keepers of the lease on this
    /// client are told it is lost.
    pub async fn lease_revoke(&self, id: i64) -> Result<LeaseRevoke> {
        let result = self.call(pb::LeaseRevokeRequest { id }).await;
        let gone = match &result {
            Ok(_) => Some("revoked by this client"),
            Err(e) if e.server_error() == Some(ServerError::LeaseNotFound) => {
                Some("the lease was not found when this client revoked it")
            }
            Err(_) => None,
        };
        if let Some(reason) = gone {
            self.shared::<LeaseShared>().mark_lost(id, reason);
        }
        Ok(LeaseRevoke {
            header: result?.header.into(),
        })
    }

    /// The remaining and granted TTL of a lease, and with `with_keys` its attached keys. An unknown
    /// lease is not an error: it has `ttl == -1`.
    pub async fn lease_time_to_live(&self, id: i64, with_keys: bool) -> Result<LeaseTimeToLive> {
        let req = pb::LeaseTimeToLiveRequest {
            id,
            keys: with_keys,
        };
        let resp = self.call(req).await?;
        Ok(LeaseTimeToLive {
            header: resp.header.into(),
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys,
        })
    }

    /// The IDs of every lease in the cluster.
    pub async fn lease_leases(&self) -> Result<Vec<i64>> {
        let resp = self.call(pb::LeaseLeasesRequest {}).await?;
        Ok(resp.leases.into_iter().map(|l| l.id).collect())
    }

    /// Renews a lease once (on a stream of its own) and returns its new TTL in seconds. A lease
    /// that does not exist (the server answers TTL 0) is [`ServerError::LeaseNotFound`]. Retried on
    /// `Unavailable` within the request timeout.
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<i64> {
        let resp = self.call(pb::LeaseKeepAliveRequest { id }).await?;
        if resp.ttl <= 0 {
            return Err(lease_not_found(KEEPALIVE_METHOD));
        }
        Ok(resp.ttl)
    }

    /// Keeps a lease alive until the returned keeper (and every clone of it, and every other
    /// keeper of the same lease from this client) is dropped. The first renewal is sent at once;
    /// see the [module docs](self) for the schedule, the failover and when a lease counts as lost.
    /// Returns at once; wait for [`LeaseKeeper::changed`] to see the first answer.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeeper> {
        if id <= 0 {
            return Err(Error::InvalidArgument(format!(
                "lease ID must be positive, got {id}"
            )));
        }
        let shared = self.shared::<LeaseShared>();
        let first_deadline = Instant::now() + self.inner.opts.dial_timeout + Duration::from_secs(1);
        let (rx, spawn) = {
            let mut st = shared.lock();
            let rx = match st.leases.get(&id) {
                Some(k) => k.tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(KeepState::Pending);
                    st.leases.insert(id, Kept::new(tx, first_deadline));
                    rx
                }
            };
            let spawn = !st.running;
            st.running = true;
            (rx, spawn)
        };
        if spawn {
            tokio::spawn(keepalive_loop(self.clone()));
        }
        shared.wake.notify_one();
        Ok(LeaseKeeper {
            id,
            rx,
            client: self.clone(),
        })
    }
}

fn lease_not_found(method: &'static str) -> Error {
    Error::Server {
        method,
        kind: ServerError::LeaseNotFound,
        code: tonic::Code::NotFound,
        message: ServerError::LeaseNotFound.message().to_string(),
    }
}

/// The state of a kept lease, as published to its keepers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeepState {
    /// No renewal answered yet.
    Pending,
    /// Renewed: the TTL of the last answer and the deadline it gives.
    Alive { ttl: i64, expires_at: Instant },
    /// Lost, for this reason; no longer renewed.
    Lost(String),
}

/// A handle keeping a lease alive (see [`Client::lease_keep_alive`]). Shows the latest renewal as
/// a value; dropping the last keeper of a lease stops renewing it without revoking it.
#[derive(Debug, Clone)]
pub struct LeaseKeeper {
    id: i64,
    rx: watch::Receiver<KeepState>,
    client: Client,
}

impl LeaseKeeper {
    /// The lease ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The TTL (seconds) the server gave at the latest renewal; `None` before the first answer and
    /// once the lease is lost.
    pub fn ttl(&self) -> Option<i64> {
        match &*self.rx.borrow() {
            KeepState::Alive { ttl, .. } => Some(*ttl),
            _ => None,
        }
    }

    /// The instant by which the lease has expired at the latest unless renewed again (see the
    /// [module docs](self)); `None` before the first answer and once lost.
    pub fn expires_at(&self) -> Option<std::time::Instant> {
        match &*self.rx.borrow() {
            KeepState::Alive { expires_at, .. } => Some(expires_at.into_std()),
            _ => None,
        }
    }

    /// Whether the lease is known to be lost (see [`LeaseKeeper::lost`]).
    pub fn is_lost(&self) -> bool {
        matches!(&*self.rx.borrow(), KeepState::Lost(_))
    }

    /// Waits for the next renewal (or the first one) and returns its TTL, or the
    /// [`Error::LeaseLost`] once the lease is lost (at once if it already is).
    pub async fn changed(&mut self) -> Result<i64> {
        loop {
            if let Some(e) = self.lost_error() {
                return Err(e);
            }
            if self.rx.changed().await.is_err() {
                return Err(self.lost_error().unwrap_or_else(|| self.halted()));
            }
            let state = self.rx.borrow_and_update().clone();
            match state {
                KeepState::Alive { ttl, .. } => return Ok(ttl),
                KeepState::Lost(reason) => {
                    return Err(Error::LeaseLost {
                        id: self.id,
                        reason,
                    });
                }
                KeepState::Pending => {}
            }
        }
    }

    /// Resolves when the lease is lost, with [`Error::LeaseLost`] saying why: the server answered
    /// TTL 0 (expired or revoked elsewhere), no renewal was answered before the deadline, or it was
    /// revoked through this client. Cancel-safe; usable from `&self` in a `select!`.
    pub async fn lost(&self) -> Error {
        let mut rx = self.rx.clone();
        loop {
            if let KeepState::Lost(reason) = &*rx.borrow_and_update() {
                return Error::LeaseLost {
                    id: self.id,
                    reason: reason.clone(),
                };
            }
            if rx.changed().await.is_err() {
                return self.lost_error().unwrap_or_else(|| self.halted());
            }
        }
    }

    /// Revokes the lease (deleting its keys) and stops renewing it; every keeper of it on this
    /// client then reports it lost.
    pub async fn revoke(self) -> Result<LeaseRevoke> {
        self.client.lease_revoke(self.id).await
    }

    fn lost_error(&self) -> Option<Error> {
        match &*self.rx.borrow() {
            KeepState::Lost(reason) => Some(Error::LeaseLost {
                id: self.id,
                reason: reason.clone(),
            }),
            _ => None,
        }
    }

    fn halted(&self) -> Error {
        Error::LeaseLost {
            id: self.id,
            reason: "the keepalive loop stopped".into(),
        }
    }
}

/// Per-client lease state shared by all clones ([`Client::shared`]): the kept leases and whether
/// the keepalive task runs.
#[derive(Debug, Default)]
pub(crate) struct LeaseShared {
    state: Mutex<KeepAliveState>,
    /// Wakes the keepalive task (a lease was added or revoked).
    wake: Notify,
}

#[derive(Debug, Default)]
struct KeepAliveState {
    leases: HashMap<i64, Kept>,
    /// Whether a keepalive task is running; it exits (clearing this) when no lease is kept.
    running: bool,
}

/// One kept lease.
#[derive(Debug)]
struct Kept {
    tx: watch::Sender<KeepState>,
    /// When to send the next renewal (only while none is outstanding).
    next_send: Instant,
    /// When the lease counts as lost unless a renewal is answered.
    deadline: Instant,
    /// Send time of the renewal outstanding on the current stream.
    inflight: Option<Instant>,
    /// TTL of the last answer.
    ttl: Option<i64>,
}

impl Kept {
    fn new(tx: watch::Sender<KeepState>, deadline: Instant) -> Self {
        Kept {
            tx,
            next_send: Instant::now(),
            deadline,
            inflight: None,
            ttl: None,
        }
    }

    /// How long a renewal may stay unanswered before the stream is abandoned.
    fn stall_limit(&self) -> Duration {
        match self.ttl {
            Some(ttl) => third(ttl).clamp(MIN_STALL, MAX_STALL),
            None => FIRST_STALL,
        }
    }

    fn lose(&self, reason: &str) {
        self.tx.send_replace(KeepState::Lost(reason.to_string()));
    }
}

fn third(ttl_secs: i64) -> Duration {
    Duration::from_millis(u64::try_from(ttl_secs).unwrap_or(0).saturating_mul(1000) / 3)
}

fn secs(ttl_secs: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0))
}

/// `t + d`, saturating at about 30 years from now.
fn add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d.min(Duration::from_secs(30 * 365 * 86400)))
        .unwrap_or(t)
}

impl LeaseShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeepAliveState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a kept lease lost (and stops renewing it).
    fn mark_lost(&self, id: i64, reason: &str) {
        if let Some(k) = self.lock().leases.remove(&id) {
            k.lose(reason);
        }
        self.wake.notify_one();
    }
}

/// What a stream task reports to the keepalive loop.
enum Event {
    Answer(u64, pb::LeaseKeepAliveResponse),
    Ended(u64, Option<Error>),
}

/// The open keepalive stream: where to send requests, and its task (aborted on drop).
struct OpenStream {
    generation: u64,
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The keepalive loop of a client: runs while any lease is kept.
async fn keepalive_loop(client: Client) {
    let shared = client.shared::<LeaseShared>();
    let shared = &*shared;
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let mut stream: Option<OpenStream> = None;
    let mut generation: u64 = 0;
    let mut reopen_at = Instant::now();
    loop {
        let now = Instant::now();
        let mut abandon = false;
        let mut closed = false;
        let mut wake_at: Option<Instant> = None;
        {
            let mut st = shared.lock();
            st.leases.retain(|id, k| {
                if k.tx.receiver_count() == 0 {
                    tracing::debug!(lease = id, "no keeper left; no longer renewing");
                    return false;
                }
                if now >= k.deadline {
                    tracing::debug!(lease = id, "keepalive deadline passed; lease lost");
                    k.lose("no renewal was answered before the lease's deadline");
                    return false;
                }
                true
            });
            if st.leases.is_empty() {
                st.running = false;
                return;
            }
            if stream.is_none() && now >= reopen_at {
                generation += 1;
                let (member, meta) = client.pick();
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                tracing::debug!(member = %member.url, "opening the lease keepalive stream");
                let task = tokio::spawn(run_stream(
                    client.clone(),
                    member,
                    meta,
                    rx,
                    generation,
                    ev_tx.clone(),
                ));
                stream = Some(OpenStream {
                    generation,
                    tx,
                    task,
                });
                for k in st.leases.values_mut() {
                    k.inflight = None;
                    k.next_send = now;
                }
            }
            if let Some(s) = &stream {
                for (id, k) in st.leases.iter_mut() {
                    match k.inflight {
                        Some(sent) if now >= sent + k.stall_limit() => {
                            tracing::debug!(
                                lease = id,
                                "renewal unanswered; abandoning the stream"
                            );
                            abandon = true;
                        }
                        Some(_) => {}
                        None if now >= k.next_send => {
                            match s.tx.try_send(pb::LeaseKeepAliveRequest { id: *id }) {
                                Ok(()) => k.inflight = Some(now),
                                Err(mpsc::error::TrySendError::Full(_)) => abandon = true,
                                // The stream task ended (its Ended event is on the way).
                                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                            }
                        }
                        None => {}
                    }
                }
            }
            let mut at = |t: Instant| wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            for k in st.leases.values() {
                at(k.deadline);
                if stream.is_some() {
                    match k.inflight {
                        Some(sent) => at(sent + k.stall_limit()),
                        None => at(k.next_send),
                    }
                }
            }
            if stream.is_none() {
                at(reopen_at);
            }
        }
        if abandon || closed {
            stream = None;
            reopen_at = if closed { now + REOPEN_BACKOFF } else { now };
            continue;
        }
        let sleep = tokio::time::sleep_until(wake_at.unwrap_or(add(now, Duration::from_secs(1))));
        tokio::select! {
            _ = sleep => {}
            _ = shared.wake.notified() => {}
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { continue };
                match ev {
                    Event::Answer(g, resp) if stream.as_ref().is_some_and(|s| s.generation == g) => {
                        handle_answer(shared, resp);
                    }
                    Event::Ended(g, err) if stream.as_ref().is_some_and(|s| s.generation == g) => {
                        match err {
                            Some(e) => tracing::debug!(error = %e, "lease keepalive stream failed"),
                            None => tracing::debug!("lease keepalive stream closed by the server"),
                        }
                        stream = None;
                        reopen_at = Instant::now() + REOPEN_BACKOFF;
                    }
                    _ => {}
                }
            }
        }
    }
}

fn handle_answer(shared: &LeaseShared, resp: pb::LeaseKeepAliveResponse) {
    let now = Instant::now();
    let mut st = shared.lock();
    let Some(k) = st.leases.get_mut(&resp.id) else {
        return;
    };
    let sent = k.inflight.take().unwrap_or(now);
    if resp.ttl <= 0 {
        tracing::debug!(lease = resp.id, "server answered TTL 0; lease lost");
        k.lose("the server answered TTL 0: the lease expired, was revoked, or never existed");
        st.leases.remove(&resp.id);
        return;
    }
    k.ttl = Some(resp.ttl);
    k.deadline = add(sent, secs(resp.ttl));
    k.next_send = add(now, third(resp.ttl));
    k.tx.send_replace(KeepState::Alive {
        ttl: resp.ttl,
        expires_at: k.deadline,
    });
}

/// One keepalive stream: forwards answers to the loop until the stream ends.
async fn run_stream(
    client: Client,
    member: Arc<Member>,
    meta: Meta,
    rx: mpsc::Receiver<pb::LeaseKeepAliveRequest>,
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
) {
    let req = meta.request(ReceiverStream::new(rx));
    let end = match stub::lease(&client.inner.opts, member.channel.clone())
        .lease_keep_alive(req)
        .await
    {
        Err(st) => Some(st),
        Ok(resp) => {
            let mut answers = resp.into_inner();
            loop {
                match answers.message().await {
                    Ok(Some(m)) => {
                        if events.send(Event::Answer(generation, m)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break None,
                    Err(st) => break Some(st),
                }
            }
        }
    };
    if end.as_ref().is_some_and(is_transport_failure) {
        member.mark_unhealthy();
    }
    let err = end.map(|st| Error::from_status(KEEPALIVE_METHOD, st));
    let _ = events.send(Event::Ended(generation, err));
}
