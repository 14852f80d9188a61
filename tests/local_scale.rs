//! Scaling and member failures under the local operator, on real etcd.

mod support;

use std::time::Duration;

use support::local::{
    LocalOperator, assert_in_order, check_keys, manifest, member_list, write_keys,
};

const CONVERGE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_3_to_5_to_3_one_learner_at_a_time_leader_moved_before_removal() {
    let mut op = LocalOperator::start("sc", &manifest("sc", 3, "3.5.16")).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "sc/", 1000).await;

    op.write_manifest(&manifest("sc", 5, "3.5.16"))
        .expect("edit");
    op.wait_converged(5, "3.5.16", CONVERGE);
    let members = member_list(&client).await;
    assert_eq!(members.len(), 5);
    assert!(members.iter().all(|m| !m.2), "{members:?}");
    check_keys(&client, "sc/", 1000).await;
    // One learner at a time: each added member is promoted before the next is added.
    assert_in_order(
        &op.log(),
        &[
            "add member 3 as a learner",
            "start member 3",
            "promote learner",
            "add member 4 as a learner",
            "start member 4",
            "promote learner",
        ],
    );

    // Make the highest ordinal lead, so that scaling down must move leadership first.
    let id4 = members
        .iter()
        .find(|m| m.0 == "sc-4")
        .map(|m| m.1)
        .expect("sc-4");
    client.move_leader(id4).await.expect("move leader to sc-4");
    op.wait_status("sc-4 to lead", CONVERGE, |s| {
        s.leader.as_deref() == Some("sc-4")
    });
    let before = op.log().len();
    op.write_manifest(&manifest("sc", 3, "3.5.16"))
        .expect("edit");
    let status = op.wait_converged(3, "3.5.16", CONVERGE);
    let names: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["sc-0", "sc-1", "sc-2"]);
    let log = op.log();
    assert_in_order(
        &log[before..],
        &["remove member 3", "move leadership from", "remove member 4"],
    );
    for line in log[before..]
        .lines()
        .filter(|l| l.contains(": remove member "))
    {
        let ordinal = line
            .split(": remove member ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("ordinal");
        assert!(
            !line.contains(&format!("leader sc-{ordinal})")),
            "the leader was removed while it led: {line}"
        );
    }
    assert!(
        !op.member_dir(3).exists() && !op.member_dir(4).exists(),
        "data of removed members deleted"
    );
    let members = member_list(&client).await;
    assert_eq!(members.len(), 3);
    check_keys(&client, "sc/", 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_process_is_restarted_and_rejoins() {
    let mut op = LocalOperator::start("kl", &manifest("kl", 3, "3.5.16")).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "kl/", 100).await;
    let members = member_list(&client).await;
    let old_pid = op.kill_member(1).expect("kill member 1");
    op.wait_status("kl-1 to be seen down", CONVERGE, |s| {
        s.members.iter().any(|m| m.name == "kl-1" && !m.healthy)
    });
    op.wait_converged(3, "3.5.16", CONVERGE);
    let new_pid = op.member_pid(1).expect("member 1 runs");
    assert_ne!(new_pid, old_pid);
    assert!(op.log().contains("kl-1 exited"), "{}", op.log());
    assert!(
        op.log().contains("restarted kl-1 after a crash"),
        "{}",
        op.log()
    );
    assert_eq!(member_list(&client).await, members, "membership changed");
    check_keys(&client, "kl/", 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_data_was_deleted_while_stopped_is_replaced() {
    let mut op = LocalOperator::start("dd", &manifest("dd", 3, "3.5.16")).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    write_keys(&client, "dd/", 300).await;
    let members = member_list(&client).await;
    let old_id = members
        .iter()
        .find(|m| m.0 == "dd-1")
        .map(|m| m.1)
        .expect("dd-1");
    drop(client);
    op.stop_gracefully().expect("stop");
    std::fs::remove_dir_all(op.member_dir(1).join("data")).expect("delete data");
    op.launch(&[]).expect("relaunch");
    let status = op.wait_status("dd-1 replaced", CONVERGE, |s| {
        support::local::converged(s, 3, "3.5.16")
            && s.members
                .iter()
                .any(|m| m.name == "dd-1" && m.id != Some(format!("{old_id:x}")))
    });
    assert_eq!(status.members.len(), 3);
    let log = op.log();
    assert!(
        log.contains("not starting dd-1: its data directory is gone"),
        "{log}"
    );
    assert_in_order(
        &log,
        &[
            "remove member 1",
            "because its data is lost",
            "delete runtime member 1",
            "add member 1 as a learner",
            "start member 1",
            "promote learner",
        ],
    );
    let client = op.client().await;
    let after = member_list(&client).await;
    assert_eq!(after.len(), 3);
    assert!(after.iter().all(|m| !m.2));
    assert!(
        !after.iter().any(|m| m.1 == old_id),
        "the old member is still listed"
    );
    check_keys(&client, "dd/", 300).await;
}
