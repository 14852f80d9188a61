//! Scheduled snapshots and restore under the local operator, on real etcd 3.5.16: a 3-member
//! cluster with `backup: {every: 10s, keep: 2}` writes snapshot files that the real `etcdutl`
//! accepts, keeps exactly two, and records the last in its status; a second cluster created with
//! `bootstrap.restore.path` on one of those files comes up with 3 members and the keys written
//! before the snapshot. A restore from a missing or corrupt file starts nothing and says why.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdClusterStatus;
use etcd_operator::etcd::kv::PutOptions;
use support::bins::{self, EtcdVersion};
use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);

/// The `.db` snapshot files in `dir`, sorted by name (oldest first).
fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "db"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
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

/// The revision in a snapshot file name (`<cluster>-<time>-r<revision>.db`).
fn name_revision(file: &Path) -> i64 {
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    name.rsplit("-r")
        .next()
        .and_then(|r| r.strip_suffix(".db"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {name}"))
}

fn last_snapshot(s: &EtcdClusterStatus) -> Option<&etcd_operator::api::SnapshotRecord> {
    s.backup.as_ref()?.last_snapshot.as_ref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_on_a_schedule_are_kept_and_restore_a_new_cluster() {
    let text = format!(
        "{}  backup:\n    every: 10s\n    keep: 2\n",
        manifest("bk", 3, "3.5.16")
    );
    let mut op = LocalOperator::start("bk", &text).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "before/", 200).await;
    let written = client
        .put("marker/last", "x", PutOptions::new())
        .await
        .expect("put")
        .header
        .revision;

    // A snapshot taken after the writes: its recorded revision (the member's, read just
    // before the stream started) is at least the last write's.
    let status = op.wait_status("a snapshot after the writes", CONVERGE, |s| {
        last_snapshot(s).is_some_and(|l| l.revision >= written)
    });
    let first_after = last_snapshot(&status).expect("snapshot").clone();
    // Two more on the schedule, so that retention has had to delete.
    let started = Instant::now();
    op.wait_status("two more snapshots", CONVERGE, |s| {
        last_snapshot(s).is_some_and(|l| {
            l.location != first_after.location
                && op_count_at_least(&first_after.location, &l.location)
        })
    });
    let taken = op.log().matches("Snapshot of member").count();
    eprintln!(
        "measured: {taken} snapshots logged; two scheduled ones came {:.1} s after the first \
         one holding the writes",
        started.elapsed().as_secs_f64()
    );
    // Stopped gracefully the operator finishes any snapshot step and its retention first.
    op.stop_gracefully().expect("graceful stop");
    let status = op.status().expect("status");
    let last = last_snapshot(&status).expect("last snapshot").clone();
    let dir = op.cluster_dir().join("backups");
    let files = snapshot_files(&dir);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("backups")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    assert_eq!(files.len(), 2, "retention keeps exactly 2: {files:?}");
    assert_eq!(
        files.last().map(|f| f.display().to_string()),
        Some(last.location.clone()),
        "the status records the newest file"
    );
    assert!(
        !files
            .iter()
            .any(|f| f.display().to_string() == first_after.location),
        "the older snapshot was deleted by retention"
    );
    for f in &files {
        let size = std::fs::metadata(f).expect("metadata").len();
        let (revision, keys) = etcdutl_status(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        eprintln!(
            "measured: {} is {size} bytes, etcdutl: revision {revision}, {keys} keys",
            f.display()
        );
        assert!(revision >= name_revision(f), "{f:?}: revision {revision}");
        assert!(revision >= written, "{f:?}: taken before the writes");
    }
    let size = std::fs::metadata(&last.location).expect("last file").len();
    assert_eq!(u64::try_from(last.size).expect("size"), size);
    assert_eq!(last.sha256.len(), 64, "{last:?}");
    assert!(last.member.starts_with("bk-"), "{last:?}");
    let log = op.log();
    assert!(
        log.contains(", a follower)"),
        "snapshots come from a follower:\n{log}"
    );
    assert!(
        !log.contains("the leader: no follower"),
        "a 3-member cluster snapshots the leader:\n{log}"
    );
    assert!(
        status
            .backup
            .as_ref()
            .is_some_and(|b| b.last_error.is_none())
    );

    // A new cluster from the newest file: three members, the keys written before it.
    let restore = format!(
        "{}  bootstrap:\n    restore:\n      path: {}\n",
        manifest("rs", 3, "3.5.16"),
        last.location
    );
    let started = Instant::now();
    let mut restored = LocalOperator::start("rs", &restore).expect("operator");
    restored.wait_converged(3, "3.5.16", CONVERGE);
    eprintln!(
        "measured: restored cluster converged {:.1} s after the operator started",
        started.elapsed().as_secs_f64()
    );
    let client = restored.client().await;
    check_keys(&client, "before/", 200).await;
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
    assert_eq!(names, ["rs-0", "rs-1", "rs-2"], "{members:?}");
    assert!(members.iter().all(|(_, _, learner)| !learner));
    // It takes writes, and its first member never bootstrapped an empty cluster.
    client
        .put("after/restore", "1", PutOptions::new())
        .await
        .expect("write to the restored cluster");
    let log = restored.log();
    assert!(log.contains("restored 3 members from"), "{log}");
    assert!(!log.contains("start seed member"), "{log}");
}

/// Whether the snapshot `later` is at least two schedule steps after `first` (the names sort
/// by time; with keep 2, two later files mean `first` must have been deleted).
fn op_count_at_least(first: &str, later: &str) -> bool {
    let dir = Path::new(later).parent().expect("dir");
    snapshot_files(dir)
        .iter()
        .filter(|f| f.display().to_string().as_str() > first)
        .count()
        >= 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_a_missing_or_corrupt_snapshot_starts_nothing() {
    let dir = support::temp_dir("restore-bad").expect("temp dir");
    let snapshot = dir.path().join("missing.db");
    let text = format!(
        "{}  bootstrap:\n    restore:\n      path: {}\n",
        manifest("rb", 3, "3.5.16"),
        snapshot.display()
    );
    let mut op = LocalOperator::start("rb", &text).expect("operator");
    let degraded = |s: &EtcdClusterStatus, needle: &str| {
        s.phase.as_deref() == Some("Degraded")
            && s.conditions.iter().any(|c| {
                c.type_ == "Degraded"
                    && c.status == "True"
                    && c.reason == "RestoreFailed"
                    && c.message.contains(needle)
            })
    };
    let s = op.wait_status("a missing snapshot reported", CONVERGE, |s| {
        degraded(s, "missing.db")
    });
    eprintln!("status for a missing file: {:?}", s.conditions);
    assert!(
        !op.cluster_dir().join("members").exists(),
        "members were created without a snapshot"
    );
    // The same path, now a file that is not a snapshot: etcdutl refuses it, nothing starts.
    std::fs::write(&snapshot, vec![b'x'; 4096]).expect("write");
    let s = op.wait_status("a corrupt snapshot reported", CONVERGE, |s| {
        degraded(s, "etcdutl snapshot restore")
    });
    eprintln!("status for a corrupt file: {:?}", s.conditions);
    assert!(!op.cluster_dir().join("members").exists());
    assert!(
        !op.cluster_dir().join("restore").exists(),
        "a failed restore leaves no staging folder"
    );
    assert!(op.is_running(), "the operator keeps running");
}
