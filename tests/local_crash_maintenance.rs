//! The operator killed at the crash points of NOSPACE recovery (`after-compact`,
//! `after-defragment`, `after-disarm`) recovers after a restart: the alarm disarmed, every
//! member defragmented below the quota, writes accepted again, the keys written before intact.
//! Repeating a compaction or a defragmentation whose record was lost is harmless (etcd answers
//! "already compacted"; a second defragmentation finds nothing to free), so only the end state
//! is checked.

mod support;

use std::time::Duration;

use etcd_operator::etcd::kv::{DeleteOptions, PutOptions};
use support::local::{LocalOperator, check_keys, fill, manifest, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);
const QUOTA: i64 = 24 * 1024 * 1024;

fn nospace_manifest(name: &str, handle: bool) -> String {
    let text = manifest(name, 3, "3.5.16").replace(
        "  etcd:\n",
        &format!("  etcd:\n    quotaBackendBytes: {QUOTA}\n"),
    );
    format!("{text}  maintenance:\n    alarms:\n      handleNoSpace: {handle}\n")
}

async fn crash_during_nospace_recovery(name: &str, point: &str) {
    let mut op = LocalOperator::start(name, &nospace_manifest(name, false)).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    let keep = format!("{name}-keep/");
    write_keys(&client, &keep, 50).await;
    let filled = format!("{name}-fill/");
    let (_, refused) = fill(&client, &filled, 100).await;
    assert!(
        refused.is_some(),
        "no NOSPACE after 100 MiB with a {QUOTA}-byte quota"
    );
    op.wait_status("NOSPACE reported", CONVERGE, |s| {
        s.members
            .iter()
            .any(|m| m.alarms.iter().any(|a| a == "NOSPACE"))
    });
    client
        .delete(&filled, DeleteOptions::new().with_prefix())
        .await
        .expect("delete under NOSPACE");
    drop(client);
    op.stop_gracefully().expect("stop");

    op.write_manifest(&nospace_manifest(name, true))
        .expect("edit");
    op.run_until_crash(point, CONVERGE);

    op.launch(&[]).expect("relaunch");
    let healed = op.wait_status("NOSPACE recovered after the crash", CONVERGE, |s| {
        s.phase.as_deref() == Some("Healthy")
            && s.members.len() == 3
            && s.members.iter().all(|m| m.alarms.is_empty())
            && s.members
                .iter()
                .all(|m| m.db_size.is_some_and(|d| d * 100 < QUOTA * 95))
    });
    let client = op.client().await;
    client
        .put(format!("{name}-after"), "x", PutOptions::new())
        .await
        .unwrap_or_else(|e| panic!("writes refused after recovery: {e}\n{healed:#?}"));
    check_keys(&client, &keep, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_compact_during_nospace_recovery() {
    crash_during_nospace_recovery("cco", "after-compact").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_defragment_during_nospace_recovery() {
    crash_during_nospace_recovery("cdf", "after-defragment").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_disarm_during_nospace_recovery() {
    crash_during_nospace_recovery("cds", "after-disarm").await;
}
