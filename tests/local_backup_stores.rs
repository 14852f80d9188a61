//! Scheduled snapshots of the local operator to real object-store servers, on real etcd 3.5.16:
//! versitygw (S3) and Azurite (Azure Blob) take the schedule and its retention, checked by
//! listing the store and reading every object back (its SHA-256 is the one the status recorded
//! for it, and `etcdutl` accepts it); a credentials Secret that does not exist is reported and
//! no snapshot is attempted until it appears; an encrypted schedule's object is not a snapshot
//! without its key, refuses a wrong one, and restores a new cluster with the right one.
//! fake-gcs-server refuses the writes (it lacks the XML API the store writes through, see
//! tests/store_gcs.rs): every attempt fails, backs off, and leaves nothing in the bucket.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etcd_operator::api::{BackupStatus, EtcdClusterStatus, SnapshotRecord};
use etcd_operator::etcd::kv::PutOptions;
use etcd_operator::snapshot_store::{Destination, EncryptionKey, SnapshotStore, StoreError};
use support::bins::{self, EtcdVersion};
use support::local::{LocalOperator, check_keys, manifest, write_keys};
use support::stores::{
    AZURE_ACCOUNT, AZURE_KEY, AzureServer, BUCKET, GcsServer, S3_ACCESS_KEY, S3_SECRET_KEY,
    S3Server,
};

const CONVERGE: Duration = Duration::from_secs(180);

fn backup(s: &EtcdClusterStatus) -> BackupStatus {
    s.backup.clone().unwrap_or_default()
}

fn last(s: &EtcdClusterStatus) -> Option<SnapshotRecord> {
    backup(s).last_snapshot
}

fn degraded(s: &EtcdClusterStatus) -> Option<(String, String)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()))
}

/// `etcdutl snapshot status -w json` of `file`: (revision, total keys), or the tool's error.
fn etcdutl_status(file: &Path) -> Result<(i64, i64), String> {
    let etcdutl = bins::etcd_tool(EtcdVersion::V3_5, "etcdutl").map_err(|e| e.to_string())?;
    let out = Command::new(etcdutl)
        .args(["snapshot", "status", "-w", "json"])
        .arg(file)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| format!("no JSON in {text:?}"))?;
    Ok((
        json["revision"].as_i64().unwrap_or(-1),
        json["totalKey"].as_i64().unwrap_or(-1),
    ))
}

/// A Secret document with `stringData`.
fn secret(name: &str, pairs: &[(&str, &str)]) -> String {
    let mut out =
        format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n");
    for (k, v) in pairs {
        out.push_str(&format!("  {k}: '{v}'\n"));
    }
    out
}

/// `spec.backup` with `destination` (YAML lines under `destination:`, indented 6).
fn backup_spec(every: &str, keep: u32, destination: &str, extra: &str) -> String {
    format!(
        "  backup:\n    every: {every}\n    keep: {keep}\n    destination:\n{destination}{extra}"
    )
}

/// Waits until `n` distinct snapshots were recorded in the status, one after another; answers
/// what the status recorded for each (by object name).
fn record_snapshots(op: &mut LocalOperator, n: usize) -> BTreeMap<String, SnapshotRecord> {
    let seen = RefCell::new(BTreeMap::new());
    op.wait_status(&format!("{n} snapshots"), CONVERGE, |s| {
        if let Some(l) = last(s) {
            seen.borrow_mut().insert(l.name.clone(), l);
        }
        seen.borrow().len() >= n
    });
    seen.into_inner()
}

/// The schedule's objects in `store` (the cluster's snapshot names, oldest first) are the
/// newest `keep` recorded, the newest the status's; each reads back with the SHA-256 and size
/// recorded for it and is a snapshot `etcdutl` accepts.
async fn check_store(
    store: &SnapshotStore,
    cluster: &str,
    recorded: &BTreeMap<String, SnapshotRecord>,
    status: &EtcdClusterStatus,
    keep: usize,
) {
    let listed: Vec<String> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .filter(|n| n.starts_with(&format!("{cluster}-")))
        .collect();
    let newest: Vec<String> = recorded.keys().rev().take(keep).rev().cloned().collect();
    assert_eq!(listed, newest, "retention keeps the newest {keep}");
    let last = last(status).expect("last snapshot");
    assert_eq!(
        listed.last(),
        Some(&last.name),
        "the status names the newest"
    );
    let dir = support::temp_dir("store-read").expect("temp dir");
    for name in &listed {
        let file = dir.path().join(name);
        let got = store.download_to_file(name, &file).await.expect("download");
        let want = &recorded[name];
        assert_eq!(got.sha256, want.sha256, "{name}: SHA-256 as recorded");
        assert_eq!(i64::try_from(got.size).expect("size"), want.size, "{name}");
        let (revision, keys) = etcdutl_status(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!(
            "measured: {} is {} bytes ({} stored) in {} ms, etcdutl: revision {revision}, {keys} keys",
            want.location,
            want.size,
            want.stored_size.unwrap_or(0),
            want.duration_ms
        );
        // A fresh cluster's header revision is 1 while its (empty) store's is 0.
        assert!(
            revision >= want.revision || (want.revision == 1 && revision == 0),
            "{name}: revision {revision}, recorded {}",
            want.revision
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_schedule_waits_for_its_secret_then_keeps_the_newest() {
    let server = S3Server::start().expect("versitygw");
    let destination = format!(
        "      s3:\n        bucket: {BUCKET}\n        endpoint: {}\n      credentialsSecret: s3-creds\n",
        server.endpoint()
    );
    let text = format!(
        "{}{}",
        manifest("sb", 1, "3.5.16"),
        backup_spec("10s", 2, &destination, "")
    );
    let mut op = LocalOperator::start("sb", &text).expect("operator");
    // No Secret yet: reported with its name, retried with back-off, nothing attempted.
    let s = op.wait_status("the missing Secret reported", CONVERGE, |s| {
        backup(s).consecutive_failures >= 2
    });
    let b = backup(&s);
    let error = b.last_error.clone().expect("lastError");
    assert!(
        error.contains("Secret default/s3-creds")
            && error.contains("does not exist")
            && error.contains("no snapshot was attempted"),
        "{error}"
    );
    assert!(
        b.last_snapshot.is_none() && b.next_attempt.is_some(),
        "{b:?}"
    );
    let (reason, message) = degraded(&s).expect("Degraded");
    assert_eq!(reason, "BackupFailing");
    assert!(message.contains("s3-creds"), "{message}");
    assert_eq!(s.phase.as_deref(), Some("Healthy"), "the members are fine");
    let store = SnapshotStore::open(&server.config("default/sb")).expect("store");
    assert!(store.list().await.expect("list").is_empty());
    let events = std::fs::read_to_string(op.cluster_dir().join("events.log")).expect("events");
    assert!(events.contains("Warning BackupFailed Snapshot"), "{events}");

    // The Secret appears: snapshots on the schedule, retention to 2.
    let client = op.client().await;
    write_keys(&client, "k/", 50).await;
    op.write_manifest(&format!(
        "{text}{}",
        secret(
            "s3-creds",
            &[
                ("accessKeyId", S3_ACCESS_KEY),
                ("secretAccessKey", S3_SECRET_KEY)
            ]
        )
    ))
    .expect("manifest");
    let recorded = record_snapshots(&mut op, 3);
    op.stop_gracefully().expect("graceful stop");
    let status = op.status().expect("status");
    let b = backup(&status);
    assert!(
        b.last_error.is_none() && b.consecutive_failures == 0,
        "{b:?}"
    );
    assert!(degraded(&status).is_none(), "{:?}", status.conditions);
    let l = b.last_snapshot.expect("last");
    assert!(
        l.location
            .starts_with(&format!("s3://{BUCKET}/default/sb/sb-")),
        "{l:?}"
    );
    assert_eq!(l.member, "sb-0");
    assert_eq!(l.etcd_version, "3.5.16");
    assert!(!l.cluster_id.is_empty() && l.key_id.is_none(), "{l:?}");
    check_store(&store, "sb", &recorded, &status, 2).await;
    let events = std::fs::read_to_string(op.cluster_dir().join("events.log")).expect("events");
    assert!(events.contains("Normal SnapshotTaken Snapshot"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_schedule_keeps_the_newest() {
    let server = AzureServer::start().expect("azurite");
    let config = server.config("team/ab");
    let Destination::Azure { endpoint, .. } = &config.destination else {
        panic!("an Azure config");
    };
    let endpoint = endpoint.clone().expect("endpoint");
    // The account comes from the Secret (destination.azure.account unset).
    let destination = format!(
        "      azure:\n        container: {BUCKET}\n        prefix: team/ab\n        endpoint: {endpoint}\n      credentialsSecret: az-creds\n"
    );
    let text = format!(
        "{}{}{}",
        manifest("ab", 1, "3.5.16"),
        backup_spec("10s", 2, &destination, ""),
        secret(
            "az-creds",
            &[("accountName", AZURE_ACCOUNT), ("accountKey", AZURE_KEY)]
        )
    );
    let mut op = LocalOperator::start("ab", &text).expect("operator");
    let recorded = record_snapshots(&mut op, 3);
    op.stop_gracefully().expect("graceful stop");
    let status = op.status().expect("status");
    let l = last(&status).expect("last");
    assert!(
        l.location
            .starts_with(&format!("azure://{AZURE_ACCOUNT}/{BUCKET}/team/ab/ab-")),
        "{l:?}"
    );
    let store = SnapshotStore::open(&config).expect("store");
    check_store(&store, "ab", &recorded, &status, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_schedule_needs_its_key_and_restores_with_it() {
    let server = S3Server::start().expect("versitygw");
    let key_hex = "5a".repeat(32);
    let key = EncryptionKey::from_bytes(&[0x5a; 32]).expect("key");
    let destination = format!(
        "      s3:\n        bucket: {BUCKET}\n        prefix: enc\n        endpoint: {}\n      credentialsSecret: s3-creds\n",
        server.endpoint()
    );
    let text = format!(
        "{}{}{}{}",
        manifest("eb", 1, "3.5.16"),
        backup_spec(
            "10s",
            1,
            &destination,
            "    encryption:\n      keySecret: backup-key\n"
        ),
        secret(
            "s3-creds",
            &[
                ("accessKeyId", S3_ACCESS_KEY),
                ("secretAccessKey", S3_SECRET_KEY)
            ]
        ),
        secret("backup-key", &[("key", &key_hex)])
    );
    let mut op = LocalOperator::start("eb", &text).expect("operator");
    op.wait_converged(1, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "enc/", 100).await;
    let written = client
        .put("marker/last", "x", PutOptions::new())
        .await
        .expect("put")
        .header
        .revision;
    let s = op.wait_status("an encrypted snapshot after the writes", CONVERGE, |s| {
        last(s).is_some_and(|l| l.revision >= written)
    });
    // Verified (every snapshot, by default): read back through the key, restored and served.
    let name = last(&s).map(|l| l.name.clone()).unwrap_or_default();
    let verified = op.wait_status("its verification", CONVERGE, |v| {
        v.backup
            .as_ref()
            .and_then(|b| b.last_verification.as_ref())
            .is_some_and(|r| r.name == name)
    });
    let v = verified
        .backup
        .and_then(|b| b.last_verification)
        .expect("verification");
    assert_eq!(
        v.result,
        etcd_operator::api::VerificationResult::Passed,
        "{v:?}"
    );
    assert_eq!(v.keys, Some(101), "{v:?}");
    op.stop_gracefully().expect("graceful stop");
    let l = last(&s).expect("last");
    assert_eq!(l.key_id.as_deref(), Some(key.id().as_str()), "{l:?}");
    assert!(l.stored_size.is_some_and(|n| n > l.size), "{l:?}");

    // As stored, it is not a snapshot.
    let raw = server.object_file(&format!("enc/{}", l.name));
    let raw_len = std::fs::metadata(&raw).expect("stored object").len();
    assert_eq!(Some(i64::try_from(raw_len).expect("len")), l.stored_size);
    let refused = etcdutl_status(&raw).expect_err("an encrypted object is not a snapshot");
    eprintln!("etcdutl on the stored object: {}", refused.trim());
    let dir = support::temp_dir("enc-read").expect("temp dir");
    let plain = SnapshotStore::open(&server.config("enc")).expect("store");
    match plain
        .download_to_file(&l.name, dir.path().join("nokey.db"))
        .await
    {
        Err(StoreError::KeyMissing { key_id }) => assert_eq!(key_id, key.id()),
        other => panic!("without the key: {other:?}"),
    }
    let wrong = plain
        .clone()
        .with_encryption(EncryptionKey::from_bytes(&[1; 32]).expect("key"));
    assert!(matches!(
        wrong
            .download_to_file(&l.name, dir.path().join("wrong.db"))
            .await,
        Err(StoreError::WrongKey { .. })
    ));
    assert!(!dir.path().join("wrong.db").exists() && !dir.path().join("nokey.db").exists());
    // With the key: the snapshot recorded, and a new cluster restored from it.
    let file = dir.path().join("eb.db");
    let got = plain
        .with_encryption(key)
        .download_to_file(&l.name, &file)
        .await
        .expect("decrypted");
    assert_eq!(got.sha256, l.sha256);
    let (revision, _) = etcdutl_status(&file).expect("a snapshot once decrypted");
    assert!(revision >= written);
    let restore = format!(
        "{}  bootstrap:\n    restore:\n      path: {}\n",
        manifest("er", 1, "3.5.16"),
        file.display()
    );
    let mut restored = LocalOperator::start("er", &restore).expect("operator");
    restored.wait_converged(1, "3.5.16", CONVERGE);
    check_keys(&restored.client().await, "enc/", 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_writes_the_emulator_refuses_back_off_and_leave_nothing() {
    let server = GcsServer::start().expect("fake-gcs-server");
    let config = server.config("default/gb");
    let Destination::Gcs { endpoint, .. } = &config.destination else {
        panic!("a GCS config");
    };
    let endpoint = endpoint.clone().expect("endpoint");
    let json = r#"{"private_key":"","private_key_id":"","client_email":"","disable_oauth":true}"#;
    let destination = format!(
        "      gcs:\n        bucket: {BUCKET}\n        endpoint: {endpoint}\n      credentialsSecret: gcs-creds\n"
    );
    let text = format!(
        "{}{}{}",
        manifest("gb", 1, "3.5.16"),
        backup_spec("10s", 2, &destination, ""),
        secret("gcs-creds", &[("serviceAccountJson", json)])
    );
    let mut op = LocalOperator::start("gb", &text).expect("operator");
    let s = op.wait_status("three failed attempts", CONVERGE, |s| {
        backup(s).consecutive_failures >= 3
    });
    let b = backup(&s);
    let error = b.last_error.clone().expect("lastError");
    eprintln!("measured: fake-gcs-server refuses the upload: {error}");
    assert!(
        error.contains(&format!("gs://{BUCKET}/default/gb/gb-")),
        "{error}"
    );
    let next: k8s_openapi::jiff::Timestamp = b
        .next_attempt
        .as_deref()
        .expect("nextAttempt")
        .parse()
        .expect("RFC 3339");
    assert!(next > k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    assert!(b.last_snapshot.is_none());
    assert_eq!(degraded(&s).map(|d| d.0).as_deref(), Some("BackupFailing"));
    let store = SnapshotStore::open(&config).expect("store");
    assert!(
        store.list().await.expect("list").is_empty(),
        "a refused write leaves nothing"
    );
}
