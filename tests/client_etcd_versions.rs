//! Smoke suite against the static etcd 3.5.35, 3.6.16 and 3.7.3 (`ETCD_3_{5,6,7}_BIN_DIR`):
//! the same calls on each version (KV, txn, compact, watch, lease and keepalive, member list and
//! learner promotion, move leader, status, hash_kv, alarms, snapshot, downgrade validation),
//! and the differences between them asserted where they show:
//! - `Status.storageVersion` and `Status.dbSizeQuota` are set from 3.6 on, absent on 3.5 (the
//!   storage version only once the cluster version is decided, a moment after start);
//! - `HashKV.hashRevision` is 0 on 3.5 for a hash at the current revision, set from 3.6 on;
//! - the Downgrade API validates a one-minor downgrade on every version but answers the cluster
//!   version as `3.5.0` on 3.5 and as `major.minor` (`3.6`) from 3.6 on;
//! - everything else answers the same on the three versions.

mod support;

use std::time::Duration;

use etcd_operator::etcd::kv::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn};
use etcd_operator::etcd::maintenance::{AlarmType, DowngradeAction};
use etcd_operator::etcd::watch::WatchOptions;
use etcd_operator::etcd::{Client, ConnectOptions, ServerError};
use support::bins::{EtcdVersion, etcd_tool};
use support::etcd::EtcdCluster;

fn start(v: EtcdVersion, members: usize) -> EtcdCluster {
    EtcdCluster::builder()
        .version(v)
        .members(members)
        .start()
        .unwrap_or_else(|e| panic!("etcd {}: {e}", v.version_string()))
}

async fn connect(cluster: &EtcdCluster) -> Client {
    Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

/// `(major, minor)` of a version.
fn line(v: EtcdVersion) -> (u32, u32) {
    let mut parts = v
        .version_string()
        .split('.')
        .map(|p| p.parse().expect("number"));
    (parts.next().expect("major"), parts.next().expect("minor"))
}

async fn kv_txn_delete_compact(v: EtcdVersion) {
    let cluster = start(v, 1);
    let c = connect(&cluster).await;
    let first = c.put("s/a", "1", PutOptions::new()).await.expect("put");
    let second = c
        .put("s/a", "2", PutOptions::new().with_prev_kv())
        .await
        .expect("put");
    assert_eq!(second.prev_kv.expect("prev kv").value_str(), "1");
    c.put("s/b", "3", PutOptions::new()).await.expect("put");
    let got = c
        .get("s/", GetOptions::new().with_prefix().with_count_only())
        .await
        .expect("count");
    assert_eq!(got.count, 2);
    let txn = Txn::new()
        .when([Compare::value("s/a", CompareOp::Equal, "2")])
        .and_then([etcd_operator::etcd::kv::Op::put(
            "s/c",
            "t",
            PutOptions::new(),
        )]);
    assert!(c.txn(txn).await.expect("txn").succeeded);
    let del = c
        .delete("s/", DeleteOptions::new().with_prefix().with_prev_kv())
        .await
        .expect("delete");
    assert_eq!(del.deleted, 3);
    c.compact(del.header.revision, true).await.expect("compact");
    match c
        .get(
            "s/a",
            GetOptions::new().with_revision(first.header.revision),
        )
        .await
    {
        Err(e) => assert_eq!(e.server_error(), Some(ServerError::Compacted), "{e:?}"),
        Ok(r) => panic!("read below the compaction: {r:?}"),
    }
}

async fn watch_lease_keepalive(v: EtcdVersion) {
    let cluster = start(v, 1);
    let c = connect(&cluster).await;
    let mut w = c
        .watch("w/", WatchOptions::new().with_prefix().with_prev_kv())
        .await
        .expect("watch");
    let lease = c.lease_grant(30, None).await.expect("grant");
    c.put("w/k", "v", PutOptions::new().with_lease(lease.id))
        .await
        .expect("put");
    let ttl = c.lease_time_to_live(lease.id, true).await.expect("ttl");
    assert_eq!(ttl.keys, vec![bytes::Bytes::from_static(b"w/k")]);
    assert!(c.lease_leases().await.expect("leases").contains(&lease.id));
    let mut keeper = c.lease_keep_alive(lease.id).await.expect("keepalive");
    let renewed = tokio::time::timeout(Duration::from_secs(30), keeper.changed())
        .await
        .expect("a renewal")
        .expect("renewed");
    assert!(renewed > 0);
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
    assert_eq!(
        events[1]
            .prev_kv
            .as_ref()
            .map(|kv| kv.value_str().into_owned()),
        Some("v".to_owned())
    );
    // A progress request is answered on every version.
    w.request_progress().await.expect("progress request");
}

async fn cluster_and_maintenance(v: EtcdVersion) {
    let (major, minor) = line(v);
    let mut cluster = start(v, 3);
    let c = connect(&cluster).await;
    let members = c.member_list().await.expect("members");
    assert_eq!(members.len(), 3);

    // Status, and the fields 3.6 added.
    let ep = cluster.endpoints()[0].clone();
    let st = c.status(&ep).await.expect("status");
    assert!(
        st.version.starts_with(&format!("{major}.{minor}.")),
        "{}",
        st.version
    );
    assert_eq!(st.version, v.version_string());
    let since_36 = (major, minor) >= (3, 6);
    assert_eq!(st.db_size_quota.is_some(), since_36, "{st:?}");
    if since_36 {
        // The storage version is written once the cluster version is decided, a moment
        // after the cluster starts: until then Status leaves it empty.
        let mut storage = st.storage_version.clone();
        for _ in 0..100 {
            if storage.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            storage = c.status(&ep).await.expect("status").storage_version;
        }
        assert_eq!(storage, Some(format!("{major}.{minor}.0")));
    } else {
        assert_eq!(st.storage_version, None, "{st:?}");
    }

    // Move the leader to a follower and back.
    let leader = st.leader;
    let target = members
        .iter()
        .find(|m| m.id != leader)
        .expect("a follower")
        .id;
    c.move_leader(target).await.expect("move leader");
    // Every member learns the new leader with its next heartbeat.
    let mut moved = 0;
    for _ in 0..50 {
        moved = c.status(&ep).await.expect("status").leader;
        if moved == target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(moved, target);

    // A learner joins, is listed as one and is promoted once caught up.
    let port = || support::ports::free_port().expect("a free port");
    let (client_port, peer_port) = (port(), port());
    // Right after a leader change etcd refuses membership changes ("unhealthy cluster") until
    // the new leader has heard from every member for a while: retried.
    let mut added = None;
    for _ in 0..100 {
        match c
            .member_add([format!("http://127.0.0.1:{peer_port}")], true)
            .await
        {
            Ok(a) => {
                added = Some(a);
                break;
            }
            Err(e) if e.server_error() == Some(ServerError::Unhealthy) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("add learner: {e:?}"),
        }
    }
    let added = added.expect("the learner was added within 20 s");
    assert!(added.member.is_learner);
    cluster
        .join_member("learner", client_port, peer_port)
        .expect("start the learner");
    let mut promoted = false;
    for _ in 0..100 {
        match c.member_promote(added.member.id).await {
            Ok(list) => {
                assert!(list.iter().all(|m| !m.is_learner), "{list:?}");
                promoted = true;
                break;
            }
            Err(e) => {
                assert!(
                    e.server_error() == Some(ServerError::LearnerNotReady),
                    "promote: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(promoted, "the learner was never promoted");
    assert_eq!(c.member_list().await.expect("members").len(), 4);

    // Hash, alarm round trip.
    c.put("h", "1", PutOptions::new()).await.expect("put");
    let h = c.hash_kv(&ep, 0).await.expect("hash_kv");
    assert_ne!(h.hash, 0);
    // 3.5 leaves hash_revision at 0 (read as None) for a hash at the current revision; 3.6
    // and later report the revision the hash covers.
    assert_eq!(h.hash_revision.is_some(), since_36, "{h:?}");
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

    // Downgrade validation to the previous line: every version validates it, and answers the
    // cluster version: `3.5.0` on 3.5, `major.minor` from 3.6 on.
    let previous = format!("{major}.{}", minor - 1);
    let cluster_version = c
        .downgrade(DowngradeAction::Validate, &previous)
        .await
        .expect("downgrade validation");
    if since_36 {
        assert_eq!(cluster_version, format!("{major}.{minor}"));
    } else {
        assert_eq!(cluster_version, format!("{major}.{minor}.0"));
    }

    // A snapshot the version's own etcdutl reads.
    let dir = support::temp_dir("snapv").expect("tempdir");
    let file = dir.path().join("s.db");
    let info = c.snapshot_to_file(&file).await.expect("snapshot");
    assert!(info.size > 32);
    let etcdutl = etcd_tool(v, "etcdutl").expect("etcdutl");
    let out = std::process::Command::new(etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .expect("etcdutl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"totalKey\""));
}

macro_rules! suite {
    ($($name:ident => $version:expr),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread")]
                async fn kv_txn_delete_compact() {
                    super::kv_txn_delete_compact($version).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn watch_lease_keepalive() {
                    super::watch_lease_keepalive($version).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn cluster_and_maintenance() {
                    super::cluster_and_maintenance($version).await;
                }
            }
        )*
    };
}

suite! {
    etcd_3_5_35 => EtcdVersion::V3_5_35,
    etcd_3_6_16 => EtcdVersion::V3_6,
    etcd_3_7_3 => EtcdVersion::V3_7,
}
