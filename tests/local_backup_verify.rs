//! Verification of snapshots under the local operator, on real etcd 3.5.16 and `etcdutl`:
//! with `verify: {everyNth: 2}` the schedule's first and third snapshots (not the second) are
//! restored into a throwaway etcd and recorded as passed, with the revision recorded at take time
//! and the keys written; a snapshot file corrupted in its folder, or replaced by another valid
//! snapshot, fails its verification, which is recorded and raises `Degraded` with reason
//! `BackupVerificationFailed` naming the file. An etcd 3.4 snapshot is restored by its etcdctl.

mod support;

use std::time::Duration;

use etcd_operator::api::{EtcdClusterStatus, SnapshotRecord, VerificationResult};
use support::local::{LocalOperator, manifest, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);

fn last_snapshot(s: &EtcdClusterStatus) -> Option<&SnapshotRecord> {
    s.backup.as_ref()?.last_snapshot.as_ref()
}

/// The notes of the Events with `reason` in the cluster's `events.log`, in order.
fn events(op: &LocalOperator, reason: &str) -> Vec<String> {
    let text = std::fs::read_to_string(op.cluster_dir().join("events.log")).unwrap_or_default();
    text.lines()
        .filter(|l| l.split(' ').nth(2) == Some(reason))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_nth_snapshot_is_verified_with_its_revision_and_keys() {
    let text = format!(
        "{}  backup:\n    every: 10s\n    keep: 3\n    verify:\n      everyNth: 2\n",
        manifest("vf", 1, "3.5.16")
    );
    let mut op = LocalOperator::start("vf", &text).expect("operator");
    op.wait_converged(1, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "k/", 100).await;

    let status = op.wait_status("the third snapshot verified", CONVERGE, |s| {
        last_snapshot(s).is_some_and(|l| l.sequence >= 3 && l.verification.is_some())
    });
    let last = last_snapshot(&status).expect("last").clone();
    let v = last.verification.clone().expect("verification");
    eprintln!(
        "measured: snapshot {} ({} bytes) verified in {} ms: {}",
        last.name, last.size, v.duration_ms, v.message
    );
    assert_eq!(last.sequence, 3, "{last:?}");
    assert_eq!(v.result, VerificationResult::Passed, "{v:?}");
    assert_eq!(v.name, last.name);
    // Nobody wrote while it was taken: the revision served is the one recorded, with every key.
    assert_eq!(v.revision, Some(last.revision), "{v:?}");
    assert_eq!(v.keys, Some(100), "{v:?}");
    assert_eq!(
        status
            .backup
            .as_ref()
            .and_then(|b| b.last_verification.clone()),
        Some(v.clone())
    );
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True"),
        "{:?}",
        status.conditions
    );
    assert!(
        !op.cluster_dir().join("verify").exists(),
        "the verification folder was left"
    );

    // The first and third snapshots were verified, not the second.
    let taken: Vec<String> = events(&op, "SnapshotTaken");
    let verified: Vec<String> = events(&op, "SnapshotVerified");
    assert!(taken.len() >= 3, "{taken:?}");
    let location = |line: &str| {
        line.split(" written to ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_default()
            .to_owned()
    };
    let names: Vec<String> = taken.iter().take(3).map(|l| location(l)).collect();
    let named = |loc: &str| verified.iter().any(|l| l.contains(&format!("{loc}:")));
    assert!(named(&names[0]), "first not verified: {verified:?}");
    assert!(!named(&names[1]), "second verified: {verified:?}");
    assert!(named(&names[2]), "third not verified: {verified:?}");
    assert_eq!(verified.len(), 2, "{verified:?}");
    assert!(events(&op, "SnapshotVerificationFailed").is_empty());
    op.stop_gracefully().expect("graceful stop");
}

/// How a stored snapshot is spoiled before its verification.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// 4 KiB in the middle overwritten (the SHA-256 trailer no longer matches).
    Overwrite,
    /// Replaced by another valid snapshot of the cluster, taken after more writes.
    Replace,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_snapshot_fails_its_verification_and_degrades_the_cluster() {
    let message = spoiled("vc", Tamper::Overwrite).await;
    assert!(message.contains("SHA-256 mismatch"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_snapshot_fails_on_its_recorded_sha256() {
    let message = spoiled("vr", Tamper::Replace).await;
    assert!(message.contains("changed or replaced"), "{message}");
}

/// A 1-member cluster `name` whose one snapshot (taken with verification off) is spoiled by
/// `tamper` before verification is turned on: the verification fails, is recorded and degrades
/// the cluster; answers its message.
async fn spoiled(name: &str, tamper: Tamper) -> String {
    let spec = |every_nth: u32| {
        format!(
            "{}  backup:\n    every: 1h\n    verify:\n      everyNth: {every_nth}\n",
            manifest(name, 1, "3.5.16")
        )
    };
    let mut op = LocalOperator::start(name, &spec(0)).expect("operator");
    op.wait_converged(1, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "k/", 50).await;
    // Verification off: the snapshot is recorded and stays unverified.
    let status = op.wait_status("a snapshot", CONVERGE, |s| last_snapshot(s).is_some());
    let last = last_snapshot(&status).expect("last").clone();
    std::thread::sleep(Duration::from_secs(2));
    let status = op.status().expect("status");
    assert_eq!(
        last_snapshot(&status).and_then(|l| l.verification.clone()),
        None,
        "verified while off"
    );

    // The file spoiled, then verification turned on.
    match tamper {
        Tamper::Overwrite => {
            let mut bytes = std::fs::read(&last.location).expect("snapshot file");
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 4096] {
                *b = 0xa5;
            }
            std::fs::write(&last.location, &bytes).expect("corrupt");
        }
        Tamper::Replace => {
            write_keys(&client, "more/", 20).await;
            let other = op.cluster_dir().join("other.db");
            client
                .snapshot_to_file(&other)
                .await
                .expect("another snapshot");
            std::fs::rename(&other, &last.location).expect("replace");
        }
    }
    op.write_manifest(&spec(1)).expect("manifest");

    let status = op.wait_status("the verification failed", CONVERGE, |s| {
        last_snapshot(s).is_some_and(|l| l.verification.is_some())
    });
    let v = last_snapshot(&status)
        .and_then(|l| l.verification.clone())
        .expect("verification");
    eprintln!(
        "measured: failed verification after {} ms: {}",
        v.duration_ms, v.message
    );
    assert_eq!(v.result, VerificationResult::Failed, "{v:?}");
    assert!(v.message.contains(&last.location), "{v:?}");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded.status, "True", "{degraded:?}");
    assert_eq!(degraded.reason, "BackupVerificationFailed", "{degraded:?}");
    assert!(degraded.message.contains(&last.name), "{degraded:?}");
    let failed = events(&op, "SnapshotVerificationFailed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains(" Warning "), "{failed:?}");
    assert!(
        !op.cluster_dir().join("verify").exists(),
        "the verification folder was left"
    );
    // Not retried: the failure is the record of that snapshot.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(events(&op, "SnapshotVerificationFailed").len(), 1);
    op.stop_gracefully().expect("graceful stop");
    v.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_34_snapshot_is_verified_with_its_etcdctl() {
    let text = format!("{}  backup:\n    every: 1h\n", manifest("v34", 1, "3.4.23"));
    let mut op = LocalOperator::start("v34", &text).expect("operator");
    op.wait_converged(1, "3.4.23", CONVERGE);
    let status = op.wait_status("a verified snapshot", CONVERGE, |s| {
        last_snapshot(s).is_some_and(|l| l.verification.is_some())
    });
    let v = last_snapshot(&status)
        .and_then(|l| l.verification.clone())
        .expect("verification");
    assert_eq!(v.result, VerificationResult::Passed, "{v:?}");
    op.stop_gracefully().expect("graceful stop");
}
