//! Connection options of the client.

use std::path::PathBuf;
use std::time::Duration;

use super::version::{MinorVersion, PREVIOUS_MINOR};

/// TLS settings. A CA verifies the server; a certificate and key authenticate the client.
/// `Debug` never shows the key.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// PEM of the CA that signed the servers' certificates (system roots when `None`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate.
    pub cert_pem: Option<Vec<u8>>,
    /// PEM of the client key.
    pub key_pem: Option<Vec<u8>>,
    /// The name to verify the servers' certificates against (default: the endpoint's host).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |v: &Option<Vec<u8>>| v.as_ref().map(|b| format!("{} bytes", b.len()));
        f.debug_struct("TlsOptions")
            .field("ca_pem", &len(&self.ca_pem))
            .field("cert_pem", &len(&self.cert_pem))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "<redacted>"))
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// TLS with files on disk.
    pub fn from_files(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, super::Error> {
        let read = |p: Option<PathBuf>| -> Result<Option<Vec<u8>>, super::Error> {
            p.map(|p| {
                std::fs::read(&p).map_err(|e| super::Error::Io {
                    context: format!("reading {}", p.display()),
                    source: e,
                })
            })
            .transpose()
        };
        Ok(TlsOptions {
            ca_pem: read(ca)?,
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            server_name: None,
        })
    }
}

/// Options for [`Client::connect`](super::Client::connect). Build with [`ConnectOptions::new`] and
/// the `with_*` methods; the defaults suit a client on the same network as etcd. `Debug` never
/// shows the password or the TLS key.
#[derive(Clone)]
pub struct ConnectOptions {
    pub(crate) user: Option<(String, String)>,
    pub(crate) tls: Option<TlsOptions>,
    pub(crate) dial_timeout: Duration,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) keep_alive: Option<(Duration, Duration)>,
    pub(crate) keep_alive_while_idle: bool,
    pub(crate) max_send_bytes: usize,
    pub(crate) max_recv_bytes: usize,
    pub(crate) require_leader: bool,
    pub(crate) auto_sync_interval: Option<Duration>,
    pub(crate) max_unary_retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) min_server_version: Option<MinorVersion>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("user", &self.user.as_ref().map(|(u, _)| (u, "<redacted>")))
            .field("tls", &self.tls)
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("keep_alive_while_idle", &self.keep_alive_while_idle)
            .field("max_send_bytes", &self.max_send_bytes)
            .field("max_recv_bytes", &self.max_recv_bytes)
            .field("require_leader", &self.require_leader)
            .field("auto_sync_interval", &self.auto_sync_interval)
            .field("max_unary_retries", &self.max_unary_retries)
            .field("backoff", &self.backoff)
            .field("min_server_version", &self.min_server_version)
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            user: None,
            tls: None,
            dial_timeout: Duration::from_secs(2),
            request_timeout: None,
            keep_alive: None,
            keep_alive_while_idle: false,
            max_send_bytes: 2 * 1024 * 1024,
            max_recv_bytes: i32::MAX as usize,
            require_leader: false,
            auto_sync_interval: None,
            max_unary_retries: 100,
            backoff: Duration::from_millis(25),
            min_server_version: None,
        }
    }
}

/// The smallest HTTP/2 keepalive interval the client uses: etcd's server counts pings closer than
/// `--grpc-keepalive-min-time` (5 s) as abuse and answers with GOAWAY `too_many_pings`.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

impl ConnectOptions {
    /// The defaults: no auth, no TLS, 2 s dial timeout, no request timeout, no HTTP/2 pings,
    /// 2 MiB send and 2 GiB receive limits, no server version check.
    pub fn new() -> Self {
        Self::default()
    }
    /// Authenticate as `user` with `password`; the token is refreshed when it expires.
    pub fn with_user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }
    /// Use TLS for every endpoint (also implied by `https://` endpoints).
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Time allowed to establish a connection.
    pub fn with_dial_timeout(mut self, t: Duration) -> Self {
        self.dial_timeout = t;
        self
    }
    /// Deadline for each unary call, retries included. Streams are not bounded by it.
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }
    /// HTTP/2 keepalive pings every `interval` (raised to at least 10 s), failing the connection
    /// when a ping is not answered within `timeout`.
    pub fn with_keep_alive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keep_alive = Some((interval.max(MIN_KEEPALIVE_INTERVAL), timeout));
        self
    }
    /// Also ping while no call is open (off by default: etcd penalises it).
    pub fn with_keep_alive_while_idle(mut self, on: bool) -> Self {
        self.keep_alive_while_idle = on;
        self
    }
    /// Largest request message the client sends.
    pub fn with_max_send_bytes(mut self, n: usize) -> Self {
        self.max_send_bytes = n;
        self
    }
    /// Largest response message the client accepts.
    pub fn with_max_recv_bytes(mut self, n: usize) -> Self {
        self.max_recv_bytes = n;
        self
    }
    /// Ask servers to refuse calls (and end streams) while they have no leader.
    pub fn with_require_leader(mut self, on: bool) -> Self {
        self.require_leader = on;
        self
    }
    /// Refresh the endpoint list from the member list at this interval.
    pub fn with_auto_sync_interval(mut self, every: Duration) -> Self {
        self.auto_sync_interval = Some(every);
        self
    }
    /// How many times a repeatable call is retried (default 100).
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_unary_retries = n;
        self
    }
    /// Base pause between retry rounds (default 25 ms, ±10 % jitter).
    pub fn with_backoff(mut self, d: Duration) -> Self {
        self.backoff = d;
        self
    }
    /// Refuse to connect to servers older than `major.minor` (patch releases are not compared).
    /// [`Client::connect`](super::Client::connect) then calls Status on every endpoint, all at
    /// once and together bounded by the dial timeout, and fails with
    /// [`Error::OldCluster`](super::Error::OldCluster) naming the first endpoint found older.
    ///
    /// As in Go's clientv3 (3.5 and later), every endpoint must answer: an endpoint whose Status
    /// fails or does not answer within the dial timeout fails the connect with
    /// [`Error::VersionCheck`](super::Error::VersionCheck) naming it, because its version
    /// cannot be vouched for. Endpoints added later (`set_endpoints`, auto-sync) are not
    /// checked. Off by default.
    pub fn with_min_server_version(mut self, major: u32, minor: u32) -> Self {
        self.min_server_version = Some(MinorVersion::new(major, minor));
        self
    }
    /// Go's `RejectOldCluster`: with `true`, the same check as
    /// [`with_min_server_version`](Self::with_min_server_version) with the minor release before
    /// the API version the client speaks (3.5), so servers older than 3.4 are refused; with
    /// `false`, no check (this also clears a minimum set before). Off by default.
    pub fn with_reject_old_cluster(mut self, on: bool) -> Self {
        self.min_server_version = on.then_some(PREVIOUS_MINOR);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_interval_is_clamped_to_10s() {
        let o =
            ConnectOptions::new().with_keep_alive(Duration::from_secs(1), Duration::from_secs(3));
        assert_eq!(
            o.keep_alive,
            Some((Duration::from_secs(10), Duration::from_secs(3)))
        );
        let o =
            ConnectOptions::new().with_keep_alive(Duration::from_secs(30), Duration::from_secs(3));
        assert_eq!(
            o.keep_alive,
            Some((Duration::from_secs(30), Duration::from_secs(3)))
        );
        assert_eq!(ConnectOptions::new().keep_alive, None);
        assert!(!ConnectOptions::new().keep_alive_while_idle);
    }

    #[test]
    fn defaults_match_etcd_clientv3() {
        let o = ConnectOptions::new();
        assert_eq!(o.max_send_bytes, 2 * 1024 * 1024);
        assert_eq!(o.max_recv_bytes, i32::MAX as usize);
        assert_eq!(o.max_unary_retries, 100);
        assert_eq!(o.backoff, Duration::from_millis(25));
        assert_eq!(o.request_timeout, None);
        assert_eq!(o.auto_sync_interval, None);
        assert_eq!(o.min_server_version, None);
    }

    #[test]
    fn reject_old_cluster_is_the_previous_minor_and_can_be_turned_off() {
        let o = ConnectOptions::new().with_reject_old_cluster(true);
        assert_eq!(o.min_server_version, Some(MinorVersion::new(3, 4)));
        let o = o.with_min_server_version(3, 5);
        assert_eq!(o.min_server_version, Some(MinorVersion::new(3, 5)));
        let o = o.with_reject_old_cluster(false);
        assert_eq!(o.min_server_version, None);
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_shows_neither_password_nor_key() {
        let opts = ConnectOptions::new()
            .with_user("root", "hunter2")
            .with_tls(TlsOptions {
                key_pem: Some(b"-----BEGIN PRIVATE KEY-----secret".to_vec()),
                ..TlsOptions::default()
            });
        let text = format!("{opts:?}");
        assert!(text.contains("root"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            !text.contains("PRIVATE") && !text.contains("45, 45"),
            "{text}"
        );
    }
}
