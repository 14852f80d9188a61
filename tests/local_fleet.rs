//! Clusters are supervised independently: while one cluster's step is held up (a restore whose
//! `etcdutl` does not return until the test says so, as a long defragmentation or snapshot
//! would), another cluster of the same manifest has its killed member restarted, takes a
//! manifest edit (a scale from 1 to 2 members) and converges; a graceful stop then stops every
//! member and the held-up step.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_operator::etcd::kv::{GetOptions, PutOptions};
use support::bins::{self, EtcdVersion};
use support::local::{LocalOperator, manifest};

const CONVERGE: Duration = Duration::from_secs(120);

/// Replaces the operator's `etcd-3.5.35/bin` with a folder where `etcd` and `etcdctl` are the
/// real ones and `etcdutl` writes its pid to `<marks>/etcdutl.pid`, then waits until
/// `<marks>/release` exists before running the real one.
fn hold_etcdutl(op: &LocalOperator, marks: &Path) -> PathBuf {
    let real = bins::etcd_dir(EtcdVersion::V3_5_35);
    let bin = op.bin_dir().join("etcd-3.5.35").join("bin");
    std::fs::remove_file(&bin).expect("remove the link");
    std::fs::create_dir_all(&bin).expect("bin folder");
    for tool in ["etcd", "etcdctl"] {
        std::os::unix::fs::symlink(real.join(tool), bin.join(tool)).expect("link");
    }
    let script = format!(
        "#!/bin/sh\necho $$ > {marks}/etcdutl.pid.tmp && mv {marks}/etcdutl.pid.tmp \
         {marks}/etcdutl.pid\nwhile [ ! -e {marks}/release ]; do sleep 0.1; done\nexec {real} \"$@\"\n",
        marks = marks.display(),
        real = real.join("etcdutl").display()
    );
    let path = bin.join("etcdutl");
    std::fs::write(&path, script).expect("write etcdutl");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

/// Waits for `cond`, panicking with `what` and the operator's log after `timeout`.
fn wait_for(op: &LocalOperator, what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; operator log:\n{}",
            op.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` runs (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit(')').next()?.split_whitespace().next()?.to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_up_step_of_one_cluster_does_not_stall_another() {
    let marks = support::temp_dir("fleet-marks").expect("temp dir");
    let snapshot = marks.path().join("held.db");
    std::fs::write(
        &snapshot,
        b"not a snapshot: etcdutl is held before it reads it",
    )
    .expect("file");
    let held = format!(
        "{}  bootstrap:\n    restore:\n      path: {}\n",
        manifest("lf-held", 1, "3.5.35"),
        snapshot.display()
    );
    let text = |b_replicas: u32| format!("{held}---\n{}", manifest("lf-b", b_replicas, "3.5.16"));
    let mut op = LocalOperator::prepare("lf-b", &text(1)).expect("prepare");
    hold_etcdutl(&op, marks.path());
    op.launch(&[]).expect("launch");

    // The held cluster is inside its restore step, and stays there.
    let pid_file = marks.path().join("etcdutl.pid");
    wait_for(&op, "the held etcdutl to start", CONVERGE, || {
        read_pid(&pid_file).is_some()
    });
    let etcdutl = read_pid(&pid_file).expect("etcdutl pid");
    op.wait_converged(1, "3.5.16", CONVERGE);

    // The other cluster's member, killed, is restarted meanwhile and serves again.
    let killed = op.kill_member(0).expect("kill lf-b-0");
    wait_for(&op, "lf-b-0 to be restarted", CONVERGE, || {
        op.log().contains("lf-b: restarted lf-b-0 after a crash")
            && op.member_pid(0).is_some_and(|p| p != killed)
    });
    let client = op.client().await;
    let mut tries = 0;
    while let Err(e) = client.put("after/restart", "1", PutOptions::new()).await {
        tries += 1;
        assert!(
            tries < 40,
            "lf-b does not take writes after its restart: {e}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(client);

    // An edit of the manifest is taken and carried out meanwhile too.
    op.write_manifest(&text(2)).expect("edit");
    op.wait_converged(2, "3.5.16", CONVERGE);
    let client = op.client().await;
    let got = client
        .get("after/restart", GetOptions::new())
        .await
        .expect("read back");
    assert_eq!(got.kvs.len(), 1, "the write before the scale is lost");
    drop(client);

    // All of it while the held step never finished.
    assert!(alive(etcdutl), "the held etcdutl exited early");
    op.cluster = "lf-held".to_owned();
    assert!(
        !op.member_dir(0).exists(),
        "the held restore produced a member"
    );
    let log = op.log();
    assert!(
        !log.contains("restored 1 members from"),
        "the held restore finished: {log}"
    );
    op.cluster = "lf-b".to_owned();

    // A graceful stop ends the held step and stops every member.
    let exit = op.stop_gracefully().expect("graceful stop");
    assert!(exit.contains("exit status: 0"), "{exit}\n{}", op.log_tail());
    for o in 0..2 {
        assert!(op.member_pid(o).is_none(), "lf-b-{o} outlived the stop");
    }
    let log = op.log();
    for o in 0..2 {
        assert!(
            log.contains(&format!("stopped lf-b-{o} (data kept)")),
            "{log}"
        );
    }
    wait_for(
        &op,
        "the held etcdutl to end",
        Duration::from_secs(30),
        || !alive(etcdutl),
    );
    std::fs::write(marks.path().join("release"), b"").expect("release");
}
