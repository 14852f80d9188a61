//! The planner and etcd 3.7's log-replay trap (src/controller/plan/wal.rs): a member moves from
//! 3.6 to 3.7 only once it has taken a raft snapshot past the last v2 entry etcd 3.5 wrote, and
//! on a cluster that writes too little the planner appends entries that change no key.

use etcd_operator::controller::plan::{
    ADVANCE_MAX, DataState, Desired, EtcdMember, Intent, Membership, Observed, Phase,
    RuntimeMember, Step, Version, default_snapshot_count, plan,
};

const CFG: &str = "cfg-1";

fn v(s: &str) -> Version {
    s.parse().expect("test version")
}

fn id_of(ordinal: u32) -> u64 {
    0x1000 + u64::from(ordinal)
}

fn desired(replicas: u32, version: &str, snapshot_count: Option<u64>) -> Desired {
    let mut d = Desired::new("demo", replicas, v(version), CFG, "http://{name}.demo:2380");
    d.snapshot_count = snapshot_count;
    d
}

fn member(d: &Desired, ordinal: u32, version: Version, raft_index: u64) -> EtcdMember {
    EtcdMember {
        id: id_of(ordinal),
        name: d.member_name(ordinal),
        peer_urls: vec![d.peer_url(ordinal)],
        is_learner: false,
        started: true,
        healthy: true,
        version: Some(version),
        raft_index,
        alarms: vec![],
        db_size: 0,
        db_size_in_use: 0,
        defragmented_at: None,
    }
}

fn runtime(ordinal: u32, version: Version) -> RuntimeMember {
    RuntimeMember {
        ordinal,
        running: true,
        data: DataState::Present,
        version,
        config_hash: CFG.to_owned(),
        failures: 0,
        diagnosis: None,
    }
}

/// Three healthy members on `running` at `raft_index`, led by member 0.
fn cluster(d: &Desired, running: &str, raft_index: u64, v3_from: Option<u64>) -> Observed {
    let running = v(running);
    Observed {
        etcd: Some(Membership {
            members: (0..3).map(|o| member(d, o, running, raft_index)).collect(),
            leader: Some(id_of(0)),
            ..Membership::default()
        }),
        runtime: (0..3).map(|o| runtime(o, running)).collect(),
        v3_log_from_index: v3_from,
        ..Observed::default()
    }
}

#[test]
fn no_member_moves_to_3_7_before_the_v3_log_mark_is_known() {
    let d = desired(3, "3.7.3", Some(100));
    let p = plan(&d, &cluster(&d, "3.6.16", 5_000, None));
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Upgrading);
    assert!(
        p.status.message.contains("storage version 3.6"),
        "{}",
        p.status.message
    );
}

#[test]
fn a_member_short_of_a_snapshot_gets_entries_that_change_no_key() {
    let d = desired(3, "3.7.3", Some(100));
    // The mark at 900, the members at 1000: they need 900 + 100 (+ a margin) first.
    let p = plan(&d, &cluster(&d, "3.6.16", 1_000, Some(900)));
    let Some(Step::AdvanceRaftLog { entries }) = p.next else {
        panic!("expected entries to be appended: {p:?}");
    };
    assert!((1..=40).contains(&entries), "{entries}");
    assert_eq!(p.status.phase, Phase::Upgrading);
    assert!(
        p.status.message.contains("raft snapshot"),
        "{}",
        p.status.message
    );

    // Past the mark: the highest-ordinal follower restarts onto 3.7.
    let p = plan(&d, &cluster(&d, "3.6.16", 1_000 + entries, Some(900)));
    assert_eq!(
        p.next,
        Some(Step::RestartMember {
            ordinal: 2,
            version: v("3.7.3")
        }),
        "{p:?}"
    );
}

#[test]
fn the_default_snapshot_count_of_3_6_applies_and_each_step_is_bounded() {
    assert_eq!(default_snapshot_count(v("3.6.16")), 10_000);
    assert_eq!(default_snapshot_count(v("3.5.35")), 100_000);
    let d = desired(3, "3.7.3", None);
    let p = plan(&d, &cluster(&d, "3.6.16", 1_000, Some(900)));
    assert_eq!(
        p.next,
        Some(Step::AdvanceRaftLog {
            entries: ADVANCE_MAX
        }),
        "9 900 entries missing, at most {ADVANCE_MAX} per pass: {p:?}"
    );
}

#[test]
fn a_restart_onto_3_7_happens_only_past_the_mark_for_every_index() {
    let d = desired(3, "3.7.3", Some(100));
    for index in (0..1_400).step_by(7) {
        let p = plan(&d, &cluster(&d, "3.6.16", index, Some(900)));
        match p.next {
            Some(Step::RestartMember { .. }) => {
                assert!(index >= 1_000, "restarted at raft index {index}: {p:?}")
            }
            Some(Step::AdvanceRaftLog { entries }) => {
                assert!(entries > 0 && entries <= ADVANCE_MAX);
                assert!(index + entries >= 1_000, "{index} + {entries}");
            }
            ref other => panic!("unexpected step at {index}: {other:?}"),
        }
    }
}

#[test]
fn other_upgrades_and_3_7_clusters_are_not_held() {
    // 3.5 -> 3.6: 3.6 replays 3.5's log; no mark needed.
    let d = desired(3, "3.6.16", Some(100));
    let p = plan(&d, &cluster(&d, "3.5.35", 10, None));
    assert!(
        matches!(p.next, Some(Step::RestartMember { ordinal: 2, .. })),
        "{p:?}"
    );
    // A patch upgrade inside 3.7.
    let d = desired(3, "3.7.3", Some(100));
    let p = plan(&d, &cluster(&d, "3.7.0", 10, None));
    assert!(
        matches!(p.next, Some(Step::RestartMember { ordinal: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn a_new_member_joins_on_3_6_while_the_leader_may_still_send_v2_entries() {
    let d = desired(4, "3.7.3", Some(100));
    let learner_id = id_of(3);
    let start = |raft_index: u64| {
        let mut o = cluster(&d, "3.6.16", raft_index, Some(900));
        let m = o.etcd.as_mut().expect("membership");
        m.members.push(EtcdMember {
            id: learner_id,
            name: String::new(),
            peer_urls: vec![d.peer_url(3)],
            is_learner: true,
            started: false,
            healthy: false,
            version: None,
            raft_index: 0,
            alarms: vec![],
            db_size: 0,
            db_size_in_use: 0,
            defragmented_at: None,
        });
        o.intent = Some(Intent::AddLearner {
            ordinal: 3,
            peer_url: d.peer_url(3),
            member_id: Some(learner_id),
        });
        plan(&d, &o).next
    };
    let version = |next: Option<Step>| match next {
        Some(Step::StartMember { version, .. }) => version,
        other => panic!("expected the learner to be started: {other:?}"),
    };
    assert_eq!(version(start(950)), v("3.6.16"));
    assert_eq!(version(start(2_000)), v("3.7.3"));
}

#[test]
fn a_cluster_whose_log_never_held_v2_entries_moves_to_3_7_at_once() {
    // Mark 0: the cluster was created on 3.6, its whole log is v3.
    let d = desired(3, "3.7.3", None);
    let p = plan(&d, &cluster(&d, "3.6.16", 40, Some(0)));
    assert_eq!(
        p.next,
        Some(Step::RestartMember {
            ordinal: 2,
            version: v("3.7.3")
        }),
        "{p:?}"
    );
}
