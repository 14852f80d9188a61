//! What tests/store_*.rs check on each store, against a real etcd member.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use etcd_operator::etcd::{Client, ConnectOptions};
use etcd_operator::snapshot_store::{
    EncryptionKey, SnapshotStore, StoreConfig, StoreError, Upload,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::support::bins::{self, EtcdVersion};
use crate::support::etcd::EtcdCluster;

/// 5 MiB parts (S3's smallest), two in flight: a 12 MB snapshot takes three parts.
pub const PART: usize = 5 * 1024 * 1024;

/// A single etcd member holding ~12 MB of keys, and a client to it.
pub async fn etcd_with_data() -> (EtcdCluster, Client) {
    let cluster = EtcdCluster::single().expect("etcd");
    let client = Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(std::time::Duration::from_secs(60)),
    )
    .await
    .expect("connect");
    let value = "x".repeat(8 * 1024);
    for i in 0..1500 {
        client
            .put(
                format!("bulk/{i:05}"),
                value.clone(),
                etcd_operator::etcd::kv::PutOptions::new(),
            )
            .await
            .expect("put");
    }
    (cluster, client)
}

pub fn open(cfg: &StoreConfig, part: usize) -> SnapshotStore {
    SnapshotStore::open(cfg)
        .expect("open store")
        .with_parts(part, 2)
}

/// Forwards to an [`Upload`] while hashing everything written, and optionally calls `trip`
/// once `trip_at` bytes went through.
pub struct Tee<'a> {
    pub up: &'a mut Upload,
    pub hasher: Sha256,
    pub written: u64,
    pub trip_at: u64,
    pub trip: Option<Box<dyn FnOnce() + Send>>,
}

impl<'a> Tee<'a> {
    pub fn new(up: &'a mut Upload) -> Self {
        Tee {
            up,
            hasher: Sha256::new(),
            written: 0,
            trip_at: u64::MAX,
            trip: None,
        }
    }
}

impl AsyncWrite for Tee<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut *this.up).poll_write(cx, buf))?;
        this.hasher.update(&buf[..n]);
        this.written += n as u64;
        if this.written >= this.trip_at
            && let Some(t) = this.trip.take()
        {
            t();
        }
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.up).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.up).poll_shutdown(cx)
    }
}

fn file_sha(path: &Path) -> (u64, String) {
    let bytes = std::fs::read(path).expect("read back");
    (bytes.len() as u64, hex(&Sha256::digest(&bytes)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `etcdutl snapshot status -w json` of `file`: (revision, total keys).
pub fn etcdutl_status(file: &Path) -> (i64, i64) {
    let etcdutl = bins::etcd_tool(EtcdVersion::V3_5, "etcdutl").expect("etcdutl");
    let out = std::process::Command::new(etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .expect("run etcdutl");
    assert!(
        out.status.success(),
        "etcdutl snapshot status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON in {text:?}"));
    (
        json["revision"].as_i64().unwrap_or(-1),
        json["totalKey"].as_i64().unwrap_or(-1),
    )
}

/// A real snapshot streamed from the member into the store, read back byte-identical, and
/// accepted by `etcdutl snapshot status`. Returns the snapshot bytes for the other
/// scenarios.
pub async fn real_snapshot_round_trip(
    cluster: &EtcdCluster,
    client: &Client,
    cfg: &StoreConfig,
    key: Option<EncryptionKey>,
    part: usize,
) -> Vec<u8> {
    let mut store = open(cfg, part);
    if let Some(k) = key.clone() {
        store = store.with_encryption(k);
    }
    let name = "demo-20261203T070000Z-r1.db";
    let mut up = store.upload(name).await.expect("start upload");
    let mut tee = Tee::new(&mut up);
    let info = client
        .snapshot_from(&cluster.member(0).client_url(), &mut tee)
        .await
        .expect("snapshot");
    let (written, whole_sha) = (tee.written, hex(&tee.hasher.clone().finalize()));
    let stored = up.commit().await.expect("commit");
    assert_eq!(stored.size, info.size);
    assert_eq!(stored.size, written);
    assert_eq!(stored.sha256, hex(&info.sha256));
    assert_eq!(stored.key_id, key.as_ref().map(EncryptionKey::id));
    assert!(
        stored.size > 12_000_000,
        "snapshot only {} bytes",
        stored.size
    );
    assert!(stored.location.ends_with(name), "{}", stored.location);

    let listed = store.list().await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        [name]
    );
    assert_eq!(listed[0].size, stored.stored_size);

    let dir = crate::support::temp_dir("readback").expect("tempdir");
    let back = dir.path().join("back.db");
    let got = store.download_to_file(name, &back).await.expect("download");
    assert_eq!(got.sha256, stored.sha256);
    assert_eq!(got.key_id, stored.key_id);
    assert_eq!(file_sha(&back), (written, whole_sha), "read back differs");
    let (rev, keys) = etcdutl_status(&back);
    assert!(keys >= 1500, "{keys} keys in the snapshot");
    assert!(rev >= 1501, "revision {rev}");

    // The stream API gives the same bytes.
    let mut stream = store.get(name).await.expect("get");
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk = chunk.expect("chunk");
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!((n, hex(&h.finalize())), file_sha(&back));
    let bytes = std::fs::read(&back).expect("read");
    store.delete(name).await.expect("delete");
    assert!(store.list().await.expect("list").is_empty());
    bytes
}

/// A snapshot stream cut mid-way by a fault proxy, a bad SHA-256, and a stream that just
/// stops leave no object.
pub async fn failures_leave_nothing(
    cluster: &EtcdCluster,
    cfg: &StoreConfig,
    snap: &[u8],
    part: usize,
) {
    let store = open(cfg, part);

    // The member's stream cut by the proxy after 6 MB (one part already uploaded).
    let proxy = std::sync::Arc::new(
        crate::support::proxy::FaultProxy::start(&cluster.member(0).client_addr()).expect("proxy"),
    );
    let via_proxy = Client::connect(
        [proxy.url()],
        ConnectOptions::new().with_request_timeout(std::time::Duration::from_secs(30)),
    )
    .await
    .expect("connect via proxy");
    let mut up = store.upload("cut.db").await.expect("upload");
    let mut tee = Tee::new(&mut up);
    tee.trip_at = 6 << 20;
    let p = proxy.clone();
    tee.trip = Some(Box::new(move || p.drop_all()));
    let result = via_proxy.snapshot_from(&proxy.url(), &mut tee).await;
    assert!(tee.written >= 6 << 20, "only {} bytes came", tee.written);
    assert!(result.is_err(), "a cut stream succeeded: {result:?}");
    up.abort().await.expect("abort");
    proxy.resume();

    // A flipped bit: the trailer does not match; commit refuses.
    let mut bad = snap.to_vec();
    bad[snap.len() / 2] ^= 0x10;
    let mut up = store.upload("bad.db").await.expect("upload");
    up.write_all(&bad).await.expect("write");
    let err = up.commit().await.expect_err("bad sha committed");
    assert!(matches!(err, StoreError::Integrity(_)), "{err:?}");

    // A stream that stops early without an error from the source.
    let mut up = store.upload("short.db").await.expect("upload");
    up.write_all(&snap[..snap.len() * 2 / 3])
        .await
        .expect("write");
    assert!(matches!(up.commit().await, Err(StoreError::Integrity(_))));

    // Dropped mid-way (a cancelled task).
    let mut up = store.upload("dropped.db").await.expect("upload");
    up.write_all(&snap[..7 << 20]).await.expect("write");
    drop(up);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let listed = store.list().await.expect("list");
    assert!(listed.is_empty(), "objects left behind: {listed:?}");
    for name in ["cut.db", "bad.db", "short.db", "dropped.db"] {
        let err = store.get(name).await.err();
        assert!(
            matches!(err, Some(StoreError::NotFound(_))),
            "{name}: {err:?}"
        );
    }
}

/// Retention keeps the newest `keep` of one cluster's snapshots and leaves others alone.
pub async fn retention(cfg: &StoreConfig, snap: &[u8], part: usize) {
    let store = open(cfg, part);
    let names = [
        "demo-20261203T070000Z-r10.db",
        "demo-20261203T070100Z-r20.db",
        "demo-20261203T070200Z-r30.db",
        "other-20261203T070000Z-r5.db",
    ];
    for n in names {
        let mut up = store.upload(n).await.expect("upload");
        up.write_all(snap).await.expect("write");
        up.commit().await.expect("commit");
    }
    let gone = store
        .retain_newest(2, |n| n.starts_with("demo-"))
        .await
        .expect("retention");
    assert_eq!(gone, [names[0]]);
    let left: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(left, [names[1], names[2], names[3]]);
    // Another prefix of the same bucket is not touched by this store's listing.
    let sibling = open(
        &cfg.clone().with_prefix(format!("{}-sibling", cfg.prefix)),
        part,
    );
    assert!(sibling.list().await.expect("list").is_empty());
    for n in &left {
        store.delete(n).await.expect("delete");
    }
    assert!(store.list().await.expect("list").is_empty());
}

/// An encrypted object in the store reads back only with its key.
pub async fn wrong_key_fails(cfg: &StoreConfig, snap: &[u8], part: usize) {
    let key = EncryptionKey::from_bytes(&[0x5a; 32]).expect("key");
    let store = open(cfg, part).with_encryption(key.clone());
    let mut up = store.upload("enc.db").await.expect("upload");
    up.write_all(snap).await.expect("write");
    let stored = up.commit().await.expect("commit");
    assert_eq!(stored.key_id, Some(key.id()));
    let dir = crate::support::temp_dir("wrongkey").expect("tempdir");

    let wrong =
        open(cfg, part).with_encryption(EncryptionKey::from_bytes(&[0xa5; 32]).expect("key"));
    let err = wrong
        .download_to_file("enc.db", dir.path().join("a.db"))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    let err = open(cfg, part)
        .download_to_file("enc.db", dir.path().join("b.db"))
        .await
        .expect_err("no key");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "a failed read left a file"
    );
    let ok = store
        .download_to_file("enc.db", dir.path().join("c.db"))
        .await
        .expect("right key");
    assert_eq!(ok.sha256, stored.sha256);
    store.delete("enc.db").await.expect("delete");
}

/// Neither the config nor the store shows a credential in `Debug`.
pub fn credentials_redacted(cfg: &StoreConfig, secrets: &[&str]) {
    let store = open(cfg, PART);
    let shown = format!("{cfg:?} {cfg:#?} {store:?}");
    for s in secrets {
        assert!(!shown.contains(s), "a credential leaked: {shown}");
    }
    if !secrets.is_empty() {
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

/// Every scenario, in order, on one store, with `part`-byte parts: [`PART`] makes the
/// ~12 MB snapshots multipart uploads; a part larger than them sends each with one request.
pub async fn all(
    cluster: &EtcdCluster,
    client: &Client,
    cfg: impl Fn(&str) -> StoreConfig,
    secrets: &[&str],
    part: usize,
) {
    credentials_redacted(&cfg("redact"), secrets);
    let snap = real_snapshot_round_trip(cluster, client, &cfg("plain"), None, part).await;
    let key = EncryptionKey::from_bytes(&[0x42; 32]).expect("key");
    real_snapshot_round_trip(cluster, client, &cfg("encrypted"), Some(key), part).await;
    failures_leave_nothing(cluster, &cfg("failures"), &snap, part).await;
    retention(&cfg("retention"), &snap, part).await;
    wrong_key_fails(&cfg("wrongkey"), &snap, part).await;
}
