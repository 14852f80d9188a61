//! The controller's observe step against a real 3-member etcd cluster: every member's health
//! comes from its `Status` and its gRPC health `Watch` stream, a killed member is reported
//! unhealthy by both, and observing adds nothing to the raft log.

mod support;

use std::time::{Duration, Instant};

use etcd_operator::controller::observe::{observe_etcd, same_url};
use etcd_operator::etcd::{Client, ConnectOptions};
use support::etcd::EtcdCluster;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn health_comes_from_status_and_the_health_stream() {
    let mut cluster = EtcdCluster::builder()
        .members(3)
        .start()
        .expect("3-member cluster");
    let client = Client::connect(cluster.endpoints(), ConnectOptions::new())
        .await
        .expect("connect");

    // Every member answers Status with a leader and its stream says SERVING.
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = observe_etcd(&client, TIMEOUT, &same_url)
            .await
            .expect("a view");
        if view.members.len() == 3 && view.members.iter().all(|m| m.healthy()) {
            break view;
        }
        assert!(Instant::now() < deadline, "never all healthy: {view:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for m in &view.members {
        assert_eq!(m.serving, Some(true), "{m:?}");
        let url = m.client_url().expect("a client URL");
        assert_eq!(
            client.serving(url, TIMEOUT).await.expect("serving"),
            Some(true)
        );
    }

    // Observing an idle cluster writes nothing: the raft index stays where it was.
    let index = |v: &etcd_operator::controller::observe::EtcdView| {
        v.members
            .iter()
            .filter_map(|m| m.status.as_ref().map(|s| s.raft_index))
            .max()
            .unwrap_or_default()
    };
    let before = index(&view);
    let mut last = view;
    for _ in 0..10 {
        last = observe_etcd(&client, TIMEOUT, &same_url)
            .await
            .expect("a view");
    }
    assert_eq!(index(&last), before, "observing moved the raft index");

    // A killed member: its health stream breaks (not SERVING) and it counts unhealthy.
    let killed = cluster.member(2).client_url();
    cluster.kill(2);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let serving = client.serving(&killed, TIMEOUT).await.expect("serving");
        if serving == Some(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the health stream still says {serving:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view = observe_etcd(&client, TIMEOUT, &same_url)
        .await
        .expect("a view from the two others");
    let dead = view
        .members
        .iter()
        .find(|m| m.client_url() == Some(killed.as_str()))
        .expect("the killed member is still listed");
    assert!(!dead.healthy(), "{dead:?}");
    assert_ne!(dead.serving, Some(true));
    assert_eq!(view.members.iter().filter(|m| m.healthy()).count(), 2);
}
