//! Restores of the local operator from a real object store (versitygw), on real etcd 3.5.16: a
//! cluster backs up (encrypted) to S3, a second cluster names only the store, the key and the
//! first cluster (`spec.bootstrap.restore.destination`, the newest object) and comes up with
//! three members, the keys written before the snapshot and another cluster ID. A wrong key, a
//! named object that does not exist and a cluster without snapshots start nothing and say why.

mod support;

use std::time::Duration;

use etcd_operator::api::EtcdClusterStatus;
use etcd_operator::etcd::kv::PutOptions;
use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};
use support::stores::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

const CONVERGE: Duration = Duration::from_secs(180);

/// A Secret document with `stringData`.
fn secret(name: &str, pairs: &[(&str, &str)]) -> String {
    let mut out =
        format!("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n");
    for (k, v) in pairs {
        out.push_str(&format!("  {k}: '{v}'\n"));
    }
    out
}

fn creds() -> String {
    secret(
        "s3-creds",
        &[
            ("accessKeyId", S3_ACCESS_KEY),
            ("secretAccessKey", S3_SECRET_KEY),
        ],
    )
}

/// The S3 store's lines under `destination:`, indented by `indent` spaces.
fn s3(server: &S3Server, indent: usize) -> String {
    let i = " ".repeat(indent);
    format!(
        "{i}s3:\n{i}  bucket: {BUCKET}\n{i}  endpoint: {}\n{i}credentialsSecret: s3-creds\n",
        server.endpoint()
    )
}

/// A cluster `name` of `replicas` restored from the store with `extra` lines under `restore:`
/// (indented 6), the key Secret holding `key_hex`.
fn restored(name: &str, replicas: u32, server: &S3Server, extra: &str, key_hex: &str) -> String {
    format!(
        "{}  bootstrap:\n    restore:\n      destination:\n{}      encryption:\n        keySecret: backup-key\n{extra}{}{}",
        manifest(name, replicas, "3.5.16"),
        s3(server, 8),
        creds(),
        secret("backup-key", &[("key", key_hex)])
    )
}

/// The `RestoreFailed` message of `s`, if it reports one.
fn restore_failed(s: &EtcdClusterStatus) -> Option<&str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "RestoreFailed")
        .map(|c| c.message.as_str())
}

/// Waits for a `RestoreFailed` containing `needle`; checks nothing of the cluster was created.
fn assert_refused(op: &mut LocalOperator, needle: &str) -> String {
    let s = op.wait_status(
        &format!("a restore refused with {needle:?}"),
        CONVERGE,
        |s| restore_failed(s).is_some_and(|m| m.contains(needle)),
    );
    let message = restore_failed(&s).unwrap_or_default().to_owned();
    eprintln!("refused: {message}");
    assert_eq!(s.phase.as_deref(), Some("Degraded"), "{s:?}");
    assert!(message.ends_with("nothing was started"), "{message}");
    assert!(
        !op.cluster_dir().join("members").exists(),
        "members were created: {message}"
    );
    assert!(
        !op.cluster_dir().join("restore-snapshot.db").exists()
            && !op.cluster_dir().join("restore-snapshot.db.part").exists(),
        "a failed download leaves no file"
    );
    assert!(s.members.is_empty(), "{s:?}");
    assert!(op.is_running(), "the operator keeps running");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_restores_the_newest_backup_of_another_from_s3() {
    let server = S3Server::start().expect("versitygw");
    let key_hex = "5a".repeat(32);
    let source = format!(
        "{}  backup:\n    every: 10s\n    keep: 3\n    destination:\n{}    encryption:\n      keySecret: backup-key\n{}{}",
        manifest("src", 1, "3.5.16"),
        s3(&server, 6),
        creds(),
        secret("backup-key", &[("key", &key_hex)])
    );
    let mut op = LocalOperator::start("src", &source).expect("operator");
    op.wait_converged(1, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "keep/", 150).await;
    let written = client
        .put("marker/last", "x", PutOptions::new())
        .await
        .expect("put")
        .header
        .revision;
    let s = op.wait_status("a snapshot after the writes", CONVERGE, |s| {
        s.backup
            .as_ref()
            .and_then(|b| b.last_snapshot.as_ref())
            .is_some_and(|l| l.revision >= written)
    });
    op.stop_gracefully().expect("graceful stop");
    let source_id = s.cluster_id.clone().expect("the source's cluster ID");
    let newest = s
        .backup
        .and_then(|b| b.last_snapshot)
        .expect("last snapshot");
    assert!(
        newest
            .location
            .starts_with(&format!("s3://{BUCKET}/default/src/src-")),
        "{newest:?}"
    );

    // Only the store, the key and the cluster whose backups to take.
    let text = restored("dst", 3, &server, "      cluster: src\n", &key_hex);
    let mut dst = LocalOperator::start("dst", &text).expect("operator");
    dst.wait_converged(3, "3.5.16", CONVERGE);
    let client = dst.client().await;
    check_keys(&client, "keep/", 150).await;
    let marker = client
        .get("marker/last", etcd_operator::etcd::kv::GetOptions::new())
        .await
        .expect("get");
    assert_eq!(
        marker.kvs.first().map(|kv| kv.value.to_vec()),
        Some(b"x".to_vec()),
        "the last write before the snapshot"
    );
    let members = member_list(&client).await;
    let names: Vec<&str> = members.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["dst-0", "dst-1", "dst-2"], "{members:?}");
    assert!(members.iter().all(|(_, _, learner)| !learner));
    let status = dst.status().expect("status");
    let restored_id = status.cluster_id.clone().expect("cluster ID");
    assert_ne!(restored_id, source_id, "a restore gets a new cluster ID");
    let log = dst.log();
    assert!(
        log.contains(&format!("restore 3 members on 3.5.16 from the newest snapshot of src in s3://{BUCKET}/default/src")),
        "{log}"
    );
    assert!(log.contains("restored 3 members from"), "{log}");
    assert!(!log.contains("start seed member"), "{log}");
    assert!(
        !dst.cluster_dir().join("restore-snapshot.db").exists(),
        "the downloaded snapshot is removed"
    );
    dst.stop_gracefully().expect("graceful stop");

    // Another key: refused with both key ids, nothing started.
    let text = restored("wk", 1, &server, "      cluster: src\n", &"11".repeat(32));
    let mut wk = LocalOperator::start("wk", &text).expect("operator");
    assert_refused(&mut wk, "wrong encryption key");
    wk.stop_gracefully().expect("graceful stop");

    // A named object that is not there.
    let missing = "src-20000101T000000Z-r1.db";
    let text = restored(
        "mo",
        1,
        &server,
        &format!("      object: {missing}\n"),
        &key_hex,
    );
    let mut mo = LocalOperator::start("mo", &text).expect("operator");
    let message = assert_refused(&mut mo, "does not exist");
    assert!(
        message.contains(&format!("s3://{BUCKET}/default/mo/{missing}")),
        "{message}"
    );
    mo.stop_gracefully().expect("graceful stop");

    // A cluster with no snapshots under its default prefix.
    let text = restored("ns", 1, &server, "", &key_hex);
    let mut ns = LocalOperator::start("ns", &text).expect("operator");
    assert_refused(&mut ns, "no snapshot of cluster ns in");
}
