//! Self-tests of the test harness, and the smoke test of the generated gRPC client against a real
//! etcd (a KV Range through `etcdserverpb.KV`).

mod support;

use std::time::Duration;

use etcd_operator::etcd::proto::etcdserverpb::{
    MemberListRequest, PutRequest, RangeRequest, cluster_client::ClusterClient, kv_client::KvClient,
};
use support::bins::EtcdVersion;
use support::etcd::EtcdCluster;
use support::kube::KubeControlPlane;
use support::proxy::FaultProxy;

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy()
}

#[tokio::test]
async fn smoke_generated_kv_range_against_real_etcd() {
    let cluster = EtcdCluster::single().expect("etcd");
    let mut kv = KvClient::new(channel(&cluster.endpoints()[0]).await);
    kv.put(PutRequest {
        key: "smoke".into(),
        value: "ok".into(),
        ..Default::default()
    })
    .await
    .expect("put");
    let resp = kv
        .range(RangeRequest {
            key: "smoke".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(resp.kvs.len(), 1);
    assert_eq!(&resp.kvs[0].value[..], b"ok");
    assert!(resp.header.expect("header").revision >= 2);
}

async fn voting_members(url: &str) -> (usize, usize) {
    let mut c = ClusterClient::new(channel(url).await);
    let members = c
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner()
        .members;
    (
        members.len(),
        members.iter().filter(|m| !m.is_learner).count(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn three_member_cluster_lists_three_voters() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    for url in cluster.endpoints() {
        assert_eq!(voting_members(&url).await, (3, 3), "member list via {url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn five_member_cluster_starts() {
    let cluster = EtcdCluster::builder().members(5).start().expect("etcd");
    assert_eq!(voting_members(&cluster.endpoints()[4]).await, (5, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn old_version_cluster_starts_and_reports_its_version() {
    let cluster = EtcdCluster::builder()
        .members(3)
        .version(EtcdVersion::V3_4)
        .start()
        .expect("etcd 3.4");
    let body = support::etcd::http_get(cluster.member(0).client_port, "/version").expect("version");
    assert!(body.contains("\"etcdserver\":\"3.4.23\""), "{body}");
    assert_eq!(voting_members(&cluster.endpoints()[0]).await, (3, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_and_restart_a_member() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    cluster.kill(1);
    assert!(!cluster.is_running(1));
    assert!(!cluster.member(1).healthy());
    // The other two keep quorum (and elect a leader if member 1 led).
    cluster.wait_healthy().expect("two members stay healthy");
    let mut kv = KvClient::new(channel(&cluster.endpoints()[0]).await);
    kv.put(PutRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .expect("put with one member down");
    cluster.restart(1).expect("restart");
    assert!(cluster.member(1).healthy());
    let mut kv1 = KvClient::new(channel(&cluster.endpoints()[1]).await);
    let r = kv1
        .range(RangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .expect("range on restarted member")
        .into_inner();
    assert_eq!(r.kvs.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_flags_reach_the_member() {
    let cluster = EtcdCluster::builder()
        .flag("--quota-backend-bytes=16777216")
        .start()
        .expect("etcd");
    let metrics =
        support::etcd::http_get(cluster.member(0).client_port, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("etcd_server_quota_backend_bytes")
                && l.ends_with(" 1.6777216e+07")),
        "quota flag not applied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_through_proxy_fails_while_dropped_and_succeeds_after_resume() {
    let cluster = EtcdCluster::single().expect("etcd");
    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    let mut kv = KvClient::new(channel(&proxy.url()).await);
    let get = RangeRequest {
        key: "p".into(),
        ..Default::default()
    };
    kv.range(get.clone()).await.expect("range through proxy");
    let before = proxy.counts();
    assert!(before.connections >= 1 && before.headers_frames_up >= 1 && before.bytes_down > 0);

    proxy.drop_all();
    let err = kv
        .range(get.clone())
        .await
        .expect_err("range must fail while dropped");
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ),
        "{err:?}"
    );

    proxy.resume();
    let mut ok = false;
    for _ in 0..50 {
        if kv.range(get.clone()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "range did not succeed after resume");
    assert!(
        proxy.counts().connections > before.connections,
        "a new connection was made"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blackholed_proxy_stalls_calls_until_resumed() {
    let cluster = EtcdCluster::single().expect("etcd");
    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    proxy.blackhole();
    let mut kv = KvClient::new(channel(&proxy.url()).await);
    let get = RangeRequest {
        key: "p".into(),
        ..Default::default()
    };
    let stalled = tokio::time::timeout(Duration::from_millis(700), kv.range(get.clone())).await;
    assert!(
        stalled.is_err() || stalled.is_ok_and(|r| r.is_err()),
        "a blackholed call must not succeed"
    );
    assert_eq!(proxy.counts().bytes_down, 0);
    proxy.resume();
    let mut ok = false;
    for _ in 0..50 {
        if kv.range(get.clone()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok);
}

#[test]
fn missing_binary_is_a_clear_error() {
    let err = EtcdCluster::builder()
        .bin_dir("/nonexistent/etcd-bin")
        .start()
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("binary not found: /nonexistent/etcd-bin/etcd"),
        "{msg}"
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let peer = support::ports::free_port().expect("port");
    let err = EtcdCluster::builder()
        .ports(vec![(port, peer)])
        .start()
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("in use"),
        "{msg}"
    );
}

#[test]
fn bad_cluster_size_is_a_clear_error() {
    let err = EtcdCluster::builder()
        .members(0)
        .start()
        .expect_err("must fail");
    assert!(err.to_string().contains("1 to 9 members"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_control_plane_serves_v1_34_and_kubectl_and_helm_work() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let client = cp.client().await.expect("client");
    let v = client.apiserver_version().await.expect("version");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "34"));
    assert!(v.git_version.starts_with("v1.34."), "{}", v.git_version);
    assert_eq!(
        cp.kubectl(&["get", "--raw", "/readyz"])
            .expect("kubectl")
            .trim(),
        "ok"
    );
    // RBAC is on: an unknown token is refused, the admin is allowed.
    let can = cp
        .kubectl(&["auth", "can-i", "create", "pods", "--all-namespaces"])
        .expect("can-i");
    assert_eq!(can.trim(), "yes");
    let version = cp.helm(&["version", "--short"]).expect("helm");
    assert!(version.starts_with("v3."), "{version}");
}
