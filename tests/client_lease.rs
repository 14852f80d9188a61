//! Lease calls of the client against real etcd (parity doc §3): grant/revoke/time-to-live/list
//! server behaviour, and the shared keepalive stream (cadence, failover, loss reporting).

mod support;

use std::time::{Duration, Instant};

use etcd_v3::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use support::etcd::EtcdCluster;
use support::proxy::FaultProxy;

async fn connect(endpoints: &[String]) -> Client {
    Client::connect(
        endpoints,
        ConnectOptions::new().with_request_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

fn raw_kv(url: &str) -> KvClient<tonic::transport::Channel> {
    KvClient::new(
        tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("endpoint")
            .connect_lazy(),
    )
}

/// Puts `key` attached to `lease` (raw stub) and returns the revision of the put.
async fn put_with_lease(url: &str, key: &str, lease: i64) -> i64 {
    raw_kv(url)
        .put(PutRequest {
            key: key.to_string().into(),
            value: "v".into(),
            lease,
            ..Default::default()
        })
        .await
        .expect("put")
        .into_inner()
        .header
        .expect("header")
        .revision
}

/// (count, revision) of the keys under `prefix` (raw stub).
async fn count_prefix(url: &str, prefix: &str) -> (i64, i64) {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    let r = raw_kv(url)
        .range(RangeRequest {
            key: prefix.to_string().into(),
            range_end: end.into(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    (r.count, r.header.expect("header").revision)
}

fn assert_server_error<T: std::fmt::Debug>(r: Result<T, Error>, kind: ServerError) {
    match r {
        Err(e) => assert_eq!(e.server_error(), Some(kind), "{e:?}"),
        Ok(v) => panic!("expected {kind:?}, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_grant_server_chooses_positive_id_and_min_ttl() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let a = client.lease_grant(30, None).await.expect("grant");
    assert!(a.id > 0, "{a:?}");
    assert_eq!(a.ttl, 30);
    let b = client.lease_grant(30, None).await.expect("grant");
    assert!(b.id > 0 && b.id != a.id, "{a:?} {b:?}");
    // Minimum TTL = ceil(1.5 × election timeout) = 2 s with the default timings.
    let short = client.lease_grant(1, None).await.expect("grant 1");
    assert_eq!(short.ttl, 2, "{short:?}");
    let ttl = client
        .lease_time_to_live(short.id, false)
        .await
        .expect("ttl");
    assert_eq!(ttl.granted_ttl, 2, "{ttl:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_grant_errors_ttl_too_large_and_lease_exist() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let r = client.lease_grant(9_000_000_001, None).await;
    if let Err(e) = &r {
        assert_eq!(e.code(), Some(tonic::Code::OutOfRange), "{e:?}");
    }
    assert_server_error(r, ServerError::LeaseTtlTooLarge);
    // Exactly the maximum is accepted.
    let max = client
        .lease_grant(9_000_000_000, None)
        .await
        .expect("max TTL");
    assert_eq!(max.ttl, 9_000_000_000);

    let explicit = client.lease_grant(30, Some(0x1234)).await.expect("grant");
    assert_eq!(explicit.id, 0x1234);
    assert_server_error(
        client.lease_grant(30, Some(0x1234)).await,
        ServerError::LeaseExist,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_revoke_unknown_is_lease_not_found() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let r = client.lease_revoke(0x7777).await;
    if let Err(e) = &r {
        assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e:?}");
    }
    assert_server_error(r, ServerError::LeaseNotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_revoke_deletes_attached_keys_in_one_revision() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let client = connect(&cluster.endpoints()).await;
    let lease = client.lease_grant(60, None).await.expect("grant");
    let mut rev = 0;
    for k in ["rv/a", "rv/b", "rv/c"] {
        rev = put_with_lease(&url, k, lease.id).await;
    }
    assert_eq!(count_prefix(&url, "rv/").await, (3, rev));
    let revoked = client.lease_revoke(lease.id).await.expect("revoke");
    assert_eq!(
        revoked.header.revision,
        rev + 1,
        "three deletes, one revision"
    );
    assert_eq!(count_prefix(&url, "rv/").await, (0, rev + 1));
    let ttl = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert_eq!(ttl.ttl, -1);
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_time_to_live_unknown_is_minus_one_and_lists_keys() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let client = connect(&cluster.endpoints()).await;

    let unknown = client
        .lease_time_to_live(0x4242, true)
        .await
        .expect("no error for an unknown lease");
    assert_eq!(unknown.ttl, -1, "{unknown:?}");
    assert!(!unknown.exists());
    assert!(unknown.keys.is_empty());

    let lease = client.lease_grant(40, None).await.expect("grant");
    put_with_lease(&url, "ttl/x", lease.id).await;
    put_with_lease(&url, "ttl/y", lease.id).await;
    let with_keys = client
        .lease_time_to_live(lease.id, true)
        .await
        .expect("ttl");
    assert_eq!(with_keys.id, lease.id);
    assert_eq!(with_keys.granted_ttl, 40);
    assert!((30..=40).contains(&with_keys.ttl), "{with_keys:?}");
    let mut keys: Vec<String> = with_keys
        .keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["ttl/x", "ttl/y"]);
    let without = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(without.keys.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_leases_lists_ids() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let a = client.lease_grant(30, None).await.expect("grant").id;
    let b = client.lease_grant(30, None).await.expect("grant").id;
    let ids = client.lease_leases().await.expect("leases");
    assert!(ids.contains(&a) && ids.contains(&b), "{ids:?}");
    client.lease_revoke(a).await.expect("revoke");
    let ids = client.lease_leases().await.expect("leases");
    assert!(!ids.contains(&a) && ids.contains(&b), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_keep_alive_once_renews_and_reports_not_found_after_revoke() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let lease = client.lease_grant(20, None).await.expect("grant");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(before.ttl < 20, "{before:?}");
    assert_eq!(
        client.lease_keep_alive_once(lease.id).await.expect("renew"),
        20
    );
    let after = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(after.ttl >= 19, "renewed to the full TTL: {after:?}");

    client.lease_revoke(lease.id).await.expect("revoke");
    assert_server_error(
        client.lease_keep_alive_once(lease.id).await,
        ServerError::LeaseNotFound,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_keeps_short_lease_alive() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let lease = client.lease_grant(3, None).await.expect("grant");
    let mut keeper = client.lease_keep_alive(lease.id).await.expect("keepalive");
    assert_eq!(keeper.id(), lease.id);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), keeper.changed())
            .await
            .expect("first renewal in time")
            .expect("renewed"),
        3
    );
    assert_eq!(keeper.ttl(), Some(3));
    assert!(keeper.expires_at().expect("deadline") > Instant::now());
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(!keeper.is_lost());
    assert_eq!(keeper.ttl(), Some(3));
    let ttl = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(ttl.ttl >= 1, "alive after 8 s with TTL 3: {ttl:?}");
}

/// Counts the keepalive requests at the wire: one every TTL/3 (parity: TTL/3 rounded up to
/// 500 ms in etcd's client).
#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_cadence_ttl_over_3() {
    let cluster = EtcdCluster::single().expect("etcd");
    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let client = connect(&[proxy.url()]).await;
    let lease = client.lease_grant(6, None).await.expect("grant");
    let mut keeper = client.lease_keep_alive(lease.id).await.expect("keepalive");
    keeper.changed().await.expect("first renewal");
    let c0 = proxy.counts();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let c1 = proxy.counts();
    let sent = c1.data_frames_up - c0.data_frames_up;
    assert!(
        (4..=9).contains(&sent),
        "{sent} keepalive requests in 12 s (TTL 6)"
    );
    assert_eq!(c1.connections, c0.connections, "no reconnects");
    assert_eq!(
        c1.headers_frames_up, c0.headers_frames_up,
        "one stream for all renewals"
    );
    assert!(!keeper.is_lost());
}

/// Several keepers of a lease share one renewal; once the last is dropped the lease is no longer
/// renewed, and not revoked either: it runs out.
#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_keepers_share_one_renewal_and_drop_stops_it() {
    let cluster = EtcdCluster::single().expect("etcd");
    let direct = connect(&cluster.endpoints()).await;
    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let client = connect(&[proxy.url()]).await;
    let lease = client.lease_grant(6, None).await.expect("grant");
    let mut k1 = client.lease_keep_alive(lease.id).await.expect("keepalive");
    k1.changed().await.expect("renewal");
    let mut k2 = client.lease_keep_alive(lease.id).await.expect("keepalive");
    let k3 = k2.clone();
    let c0 = proxy.counts();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let c1 = proxy.counts();
    // One request per 2 s for the lease, not one per keeper. (Renewals of different leases that
    // fall due together may share one DATA frame, so this counts a single lease.)
    let sent = c1.data_frames_up - c0.data_frames_up;
    assert!((2..=6).contains(&sent), "{sent} requests in 8 s");
    assert_eq!(c1.headers_frames_up, c0.headers_frames_up, "one stream");
    assert_eq!(k2.changed().await.expect("renewal"), 6);
    assert_eq!(k3.ttl(), Some(6));

    drop((k1, k2, k3));
    let alive = direct
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(alive.ttl > 0, "dropping keepers does not revoke: {alive:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c2 = proxy.counts();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let c3 = proxy.counts();
    assert_eq!(
        c3.data_frames_up, c2.data_frames_up,
        "no renewals after drop"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = direct
            .lease_time_to_live(lease.id, false)
            .await
            .expect("ttl");
        if t.ttl == -1 {
            break;
        }
        assert!(Instant::now() < deadline, "lease never expired: {t:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_survives_connection_flaps() {
    let cluster = EtcdCluster::single().expect("etcd");
    let direct = connect(&cluster.endpoints()).await;
    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let client = connect(&[proxy.url()]).await;
    let lease = client.lease_grant(5, None).await.expect("grant");
    let mut keeper = client.lease_keep_alive(lease.id).await.expect("keepalive");
    keeper.changed().await.expect("first renewal");
    let conns = proxy.counts().connections;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.drop_all();
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.resume();
        assert!(
            !keeper.is_lost(),
            "lost during flaps: {:?}",
            keeper.lost().await
        );
    }
    assert!(
        proxy.counts().connections > conns + 3,
        "the proxy did drop connections"
    );
    // A renewal after the last flap, and the lease is alive at the server.
    tokio::time::timeout(Duration::from_secs(5), keeper.changed())
        .await
        .expect("renewed after the flaps")
        .expect("not lost");
    let ttl = direct
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(ttl.ttl >= 2, "{ttl:?}");
    assert!(!keeper.is_lost());
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_reports_revoke_by_another_client() {
    let cluster = EtcdCluster::single().expect("etcd");
    let a = connect(&cluster.endpoints()).await;
    let b = connect(&cluster.endpoints()).await;
    let lease = a.lease_grant(6, None).await.expect("grant");
    let mut keeper = a.lease_keep_alive(lease.id).await.expect("keepalive");
    keeper.changed().await.expect("first renewal");
    b.lease_revoke(lease.id).await.expect("revoke");
    let revoked_at = Instant::now();
    let lost = tokio::time::timeout(Duration::from_secs(5), keeper.lost())
        .await
        .expect("loss reported within 5 s (next renewal is due within TTL/3 = 2 s)");
    match lost {
        Error::LeaseLost { id, reason } => {
            assert_eq!(id, lease.id);
            assert!(reason.contains("TTL 0"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
    assert!(keeper.is_lost());
    assert_eq!(keeper.ttl(), None);
    assert!(matches!(
        keeper.changed().await,
        Err(Error::LeaseLost { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_of_unknown_lease_is_lost_and_revoke_through_keeper() {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = connect(&cluster.endpoints()).await;
    let unknown = client.lease_keep_alive(0x5151).await.expect("keepalive");
    let lost = tokio::time::timeout(Duration::from_secs(3), unknown.lost())
        .await
        .expect("unknown lease reported lost at once");
    assert!(
        matches!(lost, Error::LeaseLost { id: 0x5151, .. }),
        "{lost:?}"
    );

    let lease = client.lease_grant(30, None).await.expect("grant");
    let mut k1 = client.lease_keep_alive(lease.id).await.expect("keepalive");
    k1.changed().await.expect("renewal");
    let k2 = client.lease_keep_alive(lease.id).await.expect("keepalive");
    k1.revoke().await.expect("revoke");
    let lost = tokio::time::timeout(Duration::from_secs(1), k2.lost())
        .await
        .expect("the other keeper is told at once");
    assert!(matches!(lost, Error::LeaseLost { .. }), "{lost:?}");
    let ttl = client
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert_eq!(ttl.ttl, -1);
}

/// The member the keepalive stream is on is SIGKILLed: the stream moves to another member and the
/// lease stays alive.
#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_fails_over_when_its_member_is_killed() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let proxies: Vec<FaultProxy> = (0..3)
        .map(|i| FaultProxy::start(&cluster.member(i).client_addr()).expect("proxy"))
        .collect();
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let client = connect(&urls).await;
    let lease = client.lease_grant(6, None).await.expect("grant");
    let mut keeper = client.lease_keep_alive(lease.id).await.expect("keepalive");
    keeper.changed().await.expect("first renewal");

    let before: Vec<u64> = proxies.iter().map(|p| p.counts().data_frames_up).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let delta: Vec<u64> = proxies
        .iter()
        .zip(&before)
        .map(|(p, b)| p.counts().data_frames_up - b)
        .collect();
    let on = (0..3).max_by_key(|&i| delta[i]).expect("three members");
    assert!(delta[on] >= 2, "renewals seen at the proxies: {delta:?}");
    assert_eq!(
        delta.iter().filter(|&&d| d > 0).count(),
        1,
        "one stream: {delta:?}"
    );

    cluster.kill(on);
    let killed_at = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != on).collect();
    let before: Vec<u64> = others
        .iter()
        .map(|&i| proxies[i].counts().data_frames_up)
        .collect();
    // Renewals keep being answered for well over the TTL.
    while killed_at.elapsed() < Duration::from_secs(15) {
        let r = tokio::time::timeout(Duration::from_secs(6), keeper.changed()).await;
        match r {
            Ok(Ok(ttl)) => assert_eq!(ttl, 6),
            Ok(Err(e)) => panic!("lease lost after the kill: {e}"),
            Err(_) => panic!("no renewal for 6 s after the kill"),
        }
    }
    let moved: u64 = others
        .iter()
        .zip(&before)
        .map(|(&i, b)| proxies[i].counts().data_frames_up - b)
        .sum();
    assert!(moved >= 4, "renewals went to the other members: {moved}");
    let survivor = connect(&[cluster.member(others[0]).client_url()]).await;
    let ttl = survivor
        .lease_time_to_live(lease.id, false)
        .await
        .expect("ttl");
    assert!(ttl.ttl >= 2, "{ttl:?}");
}

/// The member the keepalive stream is on is SIGSTOPped (its connection stays up but nothing is
/// answered): the unanswered renewal makes the client abandon the stream and move on, before the
/// lease's deadline.
#[tokio::test(flavor = "multi_thread")]
async fn lease_keepalive_moves_off_a_hung_member() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let proxies: Vec<FaultProxy> = (0..3)
        .map(|i| FaultProxy::start(&cluster.member(i).client_addr()).expect("proxy"))
        .collect();
    let urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
    let client = connect(&urls).await;
    let lease = client.lease_grant(6, None).await.expect("grant");
    let mut keeper = client.lease_keep_alive(lease.id).await.expect("keepalive");
    keeper.changed().await.expect("first renewal");
    let before: Vec<u64> = proxies.iter().map(|p| p.counts().data_frames_up).collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let delta: Vec<u64> = proxies
        .iter()
        .zip(&before)
        .map(|(p, b)| p.counts().data_frames_up - b)
        .collect();
    let on = (0..3).max_by_key(|&i| delta[i]).expect("three members");
    assert!(delta[on] >= 2, "{delta:?}");

    cluster.pause(on).expect("SIGSTOP");
    let paused_at = Instant::now();
    while paused_at.elapsed() < Duration::from_secs(15) {
        match tokio::time::timeout(Duration::from_secs(6), keeper.changed()).await {
            Ok(Ok(ttl)) => assert_eq!(ttl, 6),
            Ok(Err(e)) => panic!("lease lost while a member hangs: {e}"),
            Err(_) => panic!("no renewal for 6 s while a member hangs"),
        }
    }
    cluster.resume(on).expect("SIGCONT");
    assert!(!keeper.is_lost());
}

/// §3 leader change `[S]`: without lease checkpointing a new leader refreshes every lease to its
/// full TTL, so a 10 s lease with about 4 s left has close to 10 s again after a leader move.
#[tokio::test(flavor = "multi_thread")]
async fn lease_leader_change_refreshes_ttl_without_checkpointing() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let c = connect(&cluster.endpoints()).await;
    let lease = c.lease_grant(10, None).await.expect("grant").id;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = c.lease_time_to_live(lease, false).await.expect("ttl").ttl;
    assert!((0..=5).contains(&before), "before the move: {before}");
    let leader = c
        .status(&cluster.endpoints()[0])
        .await
        .expect("status")
        .leader;
    let target = c
        .member_list()
        .await
        .expect("members")
        .iter()
        .find(|m| m.id != leader)
        .expect("a follower")
        .id;
    c.move_leader(target).await.expect("move leader");
    // The new leader promotes itself and refreshes the leases when it takes over.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = c.status(&cluster.endpoints()[0]).await.expect("status");
        if st.leader == target {
            break;
        }
        assert!(Instant::now() < deadline, "leader did not move");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = c.lease_time_to_live(lease, false).await.expect("ttl");
    assert!(after.exists());
    // Without the refresh the TTL could only have gone down.
    assert!(
        after.ttl > before,
        "after the move: {} (before {before})",
        after.ttl
    );
}
