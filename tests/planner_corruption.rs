//! The planner's part of the consistency check: the verdict over `HashKV` answers
//! ([`consistency`]), when a check is due, and what the plan does about a member found corrupt
//! (replace it from the healthy majority, never losing quorum), about hashes without a majority
//! (report and wait), and about a `CORRUPT` alarm left on a replaced member (disarm it).

use std::time::{Duration, UNIX_EPOCH};

use etcd_operator::controller::plan::{
    Alarm, Consistency, DataState, Desired, EtcdMember, HashCheck, Maintenance, MemberHash,
    Membership, Observed, Phase, RuntimeMember, Step, Version, consistency, corruption_check_due,
    plan,
};

fn v(s: &str) -> Version {
    s.parse().expect("test version")
}

fn desired(replicas: u32) -> Desired {
    Desired::new(
        "demo",
        replicas,
        v("3.5.16"),
        "cfg",
        "http://{name}.demo:2380",
    )
}

fn id_of(ordinal: u32) -> u64 {
    0x1000 + u64::from(ordinal)
}

fn voter(d: &Desired, ordinal: u32) -> EtcdMember {
    EtcdMember {
        id: id_of(ordinal),
        name: d.member_name(ordinal),
        peer_urls: vec![d.peer_url(ordinal)],
        is_learner: false,
        started: true,
        healthy: true,
        version: Some(v("3.5.16")),
        raft_index: 1000,
        alarms: vec![],
        db_size: 0,
        db_size_in_use: 0,
        defragmented_at: None,
    }
}

fn runtime(ordinal: u32) -> RuntimeMember {
    RuntimeMember {
        ordinal,
        running: true,
        data: DataState::Present,
        version: v("3.5.16"),
        config_hash: "cfg".to_owned(),
        failures: 0,
        diagnosis: None,
    }
}

/// A healthy cluster of `n` members led by `leader`, with the verdict `corruption`.
fn cluster(d: &Desired, n: u32, leader: u32, corruption: Option<Consistency>) -> Observed {
    Observed {
        etcd: Some(Membership {
            members: (0..n).map(|o| voter(d, o)).collect(),
            leader: Some(id_of(leader)),
            revision: 100,
            ..Membership::default()
        }),
        runtime: (0..n).map(runtime).collect(),
        corruption,
        ..Observed::default()
    }
}

fn hash(ordinal: u32, hash: u32, compact_revision: i64) -> MemberHash {
    MemberHash {
        member_id: id_of(ordinal),
        hash,
        compact_revision,
        hash_revision: 100,
    }
}

fn check(voters: usize, hashes: Vec<MemberHash>) -> HashCheck {
    HashCheck {
        revision: 100,
        voters,
        hashes,
    }
}

/// The verdict of a three-member check that found `ordinals` corrupt.
fn corrupt(ordinals: &[u32]) -> Option<Consistency> {
    Some(Consistency::Corrupt {
        members: ordinals.iter().map(|o| id_of(*o)).collect(),
        majority_hash: 0xaaaa,
        agreeing: (0..3)
            .filter(|o| !ordinals.contains(o))
            .map(id_of)
            .collect(),
    })
}

fn ids(ordinals: &[u32]) -> Vec<u64> {
    ordinals.iter().map(|o| id_of(*o)).collect()
}

#[test]
fn equal_hashes_are_consistent() {
    let c = check(3, vec![hash(0, 7, 5), hash(1, 7, 5), hash(2, 7, 5)]);
    assert_eq!(
        consistency(&c),
        Consistency::Consistent {
            members: ids(&[0, 1, 2])
        }
    );
}

#[test]
fn a_hash_differing_from_the_majority_names_the_odd_member() {
    let c = check(3, vec![hash(0, 7, 5), hash(1, 7, 5), hash(2, 9, 5)]);
    assert_eq!(
        consistency(&c),
        Consistency::Corrupt {
            members: vec![id_of(2)],
            majority_hash: 7,
            agreeing: ids(&[0, 1]),
        }
    );
    // Five voters, two odd ones: the three that agree are a majority.
    let c = check(
        5,
        vec![
            hash(0, 7, 5),
            hash(1, 8, 5),
            hash(2, 7, 5),
            hash(3, 9, 5),
            hash(4, 7, 5),
        ],
    );
    assert_eq!(
        consistency(&c),
        Consistency::Corrupt {
            members: vec![id_of(1), id_of(3)],
            majority_hash: 7,
            agreeing: ids(&[0, 2, 4]),
        }
    );
}

#[test]
fn no_hash_shared_by_a_majority_is_no_majority() {
    let c = check(3, vec![hash(0, 7, 5), hash(1, 8, 5), hash(2, 9, 5)]);
    assert_eq!(consistency(&c), Consistency::NoMajority);
    // Two of three answered and differ: neither is a majority of the voters.
    let c = check(3, vec![hash(0, 7, 5), hash(1, 8, 5)]);
    assert_eq!(consistency(&c), Consistency::NoMajority);
    // Four voters split two and two.
    let c = check(
        4,
        vec![hash(0, 7, 5), hash(1, 7, 5), hash(2, 8, 5), hash(3, 8, 5)],
    );
    assert_eq!(consistency(&c), Consistency::NoMajority);
}

#[test]
fn members_at_another_compaction_are_not_compared() {
    // Member 2 compacted further: its hash covers other revisions and says nothing.
    let c = check(3, vec![hash(0, 7, 5), hash(1, 7, 5), hash(2, 9, 6)]);
    assert_eq!(
        consistency(&c),
        Consistency::Consistent {
            members: ids(&[0, 1])
        }
    );
    // Every member at its own compaction: nothing to compare.
    let c = check(3, vec![hash(0, 7, 5), hash(1, 8, 6), hash(2, 9, 7)]);
    assert_eq!(consistency(&c), Consistency::Incomparable);
    // Too few answered.
    let c = check(3, vec![hash(0, 7, 5)]);
    assert_eq!(consistency(&c), Consistency::Incomparable);
    assert_eq!(consistency(&check(3, vec![])), Consistency::Incomparable);
}

#[test]
fn a_check_is_due_once_per_interval() {
    let m = Maintenance {
        corruption_check_every: Some(Duration::from_secs(60)),
        ..Maintenance::default()
    };
    let t = |s: u64| Some(UNIX_EPOCH + Duration::from_secs(s));
    assert!(corruption_check_due(&m, None, t(10)));
    assert!(!corruption_check_due(&m, t(10), t(69)));
    assert!(corruption_check_due(&m, t(10), t(70)));
    // A last check in the future (the clock went back) is not re-run at once.
    assert!(!corruption_check_due(&m, t(100), t(50)));
    // No time, or the check off: never.
    assert!(!corruption_check_due(&m, None, None));
    let off = Maintenance {
        corruption_check_every: None,
        ..Maintenance::default()
    };
    assert!(!corruption_check_due(&off, None, t(10)));
}

#[test]
fn a_corrupt_follower_is_removed_then_added_back_as_a_learner() {
    let d = desired(3);
    let p = plan(&d, &cluster(&d, 3, 0, corrupt(&[2])));
    assert_eq!(p.status.phase, Phase::Replacing);
    assert_eq!(
        p.next,
        Some(Step::RemoveMember {
            member_id: id_of(2),
            ordinal: 2
        }),
        "{p:?}"
    );
    assert!(p.status.message.contains("demo-2"), "{}", p.status.message);
    // Removed and its runtime member deleted: the verdict names an ID that is gone, and the
    // ordinal comes back as a fresh learner.
    let mut o = cluster(&d, 2, 0, corrupt(&[2]));
    o.runtime.retain(|r| r.ordinal != 2);
    let p = plan(&d, &o);
    assert!(
        matches!(p.next, Some(Step::AddLearner { ordinal: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn a_corrupt_leader_hands_leadership_over_first() {
    let d = desired(3);
    let p = plan(&d, &cluster(&d, 3, 1, corrupt(&[1])));
    assert_eq!(
        p.next,
        Some(Step::MoveLeader {
            from: id_of(1),
            to: id_of(0)
        }),
        "{p:?}"
    );
}

#[test]
fn a_corrupt_member_is_never_restarted() {
    let d = desired(3);
    let mut o = cluster(&d, 3, 0, corrupt(&[2]));
    o.runtime[2].running = false;
    let p = plan(&d, &o);
    assert!(
        matches!(p.next, Some(Step::RemoveMember { ordinal: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn no_replacement_when_the_others_are_not_a_healthy_majority() {
    let d = desired(3);
    let mut o = cluster(&d, 3, 0, corrupt(&[2]));
    if let Some(m) = o.etcd.as_mut() {
        m.members[1].healthy = false;
    }
    let p = plan(&d, &o);
    assert!(
        !matches!(p.next, Some(Step::RemoveMember { .. })),
        "removing the corrupt member with one other down would lose quorum: {p:?}"
    );
    assert_eq!(p.status.phase, Phase::Degraded);
    // Two of three corrupt: the one healthy member is no majority; nothing is removed.
    let p = plan(&d, &cluster(&d, 3, 0, corrupt(&[1, 2])));
    assert!(!matches!(p.next, Some(Step::RemoveMember { .. })), "{p:?}");
}

#[test]
fn no_majority_reports_and_waits() {
    let d = desired(3);
    let p = plan(&d, &cluster(&d, 3, 0, Some(Consistency::NoMajority)));
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Degraded);
    assert!(
        p.status.message.contains("majority"),
        "{}",
        p.status.message
    );
    // Even a step that would otherwise run (scaling up) waits.
    let d5 = desired(5);
    let p = plan(&d5, &cluster(&d5, 3, 0, Some(Consistency::NoMajority)));
    assert_eq!(p.next, None, "{p:?}");
}

#[test]
fn consistent_or_incomparable_changes_nothing() {
    let d = desired(3);
    let consistent = Consistency::Consistent {
        members: ids(&[0, 1, 2]),
    };
    for verdict in [consistent, Consistency::Incomparable] {
        let p = plan(&d, &cluster(&d, 3, 0, Some(verdict)));
        assert_eq!(p.next, None, "{p:?}");
        assert_eq!(p.status.phase, Phase::Healthy);
    }
}

#[test]
fn a_corrupt_alarm_left_on_a_removed_member_is_disarmed() {
    let d = desired(3);
    let mut o = cluster(&d, 2, 0, None);
    o.runtime.retain(|r| r.ordinal != 2);
    if let Some(m) = o.etcd.as_mut() {
        m.orphan_alarms = vec![(0xdead, Alarm::Corrupt)];
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::DisarmAlarm {
            member_id: 0xdead,
            alarm: Alarm::Corrupt
        }),
        "{p:?}"
    );
}

#[test]
fn a_corrupt_alarm_raised_by_etcd_replaces_the_member() {
    let d = desired(3);
    let mut o = cluster(&d, 3, 0, None);
    if let Some(m) = o.etcd.as_mut() {
        m.members[2].alarms = vec![Alarm::Corrupt];
    }
    let p = plan(&d, &o);
    assert!(
        matches!(p.next, Some(Step::RemoveMember { ordinal: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn alarms_etcd_raised_on_the_majority_are_overruled_by_the_hashes() {
    // etcd's own check is the leader's view: a corrupt leader (member 2) accuses every follower.
    let d = desired(3);
    let mut o = cluster(&d, 3, 2, corrupt(&[2]));
    if let Some(m) = o.etcd.as_mut() {
        for member in &mut m.members {
            member.alarms = vec![Alarm::Corrupt];
        }
    }
    // Member 2 leads: leadership moves to a member with the majority's data first.
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::MoveLeader {
            from: id_of(2),
            to: id_of(0)
        }),
        "{p:?}"
    );
    // Led by member 0: member 2 is removed; the others' alarms wait until it is gone (the
    // corrupt member must not serve once the cluster serves again).
    if let Some(m) = o.etcd.as_mut() {
        m.leader = Some(id_of(0));
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::RemoveMember {
            member_id: id_of(2),
            ordinal: 2
        }),
        "{p:?}"
    );
    // Removed: every alarm is disarmed (the orphan one and those on the majority), one a pass,
    // before the member is added back.
    o.runtime.retain(|r| r.ordinal != 2);
    if let Some(m) = o.etcd.as_mut() {
        m.members.retain(|x| x.id != id_of(2));
        m.orphan_alarms = vec![(id_of(2), Alarm::Corrupt)];
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::DisarmAlarm {
            member_id: id_of(2),
            alarm: Alarm::Corrupt
        }),
        "{p:?}"
    );
    if let Some(m) = o.etcd.as_mut() {
        m.orphan_alarms.clear();
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::DisarmAlarm {
            member_id: id_of(0),
            alarm: Alarm::Corrupt
        }),
        "{p:?}"
    );
    if let Some(m) = o.etcd.as_mut() {
        for member in &mut m.members {
            member.alarms.clear();
        }
    }
    let p = plan(&d, &o);
    assert!(
        matches!(p.next, Some(Step::AddLearner { ordinal: 2, .. })),
        "{p:?}"
    );
}

#[test]
fn an_alarm_etcd_raised_on_member_zero_waits_for_the_hashes_and_the_corrupt_member() {
    // etcd 3.5's periodic check raises CORRUPT on member 0: no member is named.
    let d = desired(3);
    let mut o = cluster(&d, 3, 0, None);
    if let Some(m) = o.etcd.as_mut() {
        m.orphan_alarms = vec![(0, Alarm::Corrupt)];
    }
    // No check compared the data yet: nothing is disarmed.
    let p = plan(&d, &o);
    assert!(!matches!(p.next, Some(Step::DisarmAlarm { .. })), "{p:?}");
    // The hashes name member 2: it goes first, the alarm stays until then.
    o.corruption = corrupt(&[2]);
    let p = plan(&d, &o);
    assert!(
        matches!(p.next, Some(Step::RemoveMember { ordinal: 2, .. })),
        "{p:?}"
    );
    // Gone: the alarm is disarmed.
    o.runtime.retain(|r| r.ordinal != 2);
    if let Some(m) = o.etcd.as_mut() {
        m.members.retain(|x| x.id != id_of(2));
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::DisarmAlarm {
            member_id: 0,
            alarm: Alarm::Corrupt
        }),
        "{p:?}"
    );
}
