//! The [`Client`]: endpoints, authentication, and the unary call path with retries.
//!
//! Every unary call goes through [`Client::call`] (or `call_member`) with a request declared in
//! the RPC table (`rpc.rs`), and then [`Client::unary`]: it picks a member (round-robin over
//! healthy members, or a named member for member-local calls), attaches the metadata (auth
//! token, `hasleader`, `client-api-version`), and on failure decides, by the call's [`Retry`]
//! class, whether to retry on another member, to refresh the auth token, or to report the
//! error — as [`Error::OutcomeUnknown`] when a write may have been applied.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::transport::{Channel, TransportError};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};

use super::error::{Error, Result, ServerError};
use super::options::ConnectOptions;
use super::pool::{Member, Pool};
use super::proto::etcdserverpb as pb;
use super::rpc::{Retry, Rpc};
use super::version::{MinorVersion, check_server_version};

/// Where a call goes.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Any healthy member (round-robin).
    Any,
    /// The member with this client URL.
    Member(String),
}

/// The metadata to attach to one request.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    token: Option<AsciiMetadataValue>,
    token_generation: u64,
    require_leader: bool,
}

impl Meta {
    /// The auth token generation this metadata carries; pass it to `Client::refresh_token` so
    /// that concurrent callers refresh only once.
    pub(crate) fn token_generation(&self) -> u64 {
        self.token_generation
    }

    /// Wraps `msg` in a request carrying this metadata.
    pub(crate) fn request<R>(&self, msg: R) -> tonic::Request<R> {
        let mut req = tonic::Request::new(msg);
        let md = req.metadata_mut();
        if let Some(t) = &self.token {
            md.insert("token", t.clone());
        }
        if self.require_leader {
            md.insert("hasleader", MetadataValue::from_static("true"));
        }
        md.insert("client-api-version", MetadataValue::from_static("3.5"));
        req
    }
}

#[derive(Debug, Default)]
struct TokenState {
    token: Option<AsciiMetadataValue>,
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) opts: Arc<ConnectOptions>,
    pub(crate) pool: Pool,
    token: std::sync::RwLock<TokenState>,
    refresh: tokio::sync::Mutex<()>,
    shared: SharedState,
    auto_sync: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.auto_sync.lock().ok().and_then(|mut g| g.take()) {
            h.abort();
        }
    }
}

/// An etcd v3 client. Cheap to clone (an `Arc`), `Send + Sync`; clones share connections,
/// the auth token, the lease keepalive stream and the watch streams.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// Connects to `endpoints` (`host:port`, `http://…`, `https://…`). Connections are made lazily;
    /// when a user is configured the client authenticates here (a server without auth enabled is
    /// accepted and the credentials are then unused). With a minimum server version
    /// ([`ConnectOptions::with_min_server_version`], [`ConnectOptions::with_reject_old_cluster`])
    /// it then checks the version of every endpoint and fails with [`Error::OldCluster`] or
    /// [`Error::VersionCheck`].
    pub async fn connect<E, S>(endpoints: E, opts: ConnectOptions) -> Result<Client>
    where
        E: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.as_ref().to_string())
            .collect();
        let opts = Arc::new(opts);
        let pool = Pool::new(opts.clone(), &endpoints)?;
        let client = Client {
            inner: Arc::new(Inner {
                opts: opts.clone(),
                pool,
                token: std::sync::RwLock::new(TokenState::default()),
                refresh: tokio::sync::Mutex::new(()),
                shared: SharedState::default(),
                auto_sync: std::sync::Mutex::new(None),
            }),
        };
        if opts.user.is_some() {
            // Bounded by the dial timeout, as etcd's client bounds its Authenticate at connect.
            tokio::time::timeout(opts.dial_timeout, client.refresh_token(0))
                .await
                .map_err(|_| Error::Timeout {
                    method: "Auth/Authenticate",
                    timeout: opts.dial_timeout,
                })??;
        }
        if let Some(min) = opts.min_server_version {
            client.check_server_versions(min).await?;
        }
        if let Some(every) = opts.auto_sync_interval {
            let weak = Arc::downgrade(&client.inner);
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(inner) = weak.upgrade() else { return };
                    let c = Client { inner };
                    if let Err(e) =
                        tokio::time::timeout(Duration::from_secs(5), c.sync_endpoints()).await
                    {
                        tracing::debug!(error = %e, "endpoint auto-sync timed out");
                    }
                }
            });
            if let Ok(mut g) = client.inner.auto_sync.lock() {
                *g = Some(task.abort_handle());
            }
        }
        Ok(client)
    }

    /// Calls Status on every endpoint at once, each bounded by the dial timeout, and fails with
    /// the first error to come back: [`Error::OldCluster`] for a server older than `min`,
    /// [`Error::VersionCheck`] for one that did not answer (Go's `checkVersion` likewise fails on
    /// any endpoint's error).
    async fn check_server_versions(&self, min: MinorVersion) -> Result<()> {
        use futures::stream::{FuturesUnordered, StreamExt};
        let timeout = self.inner.opts.dial_timeout;
        let mut checks: FuturesUnordered<_> = self
            .endpoints()
            .into_iter()
            .map(|endpoint| async move {
                let status = match tokio::time::timeout(timeout, self.status(&endpoint)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout {
                        method: "Maintenance/Status",
                        timeout,
                    }),
                };
                match status {
                    Ok(st) => check_server_version(&endpoint, &st.version, min),
                    Err(e) => Err(Error::VersionCheck {
                        endpoint,
                        source: Box::new(e),
                    }),
                }
            })
            .collect();
        while let Some(result) = checks.next().await {
            result?;
        }
        Ok(())
    }

    /// The endpoints calls are balanced over.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.pool.endpoints()
    }

    /// What the gRPC health `Watch` stream of the member at `endpoint` says: `Some(true)` when
    /// it reports SERVING, `Some(false)` when it reports anything else or the stream broke,
    /// `None` when it has not answered within `wait`. The stream (one per member channel, opened
    /// with the channel) is answered by the member itself: no raft traffic, nothing written.
    pub async fn serving(&self, endpoint: &str, wait: std::time::Duration) -> Result<Option<bool>> {
        let member = self.inner.pool.member(endpoint)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(serving) = member.serving() {
                return Ok(Some(serving));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Replaces the endpoints calls are balanced over.
    pub fn set_endpoints<S: AsRef<str>>(&self, endpoints: &[S]) -> Result<()> {
        let eps: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_string()).collect();
        self.inner.pool.set_endpoints(&eps)
    }

    /// Replaces the endpoints with the client URLs of the started voting members (a linearizable
    /// MemberList), as etcd's `Sync` does.
    pub async fn sync_endpoints(&self) -> Result<Vec<String>> {
        let resp = self
            .call(pb::MemberListRequest { linearizable: true })
            .await?;
        let urls: Vec<String> = resp
            .members
            .iter()
            .filter(|m| !m.name.is_empty() && !m.is_learner)
            .flat_map(|m| m.client_urls.iter().cloned())
            .collect();
        if !urls.is_empty() {
            self.set_endpoints(&urls)?;
        }
        Ok(self.endpoints())
    }

    /// Whether the member with `url` is currently believed healthy (connection up and the gRPC
    /// health service answering SERVING).
    /// Fails with [`Error::InvalidEndpoint`] for a URL the client does not know.
    pub fn is_endpoint_healthy(&self, url: &str) -> Result<bool> {
        Ok(self.inner.pool.known(url)?.is_healthy())
    }

    /// The per-client state of type `T` that every clone of this client shares, made on first
    /// use (the lease keepalive loop, the watch streams: each service owns its type).
    pub(crate) fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.inner.shared.get()
    }

    /// The next member for a stream, and the metadata to open it with.
    pub(crate) fn pick(&self) -> (Arc<Member>, Meta) {
        (self.inner.pool.pick(), self.meta())
    }

    pub(crate) fn meta(&self) -> Meta {
        let t = self.inner.token.read().unwrap_or_else(|p| p.into_inner());
        Meta {
            token: t.token.clone(),
            token_generation: t.generation,
            require_leader: self.inner.opts.require_leader,
        }
    }

    /// Re-authenticates unless another caller already did since `seen_generation`.
    pub(crate) async fn refresh_token(&self, seen_generation: u64) -> Result<()> {
        let Some((user, password)) = self.inner.opts.user.clone() else {
            return Ok(());
        };
        let _guard = self.inner.refresh.lock().await;
        if self
            .inner
            .token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
            != seen_generation
        {
            return Ok(());
        }
        let result = self
            .unary_once_each(pb::AuthenticateRequest {
                name: user,
                password,
            })
            .await;
        let token = match result {
            Ok(resp) => Some(resp.token),
            Err(e) if e.server_error() == Some(ServerError::AuthNotEnabled) => None,
            Err(e) => return Err(e),
        };
        let value = token
            .map(|t| {
                AsciiMetadataValue::try_from(t.as_str())
                    .map_err(|_| Error::InvalidArgument("server sent a non-ASCII token".into()))
            })
            .transpose()?;
        let mut state = self.inner.token.write().unwrap_or_else(|p| p.into_inner());
        state.token = value;
        state.generation += 1;
        Ok(())
    }

    /// Sends `req` (without metadata) once per member until one answers; used by Authenticate,
    /// which must not be retried blindly but may try each member once when it never got sent.
    async fn unary_once_each<R: Rpc>(&self, req: R) -> Result<R::Response> {
        let method = R::METHOD;
        let mut last = None;
        for _ in 0..self.inner.pool.len().max(1) {
            let m = self.inner.pool.pick();
            let sent = R::send(
                &self.inner.opts,
                m.channel.clone(),
                tonic::Request::new(req.clone()),
            );
            match sent.await {
                Ok(r) => return Ok(r.into_inner()),
                Err(st) => {
                    let sent = !never_sent(&st);
                    // Only a connection failure says something about the member's health; an
                    // answer the server refused (wrong password, ...) does not.
                    if !sent || st.code() == tonic::Code::Unavailable {
                        m.mark_unhealthy();
                    }
                    let err = Error::from_status(method, st);
                    if sent {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(Error::NoEndpoints))
    }

    /// Sends `req` to any healthy member, retried as the RPC table declares.
    pub(crate) async fn call<R: Rpc>(&self, req: R) -> Result<R::Response> {
        const {
            assert!(
                R::ROUTING.balanced(),
                "a member-local RPC needs call_member"
            )
        };
        self.call_routed(Route::Any, R::RETRY, req).await
    }

    /// Sends `req` to the member with client URL `endpoint`, retried as the RPC table declares
    /// (on that member only).
    pub(crate) async fn call_member<R: Rpc>(&self, endpoint: &str, req: R) -> Result<R::Response> {
        const { assert!(R::ROUTING.member(), "this RPC goes to any member: use call") };
        self.call_routed(Route::Member(endpoint.to_string()), R::RETRY, req)
            .await
    }

    /// [`Client::call`] with another retry class than the table's: a read-only txn is retried
    /// like a read when its caller asks for it (as etcd's client does for read-only txns).
    pub(crate) async fn call_as<R: Rpc>(&self, retry: Retry, req: R) -> Result<R::Response> {
        const {
            assert!(
                R::ROUTING.balanced(),
                "a member-local RPC needs call_member"
            )
        };
        self.call_routed(Route::Any, retry, req).await
    }

    /// Sends `req` on `route`, chosen at run time, for an RPC that may go either way.
    pub(crate) async fn call_on<R: Rpc>(&self, route: Route, req: R) -> Result<R::Response> {
        const {
            assert!(
                R::ROUTING.balanced() && R::ROUTING.member(),
                "this RPC has one routing: use call or call_member"
            )
        };
        self.call_routed(route, R::RETRY, req).await
    }

    /// Sends `req` on `route`: refused before sending when over the send limit, then the unary
    /// call path.
    async fn call_routed<R: Rpc>(&self, route: Route, retry: Retry, req: R) -> Result<R::Response> {
        self.check_send_size(R::METHOD, &req)?;
        let opts = &self.inner.opts;
        self.unary(R::METHOD, retry, route, |ch, meta| {
            R::send(opts, ch, meta.request(req.clone()))
        })
        .await
    }

    /// The unary call path: route, metadata, retries, token refresh, error mapping, and the
    /// request timeout over all of it.
    async fn unary<T, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        route: Route,
        f: F,
    ) -> Result<T>
    where
        F: Fn(Channel, Meta) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        // Set while an attempt is on its way: a write cut off by the timeout then may have been
        // applied. Between attempts (backoff) every earlier attempt provably failed unsent.
        // A member that let an attempt hang for the whole timeout is taken out of rotation until
        // its health service answers again (a stalled or blackholed connection).
        let in_flight: InFlight = std::sync::Mutex::new(None);
        let call = self.unary_with_retries(method, retry, route, f, &in_flight);
        match self.inner.opts.request_timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(r) => r,
                Err(_) => {
                    let err = Error::Timeout { method, timeout: t };
                    let stuck = in_flight.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(m) = &stuck {
                        m.mark_unhealthy();
                    }
                    if retry == Retry::NonRepeatable && stuck.is_some() {
                        Err(Error::OutcomeUnknown {
                            method,
                            source: Box::new(err),
                        })
                    } else {
                        Err(err)
                    }
                }
            },
            None => call.await,
        }
    }

    async fn unary_with_retries<T, F, Fut>(
        &self,
        method: &'static str,
        retry: Retry,
        route: Route,
        f: F,
        in_flight: &InFlight,
    ) -> Result<T>
    where
        F: Fn(Channel, Meta) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let opts = &self.inner.opts;
        let mut attempt: u32 = 0;
        let mut auth_refreshes = 0;
        loop {
            let member = match &route {
                Route::Any => self.inner.pool.pick(),
                Route::Member(url) => self.inner.pool.member(url)?,
            };
            let meta = self.meta();
            let generation = meta.token_generation;
            let tokenless = meta.token.is_none();
            set_in_flight(in_flight, Some(member.clone()));
            let result = f(member.channel.clone(), meta).await;
            set_in_flight(in_flight, None);
            let status = match result {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(st) => st,
            };
            let kind = ServerError::from_message(status.message());
            if let Some(k) = kind {
                let auth_error = matches!(
                    k,
                    ServerError::InvalidAuthToken | ServerError::AuthOldRevision
                ) || (k == ServerError::UserEmpty && opts.user.is_some())
                    // Connected while auth was off (no token), then auth was enabled: with a
                    // TLS client certificate etcd takes its common name as the user and
                    // refuses it; the configured user authenticates now.
                    || (tokenless
                        && matches!(
                            k,
                            ServerError::UserNotFound | ServerError::PermissionDenied
                        ));
                if auth_error && opts.user.is_some() && auth_refreshes < 2 {
                    auth_refreshes += 1;
                    self.refresh_token(generation).await?;
                    continue;
                }
            }
            let transport = kind.is_none() && is_transport_failure(&status);
            if transport {
                member.mark_unhealthy();
            }
            let unsent = never_sent(&status);
            let learner = kind == Some(ServerError::NotSupportedForLearner);
            let retryable = match retry {
                Retry::Repeatable => {
                    status.code() == tonic::Code::Unavailable || transport || learner
                }
                Retry::NonRepeatable => unsent || (learner && self.inner.pool.len() > 1),
            };
            if retryable && attempt < opts.max_unary_retries {
                attempt += 1;
                let quorum_round = (self.inner.pool.len() / 2 + 1) as u32;
                if attempt.is_multiple_of(quorum_round) {
                    tokio::time::sleep(jittered(opts.backoff)).await;
                }
                continue;
            }
            let err = Error::from_status(method, status);
            let unknown = retry == Retry::NonRepeatable
                && !unsent
                && (transport || kind.is_some_and(ServerError::leaves_outcome_unknown));
            return Err(if unknown {
                Error::OutcomeUnknown {
                    method,
                    source: Box::new(err),
                }
            } else {
                err
            });
        }
    }

    /// Refuses a request over the send limit before anything is sent, with `ResourceExhausted`
    /// as gRPC does. (tonic would fail it mid-send, with an `Internal` stream reset after the
    /// headers went out, which reads as an outcome-unknown write.)
    fn check_send_size(&self, method: &'static str, msg: &impl prost::Message) -> Result<()> {
        let len = msg.encoded_len();
        let limit = self.inner.opts.max_send_bytes;
        if len > limit {
            return Err(Error::Rpc {
                method,
                status: Box::new(tonic::Status::resource_exhausted(format!(
                    "trying to send message larger than max ({len} vs. {limit})"
                ))),
            });
        }
        Ok(())
    }
}

/// State attached to a client by the services, one value per type (see [`Client::shared`]).
/// The client does not name the types, so the services depend on the client and not the
/// reverse.
#[derive(Debug, Default)]
struct SharedState(std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);

impl SharedState {
    fn get<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let id = TypeId::of::<T>();
        if let Some(found) = map.get(&id).and_then(|v| v.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(T::default());
        map.insert(id, made.clone());
        made
    }
}

/// The member an attempt is on its way to, if one is.
type InFlight = std::sync::Mutex<Option<Arc<Member>>>;

fn set_in_flight(slot: &InFlight, member: Option<Arc<Member>>) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = member;
}

fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.9..1.1);
    d.mul_f64(f)
}

fn chain_text(st: &tonic::Status) -> String {
    let mut text = String::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(st);
    while let Some(e) = src {
        text.push_str(&format!("{e} | {e:?} | "));
        src = e.source();
    }
    text.to_ascii_lowercase()
}

/// Whether the request provably never reached a server (no connection could be made, or the
/// channel refused it before sending).
pub(crate) fn never_sent(st: &tonic::Status) -> bool {
    if st.message().starts_with("Service was not ready") {
        return true;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(st);
    while let Some(e) = src {
        if let Some(t) = e.downcast_ref::<TransportError>() {
            return t.never_sent();
        }
        src = e.source();
    }
    let chain = chain_text(st);
    chain.contains("connecterror")
        || chain.contains("tcp connect error")
        || chain.contains("connection refused")
        || chain.contains("error trying to connect")
        || chain.contains("dns error")
}

/// Whether a status is a connection-level failure rather than an answer from etcd.
pub(crate) fn is_transport_failure(st: &tonic::Status) -> bool {
    matches!(
        st.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    ) && ServerError::from_message(st.message()).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// §2.3 `client-api-version` and §2.6 `hasleader`: the request shape of every call's
    /// metadata (etcd only checks that the version is UTF-8, so no server test can see it).
    #[test]
    fn meta_request_carries_api_version_token_and_hasleader() {
        let plain = Meta {
            token: None,
            token_generation: 0,
            require_leader: false,
        };
        let r = plain.request(());
        assert_eq!(
            r.metadata()
                .get("client-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("3.5")
        );
        assert!(r.metadata().get("token").is_none());
        assert!(r.metadata().get("hasleader").is_none());

        let full = Meta {
            token: AsciiMetadataValue::try_from("tok.1").ok(),
            token_generation: 1,
            require_leader: true,
        };
        let r = full.request(());
        let md = r.metadata();
        assert_eq!(md.get("token").and_then(|v| v.to_str().ok()), Some("tok.1"));
        assert_eq!(
            md.get("hasleader").and_then(|v| v.to_str().ok()),
            Some("true")
        );
        assert_eq!(
            md.get("client-api-version").and_then(|v| v.to_str().ok()),
            Some("3.5")
        );
        // The version check's notion of "this client" is the version the header announces.
        assert_eq!(super::super::version::CLIENT_API_VERSION.to_string(), "3.5");
    }
}
