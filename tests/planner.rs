//! Tests of the pure planner: lifecycle scenarios driven through a small simulator, and property
//! tests of its invariants over random observations.

use etcd_operator::controller::plan::{
    Alarm, BackupSchedule, Bootstrap, Consistency, DataState, Desired, EtcdMember, Intent,
    Membership, Observed, Phase, Plan, RestoreSource, RuntimeMember, Step, UnverifiedSnapshot,
    Version, plan, verification_due,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CFG: &str = "cfg-1";
const MIB: u64 = 1024 * 1024;

fn v(s: &str) -> Version {
    s.parse().expect("test version")
}

fn desired(replicas: u32, version: &str) -> Desired {
    Desired::new("demo", replicas, v(version), CFG, "http://{name}.demo:2380")
}

fn id_of(ordinal: u32) -> u64 {
    0x1000 + u64::from(ordinal)
}

fn voter(d: &Desired, ordinal: u32, version: Version) -> EtcdMember {
    EtcdMember {
        id: id_of(ordinal),
        name: d.member_name(ordinal),
        peer_urls: vec![d.peer_url(ordinal)],
        is_learner: false,
        started: true,
        healthy: true,
        version: Some(version),
        raft_index: 1000,
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

/// A healthy cluster of the given ordinals on `version`, led by `leader`.
fn cluster(d: &Desired, ordinals: &[u32], version: &str, leader: u32) -> Observed {
    let version = v(version);
    Observed {
        etcd: Some(Membership {
            members: ordinals.iter().map(|o| voter(d, *o, version)).collect(),
            leader: Some(id_of(leader)),
            ..Membership::default()
        }),
        runtime: ordinals.iter().map(|o| runtime(*o, version)).collect(),
        intent: None,
        // What the status records for a cluster first seen on 3.6 or later: a log with no v2
        // entries.
        v3_log_from_index: ((version.major, version.minor) >= (3, 6)).then_some(0),
        ..Observed::default()
    }
}

/// A tiny model of etcd plus a runtime that applies steps the way the act layer would, with
/// every member healthy and caught up right after it starts.
struct Sim {
    desired: Desired,
    observed: Observed,
    next_id: u64,
}

impl Sim {
    fn new(desired: Desired, observed: Observed) -> Self {
        Self {
            desired,
            observed,
            next_id: 0x9000,
        }
    }

    fn members(&mut self) -> &mut Vec<EtcdMember> {
        &mut self
            .observed
            .etcd
            .get_or_insert_with(Membership::default)
            .members
    }

    fn leader_index(&self) -> u64 {
        let etcd = self.observed.etcd.as_ref().expect("etcd");
        etcd.members
            .iter()
            .find(|m| Some(m.id) == etcd.leader)
            .map_or(0, |m| m.raft_index)
    }

    fn apply(&mut self, step: &Step) {
        if let Some(intent) = step.intent() {
            self.observed.intent = Some(intent);
        }
        let d = self.desired.clone();
        match step {
            Step::StartSeed { ordinal, version } => {
                self.observed.runtime.retain(|r| r.ordinal != *ordinal);
                self.observed.runtime.push(RuntimeMember {
                    config_hash: d.config_hash.clone(),
                    ..runtime(*ordinal, *version)
                });
                self.observed.etcd = Some(Membership {
                    members: vec![voter(&d, *ordinal, *version)],
                    leader: Some(id_of(*ordinal)),
                    ..Membership::default()
                });
            }
            Step::AddLearner { peer_url, .. } => {
                let id = self.next_id;
                self.next_id += 1;
                self.members().push(EtcdMember {
                    id,
                    name: String::new(),
                    peer_urls: vec![peer_url.clone()],
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
                if let Some(Intent::AddLearner { member_id, .. }) = &mut self.observed.intent {
                    *member_id = Some(id);
                }
            }
            Step::StartMember {
                ordinal,
                member_id,
                version,
            } => {
                let index = self.leader_index();
                self.observed.runtime.retain(|r| r.ordinal != *ordinal);
                self.observed.runtime.push(RuntimeMember {
                    config_hash: d.config_hash.clone(),
                    ..runtime(*ordinal, *version)
                });
                let m = self
                    .members()
                    .iter_mut()
                    .find(|m| m.id == *member_id)
                    .expect("started member exists");
                m.name = d.member_name(*ordinal);
                m.started = true;
                m.healthy = true;
                m.version = Some(*version);
                m.raft_index = index;
            }
            Step::PromoteLearner { member_id } => {
                let m = self
                    .members()
                    .iter_mut()
                    .find(|m| m.id == *member_id)
                    .expect("learner exists");
                m.is_learner = false;
            }
            Step::MoveLeader { to, .. } => {
                self.observed.etcd.as_mut().expect("etcd").leader = Some(*to);
            }
            Step::RemoveMember { member_id, .. } => {
                self.members().retain(|m| m.id != *member_id);
            }
            Step::DeleteMember { ordinal } => {
                self.observed.runtime.retain(|r| r.ordinal != *ordinal);
            }
            Step::StartStopped { ordinal, .. } => {
                let rt = self
                    .observed
                    .runtime
                    .iter_mut()
                    .find(|r| r.ordinal == *ordinal)
                    .expect("stopped runtime member");
                rt.running = true;
            }
            Step::RestartMember { ordinal, version } => {
                let rt = self
                    .observed
                    .runtime
                    .iter_mut()
                    .find(|r| r.ordinal == *ordinal)
                    .expect("runtime member");
                rt.version = *version;
                rt.config_hash = d.config_hash.clone();
                let id = self
                    .members()
                    .iter_mut()
                    .find(|m| m.name == d.member_name(*ordinal))
                    .map(|m| {
                        m.version = Some(*version);
                        m.id
                    })
                    .expect("restarted member");
                let etcd = self.observed.etcd.as_mut().expect("etcd");
                if etcd.members.len() > 1 {
                    assert_ne!(etcd.leader, Some(id), "the leader is never restarted here");
                }
            }
            Step::ClearIntent => self.observed.intent = None,
            Step::Compact { .. } => {
                self.observed.etcd.as_mut().expect("etcd").compacted = Some(true);
            }
            Step::Defragment { member_id, .. } => {
                let revision = self.observed.etcd.as_ref().map_or(0, |e| e.revision);
                let m = self
                    .members()
                    .iter_mut()
                    .find(|m| m.id == *member_id)
                    .expect("defragmented member");
                m.db_size = m.db_size_in_use;
                m.defragmented_at = Some(revision);
            }
            Step::DisarmAlarm { member_id, alarm } => {
                let m = self
                    .members()
                    .iter_mut()
                    .find(|m| m.id == *member_id)
                    .expect("disarmed member");
                m.alarms.retain(|a| a != alarm);
            }
            Step::Snapshot { .. } => self.observed.last_snapshot = self.observed.now,
            Step::VerifySnapshot { .. } => self.observed.unverified_snapshot = None,
            Step::RestoreCluster { .. } => panic!("no restore in these simulations"),
            Step::AdvanceRaftLog { entries } => {
                for m in self.members().iter_mut() {
                    m.raft_index += entries;
                }
            }
        }
    }

    /// Plan and apply until no step is left; check the invariants on every pass.
    fn run(&mut self) -> (Vec<Step>, Plan) {
        let mut steps = Vec::new();
        for _ in 0..100 {
            let p = plan(&self.desired, &self.observed);
            check_invariants(&self.desired, &self.observed, &p);
            match p.next.clone() {
                Some(step) => {
                    self.apply(&step);
                    steps.push(step);
                }
                None => return (steps, p),
            }
        }
        panic!("no convergence after 100 steps: {steps:?}");
    }
}

/// Compact names of steps, for readable expectations.
fn names(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::StartSeed { ordinal, .. } => format!("seed{ordinal}"),
            Step::AddLearner { ordinal, .. } => format!("add{ordinal}"),
            Step::StartMember { ordinal, .. } => format!("start{ordinal}"),
            Step::PromoteLearner { member_id } => format!("promote:{member_id:x}"),
            Step::MoveLeader { from, to } => format!("move:{from:x}>{to:x}"),
            Step::RemoveMember { ordinal, .. } => format!("remove{ordinal}"),
            Step::DeleteMember { ordinal } => format!("delete{ordinal}"),
            Step::StartStopped { ordinal, .. } => format!("resume{ordinal}"),
            Step::RestartMember { ordinal, version } => format!("restart{ordinal}@{version}"),
            Step::ClearIntent => "clear".to_owned(),
            Step::Compact { revision } => format!("compact@{revision}"),
            Step::Defragment { ordinal, .. } => format!("defrag{ordinal}"),
            Step::DisarmAlarm { member_id, .. } => format!("disarm:{member_id:x}"),
            Step::Snapshot { ordinal, .. } => format!("snapshot{ordinal}"),
            Step::RestoreCluster { members, .. } => format!("restore{members}"),
            Step::AdvanceRaftLog { entries } => format!("advance{entries}"),
            Step::VerifySnapshot { snapshot } => format!("verify#{}", snapshot.sequence),
        })
        .collect()
}

fn add_sequence(ordinal: u32, id: u64) -> Vec<String> {
    vec![
        format!("add{ordinal}"),
        format!("start{ordinal}"),
        "clear".to_owned(),
        format!("promote:{id:x}"),
    ]
}

#[test]
fn bootstrap_one_member() {
    let mut sim = Sim::new(desired(1, "3.5.16"), Observed::default());
    let (steps, last) = sim.run();
    assert_eq!(
        steps,
        vec![Step::StartSeed {
            ordinal: 0,
            version: v("3.5.16")
        }]
    );
    assert_eq!(last.status.phase, Phase::Healthy);
    assert_eq!((last.status.ready, last.status.desired), (1, 1));
}

#[test]
fn bootstrap_three_members_seed_then_learners() {
    let first = plan(&desired(3, "3.5.16"), &Observed::default());
    assert_eq!(first.status.phase, Phase::Bootstrapping);
    let mut sim = Sim::new(desired(3, "3.5.16"), Observed::default());
    let (steps, last) = sim.run();
    let mut expected = vec!["seed0".to_owned()];
    expected.extend(add_sequence(1, 0x9000));
    expected.extend(add_sequence(2, 0x9001));
    assert_eq!(names(&steps), expected);
    assert_eq!(last.status.phase, Phase::Healthy);
    assert_eq!(last.status.ready, 3);
}

#[test]
fn seed_started_but_not_answering_waits() {
    let d = desired(3, "3.5.16");
    let observed = Observed {
        runtime: vec![runtime(0, v("3.5.16"))],
        ..Observed::default()
    };
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Bootstrapping);
}

/// (name, runtime members, intent, expected step, expected phase).
type SeedCase = (
    &'static str,
    Vec<RuntimeMember>,
    Option<Intent>,
    Option<Step>,
    Phase,
);

/// The seed's Pod or process went away before the cluster ever answered, its storage stays:
/// only a seed whose storage holds no member data starts again, and only alone.
#[test]
fn seed_gone_before_answering_table() {
    let d = desired(3, "3.5.16");
    let seed = |running: bool, data: DataState| RuntimeMember {
        running,
        data,
        ..runtime(0, v("3.5.16"))
    };
    let start = Some(Step::StartSeed {
        ordinal: 0,
        version: v("3.5.16"),
    });
    let cases: Vec<SeedCase> = vec![
        (
            "stopped, empty storage: started again",
            vec![seed(false, DataState::Empty)],
            None,
            start.clone(),
            Phase::Bootstrapping,
        ),
        (
            "running, empty storage: waits for it",
            vec![seed(true, DataState::Empty)],
            None,
            None,
            Phase::Bootstrapping,
        ),
        (
            "running with data: waits for it",
            vec![seed(true, DataState::Present)],
            None,
            None,
            Phase::Bootstrapping,
        ),
        (
            "stopped, storage may hold data: never bootstrapped again, started with its data",
            vec![seed(false, DataState::Present)],
            None,
            Some(Step::StartStopped {
                ordinal: 0,
                version: v("3.5.16"),
            }),
            Phase::Unavailable,
        ),
        (
            "storage lost: never bootstrapped again",
            vec![seed(false, DataState::Lost)],
            None,
            None,
            Phase::Unavailable,
        ),
        (
            "another member exists",
            vec![seed(false, DataState::Empty), runtime(1, v("3.5.16"))],
            None,
            None,
            Phase::Unavailable,
        ),
        (
            "a step in flight",
            vec![seed(false, DataState::Empty)],
            Some(Intent::AddLearner {
                ordinal: 1,
                peer_url: d.peer_url(1),
                member_id: None,
            }),
            None,
            Phase::Unavailable,
        ),
    ];
    for (name, runtime, intent, next, phase) in cases {
        let observed = Observed {
            etcd: None,
            runtime,
            intent,
            ..Observed::default()
        };
        let p = plan(&d, &observed);
        assert_eq!(p.next, next, "{name}: {p:?}");
        assert_eq!(p.status.phase, phase, "{name}: {p:?}");
        check_invariants(&d, &observed, &p);
    }
    // Started again, the seed bootstraps and the cluster grows as usual.
    let observed = Observed {
        runtime: vec![seed(false, DataState::Empty)],
        ..Observed::default()
    };
    let (steps, last) = Sim::new(d.clone(), observed).run();
    assert_eq!(names(&steps).first().map(String::as_str), Some("seed0"));
    assert_eq!(last.status.phase, Phase::Healthy);
    assert_eq!(last.status.ready, 3);
    // While etcd answers, empty storage counts as present: a stopped voter is started again.
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime[1].running = false;
    observed.runtime[1].data = DataState::Empty;
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::StartMember {
            ordinal: 1,
            member_id: id_of(1),
            version: v("3.5.16"),
        })
    );
}

#[test]
fn unreachable_with_members_never_bootstraps() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.etcd = None;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Unavailable);
}

/// (name, runtime members as (ordinal, running, data), intent, ordinals started in order).
type RecoveryCase = (
    &'static str,
    Vec<(u32, bool, DataState)>,
    Option<Intent>,
    Vec<u32>,
);

/// etcd is unreachable and runtime members are stopped (every Pod deleted, a power loss): each
/// stopped member whose storage holds data starts again, one per pass without waiting for it to
/// answer; never one whose data is lost or empty, never the member of a step in flight, and
/// never a seed over data.
#[test]
fn unreachable_stopped_members_with_data_start_again_table() {
    use DataState::{Empty, Lost, Present};
    let d = desired(3, "3.5.16");
    let add = |o: u32| {
        Some(Intent::AddLearner {
            ordinal: o,
            peer_url: d.peer_url(o),
            member_id: None,
        })
    };
    let remove = |o: u32| {
        Some(Intent::RemoveMember {
            ordinal: o,
            member_id: id_of(o),
        })
    };
    let cases: Vec<RecoveryCase> = vec![
        (
            "all stopped with data",
            vec![
                (0, false, Present),
                (1, false, Present),
                (2, false, Present),
            ],
            None,
            vec![0, 1, 2],
        ),
        (
            "some still running",
            vec![(0, true, Present), (1, false, Present), (2, true, Present)],
            None,
            vec![1],
        ),
        (
            "more members than desired: all of them count for quorum",
            vec![
                (0, false, Present),
                (1, false, Present),
                (2, false, Present),
                (3, false, Present),
                (4, false, Present),
            ],
            None,
            vec![0, 1, 2, 3, 4],
        ),
        (
            "lost and empty storage are not started",
            vec![(0, false, Lost), (1, false, Empty), (2, false, Present)],
            None,
            vec![2],
        ),
        (
            "a learner being added has no data: not started",
            vec![
                (0, false, Present),
                (1, false, Present),
                (2, false, Present),
            ],
            add(2),
            vec![0, 1],
        ),
        (
            "a learner being added whose runtime member is not there yet",
            vec![(0, false, Present), (1, false, Present)],
            add(2),
            vec![0, 1],
        ),
        (
            "a member being removed does not come back",
            vec![
                (0, false, Present),
                (1, false, Present),
                (2, false, Present),
            ],
            remove(2),
            vec![0, 1],
        ),
        (
            "a stopped seed without data next to a member with data: no bootstrap",
            vec![(0, false, Empty), (1, false, Present)],
            None,
            vec![1],
        ),
        (
            "a lone seed with data starts again, never as a new cluster",
            vec![(0, false, Present)],
            None,
            vec![0],
        ),
        (
            "everything lost: nothing to start, no bootstrap",
            vec![(0, false, Lost), (1, false, Lost)],
            None,
            vec![],
        ),
        (
            "everything running: wait for it to answer",
            vec![(0, true, Present), (1, true, Present), (2, true, Present)],
            None,
            vec![],
        ),
    ];
    for (name, members, intent, expected) in cases {
        let mut observed = Observed {
            etcd: None,
            runtime: members
                .iter()
                .map(|(o, running, data)| RuntimeMember {
                    running: *running,
                    data: *data,
                    ..runtime(*o, v("3.5.15"))
                })
                .collect(),
            intent,
            ..Observed::default()
        };
        let mut started = Vec::new();
        let last = loop {
            let p = plan(&d, &observed);
            check_invariants(&d, &observed, &p);
            match p.next {
                None => break p,
                Some(Step::StartStopped { ordinal, version }) => {
                    assert_eq!(p.status.phase, Phase::Unavailable, "{name}: {p:?}");
                    // It starts on the version its data was written with, not the desired one.
                    assert_eq!(version, v("3.5.15"), "{name}");
                    assert!(started.len() <= members.len(), "{name}: loops: {started:?}");
                    started.push(ordinal);
                    // Started, not answering yet: the next pass starts the next one.
                    let r = observed
                        .runtime
                        .iter_mut()
                        .find(|r| r.ordinal == ordinal)
                        .expect("started member exists");
                    r.running = true;
                }
                Some(other) => panic!("{name}: unexpected step {other:?}"),
            }
        };
        assert_eq!(started, expected, "{name}: {last:?}");
    }
}

/// After every member was stopped, the members start again one after another and, once etcd
/// answers, the cluster is healthy with the same member IDs (no bootstrap, no replacement).
#[test]
fn whole_cluster_recovers_after_every_member_stopped() {
    let d = desired(3, "3.5.16");
    let healthy = cluster(&d, &[0, 1, 2], "3.5.16", 1);
    let mut observed = healthy.clone();
    observed.etcd = None;
    for r in &mut observed.runtime {
        r.running = false;
    }
    let mut sim = Sim::new(d.clone(), observed);
    let (steps, last) = sim.run();
    assert_eq!(names(&steps), ["resume0", "resume1", "resume2"]);
    assert_eq!(last.status.phase, Phase::Unavailable);
    // etcd answers again with its old membership.
    sim.observed.etcd = healthy.etcd.clone();
    let (steps, last) = sim.run();
    assert!(steps.is_empty(), "{steps:?}");
    assert_eq!(last.status.phase, Phase::Healthy);
    assert_eq!(sim.observed, healthy);
}

#[test]
fn scale_three_to_five() {
    let d = desired(5, "3.5.16");
    let observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    let first = plan(&d, &observed);
    assert_eq!(
        first.next,
        Some(Step::AddLearner {
            ordinal: 3,
            peer_url: "http://demo-3.demo:2380".to_owned()
        })
    );
    assert_eq!(first.status.phase, Phase::Scaling);
    let (steps, last) = Sim::new(d, observed).run();
    let mut expected = add_sequence(3, 0x9000);
    expected.extend(add_sequence(4, 0x9001));
    assert_eq!(names(&steps), expected);
    assert_eq!(last.status.phase, Phase::Healthy);
    assert_eq!(last.status.ready, 5);
}

#[test]
fn learner_is_promoted_only_when_caught_up() {
    let d = desired(4, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2, 3], "3.5.16", 0);
    let members = &mut observed.etcd.as_mut().expect("etcd").members;
    members[3].is_learner = true;
    members[3].raft_index = 899;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Scaling);
    observed.etcd.as_mut().expect("etcd").members[3].raft_index = 900;
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::PromoteLearner {
            member_id: id_of(3)
        })
    );
    // An unhealthy learner waits however far it got.
    observed.etcd.as_mut().expect("etcd").members[3].healthy = false;
    assert_eq!(plan(&d, &observed).next, None);
}

#[test]
fn scale_five_to_three_leader_not_a_candidate() {
    let d = desired(3, "3.5.16");
    let observed = cluster(&d, &[0, 1, 2, 3, 4], "3.5.16", 0);
    let (steps, last) = Sim::new(d, observed).run();
    assert_eq!(
        names(&steps),
        ["remove4", "delete4", "clear", "remove3", "delete3", "clear"]
    );
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn scale_five_to_three_leader_is_highest() {
    let d = desired(3, "3.5.16");
    let observed = cluster(&d, &[0, 1, 2, 3, 4], "3.5.16", 4);
    let (steps, last) = Sim::new(d, observed).run();
    let mv = format!("move:{:x}>{:x}", id_of(4), id_of(0));
    assert_eq!(
        names(&steps),
        [
            "remove3", "delete3", "clear", &mv, "remove4", "delete4", "clear"
        ]
    );
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn scale_down_waits_when_it_would_lose_quorum() {
    let d = desired(1, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.etcd.as_mut().expect("etcd").members[1].healthy = false;
    // Removing 2 leaves {0 healthy, 1 unhealthy}: 1 of 2 is no majority.
    let p = plan(&d, &observed);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Degraded);
}

#[test]
fn failed_member_is_replaced() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.etcd.as_mut().expect("etcd").members[2].healthy = false;
    observed.runtime[2].failures = 4;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None, "below the threshold: wait");
    assert_eq!(p.status.phase, Phase::Degraded);
    observed.runtime[2].failures = 5;
    let (steps, last) = Sim::new(d, observed).run();
    let mut expected = vec![
        "remove2".to_owned(),
        "delete2".to_owned(),
        "clear".to_owned(),
    ];
    expected.extend(add_sequence(2, 0x9000));
    assert_eq!(names(&steps), expected);
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn member_with_lost_data_is_replaced() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime[1].data = DataState::Lost;
    let first = plan(&d, &observed);
    assert_eq!(first.status.phase, Phase::Replacing);
    let (steps, last) = Sim::new(d, observed).run();
    let mut expected = vec![
        "remove1".to_owned(),
        "delete1".to_owned(),
        "clear".to_owned(),
    ];
    expected.extend(add_sequence(1, 0x9000));
    assert_eq!(names(&steps), expected);
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn replace_waits_without_quorum() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime[1].data = DataState::Lost;
    observed.etcd.as_mut().expect("etcd").members[1].healthy = false;
    observed.etcd.as_mut().expect("etcd").members[2].healthy = false;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Degraded);
}

#[test]
fn single_member_with_lost_data_is_not_removed() {
    let d = desired(1, "3.5.16");
    let mut observed = cluster(&d, &[0], "3.5.16", 0);
    observed.runtime[0].data = DataState::Lost;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Degraded);
}

#[test]
fn stopped_member_with_data_is_started_again() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime[1].running = false;
    observed.etcd.as_mut().expect("etcd").members[1].healthy = false;
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::StartMember {
            ordinal: 1,
            member_id: id_of(1),
            version: v("3.5.16")
        })
    );
}

#[test]
fn upgrade_followers_first_then_leader() {
    let d = desired(3, "3.5.16");
    let observed = cluster(&d, &[0, 1, 2], "3.4.23", 0);
    let first = plan(&d, &observed);
    assert_eq!(first.status.phase, Phase::Upgrading);
    let (steps, last) = Sim::new(d, observed).run();
    let mv = format!("move:{:x}>{:x}", id_of(0), id_of(1));
    assert_eq!(
        names(&steps),
        ["restart2@3.5.16", "restart1@3.5.16", &mv, "restart0@3.5.16"]
    );
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn config_change_rolls_like_an_upgrade() {
    let mut d = desired(3, "3.5.16");
    let observed = cluster(&d, &[0, 1, 2], "3.5.16", 2);
    d.config_hash = "cfg-2".to_owned();
    let (steps, _) = Sim::new(d, observed).run();
    let mv = format!("move:{:x}>{:x}", id_of(2), id_of(0));
    assert_eq!(
        names(&steps),
        ["restart1@3.5.16", "restart0@3.5.16", &mv, "restart2@3.5.16"]
    );
}

#[test]
fn upgrade_waits_for_every_member_to_be_healthy() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.4.23", 0);
    observed.etcd.as_mut().expect("etcd").members[1].healthy = false;
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Degraded);
}

#[test]
fn single_member_cluster_may_restart() {
    let d = desired(1, "3.5.16");
    let observed = cluster(&d, &[0], "3.4.23", 0);
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::RestartMember {
            ordinal: 0,
            version: v("3.5.16")
        })
    );
}

#[test]
fn downgrade_is_refused() {
    let d = desired(3, "3.4.23");
    let observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Degraded);
    assert!(
        p.status.message.contains("downgrade"),
        "{}",
        p.status.message
    );
    let d = desired(3, "3.5.15");
    let p = plan(&d, &observed);
    assert_eq!((p.next, p.status.phase), (None, Phase::Degraded));
}

#[test]
fn two_minor_jump_is_refused() {
    let d = desired(3, "3.6.0");
    let observed = cluster(&d, &[0, 1, 2], "3.4.23", 0);
    let p = plan(&d, &observed);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Degraded);
    assert!(p.status.message.contains("minor"), "{}", p.status.message);
}

#[test]
fn mixed_versions_refuse_a_target_two_minors_above_the_oldest() {
    let d = desired(3, "3.6.0");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime[0].version = v("3.4.23");
    observed.etcd.as_mut().expect("etcd").members[0].version = Some(v("3.4.23"));
    assert_eq!(plan(&d, &observed).next, None);
}

#[test]
fn paused_reports_only() {
    let mut d = desired(5, "3.5.16");
    d.paused = true;
    let p = plan(&d, &cluster(&d, &[0, 1, 2], "3.4.23", 0));
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Paused);
    assert_eq!((p.status.ready, p.status.desired), (3, 5));
    assert_eq!(plan(&d, &Observed::default()).next, None);
}

#[test]
fn intent_add_learner_resumes_with_start_member() {
    let d = desired(4, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed
        .etcd
        .as_mut()
        .expect("etcd")
        .members
        .push(EtcdMember {
            id: 0x77,
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
    observed.intent = Some(Intent::AddLearner {
        ordinal: 3,
        peer_url: d.peer_url(3),
        member_id: None,
    });
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::StartMember {
            ordinal: 3,
            member_id: 0x77,
            version: v("3.5.16")
        })
    );
    // The runtime member exists: the intent is done.
    observed.runtime.push(runtime(3, v("3.5.16")));
    assert_eq!(plan(&d, &observed).next, Some(Step::ClearIntent));
}

#[test]
fn intent_add_learner_without_member_is_cleared_then_reissued() {
    let d = desired(4, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.intent = Some(Intent::AddLearner {
        ordinal: 3,
        peer_url: d.peer_url(3),
        member_id: None,
    });
    assert_eq!(plan(&d, &observed).next, Some(Step::ClearIntent));
    observed.intent = None;
    assert!(matches!(
        plan(&d, &observed).next,
        Some(Step::AddLearner { ordinal: 3, .. })
    ));
}

#[test]
fn intent_remove_member_resumes() {
    let d = desired(2, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.intent = Some(Intent::RemoveMember {
        ordinal: 2,
        member_id: id_of(2),
    });
    // Still a member: remove it again.
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::RemoveMember {
            member_id: id_of(2),
            ordinal: 2
        })
    );
    // Removed from etcd, runtime member left: delete it.
    observed.etcd.as_mut().expect("etcd").members.pop();
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::DeleteMember { ordinal: 2 })
    );
    observed.runtime.pop();
    assert_eq!(plan(&d, &observed).next, Some(Step::ClearIntent));
}

#[test]
fn intent_waits_while_etcd_is_unreachable() {
    let d = desired(3, "3.5.16");
    let observed = Observed {
        etcd: None,
        runtime: vec![],
        intent: Some(Intent::AddLearner {
            ordinal: 1,
            peer_url: d.peer_url(1),
            member_id: None,
        }),
        ..Observed::default()
    };
    assert_eq!(plan(&d, &observed).next, None);
}

#[test]
fn orphan_runtime_member_is_deleted() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.runtime.push(runtime(5, v("3.5.16")));
    assert_eq!(
        plan(&d, &observed).next,
        Some(Step::DeleteMember { ordinal: 5 })
    );
}

#[test]
fn stranger_member_is_reported_not_touched() {
    let d = desired(3, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    let mut stranger = voter(&d, 7, v("3.5.16"));
    stranger.name = "someone-else".to_owned();
    stranger.id = 0x55;
    observed.etcd.as_mut().expect("etcd").members.push(stranger);
    let p = plan(&d, &observed);
    assert_eq!((p.next, p.status.phase), (None, Phase::Degraded));
}

#[test]
fn nospace_alarm_blocks_adding_members() {
    let d = desired(5, "3.5.16");
    let mut observed = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    observed.etcd.as_mut().expect("etcd").members[0]
        .alarms
        .push(Alarm::NoSpace);
    assert_eq!(plan(&d, &observed).next, None);
}

#[test]
fn names_urls_and_versions() {
    let mut d = desired(3, "3.5.16");
    assert_eq!(d.member_name(2), "demo-2");
    assert_eq!(d.ordinal_of("demo-2"), Some(2));
    assert_eq!(d.ordinal_of("demo-02"), None);
    assert_eq!(d.ordinal_of("demo2"), None);
    assert_eq!(d.ordinal_of("demox-2"), None);
    d.peer_url_template = "http://127.0.0.1:{port:12380}/{ordinal}/{x}".to_owned();
    assert_eq!(d.peer_url(3), "http://127.0.0.1:12383/3/{x}");
    assert_eq!(
        d.ordinal_of_peer_url("http://127.0.0.1:12383/3/{x}"),
        Some(3)
    );
    assert_eq!(v("v3.5.16"), Version::new(3, 5, 16));
    assert!("3.5".parse::<Version>().is_err());
    assert!("3.5.1.2".parse::<Version>().is_err());
    assert!("3.5.x".parse::<Version>().is_err());
    assert!("3.5.16-rc.0".parse::<Version>().is_err());
    assert!(v("3.4.1").check_upgrade(v("3.5.0")).is_ok());
    assert!(v("3.4.1").check_upgrade(v("3.6.0")).is_err());
    assert!(v("3.5.1").check_upgrade(v("3.5.0")).is_err());
    assert!(v("3.5.1").check_upgrade(v("4.0.0")).is_err());
    assert!(v("3.5.25").check_upgrade(v("3.6.0")).is_err());
    assert!(v("3.5.26").check_upgrade(v("3.6.0")).is_ok());
    assert!(v("3.6.10").check_upgrade(v("3.7.3")).is_err());
    assert!(v("3.6.11").check_upgrade(v("3.7.3")).is_ok());
    assert!(etcd_operator::controller::plan::caught_up(90, 100));
    assert!(!etcd_operator::controller::plan::caught_up(89, 100));
    assert!(etcd_operator::controller::plan::caught_up(0, 0));
}

// ---------------------------------------------------------------------------------------------
// Invariants, checked with oracles written here independently of the planner's helpers
// ---------------------------------------------------------------------------------------------

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn is_healthy(m: &EtcdMember) -> bool {
    m.started && m.healthy && !m.alarms.contains(&Alarm::Corrupt)
}

fn caught_up(learner: u64, leader: u64) -> bool {
    u128::from(learner) * 10 >= u128::from(leader) * 9
}

/// The patch floors of etcd's upgrade guides, written out here independently of the
/// operator's table: every 3.5 member on 3.5.26 or later before 3.6, every 3.6 member on 3.6.11
/// or later before 3.7.
fn guide_floor(major: u64, minor: u64) -> u64 {
    match (major, minor) {
        (3, 5) => 26,
        (3, 6) => 11,
        _ => 0,
    }
}

/// One allowed version move: same major, never down, at most one minor up, and a minor step
/// only from the guide's patch floor or above.
fn version_step_ok(from: Version, to: Version) -> bool {
    (to.major, to.minor, to.patch) >= (from.major, from.minor, from.patch)
        && to.major == from.major
        && to.minor <= from.minor + 1
        && (to.minor == from.minor || from.patch >= guide_floor(from.major, from.minor))
}

/// Checks one plan against the invariants; panics with the state on a violation.
fn check_invariants(d: &Desired, o: &Observed, p: &Plan) {
    let ctx = || format!("\ndesired: {d:?}\nobserved: {o:#?}\nplan: {p:?}");
    // Deterministic.
    assert_eq!(&plan(d, o), p, "not deterministic{}", ctx());
    let Some(step) = &p.next else {
        return;
    };
    assert!(!d.paused, "a step while paused{}", ctx());
    let membership = o.etcd.as_ref().filter(|m| !m.members.is_empty());
    let Some(m) = membership else {
        match step {
            Step::StartSeed {
                ordinal: 0,
                version,
            } if *version == d.version => {
                // Nothing exists, or only a stopped seed whose storage never held member data.
                let fresh_seed = matches!(o.runtime.as_slice(),
                    [r] if r.ordinal == 0 && !r.running && r.data == DataState::Empty);
                assert!(
                    (o.runtime.is_empty() || fresh_seed) && o.intent.is_none(),
                    "bootstrap over existing members{}",
                    ctx()
                );
                assert!(
                    o.runtime.iter().all(|r| r.data != DataState::Present),
                    "bootstrap over member data{}",
                    ctx()
                );
            }
            Step::StartStopped { ordinal, version } => {
                let r = o
                    .runtime
                    .iter()
                    .find(|r| r.ordinal == *ordinal)
                    .expect("a stopped member exists");
                assert!(
                    !r.running && r.data == DataState::Present,
                    "only a stopped member with data starts again{}",
                    ctx()
                );
                assert_eq!(*version, r.version, "data restarts on its version{}", ctx());
                let in_flight = o.intent.as_ref().map(|i| match i {
                    Intent::AddLearner { ordinal, .. } | Intent::RemoveMember { ordinal, .. } => {
                        *ordinal
                    }
                });
                assert_ne!(
                    in_flight,
                    Some(*ordinal),
                    "the member of the step in flight started{}",
                    ctx()
                );
            }
            Step::RestoreCluster { members, .. } => {
                assert!(
                    o.runtime.is_empty() && o.intent.is_none(),
                    "restore over existing members{}",
                    ctx()
                );
                assert_eq!(*members, d.replicas, "{}", ctx());
                assert!(
                    matches!(d.bootstrap, Bootstrap::Restore { .. }),
                    "restore not asked for{}",
                    ctx()
                );
            }
            _ => panic!(
                "only a seed or a stopped member with data may start while etcd is \
                 unreachable{}",
                ctx()
            ),
        }
        return;
    };
    assert!(
        !matches!(step, Step::StartSeed { .. } | Step::StartStopped { .. }),
        "seed or unreachable-only restart into a live cluster{}",
        ctx()
    );
    let ordinal_of = |member: &EtcdMember| {
        if member.name.is_empty() {
            member
                .peer_urls
                .iter()
                .find_map(|u| d.ordinal_of_peer_url(u))
        } else {
            d.ordinal_of(&member.name)
        }
    };
    let voters: Vec<&EtcdMember> = m.members.iter().filter(|x| !x.is_learner).collect();
    let learners = m.members.len() - voters.len();
    let healthy = voters.iter().filter(|x| is_healthy(x)).count();
    let leader = voters.iter().find(|x| Some(x.id) == m.leader).copied();
    let by_id = |id: u64| m.members.iter().find(|x| x.id == id);
    let at_ordinal = |ord: u32| m.members.iter().find(|x| ordinal_of(x) == Some(ord));
    let rt = |ord: u32| o.runtime.iter().find(|r| r.ordinal == ord);
    let oldest = m
        .members
        .iter()
        .filter_map(|x| ordinal_of(x).and_then(rt))
        .map(|r| r.version)
        .min();
    let other_healthy_voter = |id: u64| voters.iter().any(|x| x.id != id && is_healthy(x));

    // One membership change at a time: with an intent in flight, only its own follow-ups.
    if let Some(intent) = &o.intent {
        match (intent, step) {
            (_, Step::ClearIntent | Step::MoveLeader { .. }) => {}
            (Intent::AddLearner { ordinal, .. }, Step::StartMember { ordinal: s, .. }) => {
                assert_eq!(ordinal, s, "{}", ctx())
            }
            (Intent::RemoveMember { member_id, .. }, Step::RemoveMember { member_id: s, .. }) => {
                assert_eq!(member_id, s, "{}", ctx())
            }
            (Intent::RemoveMember { ordinal, .. }, Step::DeleteMember { ordinal: s }) => {
                assert_eq!(ordinal, s, "{}", ctx())
            }
            _ => panic!("step unrelated to the intent in flight{}", ctx()),
        }
    } else {
        assert_ne!(step, &Step::ClearIntent, "{}", ctx());
    }

    match step {
        Step::StartSeed { .. } | Step::StartStopped { .. } | Step::ClearIntent => {}
        Step::AddLearner { ordinal, peer_url } => {
            assert_eq!(learners, 0, "a second learner{}", ctx());
            assert!(o.intent.is_none(), "{}", ctx());
            assert!(
                !voters.is_empty() && healthy == voters.len(),
                "add to an unhealthy cluster{}",
                ctx()
            );
            assert!(leader.is_some(), "add without a leader{}", ctx());
            assert!(at_ordinal(*ordinal).is_none(), "ordinal taken{}", ctx());
            assert!(*ordinal < d.replicas, "{}", ctx());
            assert_eq!(peer_url, &d.peer_url(*ordinal), "{}", ctx());
        }
        Step::StartMember {
            ordinal,
            member_id,
            version,
        } => {
            let member = by_id(*member_id).expect("started member is known");
            assert_eq!(ordinal_of(member), Some(*ordinal), "{}", ctx());
            match rt(*ordinal) {
                Some(r) => {
                    assert_eq!(
                        *version,
                        r.version,
                        "existing data restarts on its version{}",
                        ctx()
                    );
                    assert_ne!(r.data, DataState::Lost, "{}", ctx());
                    assert!(!r.running, "{}", ctx());
                }
                None => {
                    assert!(
                        member.is_learner && !member.started,
                        "fresh start of a voter{}",
                        ctx()
                    );
                    if let Some(oldest) = oldest {
                        assert!(
                            version_step_ok(oldest, *version),
                            "new member skew{}",
                            ctx()
                        );
                    }
                }
            }
        }
        Step::PromoteLearner { member_id } => {
            let member = by_id(*member_id).expect("promoted member is known");
            assert!(member.is_learner && is_healthy(member), "{}", ctx());
            let leader = leader.expect("promotion needs a leader");
            assert!(caught_up(member.raft_index, leader.raft_index), "{}", ctx());
            assert!(
                healthy + 1 >= quorum(voters.len() + 1),
                "promotion loses quorum{}",
                ctx()
            );
        }
        Step::MoveLeader { from, to } => {
            assert_eq!(Some(*from), leader.map(|l| l.id), "{}", ctx());
            let target = by_id(*to).expect("new leader is known");
            assert!(
                !target.is_learner && is_healthy(target) && to != from,
                "{}",
                ctx()
            );
        }
        Step::RemoveMember { member_id, ordinal } => {
            let member = by_id(*member_id).expect("removed member is known");
            assert_eq!(ordinal_of(member), Some(*ordinal), "{}", ctx());
            if !member.is_learner {
                let remaining = voters.len() - 1;
                let healthy_left = healthy - usize::from(is_healthy(member));
                assert!(
                    remaining > 0 && healthy_left >= quorum(remaining),
                    "removal loses quorum{}",
                    ctx()
                );
                if leader.is_some_and(|l| l.id == *member_id) {
                    assert!(!other_healthy_voter(*member_id), "leader removed{}", ctx());
                }
            }
        }
        Step::DeleteMember { ordinal } => {
            assert!(
                at_ordinal(*ordinal).is_none(),
                "deleting a live member{}",
                ctx()
            );
            assert!(rt(*ordinal).is_some(), "{}", ctx());
        }
        Step::RestartMember { ordinal, version } => {
            let member = at_ordinal(*ordinal).expect("restarted member is known");
            assert!(!member.is_learner, "{}", ctx());
            assert_eq!(learners, 0, "restart during a membership change{}", ctx());
            assert_eq!(
                healthy,
                voters.len(),
                "restart while a member is unhealthy{}",
                ctx()
            );
            let others = healthy - usize::from(is_healthy(member));
            assert!(
                others >= quorum(voters.len()) || (voters.len() == 1 && d.replicas == 1),
                "restart loses quorum{}",
                ctx()
            );
            if leader.is_some_and(|l| l.id == member.id) {
                assert!(!other_healthy_voter(member.id), "leader restarted{}", ctx());
            }
            assert_eq!(*version, d.version, "{}", ctx());
            // Never down, at most one minor step, for this member and for the whole cluster.
            for r in &o.runtime {
                assert!(
                    version_step_ok(r.version, *version),
                    "version skew{}",
                    ctx()
                );
            }
        }
        Step::Compact { .. }
        | Step::Defragment { .. }
        | Step::DisarmAlarm { .. }
        | Step::Snapshot { .. } => {
            check_maintenance(d, o, m, step, &ctx);
        }
        Step::VerifySnapshot { .. } => {
            let schedule = d
                .backup
                .as_ref()
                .expect("a verification without a schedule");
            assert!(
                schedule.verify_every_nth > 0,
                "verification while off{}",
                ctx()
            );
            assert!(
                o.intent.is_none(),
                "verification with a step in flight{}",
                ctx()
            );
        }
        Step::RestoreCluster { .. } => panic!("restore into a live cluster{}", ctx()),
        Step::AdvanceRaftLog { entries } => {
            assert!(*entries > 0, "an empty advance{}", ctx());
            assert!(o.intent.is_none(), "advance with a step in flight{}", ctx());
            assert!(
                healthy == voters.len() && leader.is_some(),
                "advance on an unhealthy cluster{}",
                ctx()
            );
        }
    }
}

/// Maintenance runs only on a healthy, settled cluster, never blocks a quorum, defragments
/// the leader last, and disarms NOSPACE only once every database fits.
fn check_maintenance(
    d: &Desired,
    o: &Observed,
    m: &Membership,
    step: &Step,
    ctx: &dyn Fn() -> String,
) {
    let voters: Vec<&EtcdMember> = m.members.iter().filter(|x| !x.is_learner).collect();
    assert!(
        o.intent.is_none(),
        "maintenance with a step in flight{}",
        ctx()
    );
    assert_eq!(
        voters.len(),
        m.members.len(),
        "maintenance with a learner{}",
        ctx()
    );
    assert!(
        voters.iter().all(|x| is_healthy(x)),
        "maintenance while a member is unhealthy{}",
        ctx()
    );
    assert!(
        voters.iter().any(|x| Some(x.id) == m.leader),
        "maintenance without a leader{}",
        ctx()
    );
    let no_space = voters.iter().any(|x| x.alarms.contains(&Alarm::NoSpace));
    let not_defragmented = |x: &EtcdMember| x.defragmented_at.is_none_or(|r| r < m.revision);
    match step {
        Step::Compact { revision } => {
            assert!(no_space, "compaction without NOSPACE{}", ctx());
            assert_eq!(*revision, m.revision, "{}", ctx());
            assert_eq!(m.compacted, Some(false), "{}", ctx());
        }
        Step::Defragment { member_id, .. } => {
            let member = voters
                .iter()
                .find(|x| x.id == *member_id)
                .expect("a voter is defragmented");
            let due = |x: &EtcdMember| {
                if no_space {
                    not_defragmented(x)
                } else {
                    d.maintenance
                        .needs_defragmentation(x.db_size, x.db_size_in_use)
                }
            };
            assert!(
                due(member),
                "defragmenting a member that does not need it{}",
                ctx()
            );
            if no_space {
                assert_eq!(
                    m.compacted,
                    Some(true),
                    "defragment before compacting{}",
                    ctx()
                );
            }
            if m.leader == Some(*member_id) {
                assert!(
                    !voters.iter().any(|x| x.id != *member_id && due(x)),
                    "leader defragmented before a follower{}",
                    ctx()
                );
            }
            assert!(
                voters.len() > quorum(voters.len()) || (voters.len() == 1 && d.replicas == 1),
                "defragmentation blocks a quorum{}",
                ctx()
            );
        }
        Step::DisarmAlarm { member_id, alarm } => {
            assert_eq!(*alarm, Alarm::NoSpace, "{}", ctx());
            let member = voters
                .iter()
                .find(|x| x.id == *member_id)
                .expect("the alarm's member is a voter");
            assert!(member.alarms.contains(&Alarm::NoSpace), "{}", ctx());
            assert_eq!(m.compacted, Some(true), "disarm before compacting{}", ctx());
            assert!(
                voters
                    .iter()
                    .all(|x| !not_defragmented(x) && x.db_size < d.maintenance.disarm_below()),
                "disarm before every database fits{}",
                ctx()
            );
        }
        Step::Snapshot { member_id, .. } => {
            let schedule = d.backup.as_ref().expect("a snapshot without a schedule");
            assert!(!no_space, "snapshot under NOSPACE{}", ctx());
            assert!(
                voters.iter().any(|x| x.id == *member_id),
                "snapshot of a non-voter{}",
                ctx()
            );
            if m.leader == Some(*member_id) {
                assert_eq!(voters.len(), 1, "snapshot from the leader{}", ctx());
            }
            let now = o.now.expect("a snapshot without a time");
            if let Some(last) = o.last_snapshot
                && let Ok(age) = now.duration_since(last)
            {
                assert!(age >= schedule.every, "snapshot not yet due{}", ctx());
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Random observations
// ---------------------------------------------------------------------------------------------

const ORDINALS: u32 = 7;
const STRANGER_ID: u64 = 0xdead;

/// The random facts about one ordinal.
#[derive(Debug, Clone)]
struct OrdinalGen {
    /// 0..=2 absent, 3..=8 voter, 9 learner.
    etcd: u8,
    started: bool,
    healthy: bool,
    raft_index: u64,
    alarm: u8,
    /// How the reported version relates to the runtime's: 0 same, 1 none, 2 other.
    reported: u8,
    /// For an etcd member: 0 absent, 1 stopped, 2 lost, 3 stopped with empty storage, else
    /// running; for an ordinal etcd does not know: 0 running, 1 lost, 2 stopped with empty
    /// storage, 3 stopped with data, else absent.
    runtime: u8,
    minor_up: bool,
    patch: u64,
    old_config: bool,
    failures: u32,
}

fn ordinal_gen() -> impl Strategy<Value = OrdinalGen> {
    (
        (
            0u8..10,
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.93),
        ),
        (prop_oneof![Just(1000u64), 0u64..1200], 0u8..40, 0u8..20),
        (0u8..20, any::<bool>(), prop_oneof![Just(0u64), Just(16u64)]),
        (
            prop::bool::weighted(0.1),
            prop_oneof![3 => Just(0u32), 1 => 0u32..7],
        ),
    )
        .prop_map(
            |(
                (etcd, started, healthy),
                (raft_index, alarm, reported),
                (runtime, minor_up, patch),
                (old_config, failures),
            )| OrdinalGen {
                etcd,
                started,
                healthy,
                raft_index,
                alarm,
                reported,
                runtime,
                minor_up,
                patch,
                old_config,
                failures,
            },
        )
}

/// The random facts of one case, turned into (Desired, Observed) by [`build`].
#[derive(Debug, Clone)]
struct CaseGen {
    replicas: u32,
    base_minor: u64,
    target_minor_delta: i64,
    target_patch: u64,
    paused: bool,
    new_config: bool,
    threshold: u32,
    reachable: bool,
    leader: Option<u32>,
    ordinals: Vec<OrdinalGen>,
    stranger: bool,
    intent: u8,
    intent_ordinal: u32,
    intent_known_id: bool,
    /// A calm case: ordinals below `size` are healthy members, the rest absent, with at most
    /// a few faults; the other cases are chaotic.
    calm: bool,
    size: u32,
    /// In a calm case, ask for exactly `size` replicas (so rolling restarts come up).
    fit: bool,
}

fn case_gen() -> impl Strategy<Value = CaseGen> {
    (
        (
            1u32..=ORDINALS,
            4u64..=5,
            prop_oneof![4 => Just(0i64), 4 => Just(1i64), 1 => Just(-1i64), 1 => Just(2i64)],
            prop_oneof![Just(0u64), Just(16u64)],
        ),
        (
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.2),
            0u32..6,
            prop::bool::weighted(0.92),
        ),
        (
            prop::option::weighted(0.9, 0u32..ORDINALS),
            prop::collection::vec(ordinal_gen(), ORDINALS as usize),
            prop::bool::weighted(0.03),
        ),
        (
            0u8..8,
            0u32..ORDINALS,
            any::<bool>(),
            any::<bool>(),
            0u32..=ORDINALS,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (replicas, base_minor, target_minor_delta, target_patch),
                (paused, new_config, threshold, reachable),
                (leader, ordinals, stranger),
                (intent, intent_ordinal, intent_known_id, calm, size, fit),
            )| CaseGen {
                replicas,
                base_minor,
                target_minor_delta,
                target_patch,
                paused,
                new_config,
                threshold,
                reachable,
                leader,
                ordinals,
                stranger,
                intent,
                intent_ordinal,
                intent_known_id,
                calm,
                size,
                fit,
            },
        )
}

/// The calm version of an ordinal's facts: a healthy member below `size` (the last one may
/// be a learner), nothing above; rare faults survive.
fn calm(g: &OrdinalGen, ordinal: u32, size: u32) -> OrdinalGen {
    let member = ordinal < size;
    let learner = member && g.etcd == 9 && ordinal + 1 == size;
    OrdinalGen {
        etcd: match (member, learner) {
            (false, _) => 0,
            (true, false) => 5,
            (true, true) => 9,
        },
        started: g.started || !learner,
        healthy: g.healthy || !learner,
        raft_index: g.raft_index,
        alarm: if g.alarm < 2 { g.alarm } else { 0 },
        reported: 0,
        runtime: match (member, learner && !g.started) {
            (false, _) => 5,
            (true, true) => g.runtime % 2 * 5,
            (true, false) => {
                if g.runtime < 2 {
                    g.runtime
                } else {
                    5
                }
            }
        },
        minor_up: g.minor_up,
        patch: g.patch,
        old_config: g.old_config,
        failures: if g.failures > 4 { g.failures } else { 0 },
    }
}

fn build(c: &CaseGen) -> (Desired, Observed) {
    let target_minor = c.base_minor.saturating_add_signed(c.target_minor_delta);
    let replicas = if c.calm && c.fit && c.size > 0 {
        c.size
    } else {
        c.replicas
    };
    let mut d = desired(replicas, "3.0.0");
    d.version = Version::new(3, target_minor, c.target_patch);
    d.paused = c.paused;
    d.replace_after_failures = c.threshold;
    d.backup = Some(backup_every(60));
    if c.new_config {
        d.config_hash = "cfg-2".to_owned();
    }
    let mut members = Vec::new();
    let mut runtime_members = Vec::new();
    let mut learner_seen = false;
    for (ordinal, g) in (0u32..).zip(&c.ordinals) {
        let calmed;
        let g = if c.calm {
            calmed = calm(g, ordinal, c.size);
            &calmed
        } else {
            g
        };
        let version = Version::new(3, c.base_minor + u64::from(g.minor_up), g.patch);
        if g.etcd >= 3 {
            // Mostly one learner at most, sometimes two (a state the planner must repair).
            let is_learner = g.etcd == 9 && (!learner_seen || g.alarm == 3);
            learner_seen |= is_learner;
            let started = g.started || !is_learner;
            members.push(EtcdMember {
                id: id_of(ordinal),
                name: if started {
                    d.member_name(ordinal)
                } else {
                    String::new()
                },
                peer_urls: vec![d.peer_url(ordinal)],
                is_learner,
                started,
                healthy: g.healthy && started,
                version: match g.reported {
                    _ if !g.healthy => None,
                    1 => None,
                    2 => Some(Version::new(3, c.base_minor + 1, 0)),
                    _ => Some(version),
                },
                raft_index: g.raft_index,
                alarms: match g.alarm {
                    1 => vec![Alarm::NoSpace],
                    2 => vec![Alarm::Corrupt],
                    _ => vec![],
                },
                // 0 to 200 MiB, a quarter of it in use or all of it.
                db_size: (g.raft_index % 5) * 50 * MIB,
                db_size_in_use: (g.raft_index % 5)
                    * 50
                    * MIB
                    * [1, 4, 4][(g.raft_index / 5 % 3) as usize]
                    / 4,
                // Defragmented at the current revision (100) for two thirds of the members.
                defragmented_at: (g.raft_index % 3 != 0).then_some(100),
            });
        }
        let (exists, running, data) = if g.etcd >= 3 {
            (
                g.runtime != 0,
                g.runtime > 3,
                match g.runtime {
                    2 => DataState::Lost,
                    3 => DataState::Empty,
                    _ => DataState::Present,
                },
            )
        } else {
            (
                g.runtime <= 3,
                g.runtime == 0,
                match g.runtime {
                    1 => DataState::Lost,
                    2 => DataState::Empty,
                    _ => DataState::Present,
                },
            )
        };
        if exists {
            runtime_members.push(RuntimeMember {
                ordinal,
                running,
                data,
                version,
                config_hash: if g.old_config {
                    "cfg-0".to_owned()
                } else {
                    CFG.to_owned()
                },
                failures: g.failures,
                diagnosis: None,
            });
        }
    }
    if c.stranger && !c.calm {
        let mut stranger = voter(&d, 0, Version::new(3, c.base_minor, 0));
        stranger.id = STRANGER_ID;
        stranger.name = "intruder".to_owned();
        stranger.peer_urls = vec!["http://intruder:2380".to_owned()];
        members.push(stranger);
    }
    let intent = match c.intent {
        0 => Some(Intent::AddLearner {
            ordinal: c.intent_ordinal,
            peer_url: d.peer_url(c.intent_ordinal),
            member_id: c.intent_known_id.then(|| id_of(c.intent_ordinal)),
        }),
        1 => Some(Intent::RemoveMember {
            ordinal: c.intent_ordinal,
            member_id: id_of(c.intent_ordinal),
        }),
        _ => None,
    };
    let observed = Observed {
        etcd: c.reachable.then(|| Membership {
            members,
            leader: if c.calm && c.size > 0 {
                c.leader.map(|l| id_of(l % c.size))
            } else {
                c.leader.map(id_of)
            },
            revision: 100,
            compacted: Some(c.intent_known_id),
            orphan_alarms: Vec::new(),
        }),
        runtime: runtime_members,
        intent,
        // A snapshot schedule that is due unless the configuration changed too.
        now: Some(UNIX_EPOCH + Duration::from_secs(1000)),
        last_snapshot: c.new_config.then(|| UNIX_EPOCH + Duration::from_secs(990)),
        snapshot_retry_at: None,
        unverified_snapshot: None,
        v3_log_from_index: None,
        // Now and then the last consistency check found one member corrupt (or no majority):
        // the invariants hold whatever it found.
        corruption: match c.intent_ordinal % 7 {
            0 => Some(Consistency::Corrupt {
                members: vec![id_of(c.threshold % ORDINALS)],
                majority_hash: 1,
                agreeing: Vec::new(),
            }),
            1 if c.threshold == 0 => Some(Consistency::NoMajority),
            _ => None,
        },
    };
    (d, observed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Invariants 1, 2, 4, 6 and "at most one step" over random observations.
    #[test]
    fn invariants_hold_for_random_observations(c in case_gen()) {
        let (d, o) = build(&c);
        let p = plan(&d, &o);
        check_invariants(&d, &o, &p);
    }

    /// Invariants hold along simulated runs from random healthy starting points to random
    /// targets, and the runs converge.
    #[test]
    fn simulated_runs_converge(
        from in 1u32..=5,
        to in 1u32..=7,
        leader in 0u32..5,
        minor_up in any::<bool>(),
        new_config in any::<bool>(),
    ) {
        let mut d = desired(to, if minor_up { "3.5.16" } else { "3.4.23" });
        if new_config {
            d.config_hash = "cfg-2".to_owned();
        }
        let ordinals: Vec<u32> = (0..from).collect();
        let observed = cluster(&d, &ordinals, "3.4.23", leader % from);
        let (_, last) = Sim::new(d.clone(), observed).run();
        prop_assert_eq!(last.status.ready, to);
        if to == 2 && (minor_up || new_config) {
            // Two members cannot restart one and keep quorum: the roll is refused.
            prop_assert_eq!(last.status.phase, Phase::Degraded);
            prop_assert!(last.status.message.contains("quorum"));
        } else {
            prop_assert_eq!(last.status.phase, Phase::Healthy);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// `check_upgrade` allows exactly the moves of etcd's upgrade guides: patch upgrades, one
    /// minor step from the floor patch or above, nothing down.
    #[test]
    fn version_paths_follow_the_guides(
        from_minor in 4u64..=7,
        from_patch in 0u64..40,
        to_minor in 3u64..=8,
        to_patch in 0u64..40,
        to_major in prop_oneof![8 => Just(3u64), 1 => Just(2u64), 1 => Just(4u64)],
    ) {
        let from = Version::new(3, from_minor, from_patch);
        let to = Version::new(to_major, to_minor, to_patch);
        prop_assert_eq!(from.check_upgrade(to).is_ok(), version_step_ok(from, to));
    }

    /// A rolling upgrade 3.5.x → 3.6.y (and 3.6.x → 3.7.y) restarts every member when x is at
    /// the floor or above and converges on the target; below it, no member is restarted and
    /// the status names the patch to move to first.
    #[test]
    fn minor_steps_below_the_floor_restart_nothing(
        from_minor in 5u64..=6,
        from_patch in 0u64..40,
        to_patch in 0u64..20,
        leader in 0u32..3,
    ) {
        let from = format!("3.{from_minor}.{from_patch}");
        let to = format!("3.{}.{to_patch}", from_minor + 1);
        let d = desired(3, &to);
        let (steps, last) = Sim::new(d.clone(), cluster(&d, &[0, 1, 2], &from, leader)).run();
        let restarts = steps
            .iter()
            .filter(|s| matches!(s, Step::RestartMember { .. }))
            .count();
        let floor = guide_floor(3, from_minor);
        if from_patch >= floor {
            prop_assert_eq!(restarts, 3);
            prop_assert_eq!(last.status.phase, Phase::Healthy);
        } else {
            prop_assert_eq!(restarts, 0);
            prop_assert_eq!(last.status.phase, Phase::Degraded);
            let first = format!("set version to 3.{from_minor}.{floor}");
            prop_assert!(last.status.message.contains(&first), "{}", last.status.message);
        }
    }
}

/// The random observations reach every kind of step, so the properties test something.
#[test]
fn random_observations_cover_every_step() {
    let mut runner = TestRunner::deterministic();
    let strategy = case_gen();
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..10_000 {
        let c = strategy.new_tree(&mut runner).expect("strategy").current();
        let (d, o) = build(&c);
        let kind = match plan(&d, &o).next {
            None => "none",
            Some(Step::StartSeed { .. }) => "seed",
            Some(Step::AddLearner { .. }) => "add",
            Some(Step::StartMember { .. }) => "start",
            Some(Step::PromoteLearner { .. }) => "promote",
            Some(Step::MoveLeader { .. }) => "move",
            Some(Step::RemoveMember { .. }) => "remove",
            Some(Step::DeleteMember { .. }) => "delete",
            Some(Step::StartStopped { .. }) => "resume",
            Some(Step::RestartMember { .. }) => "restart",
            Some(Step::ClearIntent) => "clear",
            Some(Step::Compact { .. }) => "compact",
            Some(Step::Defragment { .. }) => "defragment",
            Some(Step::DisarmAlarm { .. }) => "disarm",
            Some(Step::Snapshot { .. }) => "snapshot",
            Some(Step::RestoreCluster { .. }) => "restore",
            Some(Step::AdvanceRaftLog { .. }) => "advance",
            Some(Step::VerifySnapshot { .. }) => "verify",
        };
        *seen.entry(kind).or_default() += 1;
    }
    for kind in [
        "none",
        "seed",
        "add",
        "start",
        "promote",
        "move",
        "remove",
        "delete",
        "resume",
        "restart",
        "clear",
        "compact",
        "defragment",
        "disarm",
        "snapshot",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) >= 20,
            "fewer than 20 {kind} steps in {seen:?}"
        );
    }
}

/// The one function both runtimes use to turn `spec.etcd` into etcd flags.
#[test]
fn option_flags_table() {
    use etcd_operator::api::EtcdOptions;
    use etcd_operator::api::rules::TYPED_FLAGS;
    use etcd_operator::controller::flags::option_flags;
    let cases: Vec<(EtcdOptions, Vec<&str>)> = vec![
        (EtcdOptions::default(), vec![]),
        (
            EtcdOptions {
                extra_flags: vec!["--log-level=warn".into(), "--enable-pprof".into()],
                ..EtcdOptions::default()
            },
            vec!["--log-level=warn", "--enable-pprof"],
        ),
        (
            EtcdOptions {
                quota_backend_bytes: Some(4_294_967_296),
                snapshot_count: Some(50_000),
                heartbeat_interval_ms: Some(200),
                election_timeout_ms: Some(2000),
                auto_compaction_mode: Some("revision".into()),
                auto_compaction_retention: Some("1000".into()),
                extra_flags: vec!["--log-level=debug".into()],
            },
            vec![
                "--heartbeat-interval=200",
                "--election-timeout=2000",
                "--quota-backend-bytes=4294967296",
                "--snapshot-count=50000",
                "--auto-compaction-mode=revision",
                "--auto-compaction-retention=1000",
                "--log-level=debug",
            ],
        ),
        (
            EtcdOptions {
                snapshot_count: Some(1),
                auto_compaction_retention: Some("30m".into()),
                ..EtcdOptions::default()
            },
            vec!["--snapshot-count=1", "--auto-compaction-retention=30m"],
        ),
    ];
    for (opts, expected) in cases {
        let flags = option_flags(&opts);
        assert_eq!(flags, expected, "{opts:?}");
        // Every typed flag it writes is one the CRD refuses in extraFlags.
        for f in flags.iter().take(flags.len() - opts.extra_flags.len()) {
            let name = f.split('=').next().unwrap_or_default();
            assert!(TYPED_FLAGS.contains(&name), "{name} is not a typed flag");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Maintenance: defragmentation and NOSPACE
// ---------------------------------------------------------------------------------------------

/// Sets each listed member's database size and bytes in use (MiB).
fn sizes(o: &mut Observed, d: &Desired, list: &[(u32, u64, u64)]) {
    let etcd = o.etcd.as_mut().expect("etcd");
    for (ordinal, size, in_use) in list {
        let m = etcd
            .members
            .iter_mut()
            .find(|m| m.name == d.member_name(*ordinal))
            .expect("member");
        m.db_size = size * MIB;
        m.db_size_in_use = in_use * MIB;
    }
}

fn raise_no_space(o: &mut Observed, d: &Desired, ordinal: u32) {
    let etcd = o.etcd.as_mut().expect("etcd");
    etcd.members
        .iter_mut()
        .find(|m| m.name == d.member_name(ordinal))
        .expect("member")
        .alarms
        .push(Alarm::NoSpace);
}

#[test]
fn defragmentation_threshold_below_and_above() {
    let d = desired(3, "3.5.16");
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    // 40 % free of 100 MiB: below the default 50 %.
    sizes(&mut o, &d, &[(0, 100, 90), (1, 100, 60), (2, 100, 95)]);
    let p = plan(&d, &o);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Healthy);
    // 90 % free, but only 32 MiB: below the default 64 MiB floor.
    sizes(&mut o, &d, &[(1, 32, 3)]);
    assert_eq!(plan(&d, &o).next, None);
    // 60 % free of 100 MiB: above.
    sizes(&mut o, &d, &[(1, 100, 40)]);
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::Defragment {
            member_id: id_of(1),
            ordinal: 1
        })
    );
    assert_eq!(p.status.phase, Phase::Maintenance);
    assert!(p.status.message.contains("40.0 MiB of 100.0 MiB"), "{p:?}");
    // Exactly 50 % does not exceed 50 %.
    sizes(&mut o, &d, &[(1, 100, 50)]);
    assert_eq!(plan(&d, &o).next, None);
    // A lower floor and threshold from the spec.
    let mut low = d.clone();
    low.maintenance.defrag_min_db_size = MIB;
    low.maintenance.defrag_max_fragmentation_percent = 20;
    sizes(&mut o, &low, &[(1, 4, 3)]);
    assert_eq!(
        plan(&low, &o).next,
        Some(Step::Defragment {
            member_id: id_of(1),
            ordinal: 1
        })
    );
}

#[test]
fn defragmentation_goes_followers_first_leader_last() {
    let d = desired(3, "3.5.16");
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 1);
    sizes(&mut o, &d, &[(0, 200, 20), (1, 200, 20), (2, 200, 20)]);
    let (steps, last) = Sim::new(d, o).run();
    assert_eq!(names(&steps), ["defrag0", "defrag2", "defrag1"]);
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn defragmentation_waits_for_an_unhealthy_member() {
    let d = desired(3, "3.5.16");
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d, &[(1, 200, 20)]);
    o.etcd.as_mut().expect("etcd").members[2].healthy = false;
    let p = plan(&d, &o);
    assert!(
        !matches!(p.next, Some(Step::Defragment { .. })),
        "defragment beside an unhealthy member: {p:?}"
    );
    // And no leader known: nothing either.
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d, &[(1, 200, 20)]);
    o.etcd.as_mut().expect("etcd").leader = None;
    assert!(!matches!(plan(&d, &o).next, Some(Step::Defragment { .. })));
}

#[test]
fn defragmentation_waits_for_steps_in_flight_and_rolls() {
    let d = desired(3, "3.5.16");
    // An intent in flight: it is finished first.
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d, &[(1, 200, 20)]);
    o.intent = Some(Intent::RemoveMember {
        ordinal: 2,
        member_id: id_of(2),
    });
    assert!(matches!(
        plan(&d, &o).next,
        Some(Step::RemoveMember { ordinal: 2, .. })
    ));
    // A rolling restart pending: it goes first.
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d, &[(1, 200, 20)]);
    o.runtime[2].config_hash = "old".to_owned();
    assert!(matches!(
        plan(&d, &o).next,
        Some(Step::RestartMember { ordinal: 2, .. })
    ));
    // A scale-up pending: the learner goes first, and no maintenance while it joins.
    let d4 = desired(4, "3.5.16");
    let mut o = cluster(&d4, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d4, &[(1, 200, 20)]);
    assert!(matches!(
        plan(&d4, &o).next,
        Some(Step::AddLearner { ordinal: 3, .. })
    ));
    let (steps, _) = Sim::new(d4, o).run();
    assert_eq!(
        names(&steps).last().map(String::as_str),
        Some("defrag1"),
        "{steps:?}"
    );
}

#[test]
fn defragmentation_disabled_by_spec() {
    let mut d = desired(3, "3.5.16");
    d.maintenance.defragment = false;
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    sizes(&mut o, &d, &[(0, 500, 10), (1, 500, 10), (2, 500, 10)]);
    let p = plan(&d, &o);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Healthy);
}

#[test]
fn defragmentation_never_blocks_a_quorum() {
    // Two members: either one blocked leaves no majority.
    let d = desired(2, "3.5.16");
    let mut o = cluster(&d, &[0, 1], "3.5.16", 0);
    sizes(&mut o, &d, &[(1, 200, 20)]);
    let p = plan(&d, &o);
    assert_eq!(p.next, None);
    assert_eq!(p.status.phase, Phase::Healthy);
    // One member meant to be one: it may (as etcdctl would).
    let d = desired(1, "3.5.16");
    let mut o = cluster(&d, &[0], "3.5.16", 0);
    sizes(&mut o, &d, &[(0, 200, 20)]);
    assert_eq!(
        plan(&d, &o).next,
        Some(Step::Defragment {
            member_id: id_of(0),
            ordinal: 0
        })
    );
}

#[test]
fn no_space_compacts_defragments_leader_last_then_disarms() {
    let mut d = desired(3, "3.5.16");
    d.maintenance.quota_backend_bytes = 32 * MIB;
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    // Full files, mostly free once compacted (member 2 shows less of it: bbolt frees pages
    // only at the next write); all below the fragmentation floor of 64 MiB, and member 2 below
    // the fragmentation threshold too: every member is defragmented all the same.
    sizes(&mut o, &d, &[(0, 32, 3), (1, 32, 3), (2, 31, 20)]);
    raise_no_space(&mut o, &d, 1);
    raise_no_space(&mut o, &d, 2);
    {
        let etcd = o.etcd.as_mut().expect("etcd");
        etcd.revision = 4242;
        etcd.compacted = Some(false);
    }
    let first = plan(&d, &o);
    assert_eq!(first.next, Some(Step::Compact { revision: 4242 }));
    assert_eq!(first.status.phase, Phase::Degraded);
    let (steps, last) = Sim::new(d, o).run();
    assert_eq!(
        names(&steps),
        [
            "compact@4242".to_owned(),
            "defrag1".to_owned(),
            "defrag2".to_owned(),
            "defrag0".to_owned(),
            format!("disarm:{:x}", id_of(1)),
            format!("disarm:{:x}", id_of(2)),
        ]
    );
    assert_eq!(last.status.phase, Phase::Healthy);
}

#[test]
fn no_space_waits_to_know_the_compaction() {
    let d = desired(3, "3.5.16");
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    raise_no_space(&mut o, &d, 0);
    let p = plan(&d, &o);
    assert_eq!(p.next, None);
    assert!(p.status.message.contains("compacted"), "{p:?}");
}

#[test]
fn no_space_keeps_the_alarm_while_the_data_does_not_fit() {
    let mut d = desired(3, "3.5.16");
    d.maintenance.quota_backend_bytes = 32 * MIB;
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    // Compacted and defragmented since, 31 MiB of a 32 MiB quota (over the 95 % disarm limit).
    sizes(&mut o, &d, &[(0, 31, 31), (1, 31, 31), (2, 31, 31)]);
    raise_no_space(&mut o, &d, 0);
    {
        let etcd = o.etcd.as_mut().expect("etcd");
        etcd.compacted = Some(true);
        etcd.revision = 77;
        for m in &mut etcd.members {
            m.defragmented_at = Some(77);
        }
    }
    let p = plan(&d, &o);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Degraded);
    assert!(p.status.message.contains("stays"), "{p:?}");
    assert!(p.status.message.contains("quotaBackendBytes"), "{p:?}");
    assert!(p.status.message.contains("demo-0 31.0 MiB"), "{p:?}");
    // A bigger quota in the spec (members restarted with it): the alarm can go.
    d.maintenance.quota_backend_bytes = 64 * MIB;
    assert_eq!(
        plan(&d, &o).next,
        Some(Step::DisarmAlarm {
            member_id: id_of(0),
            alarm: Alarm::NoSpace
        })
    );
}

#[test]
fn no_space_waits_for_health_and_can_be_left_to_a_person() {
    let d = desired(3, "3.5.16");
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    raise_no_space(&mut o, &d, 0);
    o.etcd.as_mut().expect("etcd").compacted = Some(false);
    o.etcd.as_mut().expect("etcd").members[2].healthy = false;
    let p = plan(&d, &o);
    assert_eq!(p.next, None, "{p:?}");
    assert!(p.status.message.contains("recovery waits"), "{p:?}");
    let mut off = d.clone();
    off.maintenance.handle_no_space = false;
    o.etcd.as_mut().expect("etcd").members[2].healthy = true;
    let p = plan(&off, &o);
    assert_eq!(p.next, None, "{p:?}");
    assert_eq!(p.status.phase, Phase::Degraded);
    assert!(p.status.message.contains("handleNoSpace is false"), "{p:?}");
    // Handled, the same cluster compacts.
    assert!(matches!(plan(&d, &o).next, Some(Step::Compact { .. })));
}

// ---------------------------------------------------------------------------------------------
// Scheduled snapshots and restore
// ---------------------------------------------------------------------------------------------

fn backup_every(secs: u64) -> BackupSchedule {
    BackupSchedule {
        every: Duration::from_secs(secs),
        keep: 2,
        target: etcd_operator::controller::backup::BackupTarget::folder("/backups"),
        verify_every_nth: 0,
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A healthy 3-member cluster led by member 0 with a 60 s schedule, observed at t = 1000 s.
fn scheduled(last: Option<u64>) -> (Desired, Observed) {
    let mut d = desired(3, "3.5.16");
    d.backup = Some(backup_every(60));
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    o.now = Some(at(1000));
    o.last_snapshot = last.map(at);
    (d, o)
}

#[test]
fn snapshot_is_taken_when_none_exists_from_a_follower() {
    let (d, o) = scheduled(None);
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::Snapshot {
            member_id: id_of(1),
            ordinal: 1
        }),
        "{p:?}"
    );
    assert_eq!(p.status.phase, Phase::Healthy);
    assert!(p.status.message.contains("no snapshot yet"), "{p:?}");
}

#[test]
fn a_failed_snapshot_backs_off_until_its_retry_time() {
    // Never snapshotted, the last attempt failed: nothing before the recorded retry time.
    let (d, mut o) = scheduled(None);
    o.snapshot_retry_at = Some(at(1004));
    assert_eq!(plan(&d, &o).next, None);
    o.snapshot_retry_at = Some(at(1000));
    assert!(matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
    // A retry time in the past does not make a snapshot due before `every`.
    let (d, mut o) = scheduled(Some(990));
    o.snapshot_retry_at = Some(at(995));
    assert_eq!(plan(&d, &o).next, None);
}

#[test]
fn snapshot_waits_until_due_then_is_taken() {
    let (d, o) = scheduled(Some(941)); // 59 s old
    assert_eq!(plan(&d, &o).next, None);
    let (d, o) = scheduled(Some(940)); // 60 s old: due
    let p = plan(&d, &o);
    assert!(matches!(p.next, Some(Step::Snapshot { .. })), "{p:?}");
    assert!(p.status.message.contains("the last is 60s old"), "{p:?}");
}

#[test]
fn snapshot_follower_chosen_when_another_member_leads() {
    let mut d = desired(3, "3.5.16");
    d.backup = Some(backup_every(60));
    let mut o = cluster(&d, &[0, 1, 2], "3.5.16", 1);
    o.now = Some(at(1000));
    assert_eq!(
        plan(&d, &o).next,
        Some(Step::Snapshot {
            member_id: id_of(0),
            ordinal: 0
        })
    );
}

#[test]
fn snapshot_of_a_single_member_comes_from_the_leader() {
    let mut d = desired(1, "3.5.16");
    d.backup = Some(backup_every(60));
    let mut o = cluster(&d, &[0], "3.5.16", 0);
    o.now = Some(at(1000));
    assert_eq!(
        plan(&d, &o).next,
        Some(Step::Snapshot {
            member_id: id_of(0),
            ordinal: 0
        })
    );
}

#[test]
fn snapshot_needs_a_schedule_and_a_time() {
    let (mut d, o) = scheduled(None);
    d.backup = None;
    assert_eq!(plan(&d, &o).next, None);
    let (d, mut o) = scheduled(None);
    o.now = None;
    assert_eq!(plan(&d, &o).next, None);
}

#[test]
fn snapshot_is_blocked_by_an_unhealthy_member() {
    let (d, mut o) = scheduled(None);
    o.etcd.as_mut().expect("etcd").members[2].healthy = false;
    let p = plan(&d, &o);
    assert!(!matches!(p.next, Some(Step::Snapshot { .. })), "{p:?}");
    let (d, mut o) = scheduled(None);
    o.runtime[1].running = false;
    let p = plan(&d, &o);
    assert!(!matches!(p.next, Some(Step::Snapshot { .. })), "{p:?}");
}

#[test]
fn snapshot_is_blocked_by_an_intent_or_pending_work() {
    let (d, mut o) = scheduled(None);
    o.intent = Some(Intent::RemoveMember {
        ordinal: 2,
        member_id: id_of(2),
    });
    let p = plan(&d, &o);
    assert!(!matches!(p.next, Some(Step::Snapshot { .. })), "{p:?}");
    // Scaling up comes first.
    let (mut d, o) = scheduled(None);
    d.replicas = 5;
    assert!(matches!(plan(&d, &o).next, Some(Step::AddLearner { .. })));
    // So does a rolling restart.
    let (mut d, o) = scheduled(None);
    d.config_hash = "other".to_owned();
    let p = plan(&d, &o);
    assert!(!matches!(p.next, Some(Step::Snapshot { .. })), "{p:?}");
    // No leader known: no snapshot.
    let (d, mut o) = scheduled(None);
    o.etcd.as_mut().expect("etcd").leader = None;
    assert!(!matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
}

#[test]
fn snapshot_dated_in_the_future_is_retaken() {
    let (d, o) = scheduled(Some(5000));
    assert!(matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
}

fn unverified(sequence: u64) -> UnverifiedSnapshot {
    UnverifiedSnapshot {
        sequence,
        object: format!("demo-20261122T0730{sequence:02}Z-r812.db"),
        location: format!("/backups/demo-20261122T0730{sequence:02}Z-r812.db"),
        sha256: "ab12".into(),
        revision: 812,
    }
}

#[test]
fn the_policy_verifies_the_first_snapshot_and_every_nth_after_it() {
    let due = |n, seqs: std::ops::RangeInclusive<u64>| {
        seqs.filter(|s| verification_due(n, *s)).collect::<Vec<_>>()
    };
    assert_eq!(due(1, 1..=4), [1, 2, 3, 4]);
    assert_eq!(due(3, 1..=10), [1, 4, 7, 10]);
    assert_eq!(due(0, 1..=10), Vec::<u64>::new());
    // A snapshot recorded before snapshots were counted is verified like a first one.
    assert!(verification_due(5, 0));
    assert!(!verification_due(0, 0));
}

#[test]
fn a_due_verification_comes_before_the_next_snapshot_and_only_when_due() {
    // The last snapshot is due again (70 s old, every 60 s) and unverified.
    let (mut d, mut o) = scheduled(Some(930));
    if let Some(b) = d.backup.as_mut() {
        b.verify_every_nth = 2;
    }
    o.unverified_snapshot = Some(unverified(3));
    let p = plan(&d, &o);
    assert_eq!(
        p.next,
        Some(Step::VerifySnapshot {
            snapshot: unverified(3)
        }),
        "{p:?}"
    );
    assert!(p.status.message.contains("one in 2"), "{p:?}");
    // Number 4 of every 2nd: not verified, the snapshot is taken.
    o.unverified_snapshot = Some(unverified(4));
    assert!(matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
    // Verified already (nothing unverified): the snapshot.
    o.unverified_snapshot = None;
    assert!(matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
    // Off: never.
    o.unverified_snapshot = Some(unverified(3));
    if let Some(b) = d.backup.as_mut() {
        b.verify_every_nth = 0;
    }
    assert!(matches!(plan(&d, &o).next, Some(Step::Snapshot { .. })));
}

#[test]
fn a_verification_waits_for_a_healthy_cluster_with_nothing_else_to_do() {
    let (mut d, mut o) = scheduled(Some(990));
    if let Some(b) = d.backup.as_mut() {
        b.verify_every_nth = 1;
    }
    o.unverified_snapshot = Some(unverified(1));
    assert!(matches!(
        plan(&d, &o).next,
        Some(Step::VerifySnapshot { .. })
    ));
    let mut sick = o.clone();
    if let Some(m) = sick.etcd.as_mut() {
        m.members[2].healthy = false;
    }
    assert!(!matches!(
        plan(&d, &sick).next,
        Some(Step::VerifySnapshot { .. })
    ));
    // A scale-up comes first.
    d.replicas = 5;
    assert!(!matches!(
        plan(&d, &o).next,
        Some(Step::VerifySnapshot { .. })
    ));
    // No schedule: nothing.
    d.replicas = 3;
    d.backup = None;
    assert_eq!(plan(&d, &o).next, None);
}

#[test]
fn restore_bootstraps_every_member_only_from_nothing() {
    let mut d = desired(3, "3.5.16");
    d.bootstrap = Bootstrap::Restore {
        source: RestoreSource::File("/backups/demo.db".into()),
    };
    let p = plan(&d, &Observed::default());
    assert_eq!(
        p.next,
        Some(Step::RestoreCluster {
            members: 3,
            version: v("3.5.16"),
            source: RestoreSource::File("/backups/demo.db".into())
        })
    );
    assert_eq!(p.status.phase, Phase::Bootstrapping);
    // Once members exist the restore is never planned again.
    let o = cluster(&d, &[0, 1, 2], "3.5.16", 0);
    assert_eq!(plan(&d, &o).next, None);
    let o = Observed {
        runtime: vec![runtime(0, v("3.5.16"))],
        ..Observed::default()
    };
    assert!(!matches!(
        plan(&d, &o).next,
        Some(Step::RestoreCluster { .. })
    ));
    // A runtime that cannot restore creates nothing and says why.
    d.bootstrap = Bootstrap::Unsupported("not here".to_owned());
    let p = plan(&d, &Observed::default());
    assert_eq!((p.next, p.status.phase), (None, Phase::Degraded));
    assert_eq!(p.status.message, "not here");
}
