//! Memory of a streaming upload, measured: a 128 MiB snapshot-shaped stream (whole pages and a
//! matching SHA-256 trailer, generated on the fly, never held whole) is uploaded to a real S3
//! server (versitygw) with the default part size and concurrency, encrypted, and the growth of
//! this process's peak resident memory (`VmHWM`) stays within the store's stated bound plus
//! slack, and within the 64 MiB per upload the backup design allows. Alone in its test binary so nothing else moves the peak.

mod support;

use etcd_operator::snapshot_store::{EncryptionKey, SnapshotStore};
use sha2::{Digest, Sha256};
use support::stores::S3Server;
use tokio::io::AsyncWriteExt;

/// Peak resident set of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_128_mib_upload_stays_within_the_memory_bound() {
    const TOTAL_PAGES: usize = 128 * 1024 * 1024 / 512;
    let server = S3Server::start().expect("versitygw");
    let store = SnapshotStore::open(&server.config("memory"))
        .expect("open")
        .with_encryption(EncryptionKey::from_bytes(&[1; 32]).expect("key"));
    let bound = store.memory_bound() as u64;
    assert_eq!(
        bound,
        40 << 20,
        "the default bound changed: update this test's docs"
    );

    let before = vm_hwm();
    let mut up = store.upload("big.db").await.expect("upload");
    let mut hasher = Sha256::new();
    let piece: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut pages = 0;
    while pages < TOTAL_PAGES {
        // Vary the content per piece so parts differ.
        let mut p = piece.clone();
        p[..8].copy_from_slice(&(pages as u64).to_le_bytes());
        hasher.update(&p);
        up.write_all(&p).await.expect("write");
        pages += p.len() / 512;
    }
    let digest: [u8; 32] = hasher.finalize().into();
    up.write_all(&digest).await.expect("trailer");
    let stored = up.commit().await.expect("commit");
    let after = vm_hwm();
    let growth = after.saturating_sub(before);
    eprintln!(
        "upload of {} MiB: peak RSS {} MiB -> {} MiB (+{} MiB; bound {} MiB)",
        stored.size >> 20,
        before >> 20,
        after >> 20,
        growth >> 20,
        bound >> 20
    );
    assert_eq!(stored.size, (128 << 20) + 32);
    // The bound counts snapshot bytes in parts; the HTTP client's buffers and copies come on
    // top, and all of it must stay within 64 MiB per upload.
    assert!(
        growth <= 64 << 20,
        "peak RSS grew by {} MiB uploading 128 MiB (bound {} MiB)",
        growth >> 20,
        bound >> 20
    );
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].size > stored.size);
    store.delete("big.db").await.expect("delete");
}
