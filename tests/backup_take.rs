//! One scheduled snapshot's I/O (`controller::backup::take`) into a local folder, on a real
//! etcd member holding ~12 MB: a stream that stalls after 3 MB (a fault proxy) is cut by the
//! step's timeout and leaves nothing in the folder (its multipart staging file was already on
//! disk), staging files an earlier crash left are removed, and the next snapshot is the folder's
//! only file, its SHA-256 the one etcd's trailer gave.

mod support;

use std::time::Duration;

use etcd_operator::controller::backup::BackupError;
use etcd_operator::controller::backup::take::{Source, take};
use etcd_operator::snapshot_store::{Destination, SnapshotStore, StoreConfig};
use support::proxy::FaultProxy;
use support::stores::scenarios;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_by_the_timeout_leaves_nothing_in_the_folder() {
    let (cluster, client) = scenarios::etcd_with_data().await;
    let member = cluster.member(0).client_url();
    let dir = support::temp_dir("take").expect("temp dir");
    let folder = dir.path().join("backups");
    // 1 MiB parts: the multipart upload (and its staging file) starts after the first MiB.
    let store = SnapshotStore::open(&StoreConfig::new(Destination::Local {
        path: folder.clone(),
    }))
    .expect("store")
    .with_parts(1 << 20, 2);
    // What an operator killed mid-stream leaves: a staging file and an old-style `.part`.
    std::fs::write(folder.join("demo-20260101T000000Z-r1.db#1"), b"x").expect("write");
    std::fs::write(folder.join("demo-20260101T000000Z-r1.db.part"), b"x").expect("write");
    std::fs::write(folder.join("notes.txt"), b"not ours").expect("write");

    let proxy = FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy");
    proxy.stall_down_after(3 << 20);
    let via_proxy = etcd_operator::etcd::Client::connect(
        [proxy.url()],
        etcd_operator::etcd::ConnectOptions::new(),
    )
    .await
    .expect("connect via proxy");
    let source = |endpoint| Source {
        endpoint,
        cluster: "demo",
        revision: 1501,
        version: None,
    };
    let url = proxy.url();
    let err = take(
        &store,
        &via_proxy,
        source(&url),
        2,
        Duration::from_secs(3),
        Some(&folder),
    )
    .await
    .expect_err("a stalled stream is cut");
    assert!(matches!(err, BackupError::Timeout { .. }), "{err:?}");
    assert!(proxy.counts().bytes_down >= 3 << 20, "{:?}", proxy.counts());
    assert_eq!(
        entries(&folder),
        ["notes.txt"],
        "nothing of the cut stream stays"
    );

    let taken = take(
        &store,
        &client,
        source(&member),
        2,
        Duration::from_secs(120),
        Some(&folder),
    )
    .await
    .expect("a snapshot");
    assert_eq!(
        entries(&folder),
        [taken.stored.name.clone(), "notes.txt".into()]
    );
    assert_eq!(
        taken.location,
        folder.join(&taken.stored.name).display().to_string()
    );
    let file = std::fs::read(&taken.location).expect("snapshot file");
    assert_eq!(file.len() as u64, taken.stored.size);
    eprintln!(
        "measured: {} bytes stored in {} ms through 1 MiB parts",
        taken.stored.size,
        taken.duration.as_millis()
    );
    let (revision, keys) = scenarios::etcdutl_status(std::path::Path::new(&taken.location));
    assert!(
        revision >= 1501 && keys >= 1500,
        "revision {revision}, {keys} keys"
    );
}
