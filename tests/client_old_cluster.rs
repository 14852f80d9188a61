//! §2.1 `RejectOldCluster`: with a minimum server version the client calls Status on every
//! endpoint at connect and refuses servers older than it, naming the endpoint and its version.
//! Real etcd 3.4.23 (`ETCD_OLD_BIN_DIR`) and 3.5.16 (`ETCD_BIN_DIR`) members.

mod support;

use std::time::Duration;

use etcd_v3::kv::{GetOptions, PutOptions};
use etcd_v3::{Client, ConnectOptions, Error, MinorVersion};
use support::bins::EtcdVersion;
use support::etcd::EtcdCluster;

fn start(version: EtcdVersion) -> EtcdCluster {
    EtcdCluster::builder()
        .version(version)
        .start()
        .expect("etcd member")
}

fn opts() -> ConnectOptions {
    // Generous: the machine is loaded, and the check must not fail on a slow first connection.
    ConnectOptions::new()
        .with_dial_timeout(Duration::from_secs(10))
        .with_request_timeout(Duration::from_secs(15))
}

/// A put and a get through `c`, so "connected" means "usable", not just "constructed".
async fn round_trip(c: &Client, key: &str) {
    c.put(key, "v", PutOptions::new()).await.expect("put");
    let got = c.get(key, GetOptions::new()).await.expect("get");
    assert_eq!(got.kvs[0].value_str(), "v");
}

/// A 3.4.23 member is refused under a 3.5 minimum with `Error::OldCluster` naming its endpoint
/// and version; Go's `RejectOldCluster` rule for a 3.5 client (previous minor, 3.4) accepts it;
/// with no check the client connects and works.
#[tokio::test(flavor = "multi_thread")]
async fn reject_old_cluster_refuses_34_under_min_35_and_accepts_it_when_off() {
    let old = start(EtcdVersion::V3_4);
    let endpoint = old.endpoints()[0].clone();

    let err = Client::connect(old.endpoints(), opts().with_min_server_version(3, 5))
        .await
        .expect_err("3.4.23 is older than 3.5");
    match &err {
        Error::OldCluster {
            endpoint: e,
            version,
            required,
        } => {
            assert_eq!(e, &endpoint);
            assert_eq!(version, "3.4.23");
            assert_eq!(*required, MinorVersion::new(3, 5));
        }
        other => panic!("expected OldCluster, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&endpoint) && text.contains("3.4.23"),
        "{text}"
    );

    let go_rule = Client::connect(old.endpoints(), opts().with_reject_old_cluster(true))
        .await
        .expect("a 3.5 client's RejectOldCluster accepts 3.4 (the previous minor)");
    round_trip(&go_rule, "old/go-rule").await;

    let off = Client::connect(old.endpoints(), opts())
        .await
        .expect("no version check by default");
    round_trip(&off, "old/off").await;
    let explicit_off = Client::connect(
        old.endpoints(),
        opts()
            .with_min_server_version(3, 5)
            .with_reject_old_cluster(false),
    )
    .await
    .expect("with_reject_old_cluster(false) clears the minimum");
    round_trip(&explicit_off, "old/explicit-off").await;
}

/// Every endpoint is checked: a 3.5.16 member alone passes a 3.5 minimum (and Go's rule), but
/// listed together with a 3.4.23 member the connect fails naming the 3.4 one, whichever order
/// they are given in.
#[tokio::test(flavor = "multi_thread")]
async fn reject_old_cluster_accepts_35_and_checks_every_endpoint() {
    let new = start(EtcdVersion::V3_5);
    let old = start(EtcdVersion::V3_4);

    let c = Client::connect(new.endpoints(), opts().with_min_server_version(3, 5))
        .await
        .expect("3.5.16 meets 3.5");
    round_trip(&c, "new/min35").await;
    let c = Client::connect(new.endpoints(), opts().with_reject_old_cluster(true))
        .await
        .expect("3.5.16 meets Go's rule");
    round_trip(&c, "new/go-rule").await;

    let old_ep = old.endpoints()[0].clone();
    for endpoints in [
        vec![new.endpoints()[0].clone(), old_ep.clone()],
        vec![old_ep.clone(), new.endpoints()[0].clone()],
    ] {
        match Client::connect(&endpoints, opts().with_min_server_version(3, 5)).await {
            Err(Error::OldCluster {
                endpoint, version, ..
            }) => {
                assert_eq!(endpoint, old_ep, "{endpoints:?}");
                assert_eq!(version, "3.4.23");
            }
            other => panic!("{endpoints:?}: expected OldCluster, got {other:?}"),
        }
    }
}

/// An endpoint that does not answer fails the check (as in Go's clientv3 3.5+: any endpoint's
/// Status error fails `checkVersion`) with `Error::VersionCheck` naming it, because its version
/// cannot be vouched for; without the check the same endpoint list connects and works through
/// the reachable member.
#[tokio::test(flavor = "multi_thread")]
async fn reject_old_cluster_fails_on_an_unreachable_endpoint() {
    let new = start(EtcdVersion::V3_5);
    // A loopback port nothing listens on.
    let dead = format!(
        "http://127.0.0.1:{}",
        support::ports::free_port().expect("port")
    );
    let endpoints = vec![new.endpoints()[0].clone(), dead.clone()];

    // The dial timeout stays generous (10 s): the live member must answer within it even on a
    // loaded machine, so that the only endpoint that can fail is the dead one.
    let checked = opts().with_min_server_version(3, 5);
    match Client::connect(&endpoints, checked).await {
        Err(Error::VersionCheck { endpoint, source }) => {
            assert_eq!(endpoint, dead);
            // The Status call itself failed (refused connection, or no answer in time).
            assert!(
                matches!(*source, Error::Rpc { .. } | Error::Timeout { .. }),
                "{source:?}"
            );
        }
        other => panic!("expected VersionCheck for {dead}, got {other:?}"),
    }

    let c = Client::connect(&endpoints, opts())
        .await
        .expect("no check: the dead endpoint does not stop the connect");
    round_trip(&c, "unreachable/off").await;
}
