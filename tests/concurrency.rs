//! The concurrency recipes against real etcd 3.5 (parity doc §5 and issue 4): Session, Mutex,
//! Election and STM, each with the Go package's pitfalls shown fixed.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_v3::concurrency::{
    ConcurrencyError, Election, Isolation, LostReason, Mutex, Observer, Session, SessionOptions,
    Stm, StmOptions, stm,
};
use etcd_v3::kv::{
    Compare, CompareOp, DeleteOptions, GetOptions, Op, PutOptions, SortOrder, SortTarget, Txn,
};
use etcd_v3::watch::{EventType, WatchOptions};
use etcd_v3::{Client, ConnectOptions, Error};
use support::etcd::EtcdCluster;
use support::proxy::FaultProxy;

/// Generous bound on anything the tests wait for (the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(60);

async fn connect(endpoints: &[String]) -> Client {
    Client::connect(
        endpoints,
        ConnectOptions::new().with_request_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

async fn session(client: &Client, ttl: i64) -> Session {
    Session::with_options(client, SessionOptions::new().with_ttl(ttl))
        .await
        .expect("session")
}

/// Awaits `fut`, failing the test if it takes longer than [`PATIENCE`].
async fn patiently<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done after {PATIENCE:?}"),
    }
}

/// Polls `check` every 50 ms until it holds, failing after [`PATIENCE`].
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The store's current revision (a get does not change it).
async fn revision(client: &Client) -> i64 {
    client
        .get("/no-such-key", GetOptions::new())
        .await
        .expect("get")
        .header
        .revision
}

async fn count(client: &Client, prefix: &str) -> i64 {
    client
        .get(prefix, GetOptions::new().with_prefix().with_count_only())
        .await
        .expect("count")
        .count
}

async fn exists(client: &Client, key: &[u8]) -> bool {
    client
        .get(key, GetOptions::new())
        .await
        .expect("get")
        .first()
        .is_some()
}

fn parse(v: Option<Bytes>) -> i64 {
    v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn session_close_revokes_the_lease_and_deletes_its_keys_at_once() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let s = Session::new(&client).await.expect("session");
    assert_eq!(s.ttl(), 60, "default TTL");
    let put = PutOptions::new().with_lease(s.lease_id());
    client.put("/s/a", "1", put).await.expect("put");
    s.close().await.expect("close");
    assert!(!exists(&client, b"/s/a").await, "key deleted by the revoke");
    let ttl = client.lease_time_to_live(s.lease_id(), false).await;
    assert!(!ttl.expect("ttl").exists());
    let done = patiently("done after close", s.done()).await;
    assert!(
        matches!(done, ConcurrencyError::SessionExpired { .. }),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn orphaned_session_stops_renewing_without_revoking_so_keys_expire_with_the_ttl() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let s = session(&client, 3).await;
    let put = PutOptions::new().with_lease(s.lease_id());
    client.put("/o/a", "1", put).await.expect("put");
    s.orphan();
    patiently("done after orphan", s.done()).await;
    assert!(s.is_done());
    let ttl = client
        .lease_time_to_live(s.lease_id(), true)
        .await
        .expect("ttl");
    assert!(ttl.ttl > 0, "not revoked: {ttl:?}");
    assert_eq!(ttl.keys, vec![Bytes::from_static(b"/o/a")]);
    wait_until("the orphaned lease expires", || async {
        !exists(&client, b"/o/a").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn session_done_fires_when_its_lease_is_revoked_by_another_client() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let other = connect(&cluster.endpoints()).await;
    let s = session(&client, 3).await;
    other.lease_revoke(s.lease_id()).await.expect("revoke");
    match patiently("done", s.done()).await {
        ConcurrencyError::SessionExpired { lease, reason } => {
            assert_eq!(lease, s.lease_id());
            assert!(!reason.is_empty());
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn session_on_an_existing_lease_keeps_it_and_an_unknown_lease_is_an_error() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let lease = client.lease_grant(30, None).await.expect("grant");
    let s = Session::with_options(&client, SessionOptions::new().with_lease(lease.id))
        .await
        .expect("session");
    assert_eq!((s.lease_id(), s.ttl()), (lease.id, 30));
    let r = Session::with_options(&client, SessionOptions::new().with_lease(0x7777_7777)).await;
    assert!(
        matches!(
            r,
            Err(ConcurrencyError::SessionExpired {
                lease: 0x7777_7777,
                ..
            })
        ),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mutex
// ---------------------------------------------------------------------------------------------

/// A fenced write by the holder of `m`: whether it was applied.
async fn fenced_put(client: &Client, m: &Mutex, key: &str, value: &str) -> bool {
    let txn = Txn::new().when([m.is_owner()]).and_then([Op::put(
        key,
        value.to_string(),
        PutOptions::new(),
    )]);
    client.txn(txn).await.expect("txn").succeeded
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_is_handed_off_between_two_sessions() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c1 = connect(&cluster.endpoints()).await;
    let c2 = connect(&cluster.endpoints()).await;
    let (s1, s2) = (session(&c1, 30).await, session(&c2, 30).await);
    let mut m1 = Mutex::new(&s1, "/lock/handoff");
    let mut m2 = Mutex::new(&s2, "/lock/handoff");
    m1.lock().await.expect("m1 lock");
    assert!(m1.is_held());
    assert!(fenced_put(&c1, &m1, "/data", "from m1").await);
    let waiter = tokio::spawn(async move {
        m2.lock().await.expect("m2 lock");
        m2
    });
    wait_until("m2 queued", || async {
        count(&c1, "/lock/handoff/").await == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "m2 acquired while m1 held the lock");
    m1.unlock().await.expect("m1 unlock");
    let m2 = patiently("m2 acquires", waiter).await.expect("task");
    assert!(m2.is_held());
    assert!(
        !fenced_put(&c1, &m1, "/data", "late m1").await,
        "m1 fence after unlock"
    );
    assert!(fenced_put(&c2, &m2, "/data", "from m2").await);
    let v = c1.get("/data", GetOptions::new()).await.expect("get");
    assert_eq!(v.first().expect("data").value, "from m2");
    // Unlocking twice is refused, not a stray delete.
    assert!(matches!(
        m1.unlock().await,
        Err(ConcurrencyError::NotHeld(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn five_contenders_acquire_in_creation_order() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let pfx = "/lock/order";
    let s0 = session(&client, 30).await;
    let mut m0 = Mutex::new(&s0, pfx);
    m0.lock().await.expect("first lock");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 1..5 {
        let c = connect(&cluster.endpoints()).await;
        let s = session(&c, 30).await;
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = Mutex::new(&s, pfx);
            m.lock().await.expect("lock");
            tx.send((i, m.revision().expect("held"))).expect("send");
            m.unlock().await.expect("unlock");
        }));
        // The next contender starts only once this one is queued: creation order is 1, 2, 3, 4.
        wait_until("contender queued", || async {
            count(&client, "/lock/order/").await == i + 1
        })
        .await;
    }
    drop(tx);
    m0.unlock().await.expect("unlock");
    let mut order = Vec::new();
    while let Some(got) = patiently("next acquisition", rx.recv()).await {
        order.push(got);
    }
    let who: Vec<i64> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(who, vec![1, 2, 3, 4], "{order:?}");
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_contenders_waiting_ten_seconds_on_a_held_lock_write_no_revision() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let pfx = "/lock/quiet";
    let holder = session(&client, 30).await;
    let mut m = Mutex::new(&holder, pfx);
    m.lock().await.expect("lock");
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let c = connect(&cluster.endpoints()).await;
        let s = session(&c, 30).await;
        waiters.push(tokio::spawn(async move {
            let mut w = Mutex::new(&s, pfx);
            w.lock().await.expect("lock");
            w.unlock().await.expect("unlock");
        }));
    }
    wait_until("all queued", || async {
        count(&client, "/lock/quiet/").await == 11
    })
    .await;
    let before = revision(&client).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = revision(&client).await;
    assert_eq!(
        after,
        before,
        "waiting contenders wrote {} revisions",
        after - before
    );
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a waiter got a held lock"
    );
    m.unlock().await.expect("unlock");
    for w in waiters {
        patiently("waiter served", w).await.expect("task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_try_lock_writes_nothing_while_go_style_try_lock_costs_two_revisions() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let pfx = "/lock/try";
    let (s1, s2) = (session(&client, 30).await, session(&client, 30).await);
    let mut m1 = Mutex::new(&s1, pfx);
    m1.try_lock().await.expect("free lock is taken by try_lock");
    let mut m2 = Mutex::new(&s2, pfx);
    let before = revision(&client).await;
    for _ in 0..100 {
        match m2.try_lock().await {
            Err(ConcurrencyError::Locked { holder, .. }) => {
                assert_eq!(holder.as_bytes(), m1.key().expect("held"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }
    assert_eq!(
        revision(&client).await,
        before,
        "100 failed try_locks wrote revisions"
    );

    // Go's TryLock protocol, for contrast: create my key and read the owner in one txn, then
    // delete my key when I am not the owner. Each failure costs two revisions.
    let my_key = format!("{pfx}/{:x}", s2.lease_id());
    let first = Op::get(
        pfx,
        GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1),
    );
    let before = revision(&client).await;
    for _ in 0..10 {
        let put = PutOptions::new().with_lease(s2.lease_id());
        let txn = Txn::new()
            .when([Compare::create_revision(&my_key, CompareOp::Equal, 0)])
            .and_then([Op::put(&my_key, "", put), first.clone()]);
        let r = client.txn(txn.clone()).await.expect("txn");
        let owner = r.responses[1]
            .as_get()
            .expect("get")
            .first()
            .expect("owner")
            .clone();
        assert_ne!(owner.key, my_key.as_bytes(), "m1 owns the lock");
        client
            .delete(&my_key, DeleteOptions::new())
            .await
            .expect("delete");
    }
    assert_eq!(
        revision(&client).await - before,
        20,
        "Go-style: 2 revisions per failure"
    );
    m1.unlock().await.expect("unlock");
    m2.try_lock().await.expect("free again");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_holder_is_told_at_once_the_next_waiter_acquires_and_its_fenced_write_fails() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c1 = connect(&cluster.endpoints()).await;
    let c2 = connect(&cluster.endpoints()).await;
    let admin = connect(&cluster.endpoints()).await;
    let pfx = "/lock/revoked";
    // TTL 60: the holder's keepalive would only learn of the revoke ~20 s later.
    let (s1, s2) = (session(&c1, 60).await, session(&c2, 60).await);
    let mut m1 = Mutex::new(&s1, pfx);
    m1.lock().await.expect("lock");
    let waiter = tokio::spawn(async move {
        let mut m2 = Mutex::new(&s2, pfx);
        m2.lock().await.expect("m2 lock");
        m2
    });
    wait_until("m2 queued", || async {
        count(&admin, "/lock/revoked/").await == 2
    })
    .await;
    let revoked_at = Instant::now();
    admin.lease_revoke(s1.lease_id()).await.expect("revoke");
    let reason = patiently("m1 told", m1.lost()).await;
    let latency = revoked_at.elapsed();
    println!("ownership-lost signal {latency:?} after the revoke: {reason}");
    assert!(
        matches!(reason, LostReason::KeyDeleted { .. }),
        "{reason:?}"
    );
    // Told through its key's deletion, not by the (much later) keepalive answer.
    assert!(!s1.is_done(), "the session's keepalive had not noticed yet");
    assert!(!m1.is_held());
    let m2 = patiently("m2 acquires", waiter).await.expect("task");
    assert!(
        !fenced_put(&c1, &m1, "/data", "stale m1").await,
        "stale fence held"
    );
    assert!(fenced_put(&c2, &m2, "/data", "m2").await);
    assert!(matches!(
        m1.unlock().await,
        Err(ConcurrencyError::OwnershipLost(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_mutexes_on_one_session_and_prefix_exclude_each_other() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let s = session(&client, 30).await;
    let pfx = "/lock/same-session";
    let mut a = Mutex::new(&s, pfx);
    let mut b = Mutex::new(&s, pfx);
    a.lock().await.expect("a");
    assert!(matches!(
        b.try_lock().await,
        Err(ConcurrencyError::Locked { .. })
    ));
    assert!(!b.is_held());
    let waiter = tokio::spawn(async move {
        b.lock().await.expect("b lock");
        b
    });
    wait_until("b queued", || async {
        count(&client, "/lock/same-session/").await == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "b acquired while a held the lock");
    assert!(fenced_put(&client, &a, "/data", "a").await);
    a.unlock().await.expect("unlock");
    let b = patiently("b acquires", waiter).await.expect("task");
    assert!(b.is_held());
    assert!(!fenced_put(&client, &a, "/data", "a again").await);
    assert!(fenced_put(&client, &b, "/data", "b").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_unlock_cannot_release_a_newer_acquisition() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let s = session(&client, 30).await;
    let pfx = "/lock/retried";
    let mut m = Mutex::new(&s, pfx);
    m.lock().await.expect("lock");
    // What a retried unlock of this acquisition sends: the fenced delete of its key version.
    let old_key = m.key().expect("held").to_vec();
    let old_unlock = Txn::new()
        .when([m.is_owner()])
        .and_then([Op::delete(&old_key, DeleteOptions::new())]);
    m.unlock().await.expect("unlock");
    m.lock().await.expect("relock on the same session");
    let mut other = Mutex::new(&s, pfx);
    let waiter = tokio::spawn(async move {
        other.lock().await.expect("other");
        other
    });
    wait_until("other queued", || async {
        count(&client, "/lock/retried/").await == 2
    })
    .await;
    let replay = client.txn(old_unlock).await.expect("txn");
    assert!(!replay.succeeded, "a stale unlock deleted something");
    assert!(m.is_held());
    assert!(exists(&client, m.key().expect("held")).await);
    assert!(!waiter.is_finished(), "the waiter got a lock still held");
    m.unlock().await.expect("unlock");
    let other = patiently("other acquires", waiter).await.expect("task");
    assert!(other.is_held());
}

#[tokio::test(flavor = "multi_thread")]
async fn waiter_whose_session_ends_stops_waiting_instead_of_queueing_forever() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let admin = connect(&cluster.endpoints()).await;
    let pfx = "/lock/expired-waiter";
    let holder = session(&client, 30).await;
    let mut m = Mutex::new(&holder, pfx);
    m.lock().await.expect("lock");
    let ws = session(&client, 60).await;
    let lease = ws.lease_id();
    let waiter = tokio::spawn(async move { Mutex::new(&ws, pfx).lock().await });
    wait_until("queued", || async {
        count(&admin, "/lock/expired-waiter/").await == 2
    })
    .await;
    admin.lease_revoke(lease).await.expect("revoke");
    let r = patiently("waiter gives up", waiter).await.expect("task");
    assert!(
        matches!(r, Err(ConcurrencyError::SessionExpired { .. })),
        "{r:?}"
    );
    assert!(m.is_held(), "the holder is unaffected");
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_timeout_withdraws_the_request_so_the_queue_does_not_stay_blocked() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let pfx = "/lock/timeout";
    let (s1, s2) = (session(&client, 30).await, session(&client, 30).await);
    let mut m1 = Mutex::new(&s1, pfx);
    m1.lock().await.expect("lock");
    let mut m2 = Mutex::new(&s2, pfx);
    let r = m2.lock_timeout(Duration::from_millis(500)).await;
    assert!(matches!(r, Err(ConcurrencyError::Timeout(_))), "{r:?}");
    assert!(!m2.is_held());
    wait_until("request withdrawn", || async {
        count(&client, "/lock/timeout/").await == 1
    })
    .await;
    m1.unlock().await.expect("unlock");
    m2.try_lock()
        .await
        .expect("the lock is free: nobody left in the queue");
}

// ---------------------------------------------------------------------------------------------
// Election
// ---------------------------------------------------------------------------------------------

/// The leader values an observer reports, `None` for "no leader".
async fn next_leader(o: &mut Observer) -> Option<String> {
    let change = patiently("next leadership change", o.next())
        .await
        .expect("observer ended")
        .expect("observer error");
    change.leader.map(|kv| kv.value_str().into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn election_passes_leadership_in_order_and_observe_sees_every_leader() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let pfx = "/election/three";
    let (sa, sb, sc) = (
        session(&client, 30).await,
        session(&client, 30).await,
        session(&client, 30).await,
    );
    let mut a = Election::new(&sa, pfx);
    let mut observer = a.observe().await.expect("observe");
    assert!(matches!(
        a.leader().await,
        Err(ConcurrencyError::NoLeader { .. })
    ));
    a.campaign("a").await.expect("a campaigns");
    assert!(a.is_leader());
    let spawn = |s: Session, v: &'static str| {
        tokio::spawn(async move {
            let mut e = Election::new(&s, pfx);
            e.campaign(v).await.expect("campaign");
            e
        })
    };
    let tb = spawn(sb.clone(), "b");
    wait_until("b queued", || async {
        count(&client, "/election/three/").await == 2
    })
    .await;
    let tc = spawn(sc, "c");
    wait_until("c queued", || async {
        count(&client, "/election/three/").await == 3
    })
    .await;
    // A candidate of the same session as b that does not lead cannot proclaim.
    let mut not_leader = Election::new(&sb, pfx);
    let r = not_leader.proclaim("usurper").await;
    assert!(
        matches!(r, Err(ConcurrencyError::NotLeader { .. })),
        "{r:?}"
    );
    a.proclaim("a2").await.expect("leader proclaims");
    assert_eq!(a.leader().await.expect("leader").value, "a2");
    a.resign().await.expect("a resigns");
    let mut b = patiently("b leads", tb).await.expect("task");
    assert!(!tc.is_finished(), "c leads while b does");
    assert_eq!(b.leader().await.expect("leader").value, "b");
    b.resign().await.expect("b resigns");
    let mut c = patiently("c leads", tc).await.expect("task");
    c.resign().await.expect("c resigns");
    let r = a.proclaim("a3").await;
    assert!(
        matches!(r, Err(ConcurrencyError::NotLeader { .. })),
        "{r:?}"
    );

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(next_leader(&mut observer).await);
    }
    let want = [None, Some("a"), Some("a2"), Some("b"), Some("c"), None];
    let want: Vec<Option<String>> = want.iter().map(|v| v.map(String::from)).collect();
    assert_eq!(seen, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_whose_lease_is_revoked_is_told_and_can_no_longer_proclaim() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let admin = connect(&cluster.endpoints()).await;
    let s = session(&client, 60).await;
    let mut e = Election::new(&s, "/election/revoked");
    e.campaign("x").await.expect("campaign");
    admin.lease_revoke(s.lease_id()).await.expect("revoke");
    let reason = patiently("leadership lost", e.lost()).await;
    assert!(
        matches!(reason, LostReason::KeyDeleted { .. }),
        "{reason:?}"
    );
    assert!(!e.is_leader());
    let r = e.proclaim("still me").await;
    assert!(
        matches!(r, Err(ConcurrencyError::NotLeader { .. })),
        "{r:?}"
    );
    let r = etcd_v3::concurrency::election::leader(&admin, "/election/revoked").await;
    assert!(matches!(r, Err(ConcurrencyError::NoLeader { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_rechecks_its_key_and_fails_when_its_session_ended_while_waiting() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let admin = connect(&cluster.endpoints()).await;
    let pfx = "/election/recheck";
    let sa = session(&client, 30).await;
    let mut a = Election::new(&sa, pfx);
    a.campaign("a").await.expect("campaign");
    let sb = session(&client, 60).await;
    let lease_b = sb.lease_id();
    let tb = tokio::spawn(async move { Election::new(&sb, pfx).campaign("b").await });
    wait_until("b queued", || async {
        count(&admin, "/election/recheck/").await == 2
    })
    .await;
    admin.lease_revoke(lease_b).await.expect("revoke b");
    a.resign().await.expect("resign");
    let r = patiently("b's campaign ends", tb).await.expect("task");
    assert!(
        matches!(r, Err(ConcurrencyError::SessionExpired { .. })),
        "{r:?}"
    );
    let r = etcd_v3::concurrency::election::leader(&admin, pfx).await;
    assert!(matches!(r, Err(ConcurrencyError::NoLeader { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn observer_that_falls_behind_a_compaction_ends_with_an_error_not_silently() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let s = session(&client, 30).await;
    let mut e = Election::new(&s, "/election/behind");
    e.campaign("v0").await.expect("campaign");
    let mut observer = e.observe().await.expect("observe");
    // Far more changes than the observer's watch buffers, then compact them away before it reads.
    for i in 1..=200 {
        e.proclaim(format!("v{i}")).await.expect("proclaim");
    }
    let rev = revision(&client).await;
    client.compact(rev, true).await.expect("compact");
    let mut last = None;
    let err = loop {
        match patiently("observer item", observer.next()).await {
            Some(Ok(c)) => last = c.leader.map(|kv| kv.value_str().into_owned()),
            Some(Err(e)) => break e,
            None => panic!("observer ended without an error (last: {last:?})"),
        }
    };
    assert!(
        matches!(err, ConcurrencyError::Client(Error::Compacted { .. })),
        "{err:?}"
    );
    assert!(
        patiently("after the error", observer.next())
            .await
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// STM
// ---------------------------------------------------------------------------------------------

const ACCOUNTS: usize = 5;

/// 10 workers × 20 random transfers between 5 accounts of 100; returns (balances, committed).
async fn bank(isolation: Isolation) -> (Vec<i64>, usize) {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let acct = |i: usize| format!("/bank/{i}");
    for i in 0..ACCOUNTS {
        client
            .put(acct(i), "100", PutOptions::new())
            .await
            .expect("seed");
    }
    let mut workers = Vec::new();
    for _ in 0..10 {
        let client = connect(&cluster.endpoints()).await;
        workers.push(tokio::spawn(async move {
            let opts = StmOptions::new()
                .with_isolation(isolation)
                .with_max_attempts(50);
            let mut committed = 0;
            for _ in 0..20 {
                let from = rand::random_range(0..ACCOUNTS);
                let to = (from + rand::random_range(1..ACCOUNTS)) % ACCOUNTS;
                let amount: i64 = rand::random_range(1..=30);
                let (kf, kt) = (acct(from), acct(to));
                // The loop form of STM: its futures are Send, so it runs in a spawned task.
                let mut tx = Stm::new(&client, opts);
                let r = loop {
                    let step = async {
                        let (a, b) = (parse(tx.get(&kf).await?), parse(tx.get(&kt).await?));
                        if a >= amount {
                            tx.put(&kf, (a - amount).to_string());
                            tx.put(&kt, (b + amount).to_string());
                        }
                        Ok::<_, ConcurrencyError>(a >= amount)
                    };
                    let moved = match step.await {
                        Ok(m) => m,
                        Err(e) => break Err(e),
                    };
                    match tx.commit().await {
                        Ok(Some(_)) => break Ok(moved),
                        Ok(None) => continue,
                        Err(e) => break Err(e),
                    }
                };
                match r {
                    Ok(true) => committed += 1,
                    Ok(false) | Err(ConcurrencyError::Conflict { .. }) => {}
                    Err(e) => panic!("transfer failed: {e}"),
                }
            }
            committed
        }));
    }
    let mut committed = 0;
    for w in workers {
        committed += patiently("worker", w).await.expect("task");
    }
    let mut balances = Vec::new();
    for i in 0..ACCOUNTS {
        let r = client.get(acct(i), GetOptions::new()).await.expect("get");
        balances.push(parse(r.first().map(|kv| kv.value.clone())));
    }
    (balances, committed)
}

#[tokio::test(flavor = "multi_thread")]
async fn stm_bank_transfers_keep_the_total_under_serializable_snapshot() {
    let (balances, committed) = bank(Isolation::SerializableSnapshot).await;
    println!("serializable snapshot: {committed} transfers committed, balances {balances:?}");
    assert_eq!(balances.iter().sum::<i64>(), 500, "{balances:?}");
    assert!(balances.iter().all(|b| *b >= 0), "{balances:?}");
    assert!(committed > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn stm_bank_transfers_keep_the_total_under_serializable() {
    let (balances, committed) = bank(Isolation::Serializable).await;
    println!("serializable: {committed} transfers committed, balances {balances:?}");
    assert_eq!(balances.iter().sum::<i64>(), 500, "{balances:?}");
    assert!(balances.iter().all(|b| *b >= 0), "{balances:?}");
    assert!(committed > 0);
}

/// Two increments of one counter whose reads both happen before either commits.
async fn interleaved_increments(client: &Client, isolation: Isolation, key: &str) -> (i64, u32) {
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, barrier, key) = (client.clone(), barrier.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            let mut tx = Stm::new(&client, StmOptions::new().with_isolation(isolation));
            loop {
                let v = parse(tx.get(&key).await.expect("get"));
                if tx.attempt() == 1 {
                    barrier.wait().await;
                }
                tx.put(&key, (v + 1).to_string());
                let attempt = tx.attempt();
                if tx.commit().await.expect("commit").is_some() {
                    break attempt;
                }
            }
        }));
    }
    let mut attempts = 0;
    for t in tasks {
        attempts += patiently("increment", t).await.expect("task");
    }
    let r = client.get(key, GetOptions::new()).await.expect("get");
    (parse(r.first().map(|kv| kv.value.clone())), attempts)
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_loses_an_update_that_the_serializable_levels_prevent() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let (v, attempts) = interleaved_increments(&client, Isolation::ReadCommitted, "/c/rc").await;
    assert_eq!(
        (v, attempts),
        (1, 2),
        "read committed: one increment lost, no retry"
    );
    for (iso, key) in [
        (Isolation::RepeatableReads, "/c/rr"),
        (Isolation::Serializable, "/c/s"),
        (Isolation::SerializableSnapshot, "/c/ss"),
    ] {
        let (v, attempts) = interleaved_increments(&client, iso, key).await;
        assert_eq!(
            (v, attempts),
            (2, 3),
            "{iso:?}: both increments, one retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serializable_snapshot_also_catches_a_conflicting_blind_write() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let other = connect(&cluster.endpoints()).await;
    for (iso, want_attempts) in [
        (Isolation::Serializable, 1),
        (Isolation::SerializableSnapshot, 2),
    ] {
        let mut first = true;
        let opts = StmOptions::new().with_isolation(iso);
        let r = stm::run(&client, opts, async |tx: &mut Stm| {
            tx.get("/blind/a").await?;
            if first {
                first = false;
                other.put("/blind/b", "theirs", PutOptions::new()).await?;
            }
            tx.put("/blind/b", "mine");
            Ok(())
        })
        .await
        .expect("stm");
        assert_eq!(r.attempts, want_attempts, "{iso:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stm_gives_up_after_its_bounded_attempts_with_a_typed_conflict() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let other = connect(&cluster.endpoints()).await;
    let mut runs = 0;
    let opts = StmOptions::new()
        .with_isolation(Isolation::Serializable)
        .with_max_attempts(3);
    let r = stm::run(&client, opts, async |tx: &mut Stm| {
        runs += 1;
        tx.get("/hot").await?;
        // Someone always changes what was read before the commit.
        other
            .put("/hot", runs.to_string(), PutOptions::new())
            .await?;
        tx.put("/out", "x");
        Ok(())
    })
    .await;
    assert!(
        matches!(r, Err(ConcurrencyError::Conflict { attempts: 3 })),
        "{r:?}"
    );
    assert_eq!(runs, 3);
    assert!(!exists(&client, b"/out").await, "nothing committed");
    let r = stm::run(&client, StmOptions::new(), async |tx: &mut Stm| {
        tx.put("/out", "y");
        Err::<(), _>(ConcurrencyError::Aborted("changed my mind".into()))
    })
    .await;
    assert!(matches!(r, Err(ConcurrencyError::Aborted(_))), "{r:?}");
    assert!(
        !exists(&client, b"/out").await,
        "an aborted apply writes nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// Member failure
// ---------------------------------------------------------------------------------------------

/// Fenced increments of `/counter` by the holder of `m`, each writing "<n>:<who>": applied only
/// while `m` holds the lock and nobody else incremented meanwhile. Returns whether it applied;
/// `None` when the outcome is unknown (a member died under the call).
async fn fenced_increment(client: &Client, m: &Mutex, who: &str) -> Option<bool> {
    let cur = client.get("/counter", GetOptions::new()).await.ok()?;
    let (n, mod_rev) = match cur.first() {
        Some(kv) => {
            let v = kv.value_str();
            let n: i64 = v
                .split(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (n, kv.mod_revision)
        }
        None => (0, 0),
    };
    let txn = Txn::new()
        .when([
            m.is_owner(),
            Compare::mod_revision("/counter", CompareOp::Equal, mod_rev),
        ])
        .and_then([Op::put(
            "/counter",
            format!("{}:{who}", n + 1),
            PutOptions::new(),
        )]);
    client.txn(txn).await.ok().map(|r| r.succeeded)
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_holders_member_never_yields_two_owners() {
    // The holder reaches every member: it keeps the lock (renewing through another member) or is
    // told it lost it.
    kill_the_holders_member(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn holder_cut_off_by_its_only_members_death_is_told_it_lost_the_lock() {
    // The holder reaches only the member that dies: it cannot renew, so it must be told.
    let kept = kill_the_holders_member(false).await;
    assert!(
        !kept,
        "a holder that cannot renew its lease still believes it holds the lock"
    );
}

/// SIGKILLs the member carrying the lock holder's keepalive stream while a waiter on other members
/// queues behind it, and checks with a fenced counter that the owners never interleave. Returns
/// whether the holder kept the lock.
async fn kill_the_holders_member(holder_sees_all_members: bool) -> bool {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let proxies: Vec<FaultProxy> = cluster
        .endpoints()
        .iter()
        .map(|ep| FaultProxy::start(ep).expect("proxy"))
        .collect();
    let via_proxies: Vec<String> = if holder_sees_all_members {
        proxies.iter().map(FaultProxy::url).collect()
    } else {
        vec![proxies[0].url()]
    };
    let holder_client = Client::connect(
        &via_proxies,
        ConnectOptions::new().with_request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect");
    let other_client = connect(&cluster.endpoints()).await;
    let start_rev = revision(&other_client).await;
    let pfx = "/lock/kill";
    let sa = session(&holder_client, 5).await;
    let mut a = Mutex::new(&sa, pfx);
    a.lock().await.expect("a locks");
    for _ in 0..10 {
        assert_eq!(fenced_increment(&holder_client, &a, "a").await, Some(true));
    }
    let sb = session(&other_client, 5).await;
    let b_client = other_client.clone();
    let b_task = tokio::spawn(async move {
        let mut b = Mutex::new(&sb, pfx);
        b.lock().await.expect("b locks");
        let mut applied = 0;
        while applied < 10 {
            if fenced_increment(&b_client, &b, "b").await == Some(true) {
                applied += 1;
            }
        }
        b.unlock().await.expect("b unlocks");
    });
    wait_until("b queued", || async {
        count(&other_client, "/lock/kill/").await == 2
    })
    .await;

    // Find the member carrying the holder's lease keepalive stream: while the holder is idle,
    // only renewals (every TTL/3) go up through its proxy.
    let before: Vec<u64> = proxies.iter().map(|p| p.counts().data_frames_up).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deltas: Vec<u64> = proxies
        .iter()
        .zip(&before)
        .map(|(p, b)| p.counts().data_frames_up - b)
        .collect();
    let victim = (0..3).max_by_key(|i| deltas[*i]).expect("three members");
    assert!(deltas[victim] > 0, "no keepalive traffic seen: {deltas:?}");
    assert!(holder_sees_all_members || victim == 0, "{deltas:?}");
    println!("killing member {victim} (renewals seen per proxy: {deltas:?})");
    cluster.kill(victim);

    // The holder keeps working, fenced, until it has done 20 more increments or is told it lost
    // the lock.
    let mut applied_after_kill = 0;
    let mut fence_failed = false;
    let deadline = Instant::now() + PATIENCE;
    while applied_after_kill < 20 && a.is_held() && Instant::now() < deadline {
        match fenced_increment(&holder_client, &a, "a").await {
            Some(true) => applied_after_kill += 1,
            Some(false) => fence_failed = true,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let kept = a.is_held();
    if kept {
        assert_eq!(
            applied_after_kill, 20,
            "the holder made no progress before the deadline"
        );
        match a.unlock().await {
            Ok(()) => {}
            Err(ConcurrencyError::OwnershipLost(_)) => {}
            Err(e) => panic!("unlock: {e}"),
        }
    } else {
        println!("the holder was told it lost the lock: {}", a.lost().await);
        // Release what may be left (a fenced delete: harmless if the key is gone).
        let _ = tokio::time::timeout(Duration::from_secs(10), a.unlock()).await;
    }
    if fence_failed {
        // A fence that failed means the key was gone: the holder must be told.
        let reason = patiently("holder told after a failed fence", a.lost()).await;
        assert_ne!(
            reason,
            LostReason::Released,
            "told nothing after its fence failed"
        );
    }
    println!(
        "outcome: holder kept the lock = {kept}, fenced writes after the kill = {applied_after_kill}"
    );
    patiently("b acquires and finishes", b_task)
        .await
        .expect("b task");

    // The counter's history: consecutive increments, and the owners never interleave.
    let mut w = other_client
        .watch(
            "/counter",
            WatchOptions::new().with_start_revision(start_rev + 1),
        )
        .await
        .expect("watch");
    let last = other_client
        .get("/counter", GetOptions::new())
        .await
        .expect("get");
    let last = last.first().expect("counter").mod_revision;
    let mut history = Vec::new();
    while history.last().map(|(r, _)| *r) != Some(last) {
        let batch = patiently("history", w.next())
            .await
            .expect("open")
            .expect("batch");
        for ev in batch.events {
            assert_eq!(ev.event_type, EventType::Put);
            history.push((ev.mod_revision(), ev.kv.value_str().into_owned()));
        }
    }
    let mut owners = BTreeMap::new();
    for (i, (_, v)) in history.iter().enumerate() {
        let (n, who) = v.split_once(':').expect("n:who");
        assert_eq!(
            n.parse::<usize>().expect("n"),
            i + 1,
            "lost or doubled increment: {history:?}"
        );
        owners
            .entry(who.to_string())
            .or_insert_with(Vec::new)
            .push(i);
    }
    let a_last = owners["a"].iter().max().copied().expect("a wrote");
    let b_first = owners["b"].iter().min().copied().expect("b wrote");
    assert!(
        a_last < b_first,
        "a wrote after b owned the lock: {history:?}"
    );
    assert_eq!(owners["b"].len(), 10);
    assert!(owners["a"].len() >= 10);
    kept
}
