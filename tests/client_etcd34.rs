//! Smoke suite against etcd 3.4.23 (`ETCD_OLD_BIN_DIR`): the calls the older server supports
//! work through the client unchanged (KV, txn, compact, watch, lease and keepalive, member list,
//! status, hash_kv, alarms, snapshot). Fields 3.5 added (linearizable member list) are ignored
//! by 3.4, and fields 3.6 added read as "unknown".

mod support;

use std::time::Duration;

use etcd_v3::kv::{Compare, CompareOp, DeleteOptions, GetOptions, OpResponse, PutOptions, Txn};
use etcd_v3::maintenance::AlarmType;
use etcd_v3::watch::WatchOptions;
use etcd_v3::{Client, ConnectOptions, ServerError};
use support::bins::{EtcdVersion, etcd_tool};
use support::etcd::EtcdCluster;

fn start() -> EtcdCluster {
    EtcdCluster::builder()
        .version(EtcdVersion::V3_4)
        .start()
        .expect("etcd 3.4")
}

async fn connect(cluster: &EtcdCluster) -> Client {
    Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

/// KV on 3.4: put with prev_kv, prefix get, txn with compare and nested then/else, delete with
/// prev_kv, compact and the compacted error on an old read.
#[tokio::test(flavor = "multi_thread")]
async fn etcd34_kv_txn_delete_compact() {
    let cluster = start();
    let c = connect(&cluster).await;
    let first = c.put("s/a", "1", PutOptions::new()).await.expect("put");
    let second = c
        .put("s/a", "2", PutOptions::new().with_prev_kv())
        .await
        .expect("put");
    assert_eq!(second.prev_kv.expect("prev kv").value_str(), "1");
    c.put("s/b", "3", PutOptions::new()).await.expect("put");
    let got = c
        .get("s/", GetOptions::new().with_prefix())
        .await
        .expect("get");
    assert_eq!(got.count, 2);
    assert_eq!(got.kvs[0].value_str(), "2");

    let txn = Txn::new()
        .when([Compare::value("s/a", CompareOp::Equal, "2")])
        .and_then([etcd_v3::kv::Op::get("s/b", GetOptions::new())])
        .or_else([etcd_v3::kv::Op::put("s/c", "x", PutOptions::new())]);
    let r = c.txn(txn).await.expect("txn");
    assert!(r.succeeded);
    match &r.responses[0] {
        OpResponse::Get(g) => assert_eq!(g.kvs[0].value_str(), "3"),
        other => panic!("{other:?}"),
    }

    let del = c
        .delete("s/", DeleteOptions::new().with_prefix().with_prev_kv())
        .await
        .expect("delete");
    assert_eq!(del.deleted, 2);
    assert_eq!(del.prev_kvs.len(), 2);
    c.compact(del.header.revision, true).await.expect("compact");
    let old = c
        .get(
            "s/a",
            GetOptions::new().with_revision(first.header.revision),
        )
        .await;
    match old {
        Err(e) => assert_eq!(e.server_error(), Some(ServerError::Compacted), "{e:?}"),
        Ok(r) => panic!("read below the compaction: {r:?}"),
    }
}

/// Watch and lease on 3.4: a watch sees a put and the delete caused by revoking the lease the key
/// is attached to; keepalive renews; time-to-live lists the keys; leases lists the ID.
#[tokio::test(flavor = "multi_thread")]
async fn etcd34_watch_lease_keepalive() {
    let cluster = start();
    let c = connect(&cluster).await;
    let mut w = c
        .watch("w/", WatchOptions::new().with_prefix().with_prev_kv())
        .await
        .expect("watch");
    let lease = c.lease_grant(30, None).await.expect("grant");
    assert!(lease.id > 0);
    c.put("w/k", "v", PutOptions::new().with_lease(lease.id))
        .await
        .expect("put");
    let ttl = c.lease_time_to_live(lease.id, true).await.expect("ttl");
    assert_eq!(ttl.granted_ttl, 30);
    assert_eq!(ttl.keys, vec![bytes::Bytes::from_static(b"w/k")]);
    assert!(c.lease_leases().await.expect("leases").contains(&lease.id));
    let mut keeper = c.lease_keep_alive(lease.id).await.expect("keepalive");
    let renewed = tokio::time::timeout(Duration::from_secs(30), keeper.changed())
        .await
        .expect("a renewal")
        .expect("renewed");
    assert!(renewed > 0);
    assert!(c.lease_keep_alive_once(lease.id).await.expect("once") > 0);
    keeper.revoke().await.expect("revoke");

    let mut events = Vec::new();
    while events.len() < 2 {
        let b = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch response in time")
            .expect("watch open")
            .expect("watch ok");
        events.extend(b.events);
    }
    assert_eq!(events[0].value(), b"v");
    assert_eq!(events[1].key(), b"w/k");
    assert_eq!(
        events[1]
            .prev_kv
            .as_ref()
            .map(|kv| kv.value_str().into_owned()),
        Some("v".to_string())
    );
    assert!(
        !c.lease_time_to_live(lease.id, false)
            .await
            .expect("ttl")
            .exists()
    );
}

/// Cluster and maintenance on 3.4: member list (the linearizable flag is ignored), status with
/// 3.6-only fields unknown, hash_kv, an alarm round trip, and a snapshot that 3.4's
/// `etcdctl snapshot status` accepts.
#[tokio::test(flavor = "multi_thread")]
async fn etcd34_members_status_hash_alarm_snapshot() {
    let cluster = start();
    let c = connect(&cluster).await;
    let ep = cluster.endpoints()[0].clone();
    let members = c.member_list().await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].client_urls, vec![ep.clone()]);

    let st = c.status(&ep).await.expect("status");
    assert!(st.version.starts_with("3.4."), "{}", st.version);
    assert_eq!(st.leader, members[0].id);
    assert!(st.storage_version.is_none() && st.db_size_quota.is_none());
    c.put("h", "1", PutOptions::new()).await.expect("put");
    let h = c.hash_kv(&ep, 0).await.expect("hash_kv");
    assert_ne!(h.hash, 0);
    assert!(h.hash_revision.is_none());

    let raised = c
        .alarm_activate(members[0].id, AlarmType::NoSpace)
        .await
        .expect("alarm");
    assert_eq!(raised.len(), 1);
    match c.put("h", "2", PutOptions::new()).await {
        Err(e) => assert_eq!(e.server_error(), Some(ServerError::NoSpace), "{e:?}"),
        Ok(_) => panic!("put under NOSPACE"),
    }
    c.alarm_disarm(members[0].id, AlarmType::NoSpace)
        .await
        .expect("disarm");
    assert!(c.alarm_list().await.expect("alarms").is_empty());

    let dir = support::temp_dir("snap34").expect("tempdir");
    let file = dir.path().join("s.db");
    let info = c.snapshot_to_file(&file).await.expect("snapshot");
    assert_eq!(info.size % 512, 32);
    let etcdctl = etcd_tool(EtcdVersion::V3_4, "etcdctl").expect("etcdctl 3.4");
    let out = std::process::Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"totalKey\""));
}
