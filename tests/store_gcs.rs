//! Snapshot store on a real Google Cloud Storage emulator (fake-gcs-server) and a real etcd
//! member. fake-gcs-server implements GCS's JSON API only; the store (object_store) writes
//! through the XML API (a single PUT, or the XML multipart upload past one part), which real
//! GCS serves and the emulator answers with 400 "invalid uploadType" (fsouza/fake-gcs-server
//! #331 and #852, open). So here real etcd snapshots, plain and encrypted, are written through
//! the emulator's JSON upload API, and the store is checked on everything else against the
//! real server: listing, reading back byte-identical (stream and checked download accepted by
//! `etcdutl snapshot status`), decryption and a wrong key, retention and delete; and a write
//! that the emulator refuses fails cleanly and leaves nothing.

mod support;

use etcd_operator::snapshot_store::crypto::Encryptor;
use etcd_operator::snapshot_store::{EncryptionKey, SnapshotStore, StoreError};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use support::stores::{GcsServer, scenarios};
use tokio::io::AsyncWriteExt;

fn encrypt(key: &EncryptionKey, plain: &[u8]) -> Vec<u8> {
    let mut e = Encryptor::new(key);
    let mut out = e.header().to_vec();
    for piece in plain.chunks(40_000) {
        e.push(piece, &mut out).expect("encrypt");
    }
    e.finish(&mut out).expect("encrypt");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_store_reads_lists_decrypts_and_retains() {
    let server = GcsServer::start().expect("fake-gcs-server");
    let (cluster, client) = scenarios::etcd_with_data().await;
    let mut snap = Vec::new();
    let info = client
        .snapshot_from(&cluster.member(0).client_url(), &mut snap)
        .await
        .expect("snapshot");
    let key = EncryptionKey::from_bytes(&[0x42; 32]).expect("key");
    let names = ["demo-1.db", "demo-2.db", "demo-3.db"];
    server.seed("gcs/demo-1.db", &snap).expect("seed");
    server
        .seed("gcs/demo-2.db", &encrypt(&key, &snap))
        .expect("seed");
    server.seed("gcs/demo-3.db", &snap).expect("seed");
    server.seed("gcs/nested/demo-0.db", &snap).expect("seed");

    let store = SnapshotStore::open(&server.config("gcs"))
        .expect("open")
        .with_encryption(key.clone());
    let listed = store.list().await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        names
    );
    assert_eq!(listed[0].size, snap.len() as u64);
    assert!(listed[1].size > snap.len() as u64);
    assert_eq!(listed[1].location, "gs://backups/gcs/demo-2.db");

    let dir = support::temp_dir("gcs-read").expect("tempdir");
    let whole = Sha256::digest(&snap);
    for name in &names[..2] {
        let file = dir.path().join(name);
        let got = store.download_to_file(name, &file).await.expect("download");
        assert_eq!(got.size, info.size);
        assert_eq!(got.sha256, hex(&info.sha256));
        let back = std::fs::read(&file).expect("read");
        assert_eq!(Sha256::digest(&back), whole, "{name} differs");
        let (_, keys) = scenarios::etcdutl_status(&file);
        assert!(keys >= 1500, "{keys}");
        let mut stream = store.get(name).await.expect("get");
        let mut h = Sha256::new();
        while let Some(chunk) = stream.next().await {
            h.update(chunk.expect("chunk"));
        }
        assert_eq!(h.finalize(), whole);
    }
    assert_eq!(
        store
            .download_to_file("demo-2.db", dir.path().join("x"))
            .await
            .expect("key id")
            .key_id,
        Some(key.id())
    );

    let wrong = SnapshotStore::open(&server.config("gcs"))
        .expect("open")
        .with_encryption(EncryptionKey::from_bytes(&[1; 32]).expect("key"));
    let err = wrong
        .download_to_file("demo-2.db", dir.path().join("y"))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    assert!(!dir.path().join("y").exists());

    let gone = store
        .retain_newest(1, |n| n.starts_with("demo-"))
        .await
        .expect("retention");
    assert_eq!(gone, ["demo-1.db", "demo-2.db"]);
    let left: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(left, ["demo-3.db"]);
    // The nested prefix is another store's: untouched.
    let nested = SnapshotStore::open(&server.config("gcs/nested")).expect("open");
    assert_eq!(nested.list().await.expect("list").len(), 1);
    assert!(matches!(
        store.get("demo-1.db").await.err(),
        Some(StoreError::NotFound(_))
    ));
    scenarios::credentials_redacted(&server.config("x"), &["disable_oauth"]);
}

/// Both write paths (one request, multipart) are refused by the emulator: the error names the
/// object and nothing is left.
#[tokio::test(flavor = "multi_thread")]
async fn gcs_emulator_refused_writes_leave_nothing() {
    let server = GcsServer::start().expect("fake-gcs-server");
    let store = SnapshotStore::open(&server.config("refused"))
        .expect("open")
        .with_parts(5 << 20, 2);
    let mut snap = vec![0u8; 4096];
    let digest = Sha256::digest(&snap);
    snap.extend_from_slice(&digest);
    let mut up = store.upload("small.db").await.expect("upload");
    up.write_all(&snap).await.expect("held in memory");
    let err = up.commit().await.expect_err("the emulator took an XML PUT");
    assert!(
        err.to_string().contains("gs://backups/refused/small.db"),
        "{err}"
    );

    let mut up = store.upload("big.db").await.expect("upload");
    let piece = vec![7u8; 1 << 20];
    let mut failed = None;
    for _ in 0..12 {
        if let Err(e) = up.write_all(&piece).await {
            failed = Some(e);
            break;
        }
    }
    failed.expect("the emulator accepted an XML multipart upload");
    drop(up);
    assert!(store.list().await.expect("list").is_empty());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
