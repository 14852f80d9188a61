//! The operator killed at each crash-injection point (`ETCD_OPERATOR_CRASH_AT`) converges after a
//! restart: the desired size, no stray learner, no duplicate member, no lost key, and the
//! interrupted step finished rather than repeated where it was already applied. Every point of
//! `CrashPoint::ALL` has a test here or in `local_crash_maintenance.rs`
//! (`every_crash_point_has_a_test` keeps it so).

mod support;

use std::time::Duration;

use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);

/// A line no run logs: for points after which the step is rightly sent again (its etcd call
/// had not been made).
const NOTHING: &str = "no line of the operator says this";

/// Builds a cluster of `from` members on `version`, writes keys, stops the operator, edits the
/// manifest to `to` members on `to_version`, starts it with the crash point, expects the crash,
/// restarts it and checks convergence.
async fn crash_and_resume(
    name: &str,
    point: &str,
    (from, version): (u32, &str),
    (to, to_version): (u32, &str),
    resumed: &[&str],
    never_again: &str,
) {
    let mut op = LocalOperator::start(name, &manifest(name, from, version)).expect("operator");
    op.wait_converged(from as usize, version, CONVERGE);
    let client = op.client().await;
    let prefix = format!("{name}/");
    write_keys(&client, &prefix, 200).await;
    drop(client);
    op.stop_gracefully().expect("stop");

    op.write_manifest(&manifest(name, to, to_version))
        .expect("edit");
    op.run_until_crash(point, CONVERGE);
    // The members died with the operator (PDEATHSIG): none is left holding the ports.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (0..9).any(|o| op.member_pid(o).is_some()) {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd members outlived the crashed operator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let first_run = op.log().len();
    op.launch(&[]).expect("relaunch");
    let status = op.wait_converged(to as usize, to_version, CONVERGE);
    let client = op.client().await;
    let members = member_list(&client).await;
    let names: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    let expected: Vec<String> = (0..to).map(|o| format!("{name}-{o}")).collect();
    assert_eq!(names, expected, "members after resuming: {members:?}");
    assert!(
        members.iter().all(|m| !m.2),
        "a learner is left: {members:?}"
    );
    assert_eq!(status.members.len(), to as usize);
    for o in to..9 {
        assert!(
            !op.member_dir(o).exists(),
            "member {o}'s folder is left over"
        );
    }
    assert!(
        !op.cluster_dir().join("intent.yaml").exists(),
        "an intent is left over"
    );
    check_keys(&client, &prefix, 200).await;
    // The resumed run finished the interrupted step instead of repeating it.
    let log = op.log();
    support::local::assert_in_order(&log[first_run..], resumed);
    assert!(
        !log[first_run..].contains(never_again),
        "the resumed run repeated {never_again:?}:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_member_add_before_start() {
    crash_and_resume(
        "cra",
        "after-member-add",
        (1, "3.5.16"),
        (3, "3.5.16"),
        &["start member 1", "promote learner", "add member 2"],
        "add member 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_start_before_promote() {
    crash_and_resume(
        "crs",
        "after-start-before-promote",
        (1, "3.5.16"),
        (3, "3.5.16"),
        &["starting crs-1", "promote learner", "add member 2"],
        "add member 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_member_remove_before_deleting_data() {
    crash_and_resume(
        "crr",
        "after-member-remove",
        (3, "3.5.16"),
        (2, "3.5.16"),
        &["delete runtime member 2"],
        "remove member 2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_upgrade() {
    crash_and_resume(
        "cru",
        "mid-upgrade",
        (3, "3.4.23"),
        (3, "3.5.16"),
        &[
            "on 3.5.16 with its existing data",
            "restart member",
            "restart member",
        ],
        "start seed member",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_add_intent_before_member_add() {
    // MemberAdd was never sent: the resumed run finds no such member and adds it.
    crash_and_resume(
        "cai",
        "after-add-intent",
        (1, "3.5.16"),
        (3, "3.5.16"),
        &["add member 1", "promote learner", "add member 2"],
        NOTHING,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_learner_recorded_before_start() {
    crash_and_resume(
        "clr",
        "after-learner-recorded",
        (1, "3.5.16"),
        (3, "3.5.16"),
        &["start member 1", "promote learner", "add member 2"],
        "add member 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_promote() {
    crash_and_resume(
        "cpr",
        "after-promote",
        (1, "3.5.16"),
        (3, "3.5.16"),
        &["add member 2", "promote learner"],
        "add member 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_remove_intent_before_member_remove() {
    crash_and_resume(
        "cri",
        "after-remove-intent",
        (3, "3.5.16"),
        (2, "3.5.16"),
        &["remove member 2", "delete runtime member 2"],
        NOTHING,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_delete_member_before_clearing_the_intent() {
    crash_and_resume(
        "cdm",
        "after-delete-member",
        (3, "3.5.16"),
        (2, "3.5.16"),
        &["clear the finished intent"],
        "remove member 2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_move_leader_before_the_leader_restarts() {
    // Leader last: leadership moves off the old leader just before its restart.
    crash_and_resume(
        "cml",
        "after-move-leader",
        (3, "3.4.23"),
        (3, "3.5.16"),
        &["restart member"],
        "start seed member",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_restart_onto_the_new_version() {
    crash_and_resume(
        "car",
        "after-restart",
        (3, "3.4.23"),
        (3, "3.5.16"),
        &["restart member", "restart member"],
        "start seed member",
    )
    .await;
}

/// The `*.db` snapshot files of `dir`, oldest first.
fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_snapshot_before_recording_it() {
    // The snapshot committed but unrecorded: the resumed run takes the next on schedule (the
    // status never names a file that is not there) and retention still keeps `keep`.
    let name = "csn";
    let text = format!(
        "{}  backup:\n    every: 10s\n    keep: 2\n",
        manifest(name, 1, "3.5.16")
    );
    let mut op = LocalOperator::prepare(name, &text).expect("operator");
    op.run_until_crash("after-snapshot", CONVERGE);
    let dir = op.cluster_dir().join("backups");
    let before = snapshot_files(&dir);
    assert_eq!(before.len(), 1, "the committed snapshot: {before:?}");
    assert!(
        op.status()
            .and_then(|s| s.backup)
            .and_then(|b| b.last_snapshot)
            .is_none(),
        "recorded before the crash point"
    );
    let first_run = op.log().len();
    op.launch(&[]).expect("relaunch");
    let client_keys = {
        op.wait_converged(1, "3.5.16", CONVERGE);
        let client = op.client().await;
        write_keys(&client, "csn/", 50).await;
        client
    };
    let seen = std::cell::RefCell::new(std::collections::BTreeSet::new());
    op.wait_status("two snapshots recorded after the restart", CONVERGE, |s| {
        if let Some(l) = s.backup.as_ref().and_then(|b| b.last_snapshot.as_ref()) {
            seen.borrow_mut().insert(l.name.clone());
        }
        seen.borrow().len() >= 2
    });
    check_keys(&client_keys, "csn/", 50).await;
    drop(client_keys);
    op.stop_gracefully().expect("stop");
    let status = op.status().expect("status");
    let last = status
        .backup
        .and_then(|b| b.last_snapshot)
        .expect("last snapshot");
    let files = snapshot_files(&dir);
    assert!(
        files.iter().all(|f| !f.ends_with(".part")),
        "partial files: {files:?}"
    );
    assert_eq!(files.len(), 2, "retention keeps 2: {files:?}");
    assert_eq!(
        files.last(),
        Some(&last.name),
        "the status names the newest"
    );
    assert!(
        !files.contains(&before[0]),
        "the unrecorded snapshot went with the retention: {files:?}"
    );
    assert!(op.log()[first_run..].contains("take a snapshot"));
}

#[test]
fn every_crash_point_has_a_test() {
    let source = [
        include_str!("local_crash.rs"),
        include_str!("local_crash_maintenance.rs"),
    ]
    .concat();
    for point in etcd_operator::controller::crash::CrashPoint::ALL {
        let quoted = format!("\"{}\"", point.name());
        assert!(source.contains(&quoted), "no test crashes at {quoted}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_verification_before_recording_it() {
    // The result was lost: the resumed run verifies the snapshot again and records it.
    let name = "cvf";
    let text = format!(
        "{}  backup:\n    every: 10s\n    keep: 2\n",
        manifest(name, 1, "3.5.16")
    );
    let mut op = LocalOperator::prepare(name, &text).expect("operator");
    op.run_until_crash("after-verify", CONVERGE);
    let recorded = op
        .status()
        .and_then(|s| s.backup)
        .and_then(|b| b.last_snapshot)
        .expect("the snapshot was recorded before its verification");
    assert!(recorded.verification.is_none(), "{recorded:?}");
    op.launch(&[]).expect("relaunch");
    let s = op.wait_status("the verification recorded", CONVERGE, |s| {
        s.backup
            .as_ref()
            .and_then(|b| b.last_verification.as_ref())
            .is_some()
    });
    let v = s
        .backup
        .and_then(|b| b.last_verification)
        .expect("lastVerification");
    assert_eq!(v.name, recorded.name, "the same snapshot: {v:?}");
    assert_eq!(format!("{:?}", v.result), "Passed", "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_restoring_every_member_before_recording_it() {
    // A snapshot of a first cluster, then a new one restored from it with the crash point.
    let src = "cso";
    let text = format!(
        "{}  backup:\n    every: 10s\n    keep: 2\n",
        manifest(src, 1, "3.5.16")
    );
    let mut source = LocalOperator::start(src, &text).expect("operator");
    source.wait_converged(1, "3.5.16", CONVERGE);
    let client = source.client().await;
    write_keys(&client, "cso/", 100).await;
    drop(client);
    let written = source
        .status()
        .and_then(|s| s.backup)
        .and_then(|b| b.last_snapshot);
    let snap = source.wait_status("a snapshot holding the keys", CONVERGE, |s| {
        s.backup
            .as_ref()
            .and_then(|b| b.last_snapshot.as_ref())
            .is_some_and(|l| Some(&l.name) != written.as_ref().map(|w| &w.name) && l.revision > 100)
    });
    let location = snap
        .backup
        .and_then(|b| b.last_snapshot)
        .expect("snapshot")
        .location;
    source.stop_gracefully().expect("stop");

    let name = "crt";
    let restore = format!(
        "{}  bootstrap:\n    restore:\n      path: {location}\n",
        manifest(name, 3, "3.5.16")
    );
    let mut op = LocalOperator::prepare(name, &restore).expect("operator");
    op.run_until_crash("after-restore", CONVERGE);
    let first_run = op.log().len();
    op.launch(&[]).expect("relaunch");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    check_keys(&client, "cso/", 100).await;
    let members = member_list(&client).await;
    assert!(
        members.iter().all(|m| !m.2),
        "a learner is left: {members:?}"
    );
    let log = op.log();
    assert!(
        !log[first_run..].contains("start seed member"),
        "the resumed run bootstrapped an empty cluster:\n{log}"
    );
}
