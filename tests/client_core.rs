//! The client core against real etcd (parity doc §2.1, §2.2, §2.3, §2.6): construction, lazy
//! dial, deadlines, round-robin balancing, health-based failover, the retry split between
//! repeatable and non-repeatable calls under faults, endpoint sync, require-leader, keepalive.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd_v3::kv::{GetOptions, PutOptions};
use etcd_v3::watch::WatchOptions;
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use support::etcd::EtcdCluster;
use support::ports::free_port;
use support::proxy::FaultProxy;

fn opts() -> ConnectOptions {
    ConnectOptions::new().with_request_timeout(Duration::from_secs(10))
}

async fn connect(endpoints: &[String], opts: ConnectOptions) -> Client {
    Client::connect(endpoints, opts).await.expect("connect")
}

/// The member ID of the member behind `url` (a serializable get through a client on it alone).
async fn member_id(url: &str) -> u64 {
    let c = connect(&[url.to_string()], opts()).await;
    c.get("x", GetOptions::new().with_serializable())
        .await
        .expect("get")
        .header
        .member_id
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port().expect("port"))
}

#[tokio::test(flavor = "multi_thread")]
async fn construction_with_zero_endpoints_is_no_endpoints() {
    let r = Client::connect(Vec::<String>::new(), ConnectOptions::new()).await;
    assert!(matches!(r, Err(Error::NoEndpoints)), "{r:?}");
    let c = connect(&[dead_url()], ConnectOptions::new()).await;
    assert!(matches!(
        c.set_endpoints::<String>(&[]),
        Err(Error::NoEndpoints)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn dial_is_lazy_dead_port_connects_and_first_get_fails() {
    let c = Client::connect([dead_url()], ConnectOptions::new())
        .await
        .expect("connect to a dead port is lazy and succeeds");
    let err = c.get("k", GetOptions::new()).await.expect_err("get");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
    assert!(!err.is_outcome_unknown(), "{err:?}");
}

/// tonic 0.14 reports a refused connection as Unavailable with a `ConnectError` in the source
/// chain: the put provably never left, so it is not reported as outcome-unknown.
#[tokio::test(flavor = "multi_thread")]
async fn never_sent_put_to_refused_port_is_not_outcome_unknown() {
    let c = connect(&[dead_url()], ConnectOptions::new()).await;
    let err = c
        .put("k", "v", PutOptions::new())
        .await
        .expect_err("put to a refused port");
    assert!(!err.is_outcome_unknown(), "{err:?}");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err:?}");
    assert!(matches!(err, Error::Rpc { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn never_sent_put_is_retried_on_the_healthy_endpoint() {
    let cluster = EtcdCluster::single().expect("etcd");
    let dead = dead_url();
    let c = connect(&[dead.clone(), cluster.endpoints()[0].clone()], opts()).await;
    for i in 0..10 {
        c.put(format!("k{i}"), "v", PutOptions::new())
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e:?}"));
    }
    let n = c
        .get("k", GetOptions::new().with_prefix().with_count_only())
        .await
        .expect("count")
        .count;
    assert_eq!(n, 10);
    wait_until(
        "the refused endpoint is unhealthy",
        Duration::from_secs(5),
        || !c.is_endpoint_healthy(&dead).expect("known endpoint"),
    )
    .await;
    assert!(
        c.is_endpoint_healthy("127.0.0.1:1").is_err(),
        "unknown endpoint"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_only_member_get_ends_in_timeout_not_unavailable() {
    let mut cluster = EtcdCluster::single().expect("etcd");
    let c = connect(
        &cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(1)),
    )
    .await;
    c.put("k", "v", PutOptions::new()).await.expect("put");
    cluster.kill(0);
    let started = Instant::now();
    let err = c.get("k", GetOptions::new()).await.expect_err("get");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_serializable_gets_reach_all_members() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let c = connect(&cluster.endpoints(), opts()).await;
    let mut seen = HashSet::new();
    for _ in 0..30 {
        let r = c
            .get("k", GetOptions::new().with_serializable())
            .await
            .expect("get");
        seen.insert(r.header.member_id);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_member_is_skipped_after_health_notices() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let eps = cluster.endpoints();
    let killed_id = member_id(&eps[0]).await;
    let c = connect(&eps, opts()).await;
    c.put("k", "v", PutOptions::new()).await.expect("put");
    cluster.kill(0);
    // Right after the kill, gets keep succeeding (retried on another member).
    for i in 0..10 {
        c.get("k", GetOptions::new())
            .await
            .unwrap_or_else(|e| panic!("get {i} after kill: {e:?}"));
    }
    wait_until(
        "the killed member is unhealthy",
        Duration::from_secs(3),
        || !c.is_endpoint_healthy(&eps[0]).expect("known"),
    )
    .await;
    for i in 0..30 {
        let r = c
            .get("k", GetOptions::new().with_serializable())
            .await
            .unwrap_or_else(|e| panic!("get {i}: {e:?}"));
        assert_ne!(r.header.member_id, killed_id);
    }
    assert!(c.is_endpoint_healthy(&eps[1]).expect("known"));
}

#[derive(Default, Debug)]
struct Burst {
    attempted: usize,
    ok: Vec<String>,
    unknown: Vec<String>,
    failed: Vec<String>,
    get_timeouts: usize,
}

/// Puts `n` distinct keys from 4 concurrent workers; once `fault_at` puts have finished runs
/// `fault`, so some puts are in flight when it hits. Every put is followed by a get of its key;
/// the gets must succeed (retried) or, stuck on a stalled member, time out.
async fn burst(c: &Client, prefix: &str, n: usize, fault_at: usize, fault: impl Fn()) -> Burst {
    let done = Arc::new(AtomicUsize::new(0));
    let workers = 4;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let c = c.clone();
        let prefix = prefix.to_string();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut b = Burst::default();
            for i in (w..n).step_by(workers) {
                let key = format!("{prefix}{i:03}");
                b.attempted += 1;
                let put = c.put(&key, "v", PutOptions::new()).await;
                done.fetch_add(1, Ordering::Relaxed);
                match put {
                    Ok(_) => b.ok.push(key.clone()),
                    Err(e) if e.is_outcome_unknown() => {
                        eprintln!("put {key}: {e}");
                        b.unknown.push(key.clone())
                    }
                    Err(e) => {
                        eprintln!("put {key}: {e:?}");
                        b.failed.push(key.clone())
                    }
                }
                match c.get(&key, GetOptions::new()).await {
                    Ok(_) => {}
                    // A get stuck on a stalled member ends with the request timeout.
                    Err(Error::Timeout { .. }) => b.get_timeouts += 1,
                    Err(e) => panic!("get {key} during the fault: {e:?}"),
                }
            }
            b
        }));
    }
    wait_until(
        "enough puts before the fault",
        Duration::from_secs(30),
        || done.load(Ordering::Relaxed) >= fault_at,
    )
    .await;
    fault();
    let mut all = Burst::default();
    for t in tasks {
        let b = t.await.expect("worker");
        all.attempted += b.attempted;
        all.ok.extend(b.ok);
        all.unknown.extend(b.unknown);
        all.failed.extend(b.failed);
        all.get_timeouts += b.get_timeouts;
    }
    all
}

async fn check_burst(b: &Burst, server: &Client, prefix: &str) {
    eprintln!(
        "attempted {}, ok {}, unknown {:?}, failed {:?}, get timeouts {}",
        b.attempted,
        b.ok.len(),
        b.unknown,
        b.failed,
        b.get_timeouts
    );
    let r = server
        .get(prefix, GetOptions::new().with_prefix().with_keys_only())
        .await
        .expect("list");
    let on_server: HashSet<String> = r.kvs.iter().map(|kv| kv.key_str().into_owned()).collect();
    assert!(on_server.len() <= b.attempted, "more keys than puts");
    assert!(on_server.len() >= b.ok.len(), "fewer keys than successes");
    for k in &b.ok {
        assert!(on_server.contains(k), "{k} reported written but missing");
    }
    // An error that is not outcome-unknown promises the write was not applied.
    for k in &b.failed {
        assert!(!on_server.contains(k), "{k} reported failed but applied");
    }
}

fn proxies(cluster: &EtcdCluster) -> Vec<FaultProxy> {
    (0..cluster.len())
        .map(|i| FaultProxy::start(&cluster.member(i).client_addr()).expect("proxy"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_to_dropped_member_are_success_or_outcome_unknown() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let px = proxies(&cluster);
    let urls: Vec<String> = px.iter().map(FaultProxy::url).collect();
    let c = connect(&urls, opts()).await;
    let b = burst(&c, "drop/", 200, 40, || px[0].drop_all()).await;
    let server = connect(&[cluster.endpoints()[1].clone()], opts()).await;
    check_burst(&b, &server, "drop/").await;
    assert_eq!(
        b.get_timeouts, 0,
        "gets are retried on a dropped connection"
    );
    assert!(!c.is_endpoint_healthy(&urls[0]).expect("known"));
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_to_blackholed_member_are_success_or_outcome_unknown() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let px = proxies(&cluster);
    let urls: Vec<String> = px.iter().map(FaultProxy::url).collect();
    let c = connect(
        &urls,
        ConnectOptions::new().with_request_timeout(Duration::from_secs(2)),
    )
    .await;
    let b = burst(&c, "hole/", 120, 30, || px[1].blackhole()).await;
    let server = connect(&[cluster.endpoints()[0].clone()], opts()).await;
    check_burst(&b, &server, "hole/").await;
    // A blackholed member gets only the calls in flight when it stalled (at most one per
    // worker) and those sent before the first timed out; then it is skipped.
    assert!(b.unknown.len() <= 8, "{:?}", b.unknown);
    assert!(b.get_timeouts <= 8, "{}", b.get_timeouts);
    assert!(!c.is_endpoint_healthy(&urls[1]).expect("known"));
    // Once the member answers again, its health watch puts it back in rotation.
    px[1].resume();
    wait_until(
        "the resumed member is healthy",
        Duration::from_secs(10),
        || c.is_endpoint_healthy(&urls[1]).expect("known"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_endpoints_replaces_the_list_with_member_client_urls() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let eps = cluster.endpoints();
    let c = connect(&eps[..1], opts()).await;
    let mut synced = c.sync_endpoints().await.expect("sync");
    synced.sort();
    let mut want = eps.clone();
    want.sort();
    assert_eq!(synced, want);
    cluster.kill(0);
    wait_until("member 0 is unhealthy", Duration::from_secs(3), || {
        !c.is_endpoint_healthy(&eps[0]).expect("known")
    })
    .await;
    // Member 0 may have been the leader: a put during the election ends outcome-unknown (as in
    // etcd's client), so wait for a linearizable read (retried) to see the new leader first.
    c.get("k", GetOptions::new())
        .await
        .expect("linearizable get after failover");
    for i in 0..10 {
        c.put(format!("k{i}"), "v", PutOptions::new())
            .await
            .unwrap_or_else(|e| panic!("put {i} after member 0 died: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_sync_interval_picks_up_all_members() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let eps = cluster.endpoints();
    let c = connect(
        &eps[..1],
        opts().with_auto_sync_interval(Duration::from_millis(300)),
    )
    .await;
    wait_until(
        "auto-sync found 3 endpoints",
        Duration::from_secs(10),
        || c.endpoints().len() == 3,
    )
    .await;
    cluster.kill(0);
    wait_until("member 0 is unhealthy", Duration::from_secs(3), || {
        !c.is_endpoint_healthy(&eps[0]).expect("known")
    })
    .await;
    // Member 0 may have been the leader: a put during the election ends outcome-unknown (as in
    // etcd's client), so wait for a linearizable read (retried) to see the new leader first.
    c.get("k", GetOptions::new())
        .await
        .expect("linearizable get after failover");
    for i in 0..10 {
        c.put(format!("k{i}"), "v", PutOptions::new())
            .await
            .unwrap_or_else(|e| panic!("put {i} after member 0 died: {e:?}"));
    }
    // Auto-sync keeps running while the dead member is still listed; it must not break calls.
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.get("k0", GetOptions::new()).await.expect("get");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_leader_get_fails_with_no_leader_when_quorum_is_lost() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let eps = cluster.endpoints();
    let timeout = Duration::from_secs(15);
    let c = connect(
        &eps[2..],
        ConnectOptions::new()
            .with_request_timeout(timeout)
            .with_require_leader(true),
    )
    .await;
    c.put("k", "v", PutOptions::new()).await.expect("put");
    cluster.pause(0).expect("pause 0");
    cluster.pause(1).expect("pause 1");
    // The third member loses its leader after an election timeout (1 s by default); from then on
    // every require-leader call is refused at once (and, being Unavailable, retried until the
    // retries run out, well inside the request timeout).
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        let started = Instant::now();
        match c.get("k", GetOptions::new().with_serializable()).await {
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still served with two members paused"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
                break e;
            }
        }
    };
    assert_eq!(err.server_error(), Some(ServerError::NoLeader), "{err:?}");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
    cluster.resume(0).expect("resume 0");
    cluster.resume(1).expect("resume 1");
}

/// An HTTP/2 keepalive of 10 s (the smallest the client uses) over a long-lived watch draws no
/// GOAWAY `too_many_pings` from etcd: the watch keeps working on its first connection.
#[tokio::test(flavor = "multi_thread")]
async fn keepalive_10s_with_open_watch_sees_no_goaway() {
    let cluster = EtcdCluster::single().expect("etcd");
    let px = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let c = connect(
        &[px.url()],
        opts().with_keep_alive(Duration::from_secs(1), Duration::from_secs(5)),
    )
    .await;
    let mut w = c.watch("ka", WatchOptions::new()).await.expect("watch");
    tokio::time::sleep(Duration::from_secs(25)).await;
    c.put("ka", "v", PutOptions::new()).await.expect("put");
    let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("no error");
    assert!(!batch.events.is_empty());
    let counts = px.counts();
    // One connection for the client (the health watch, the watch and the calls share it).
    assert_eq!(counts.connections, 1, "{counts:?}");
}

/// HTTP/2 keepalive `[P]`: a connection that stops answering (the proxy blackholes it, so TCP
/// stays up) is dropped once a PING goes unanswered for the timeout, and the client dials anew;
/// when the path is back, the watch resumes on the new connection and delivers what was written
/// meanwhile. Without the keepalive nothing would notice: a watch has no deadline.
#[tokio::test(flavor = "multi_thread")]
async fn keepalive_timeout_drops_a_stalled_connection_and_the_watch_resumes() {
    let cluster = EtcdCluster::single().expect("etcd");
    let px = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let c = connect(
        &[px.url()],
        opts().with_keep_alive(Duration::from_secs(10), Duration::from_secs(2)),
    )
    .await;
    let direct = connect(&cluster.endpoints(), opts()).await;
    let mut w = c.watch("ka2", WatchOptions::new()).await.expect("watch");
    direct
        .put("ka2", "before", PutOptions::new())
        .await
        .expect("put");
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("no error");
    assert_eq!(first.events[0].kv.value.as_ref(), b"before");
    assert_eq!(px.counts().connections, 1);

    px.blackhole();
    let stalled_at = Instant::now();
    // Interval 10 s + timeout 2 s: the dead connection is dropped and a new one dialled.
    while px.counts().connections < 2 {
        assert!(
            stalled_at.elapsed() < Duration::from_secs(40),
            "no new connection after the keepalive should have expired: {:?}",
            px.counts()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    direct
        .put("ka2", "during", PutOptions::new())
        .await
        .expect("put");
    px.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = tokio::time::timeout(left, w.next())
            .await
            .expect("the watch resumes once the path is back")
            .expect("stream open")
            .expect("no error");
        if batch
            .events
            .iter()
            .any(|e| e.kv.value.as_ref() == b"during")
        {
            break;
        }
    }
}

/// §2.6 require-leader streams `[P]`: with two of three members paused, the third cancels a
/// watch opened with require-leader (after about three election timeouts without a leader) and
/// the watch ends with `NoLeader`; a plain watch on the same member stays open, and both members
/// back make it deliver again.
#[tokio::test(flavor = "multi_thread")]
async fn require_leader_watch_ends_with_no_leader_plain_watch_does_not() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let eps = cluster.endpoints();
    let third = vec![eps[2].clone()];
    let strict = connect(&third, ConnectOptions::new().with_require_leader(true)).await;
    let plain = connect(&third, ConnectOptions::new()).await;
    let mut strict_w = strict
        .watch("rl", WatchOptions::new())
        .await
        .expect("watch");
    let mut plain_w = plain.watch("rl", WatchOptions::new()).await.expect("watch");
    cluster.pause(0).expect("pause 0");
    cluster.pause(1).expect("pause 1");
    let ended = tokio::time::timeout(Duration::from_secs(60), strict_w.next())
        .await
        .expect("the require-leader watch ends");
    match ended {
        Some(Err(e)) => assert_eq!(e.server_error(), Some(ServerError::NoLeader), "{e:?}"),
        other => panic!("require-leader watch: {other:?}"),
    }
    // The plain watch is still open (nothing arrives, and it has not ended).
    if let Ok(got) = tokio::time::timeout(Duration::from_secs(2), plain_w.next()).await {
        panic!("plain watch without a leader: {got:?}");
    }
    cluster.resume(0).expect("resume 0");
    cluster.resume(1).expect("resume 1");
    let w = connect(&eps[..1], opts()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let rev = loop {
        match w.put("rl", "back", PutOptions::new()).await {
            Ok(r) => break r.header.revision,
            Err(e) => {
                assert!(Instant::now() < deadline, "no put after resume: {e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let b = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let b = plain_w.next().await.expect("open").expect("ok");
            if !b.events.is_empty() {
                break b;
            }
        }
    })
    .await
    .expect("plain watch delivers after the leader is back");
    assert_eq!(b.events[0].mod_revision(), rev);
}
