//! Upgrade paths under the local operator with real etcd, as etcd's upgrade guides draw them:
//! - 3.5.16 (below the 3.5.26 floor) edited to 3.6.16 is refused with the floor named and no
//!   member restarts; the patch upgrade 3.5.16 → 3.5.35 is free and rolls;
//! - 3.5.35 → 3.6.16 → 3.7.3 with a writer running: followers first, the leader last, no
//!   acknowledged write lost, and the experimental flags of the manifest written under each
//!   version's names in the same restart that changes the version.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_operator::api::EtcdClusterStatus;
use support::local::{
    LocalOperator, assert_acked_present, assert_rolled_leader_last, manifest, member_list,
    spawn_writer,
};

const CONVERGE: Duration = Duration::from_secs(240);

/// A manifest with experimental flags that 3.6 renamed (one into a feature gate) and 3.7
/// removed under their old names. Its raft snapshot every 5000 entries is more than the writer
/// makes between the two upgrades, so the operator has to append entries before a member may
/// run 3.7 (etcd 3.7.3 cannot replay the v2 log entries 3.5 wrote).
fn flagged_manifest(name: &str, version: &str) -> String {
    manifest(name, 3, version).replace(
        "    extraFlags: [\"--unsafe-no-fsync=true\"]\n",
        "    extraFlags: [\"--unsafe-no-fsync=true\", \
         \"--experimental-watch-progress-notify-interval=5s\", \
         \"--experimental-initial-corrupt-check=true\"]\n",
    )
}

/// The command line of member `ordinal`'s etcd process.
fn cmdline(op: &LocalOperator, ordinal: u32) -> Vec<String> {
    let pid = op.member_pid(ordinal).expect("a running member");
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("cmdline")
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn degraded_with(s: &EtcdClusterStatus, text: &str) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == "Degraded" && c.status == "True" && c.message.contains(text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minor_step_below_the_floor_is_refused_and_a_patch_upgrade_is_free() {
    let mut op = LocalOperator::start("fl", &manifest("fl", 3, "3.5.16")).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let before = op.log().len();
    op.write_manifest(&manifest("fl", 3, "3.6.16"))
        .expect("edit");
    let status = op.wait_status("the refusal", CONVERGE, |s| {
        degraded_with(s, "set version to 3.5.26")
    });
    let message = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("etcd 3.5.16 cannot be upgraded to 3.6.16 directly")
            && message.contains("3.5.26 or later first"),
        "{message}"
    );
    // Nothing restarted, every member still on 3.5.16.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = op.log()[before..].to_owned();
    assert!(!log.contains(": restart member "), "{log}");
    let status = op.status().expect("status");
    assert!(
        status
            .members
            .iter()
            .all(|m| m.version.as_deref() == Some("3.5.16") && m.healthy),
        "{status:?}"
    );
    // The patch upgrade the message asks for rolls.
    op.write_manifest(&manifest("fl", 3, "3.5.35"))
        .expect("edit");
    op.wait_converged(3, "3.5.35", CONVERGE);
}

/// One rolling upgrade: three restarts, the leader last; every member ends on `version`.
async fn roll(op: &mut LocalOperator, name: &str, version: &str) -> EtcdClusterStatus {
    let before = op.log().len();
    op.write_manifest(&flagged_manifest(name, version))
        .expect("edit");
    let status = op.wait_converged(3, version, CONVERGE);
    assert_rolled_leader_last(&op.log()[before..], name, 3);
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_chain_3_5_to_3_7_keeps_every_acknowledged_write() {
    let name = "ch";
    let mut op = LocalOperator::start(name, &flagged_manifest(name, "3.5.35")).expect("operator");
    op.wait_converged(3, "3.5.35", CONVERGE);
    for o in 0..3 {
        let args = cmdline(&op, o);
        assert!(
            args.contains(&"--experimental-watch-progress-notify-interval=5s".to_owned())
                && args.contains(&"--experimental-initial-corrupt-check=true".to_owned()),
            "3.5 runs the experimental names: {args:?}"
        );
    }
    let client = op.client().await;
    let members = member_list(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writes = spawn_writer(client.clone(), "up/", stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    for version in ["3.6.16", "3.7.3"] {
        let before = op.log().len();
        let status = roll(&mut op, name, version).await;
        if version == "3.7.3" {
            // The operator recorded where the log became v3 and appended what the members
            // lacked of a raft snapshot past it before the first restart onto 3.7.
            let log = &op.log()[before..];
            let appended = log
                .find("must take a raft snapshot")
                .unwrap_or_else(|| panic!("{log}"));
            let restarted = log
                .find(": restart member ")
                .unwrap_or_else(|| panic!("{log}"));
            assert!(appended < restarted, "{log}");
            for line in log.lines().filter(|l| l.contains("raft snapshot")) {
                eprintln!("{line}");
            }
            let mark = status.upgrade.as_ref().and_then(|u| u.v3_log_from_index);
            assert!(mark.is_some_and(|m| m > 0), "{status:?}");
        }
        assert_eq!(status.current_version.as_deref(), Some(version));
        for o in 0..3 {
            let args = cmdline(&op, o);
            assert!(
                args.contains(&"--watch-progress-notify-interval=5s".to_owned())
                    && args.contains(&"--feature-gates=InitialCorruptCheck=true".to_owned())
                    && !args.iter().any(|a| a.starts_with("--experimental-")),
                "{version} runs the promoted names: {args:?}"
            );
        }
        for u in status
            .members
            .iter()
            .filter_map(|m| m.client_url.as_deref())
        {
            assert_eq!(client.status(u).await.expect("status").version, version);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writes.await.expect("writer");
    assert!(
        acked.len() > 50,
        "the writer made too little progress: {} acked",
        acked.len()
    );
    assert_eq!(
        member_list(&client).await,
        members,
        "membership changed during the upgrades"
    );
    assert_acked_present(&client, "up/", &acked, failed).await;
}
