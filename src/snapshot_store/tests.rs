//! Unit tests of the store layer on a local folder (the real-server tests are in
//! tests/store_*.rs).

use tokio::io::AsyncWriteExt;

use super::integrity::tests::fake_snapshot;
use super::*;

fn local(dir: &std::path::Path) -> SnapshotStore {
    SnapshotStore::open(
        &StoreConfig::new(Destination::Local {
            path: dir.to_path_buf(),
        })
        .with_prefix("/team/demo/"),
    )
    .expect("local store")
    // Small parts so the tests use several.
    .with_parts(64 * 1024, 2)
}

async fn write_all(up: &mut Upload, data: &[u8], cut: usize) {
    for piece in data.chunks(cut) {
        up.write_all(piece).await.expect("write");
    }
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn a_whole_snapshot_is_committed_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(dir.path());
    let snap = fake_snapshot(700);
    let mut up = store.upload("demo-1.db").await.expect("upload");
    write_all(&mut up, &snap, 10_000).await;
    let stored = up.commit().await.expect("commit");
    assert_eq!(stored.size, snap.len() as u64);
    assert_eq!(stored.stored_size, snap.len() as u64);
    assert_eq!(stored.sha256, integrity::hex(&snap[snap.len() - 32..]));
    assert!(
        stored.location.ends_with("/team/demo/demo-1.db"),
        "{}",
        stored.location
    );
    assert_eq!(
        std::fs::read(dir.path().join("team/demo/demo-1.db")).expect("file"),
        snap
    );
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "demo-1.db");
    assert_eq!(listed[0].size, snap.len() as u64);

    let out = dir.path().join("back.db");
    let got = store
        .download_to_file("demo-1.db", &out)
        .await
        .expect("download");
    assert_eq!(got.sha256, stored.sha256);
    assert_eq!(std::fs::read(&out).expect("read back"), snap);
}

#[tokio::test]
async fn a_bad_or_cut_stream_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(dir.path());
    let mut bad = fake_snapshot(300);
    bad[1000] ^= 1;
    let mut up = store.upload("bad.db").await.expect("upload");
    write_all(&mut up, &bad, 4096).await;
    let err = up.commit().await.expect_err("bad sha");
    assert!(matches!(err, StoreError::Integrity(_)), "{err:?}");

    let snap = fake_snapshot(300);
    let mut up = store.upload("cut.db").await.expect("upload");
    write_all(&mut up, &snap[..100_000], 4096).await;
    assert!(matches!(up.commit().await, Err(StoreError::Integrity(_))));

    let mut up = store.upload("aborted.db").await.expect("upload");
    write_all(&mut up, &snap[..100_000], 4096).await;
    up.abort().await.expect("abort");

    let mut up = store.upload("dropped.db").await.expect("upload");
    write_all(&mut up, &snap[..100_000], 4096).await;
    drop(up);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    assert!(store.list().await.expect("list").is_empty());
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn encrypted_round_trip_and_wrong_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = EncryptionKey::from_bytes(&[7; 32]).expect("key");
    let store = local(dir.path()).with_encryption(key.clone());
    let snap = fake_snapshot(1000);
    let mut up = store.upload("enc.db").await.expect("upload");
    write_all(&mut up, &snap, 33_333).await;
    let stored = up.commit().await.expect("commit");
    assert_eq!(stored.key_id.as_deref(), Some(key.id().as_str()));
    assert!(stored.stored_size > stored.size);
    let raw = std::fs::read(dir.path().join("team/demo/enc.db")).expect("raw");
    assert_eq!(&raw[..8], crypto::MAGIC);
    assert!(
        !raw.windows(64).any(|w| w == &snap[5000..5064]),
        "plaintext leaked"
    );

    let out = dir.path().join("dec.db");
    let got = store
        .download_to_file("enc.db", &out)
        .await
        .expect("decrypt");
    assert_eq!(got.key_id, Some(key.id()));
    assert_eq!(std::fs::read(&out).expect("read"), snap);

    let other =
        local(dir.path()).with_encryption(EncryptionKey::from_bytes(&[8; 32]).expect("key"));
    let err = other
        .download_to_file("enc.db", dir.path().join("x.db"))
        .await
        .expect_err("wrong key");
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
    assert!(!dir.path().join("x.db").exists());
    assert!(!dir.path().join("x.db.part").exists());
    let err = local(dir.path())
        .download_to_file("enc.db", dir.path().join("y.db"))
        .await
        .expect_err("no key");
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
}

#[tokio::test]
async fn retention_keeps_the_newest_of_one_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = local(dir.path());
    let snap = fake_snapshot(2);
    for name in ["demo-1.db", "demo-2.db", "demo-3.db", "other-1.db"] {
        let mut up = store.upload(name).await.expect("upload");
        write_all(&mut up, &snap, 4096).await;
        up.commit().await.expect("commit");
    }
    let gone = store
        .retain_newest(2, |n| n.starts_with("demo-"))
        .await
        .expect("retention");
    assert_eq!(gone, vec!["demo-1.db".to_string()]);
    let names: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["demo-2.db", "demo-3.db", "other-1.db"]);
    store.delete("demo-2.db").await.expect("delete");
    store
        .delete("demo-2.db")
        .await
        .expect("delete again is fine");
    assert!(matches!(
        store
            .download_to_file("demo-2.db", dir.path().join("z"))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn names_are_one_segment() {
    for bad in ["", "a/b", "..", ".hidden", "a#1", "x\ny"] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    check_name("demo-20261122T073005Z-r812.db").expect("good name");
}
