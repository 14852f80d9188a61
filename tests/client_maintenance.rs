//! Maintenance calls against real etcd 3.5 (parity doc §6): status, defragment, HashKV, alarms,
//! MoveLeader, downgrade and snapshots (checked with `etcdutl` and by restoring them).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_v3::maintenance::{AlarmType, DowngradeAction};
use etcd_v3::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    kv_client::KvClient, request_op,
};
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use sha2::{Digest, Sha256};
use support::bins::{self, EtcdVersion};
use support::etcd::EtcdCluster;
use support::ports::free_port;
use support::process::Proc;
use tonic::transport::Channel;

async fn client(cluster: &EtcdCluster) -> Client {
    Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(60)),
    )
    .await
    .expect("connect")
}

fn kv(url: &str) -> KvClient<Channel> {
    KvClient::new(
        tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("endpoint")
            .connect_lazy(),
    )
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &[u8]) -> Result<i64, Error> {
    kv.put(PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.to_vec().into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().header.expect("header").revision)
    .map_err(|st| Error::from_status("KV/Put", st))
}

/// Puts `n` keys `prefix/<i>` with `value_len`-byte values, 100 per txn; returns the revision.
async fn put_many(kv: &mut KvClient<Channel>, prefix: &str, n: usize, value_len: usize) -> i64 {
    let value = vec![b'x'; value_len];
    let mut rev = 0;
    for start in (0..n).step_by(100) {
        let success = (start..(start + 100).min(n))
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("{prefix}/{i:06}").into_bytes().into(),
                    value: value.clone().into(),
                    ..Default::default()
                })),
            })
            .collect();
        let r = kv
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await
            .expect("txn put")
            .into_inner();
        rev = r.header.expect("header").revision;
    }
    rev
}

async fn delete_prefix(kv: &mut KvClient<Channel>, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    kv.delete_range(DeleteRangeRequest {
        key: prefix.as_bytes().to_vec().into(),
        range_end: end.into(),
        ..Default::default()
    })
    .await
    .expect("delete")
    .into_inner()
    .header
    .expect("header")
    .revision
}

async fn compact(kv: &mut KvClient<Channel>, revision: i64) {
    kv.compact(CompactionRequest {
        revision,
        physical: true,
    })
    .await
    .expect("compact");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_fields_of_a_single_member() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = client(&cluster).await;
    let ep = cluster.member(0).client_url();
    let before = c.status(&ep).await.expect("status");
    assert_eq!(before.version, EtcdVersion::V3_5.version_string());
    assert_ne!(before.member_id, 0);
    assert_ne!(before.cluster_id, 0);
    assert_eq!(before.leader, before.member_id, "a single member leads");
    assert!(before.is_leader());
    assert!(!before.is_learner);
    assert!(before.errors.is_empty(), "{:?}", before.errors);
    assert!(before.db_size > 0);
    assert!(before.db_size_in_use <= before.db_size);
    assert!(before.raft_term >= 2);
    assert!(before.raft_applied_index <= before.raft_index);
    // 3.5 has none of the 3.6 fields.
    assert_eq!(before.storage_version, None);
    assert_eq!(before.db_size_quota, None);
    assert_eq!(before.downgrade, None);

    let rev = put(&mut kv(&ep), "status-key", b"v").await.expect("put");
    let after = c.status(&ep).await.expect("status");
    assert!(after.raft_index > before.raft_index);
    assert!(after.revision >= rev);
    assert!(c.endpoint_health(&ep).await.expect("health"));
}

#[tokio::test(flavor = "multi_thread")]
async fn defragment_shrinks_the_db_after_delete_and_compact() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = client(&cluster).await;
    let ep = cluster.member(0).client_url();
    let mut kv = kv(&ep);
    put_many(&mut kv, "defrag", 10_000, 512).await;
    let rev = delete_prefix(&mut kv, "defrag").await;
    compact(&mut kv, rev).await;
    let before = c.status(&ep).await.expect("status");
    assert!(
        before.db_size > 5_000_000,
        "10k × 512 B should take megabytes: {before:?}"
    );
    assert!(before.db_size_in_use < before.db_size);
    c.defragment(&ep).await.expect("defragment");
    let after = c.status(&ep).await.expect("status");
    assert!(
        after.db_size < before.db_size / 2,
        "db size {} → {}",
        before.db_size,
        after.db_size
    );
    assert!(after.db_size_in_use <= after.db_size);
    // After a defragmentation the file holds little free space.
    assert!(after.db_size - after.db_size_in_use < before.db_size - before.db_size_in_use);
}

#[tokio::test(flavor = "multi_thread")]
async fn hash_kv_is_equal_across_members_at_the_same_revision() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let c = client(&cluster).await;
    let mut kv0 = kv(&cluster.endpoints()[0]);
    let rev = put_many(&mut kv0, "hash", 300, 16).await;
    put(&mut kv0, "hash-later", b"after").await.expect("put");
    let mut hashes = Vec::new();
    for ep in cluster.endpoints() {
        // A member that has not applied `rev` yet answers FutureRev; wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let h = loop {
            match c.hash_kv(&ep, rev).await {
                Err(e)
                    if e.server_error() == Some(ServerError::FutureRev)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => break r.expect("hash_kv"),
            }
        };
        assert_eq!(h.hash_revision, None, "3.5 does not send hash_revision");
        assert!(h.revision >= rev);
        hashes.push(h);
    }
    assert!(
        hashes.iter().all(|h| h.hash == hashes[0].hash),
        "{hashes:?}"
    );
    assert!(
        hashes
            .iter()
            .all(|h| h.compact_revision == hashes[0].compact_revision)
    );
    let ids: std::collections::HashSet<u64> = hashes.iter().map(|h| h.member_id).collect();
    assert_eq!(ids.len(), 3, "each member answered for itself");
    // A different revision hashes differently.
    let current = c
        .hash_kv(&cluster.endpoints()[0], 0)
        .await
        .expect("hash_kv");
    assert_ne!(current.hash, hashes[0].hash);
}

async fn leader_of(c: &Client, cluster: &EtcdCluster) -> u64 {
    c.status(&cluster.endpoints()[0])
        .await
        .expect("status")
        .leader
}

#[tokio::test(flavor = "multi_thread")]
async fn move_leader_to_a_follower_and_to_an_unknown_member() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    // Only one endpoint, and not necessarily the leader's: the leader is found by status and
    // its URL through the member list when it is not among the endpoints.
    let c = Client::connect(
        [cluster.endpoints()[0].clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    let leader = leader_of(&c, &cluster).await;
    assert_ne!(leader, 0);
    let members = c.member_list().await.expect("list");
    let target = members
        .iter()
        .find(|m| m.id != leader)
        .expect("a follower")
        .id;
    c.move_leader(target).await.expect("move leader");
    for ep in cluster.endpoints() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = c.status(&ep).await.expect("status");
            if st.leader == target {
                break;
            }
            assert!(Instant::now() < deadline, "{ep} still sees {:x}", st.leader);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Moving it back, from a client that knows every endpoint.
    let all = client(&cluster).await;
    all.move_leader(leader).await.expect("move back");
    assert_eq!(leader_of(&all, &cluster).await, leader);

    let err = all.move_leader(0xdead_beef).await.expect_err("unknown id");
    assert_eq!(
        err.server_error(),
        Some(ServerError::BadLeaderTransferee),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nospace_alarm_blocks_writes_until_compact_defrag_disarm() {
    let cluster = EtcdCluster::builder()
        .flag("--quota-backend-bytes=16777216")
        .start()
        .expect("etcd");
    let c = client(&cluster).await;
    let ep = cluster.member(0).client_url();
    let member_id = c.status(&ep).await.expect("status").member_id;
    let mut kv = kv(&ep);
    let value = vec![b'n'; 1024 * 1024];
    let mut failed = None;
    for i in 0..64 {
        match put(&mut kv, &format!("fill/{i:03}"), &value).await {
            Ok(_) => {}
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("a 16 MiB quota must fill within 64 MiB of puts");
    assert_eq!(err.server_error(), Some(ServerError::NoSpace), "{err}");
    assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted));

    let alarms = c.alarm_list().await.expect("alarm list");
    assert!(
        alarms
            .iter()
            .any(|a| a.alarm == AlarmType::NoSpace && a.member_id == member_id),
        "{alarms:?}"
    );
    let st = c.status(&ep).await.expect("status");
    assert!(
        st.errors.iter().any(|e| e.contains("NOSPACE")),
        "{:?}",
        st.errors
    );
    assert!(!c.endpoint_health(&ep).await.expect("health"));
    // Reads and deletes still work.
    kv.range(RangeRequest {
        key: "fill/000".into(),
        ..Default::default()
    })
    .await
    .expect("read under NOSPACE");
    let err = put(&mut kv, "small", b"x").await.expect_err("still full");
    assert_eq!(err.server_error(), Some(ServerError::NoSpace));

    // Recovery: compact, defragment, disarm every alarm.
    let rev = delete_prefix(&mut kv, "fill").await;
    compact(&mut kv, rev).await;
    c.defragment(&ep).await.expect("defragment");
    let disarmed = c.alarm_disarm(0, AlarmType::None).await.expect("disarm");
    assert!(
        disarmed.iter().any(|a| a.alarm == AlarmType::NoSpace),
        "{disarmed:?}"
    );
    assert!(c.alarm_list().await.expect("alarm list").is_empty());
    put(&mut kv, "small", b"x")
        .await
        .expect("put after recovery");
    assert!(c.endpoint_health(&ep).await.expect("health"));
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_activate_and_disarm_one_member() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = client(&cluster).await;
    let ep = cluster.member(0).client_url();
    let id = c.status(&ep).await.expect("status").member_id;
    assert!(c.alarm_list().await.expect("list").is_empty());
    let raised = c
        .alarm_activate(id, AlarmType::NoSpace)
        .await
        .expect("activate");
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].member_id, raised[0].alarm),
        (id, AlarmType::NoSpace)
    );
    assert_eq!(c.alarm_list().await.expect("list"), raised);
    assert!(!c.endpoint_health(&ep).await.expect("health"));
    let err = put(&mut kv(&ep), "k", b"v").await.expect_err("NOSPACE");
    assert_eq!(err.server_error(), Some(ServerError::NoSpace));
    let disarmed = c
        .alarm_disarm(id, AlarmType::NoSpace)
        .await
        .expect("disarm");
    assert_eq!(disarmed, raised);
    assert!(c.alarm_list().await.expect("list").is_empty());
    assert!(c.endpoint_health(&ep).await.expect("health"));
    put(&mut kv(&ep), "k", b"v").await.expect("put");
}

fn run(program: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .expect("run tool");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_has_sha256_trailer_and_restores_with_etcdutl() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = client(&cluster).await;
    let ep = cluster.member(0).client_url();
    let mut kv0 = kv(&ep);
    put_many(&mut kv0, "snap", 500, 100).await;
    let rev = put(&mut kv0, "snap-last", b"last").await.expect("put");

    let dir = support::temp_dir("snapshot").expect("tempdir");
    let file = dir.path().join("backup.db");
    let info = c.snapshot_to_file(&file).await.expect("snapshot");
    assert!(!dir.path().join("backup.db.part").exists());
    let bytes = std::fs::read(&file).expect("read snapshot");
    assert_eq!(bytes.len() as u64, info.size);
    assert_eq!(bytes.len() % 512, 32, "bbolt pages + 32-byte trailer");
    let (data, trailer) = bytes.split_at(bytes.len() - 32);
    let digest: [u8; 32] = Sha256::digest(data).into();
    assert_eq!(&digest[..], trailer);
    assert_eq!(info.sha256, digest);
    // 3.5 sends neither a header nor its version on the snapshot stream.
    assert_eq!((info.member_id, info.revision), (None, None));
    assert_eq!(info.version, None);

    // Into memory too: the same kind of stream.
    let mut mem = Vec::new();
    let info2 = c.snapshot(&mut mem).await.expect("snapshot to memory");
    assert_eq!(mem.len() as u64, info2.size);
    assert_eq!(mem.len() % 512, 32);

    let etcdutl = bins::etcd_tool(EtcdVersion::V3_5, "etcdutl").expect("etcdutl");
    let file_s = file.to_str().expect("utf-8 path");
    let status = run(&etcdutl, &["snapshot", "status", file_s, "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(status.trim()).expect("json");
    assert!(
        json["revision"].as_i64().expect("revision") >= rev,
        "{json}"
    );
    assert!(
        json["totalKey"].as_i64().expect("totalKey") >= 501,
        "{json}"
    );

    // Restore into a fresh data dir and serve it.
    let (client_port, peer_port) = (free_port().expect("port"), free_port().expect("port"));
    let peer = format!("http://127.0.0.1:{peer_port}");
    let data_dir = dir.path().join("restored");
    let data_dir_s = data_dir.to_str().expect("utf-8 path");
    run(
        &etcdutl,
        &[
            "snapshot",
            "restore",
            file_s,
            "--data-dir",
            data_dir_s,
            "--name",
            "restored",
            "--initial-cluster",
            &format!("restored={peer}"),
            "--initial-advertise-peer-urls",
            &peer,
        ],
    );
    let etcd = bins::etcd_tool(EtcdVersion::V3_5, "etcd").expect("etcd");
    let client_url = format!("http://127.0.0.1:{client_port}");
    let args: Vec<String> = vec![
        "--name=restored".into(),
        format!("--data-dir={data_dir_s}"),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=restored={peer}"),
    ];
    let log = dir.path().join("restored.log");
    let mut proc = Proc::spawn("restored", &etcd, &args, &log).expect("spawn etcd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !support::etcd::http_get(client_port, "/health")
        .is_ok_and(|b| b.contains("\"health\":\"true\""))
    {
        assert!(
            proc.is_running(),
            "restored etcd exited: {}",
            proc.log_tail(20)
        );
        assert!(Instant::now() < deadline, "restored etcd not healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut kv1 = kv(&client_url);
    let r = kv1
        .range(RangeRequest {
            key: "snap/".into(),
            range_end: "snap0".into(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(r.count, 500);
    let r = kv1
        .range(RangeRequest {
            key: "snap-last".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(&r.kvs[0].value[..], b"last");
    proc.stop(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn downgrade_validate_rejects_bogus_versions() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = client(&cluster).await;
    let err = c
        .downgrade(DowngradeAction::Validate, "not-a-version")
        .await
        .expect_err("bogus");
    assert_eq!(
        err.server_error(),
        Some(ServerError::WrongDowngradeVersionFormat),
        "{err}"
    );
    let err = c
        .downgrade(DowngradeAction::Validate, "3.3")
        .await
        .expect_err("two minors below");
    assert_eq!(
        err.server_error(),
        Some(ServerError::InvalidDowngradeTargetVersion),
        "{err}"
    );
    // One minor below validates (and changes nothing); the answer is the cluster version.
    let cluster_version = c
        .downgrade(DowngradeAction::Validate, "3.4")
        .await
        .expect("3.4 is one minor below 3.5");
    assert_eq!(cluster_version, "3.5.0");
    let err = c
        .downgrade(DowngradeAction::Cancel, "")
        .await
        .expect_err("nothing to cancel");
    assert_eq!(
        err.server_error(),
        Some(ServerError::NoInflightDowngrade),
        "{err}"
    );
}

/// A writer that counts what it is given and runs `trip` on its first write.
struct Tripwire {
    written: u64,
    trip: Option<Box<dyn FnOnce() + Send>>,
}

impl tokio::io::AsyncWrite for Tripwire {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.written += buf.len() as u64;
        if let Some(trip) = self.trip.take() {
            trip();
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// §2.2 `[P]` streams: opening a snapshot is retried on another member until the first message
/// arrives (a dead endpoint in the list does not fail it), but a snapshot stream cut after its
/// first message ends the call with an error, although a healthy member was there to retry on.
/// The database (~12 MB) is larger than the HTTP/2 windows, so the cut lands mid-stream.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_open_is_retried_but_a_cut_stream_is_not() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member_url = cluster.member(0).client_url();
    let mut kv0 = kv(&member_url);
    put_many(&mut kv0, "bulk", 6000, 2048).await;

    let dead = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let with_dead = Client::connect(
        [dead, member_url.clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    for _ in 0..2 {
        let mut w = Tripwire {
            written: 0,
            trip: None,
        };
        let info = with_dead
            .snapshot(&mut w)
            .await
            .expect("snapshot past a dead endpoint");
        assert_eq!(w.written, info.size);
        assert!(info.size > 12 << 20, "{}", info.size);
    }

    let proxy = std::sync::Arc::new(
        support::proxy::FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy"),
    );
    let c = Client::connect(
        [proxy.url(), member_url.clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect");
    let mut cut = 0;
    for _ in 0..10 {
        let before = proxy.counts().bytes_down;
        let p = proxy.clone();
        let mut w = Tripwire {
            written: 0,
            trip: Some(Box::new(move || p.drop_all())),
        };
        let result = c.snapshot(&mut w).await;
        // At least the first 32 KiB chunk came through the proxy (health updates are tiny).
        let via_proxy = proxy.counts().bytes_down > before + 20_000;
        proxy.resume();
        if via_proxy {
            assert!(
                result.is_err(),
                "a cut snapshot stream was retried: {result:?}"
            );
            assert!(w.written > 0);
            cut += 1;
            if cut == 2 {
                break;
            }
        } else {
            result.expect("snapshot straight from the member");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(cut > 0, "no snapshot went through the proxy");
}

/// `snapshot_from` streams from the member it names and from no other: a live member's
/// snapshot checks out, while naming a dead endpoint fails although a live member is in the
/// client's list, and `snapshot_from_to_file` then leaves neither the file nor its `.part`.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_from_reaches_the_named_member_only() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member_url = cluster.member(0).client_url();
    let mut kv0 = kv(&member_url);
    put_many(&mut kv0, "named", 100, 128).await;
    let dead = format!("http://127.0.0.1:{}", free_port().expect("port"));
    let c = Client::connect(
        [member_url.clone(), dead.clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect");
    let mut buf: Vec<u8> = Vec::new();
    let info = c
        .snapshot_from(&member_url, &mut buf)
        .await
        .expect("snapshot from the live member");
    assert_eq!(buf.len() as u64, info.size);
    assert_eq!(
        Sha256::digest(&buf[..buf.len() - 32]).as_slice(),
        &buf[buf.len() - 32..],
        "the trailer is the SHA-256 of the database"
    );
    let dir = support::temp_dir("snapshot-from").expect("tempdir");
    let file = dir.path().join("dead.db");
    let result = c.snapshot_from_to_file(&dead, &file).await;
    assert!(result.is_err(), "a dead member's snapshot: {result:?}");
    assert!(!file.exists());
    assert!(!dir.path().join("dead.db.part").exists());
}
