//! The local operator end to end on real etcd: bootstrap, status.yaml, graceful stop and resume,
//! idle observation that writes nothing, an invalid edit that leaves the cluster alone.

mod support;

use std::time::Duration;

use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_bootstraps_stops_gracefully_and_resumes_the_same_cluster() {
    let mut op = LocalOperator::start("solo", &manifest("solo", 1, "3.5.16")).expect("operator");
    let status = op.wait_converged(1, "3.5.16", CONVERGE);
    let client = op.client().await;
    let members = member_list(&client).await;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].0, "solo-0");
    assert!(!members[0].2, "the only member is a voter");
    assert_eq!(status.members[0].id, Some(format!("{:x}", members[0].1)));
    let url = status.members[0].client_url.clone().expect("client URL");
    let st = client.status(&url).await.expect("status");
    let cluster_id = format!("{:x}", st.cluster_id);
    assert_eq!(status.cluster_id.as_deref(), Some(cluster_id.as_str()));
    assert_eq!(status.leader.as_deref(), Some("solo-0"));
    write_keys(&client, "solo/", 100).await;
    drop(client);
    // The pass publishes the same Events in both runtimes; the local one writes them to the
    // cluster's events.log.
    let events = std::fs::read_to_string(op.cluster_dir().join("events.log")).expect("events.log");
    assert!(
        events
            .lines()
            .any(|l| l.contains(" Normal SeedStarted StartSeed: ")),
        "{events}"
    );

    let exit = op.stop_gracefully().expect("graceful stop");
    assert!(exit.contains("exit status: 0"), "{exit}\n{}", op.log_tail());
    assert!(
        op.member_pid(0).is_none(),
        "the member process outlived the operator"
    );
    assert!(op.member_dir(0).join("data/member").is_dir(), "data kept");
    assert!(
        op.log().contains("stopped solo-0 (data kept)"),
        "{}",
        op.log()
    );

    op.launch(&[]).expect("relaunch");
    let again = op.wait_converged(1, "3.5.16", CONVERGE);
    assert_eq!(
        again.cluster_id,
        Some(cluster_id),
        "a new cluster was bootstrapped"
    );
    assert_eq!(again.members[0].id, status.members[0].id);
    let client = op.client().await;
    check_keys(&client, "solo/", 100).await;
    assert_eq!(
        op.log().matches("start seed member").count(),
        1,
        "the seed was started twice:\n{}",
        op.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_bootstrap_and_an_idle_cluster_gets_no_raft_entries() {
    let mut op = LocalOperator::start("idle", &manifest("idle", 3, "3.5.16")).expect("operator");
    let status = op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    let members = member_list(&client).await;
    let names: Vec<&str> = members.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["idle-0", "idle-1", "idle-2"]);
    assert!(members.iter().all(|m| !m.2), "voters only: {members:?}");
    for (m, s) in members.iter().zip(&status.members) {
        assert_eq!(s.name, m.0);
        assert_eq!(s.id, Some(format!("{:x}", m.1)));
    }
    let urls: Vec<String> = status
        .members
        .iter()
        .filter_map(|m| m.client_url.clone())
        .collect();
    assert_eq!(urls.len(), 3);
    // Let the members' own start-up entries settle, then watch 30 s of observation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut before = Vec::new();
    for u in &urls {
        let st = client.status(u).await.expect("status");
        before.push((st.raft_index, st.raft_term));
    }
    let log_before = op.log().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut after = Vec::new();
    for u in &urls {
        let st = client.status(u).await.expect("status");
        after.push((st.raft_index, st.raft_term));
    }
    assert_eq!(
        before, after,
        "raft (index, term) per member moved while idle (a term change means an election, not \
         the operator)"
    );
    assert!(op.is_running());
    // The operator observed all along (a member killed now would be noticed), yet did nothing.
    let idle_log = op.log()[log_before..].to_owned();
    assert!(
        !idle_log.contains("voters ready"),
        "the operator acted while idle:\n{idle_log}"
    );
    // And it was still watching: a member killed now is noticed and restarted.
    op.kill_member(2).expect("kill idle-2");
    let deadline = std::time::Instant::now() + CONVERGE;
    while !op.log().contains("restarted idle-2 after a crash") {
        assert!(std::time::Instant::now() < deadline, "{}", op.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    op.wait_converged(3, "3.5.16", CONVERGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_edit_is_reported_and_leaves_the_cluster_running() {
    let mut op = LocalOperator::start("keep", &manifest("keep", 1, "3.5.16")).expect("operator");
    let status = op.wait_converged(1, "3.5.16", CONVERGE);
    let pid = op.member_pid(0).expect("member pid");
    // A second operator on the same state directory is refused.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .arg("local")
        .arg("--manifest")
        .arg(op.manifest_path())
        .arg("--state-dir")
        .arg(op.state_dir())
        .output()
        .expect("run a second operator");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second operator started");
    assert!(stderr.contains("already runs"), "{stderr}");
    op.write_manifest(&manifest("keep", 12, "3.5.16"))
        .expect("edit");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !op
        .log()
        .contains("spec.replicas: must be between 1 and 9, not 12")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no error for the invalid edit:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        op.log().contains("manifest.yaml"),
        "the error names the file"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(op.is_running());
    assert_eq!(op.member_pid(0), Some(pid), "the member was touched");
    let now = op.wait_converged(1, "3.5.16", CONVERGE);
    assert_eq!(now.members[0].id, status.members[0].id);
    // A valid edit afterwards is applied within seconds.
    op.write_manifest(&manifest("keep", 3, "3.5.16"))
        .expect("edit");
    op.wait_converged(3, "3.5.16", CONVERGE);
    assert!(
        op.log().contains("manifest changed (replicas 1 → 3)"),
        "{}",
        op.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_in_one_file_each_get_ports_and_a_status() {
    let team = manifest("other", 1, "3.5.16").replace(
        "metadata:\n  name: other\n",
        "metadata:\n  name: other\n  namespace: team\n",
    );
    let both = format!("{}---\n{team}", manifest("first", 1, "3.5.16"));
    let mut op = LocalOperator::start("first", &both).expect("operator");
    let first = op.wait_converged(1, "3.5.16", CONVERGE);
    let other_path = op.state_dir().join("team/other/status.yaml");
    let deadline = std::time::Instant::now() + CONVERGE;
    let other = loop {
        let status = std::fs::read_to_string(&other_path)
            .ok()
            .and_then(|t| serde_saphyr::from_str::<etcd_operator::api::EtcdClusterStatus>(&t).ok());
        if let Some(s) = status.filter(|s| support::local::converged(s, 1, "3.5.16")) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "team/other never converged:\n{}",
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(other.members[0].name, "other-0");
    assert_ne!(first.members[0].client_url, other.members[0].client_url);
    assert_ne!(first.cluster_id, other.cluster_id);
}
