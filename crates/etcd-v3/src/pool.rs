//! Endpoints and their channels: one lazily-connected HTTP/2 channel per member, a health flag
//! per member kept current by a gRPC health `Watch` stream (no raft traffic), and round-robin
//! selection over the healthy ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::error::{Error, Result};
use super::options::ConnectOptions;
use super::transport::{Channel, TlsConfig};

/// Normalises an endpoint (`host:port`, `http://host:port`, `https://host:port`) to a URL.
pub fn normalize_endpoint(ep: &str, tls: bool) -> Result<String> {
    let ep = ep.trim().trim_end_matches('/');
    let invalid = |reason: &str| Error::InvalidEndpoint {
        endpoint: ep.to_string(),
        reason: reason.into(),
    };
    let (scheme, rest) = match ep.split_once("://") {
        Some(("http", r)) => ("http", r),
        Some(("https", r)) => ("https", r),
        Some((s, _)) => return Err(invalid(&format!("unsupported scheme {s:?}"))),
        None => (if tls { "https" } else { "http" }, ep),
    };
    if rest.is_empty() || rest.contains('/') {
        return Err(invalid("expected host:port"));
    }
    let port = rest
        .rsplit_once(':')
        .map(|(_, p)| p)
        .ok_or_else(|| invalid("missing port"))?;
    port.parse::<u16>().map_err(|_| invalid("bad port"))?;
    Ok(format!("{scheme}://{rest}"))
}

/// One etcd member as the client sees it.
#[derive(Debug)]
pub struct Member {
    /// The member's client URL.
    pub url: String,
    pub(crate) channel: Channel,
    healthy: AtomicBool,
    /// Whether the health service has answered at least once (set with the first message of a
    /// `Watch` stream, or when the server has no health service).
    health_answered: AtomicBool,
    /// Wakes the health loop to re-open its watch, so a member marked unhealthy by a failed call
    /// becomes healthy again only once the health service answers anew.
    recheck: Arc<tokio::sync::Notify>,
    health_task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Member {
    /// Whether the member is currently believed reachable and serving.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// What the member's health `Watch` stream last said: `Some(true)` for SERVING (or a server
    /// without the health service that answers), `Some(false)` for any other status or a broken
    /// stream, `None` before the first answer.
    pub fn serving(&self) -> Option<bool> {
        self.health_answered
            .load(Ordering::Relaxed)
            .then(|| self.is_healthy())
    }
    /// Takes the member out of rotation until its health service answers SERVING again.
    pub(crate) fn mark_unhealthy(&self) {
        self.healthy.store(false, Ordering::Relaxed);
        self.recheck.notify_one();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(h) = self.health_task.lock().ok().and_then(|mut g| g.take()) {
            h.abort();
        }
    }
}

/// The health loop of one member: a `grpc.health.v1.Health/Watch` stream on the member's channel.
/// The server answers at once and again on every change; a broken connection ends the stream, so
/// a dead member is marked unhealthy within a round trip. Servers without the health service are
/// treated as healthy while they answer.
async fn watch_health(member: std::sync::Weak<Member>, recheck: Arc<tokio::sync::Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(m) = member.upgrade() else { return };
        let mut client = HealthClient::new(m.channel.clone());
        drop(m);
        let req = HealthCheckRequest {
            service: String::new(),
        };
        match client.watch(req).await {
            Ok(resp) => {
                let mut stream = resp.into_inner();
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        _ = recheck.notified() => break,
                    };
                    match msg {
                        Ok(Some(msg)) => {
                            let Some(m) = member.upgrade() else { return };
                            let serving = msg.status == ServingStatus::Serving as i32;
                            m.healthy.store(serving, Ordering::Relaxed);
                            m.health_answered.store(true, Ordering::Relaxed);
                            backoff = Duration::from_millis(100);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Err(st) if st.code() == tonic::Code::Unimplemented => {
                let Some(m) = member.upgrade() else { return };
                m.healthy.store(true, Ordering::Relaxed);
                m.health_answered.store(true, Ordering::Relaxed);
                drop(m);
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Err(_) => {}
        }
        let Some(m) = member.upgrade() else { return };
        m.healthy.store(false, Ordering::Relaxed);
        m.health_answered.store(true, Ordering::Relaxed);
        drop(m);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The client's members: the balanced set (from the endpoint list) plus members reached only by
/// name for member-local calls.
#[derive(Debug)]
pub(crate) struct Pool {
    opts: Arc<ConnectOptions>,
    /// Built once from the options' TLS settings, shared by every member's channel.
    tls_config: Option<TlsConfig>,
    balanced: RwLock<Vec<Arc<Member>>>,
    by_url: Mutex<HashMap<String, Arc<Member>>>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) fn new(opts: Arc<ConnectOptions>, endpoints: &[String]) -> Result<Pool> {
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let tls_config = opts.tls.as_ref().map(TlsConfig::new).transpose()?;
        let pool = Pool {
            opts,
            tls_config,
            balanced: RwLock::new(Vec::new()),
            by_url: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        };
        pool.set_endpoints(endpoints)?;
        Ok(pool)
    }

    fn tls(&self) -> bool {
        self.opts.tls.is_some()
    }

    /// The member for `url`, created (and health-watched) on first use.
    pub(crate) fn member(&self, url: &str) -> Result<Arc<Member>> {
        let url = normalize_endpoint(url, self.tls())?;
        let mut map = self.by_url.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get(&url) {
            return Ok(m.clone());
        }
        let m = Arc::new(Member {
            channel: Channel::new(&url, &self.opts, self.tls_config.as_ref())?,
            url: url.clone(),
            healthy: AtomicBool::new(true),
            health_answered: AtomicBool::new(false),
            recheck: Arc::new(tokio::sync::Notify::new()),
            health_task: Mutex::new(None),
        });
        let task = tokio::spawn(watch_health(Arc::downgrade(&m), m.recheck.clone()));
        if let Ok(mut g) = m.health_task.lock() {
            *g = Some(task.abort_handle());
        }
        map.insert(url, m.clone());
        Ok(m)
    }

    /// The member for `url` if the client already has it (never creates one).
    pub(crate) fn known(&self, url: &str) -> Result<Arc<Member>> {
        let url = normalize_endpoint(url, self.tls())?;
        let map = self.by_url.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&url)
            .cloned()
            .ok_or_else(|| Error::InvalidEndpoint {
                endpoint: url.clone(),
                reason: "not one of the client's endpoints".into(),
            })
    }

    /// Replaces the balanced set, keeping the channels of members that stay.
    pub(crate) fn set_endpoints(&self, endpoints: &[String]) -> Result<()> {
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        let members = endpoints
            .iter()
            .map(|e| self.member(e))
            .collect::<Result<Vec<_>>>()?;
        let urls: Vec<String> = members.iter().map(|m| m.url.clone()).collect();
        *self.balanced.write().unwrap_or_else(|p| p.into_inner()) = members;
        // Forget members no longer listed and not otherwise in use.
        let mut map = self.by_url.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|url, m| urls.contains(url) || Arc::strong_count(m) > 1);
        Ok(())
    }

    /// The balanced endpoint URLs.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.balanced
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|m| m.url.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.balanced
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The next healthy member in round-robin order, or the next one when none is healthy.
    pub(crate) fn pick(&self) -> Arc<Member> {
        let members = self.balanced.read().unwrap_or_else(|p| p.into_inner());
        let n = members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let m = &members[(start + i) % n];
            if m.is_healthy() {
                return m.clone();
            }
        }
        members[start % n].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379", true).unwrap(),
            "https://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint("https://a:1/", false).unwrap(),
            "https://a:1"
        );
        assert!(normalize_endpoint("ftp://a:1", false).is_err());
        assert!(normalize_endpoint("a", false).is_err());
        assert!(normalize_endpoint("a:x", false).is_err());
        assert!(normalize_endpoint("http://a:1/path", false).is_err());
    }
}
