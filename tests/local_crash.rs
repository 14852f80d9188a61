//! The operator killed at each crash-injection point (`ETCD_OPERATOR_CRASH_AT`) converges after a
//! restart: the desired size, no stray learner, no duplicate member, no lost key.

mod support;

use std::time::Duration;

use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);

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
    op.launch(&[("ETCD_OPERATOR_CRASH_AT", point)])
        .expect("launch with crash point");
    let exit = op.wait_exit(CONVERGE).expect("crash");
    assert!(
        exit.contains("99"),
        "expected the crash exit status 99, got {exit}:\n{}",
        op.log_tail()
    );
    assert!(op.log().contains(&format!("point={point}")) || op.log().contains(point));
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
