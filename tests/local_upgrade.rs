//! A rolling upgrade 3.4.23 → 3.5.16 of three members under the local operator, with a writer
//! running: followers first, the leader last, no acknowledged write lost.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::local::{
    LocalOperator, assert_acked_present, assert_rolled_leader_last, manifest, member_list,
    spawn_writer,
};

const CONVERGE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_upgrade_keeps_every_acknowledged_write() {
    let mut op = LocalOperator::start("up", &manifest("up", 3, "3.4.23")).expect("operator");
    op.wait_converged(3, "3.4.23", CONVERGE);
    let client = op.client().await;
    let members = member_list(&client).await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(client.clone(), "up/", stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = op.log().len();
    op.write_manifest(&manifest("up", 3, "3.5.16"))
        .expect("edit");
    let status = op.wait_converged(3, "3.5.16", CONVERGE);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.expect("writer");
    assert!(
        acked.len() > 50,
        "the writer made too little progress: {} acked",
        acked.len()
    );

    assert!(
        status
            .members
            .iter()
            .all(|m| m.version.as_deref() == Some("3.5.16"))
    );
    assert_eq!(status.current_version.as_deref(), Some("3.5.16"));
    assert_eq!(
        member_list(&client).await,
        members,
        "membership changed during the upgrade"
    );
    for u in status
        .members
        .iter()
        .filter_map(|m| m.client_url.as_deref())
    {
        let st = client.status(u).await.expect("status");
        assert_eq!(st.version, "3.5.16", "{u}");
    }

    // Leader last: every member restarted once, never while it led.
    assert_rolled_leader_last(&op.log()[before..], "up", 3);
    assert_acked_present(&client, "up/", &acked, failed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_etcd_options_roll_through_the_members() {
    let mut op = LocalOperator::start("opt", &manifest("opt", 3, "3.5.16")).expect("operator");
    let before = op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    support::local::write_keys(&client, "opt/", 100).await;
    let edited = manifest("opt", 3, "3.5.16").replace("snapshotCount: 5000", "snapshotCount: 6000");
    assert_ne!(edited, manifest("opt", 3, "3.5.16"));
    op.write_manifest(&edited).expect("edit");
    let cmdline = |pid: i32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .into_owned()
    };
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let all_new = (0..3).all(|o| {
            op.member_pid(o)
                .is_some_and(|pid| cmdline(pid).contains("--snapshot-count=6000"))
        });
        if all_new
            && op
                .status()
                .is_some_and(|s| support::local::converged(&s, 3, "3.5.16"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new options did not reach every member:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = op.status().expect("status");
    let ids = |s: &etcd_operator::api::EtcdClusterStatus| {
        s.members.iter().map(|m| m.id.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "members were replaced, not restarted"
    );
    assert_eq!(
        op.log().matches(": restart member ").count(),
        3,
        "{}",
        op.log()
    );
    assert!(op.log().contains("manifest changed (etcd options)"));
    support::local::check_keys(&client, "opt/", 100).await;
}
