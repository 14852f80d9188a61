//! The steps the planner asks the act layer to run.

use super::*;

/// One step for the act layer to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    /// Start the seed member of a new cluster with `--initial-cluster-state=new`.
    StartSeed {
        /// Always 0.
        ordinal: u32,
        /// The version to run.
        version: Version,
    },
    /// MemberAddAsLearner with this peer URL (record [`Step::intent`] first).
    AddLearner {
        /// The ordinal the learner is for.
        ordinal: u32,
        /// Its peer URL.
        peer_url: String,
    },
    /// Create or start the runtime member for an etcd member with
    /// `--initial-cluster-state=existing` (a new learner, or a stopped member whose data is
    /// present).
    StartMember {
        /// The member's ordinal.
        ordinal: u32,
        /// Its etcd member ID.
        member_id: u64,
        /// The version to run.
        version: Version,
    },
    /// MemberPromote the learner.
    PromoteLearner {
        /// The learner's member ID.
        member_id: u64,
    },
    /// MoveLeader (sent to the current leader) to another healthy voter.
    MoveLeader {
        /// The current leader.
        from: u64,
        /// The new leader.
        to: u64,
    },
    /// MemberRemove (record [`Step::intent`] first); then the runtime member is deleted.
    RemoveMember {
        /// The member ID.
        member_id: u64,
        /// The member's ordinal.
        ordinal: u32,
    },
    /// Delete the runtime member (Pod and PVC, or process and data directory) of an ordinal
    /// that is not an etcd member.
    DeleteMember {
        /// The ordinal.
        ordinal: u32,
    },
    /// Start again, while etcd is unreachable, a stopped member whose storage holds member data
    /// (all Pods deleted, a whole-cluster power loss): its runtime member is started, or created
    /// with `--initial-cluster-state=existing` on its existing storage, naming only itself in the
    /// initial cluster. etcd ignores the initial-cluster flags when its data directory holds
    /// data, so the member rejoins with its own identity; it can never found a new cluster.
    StartStopped {
        /// The member's ordinal.
        ordinal: u32,
        /// The version it last ran (its data's version).
        version: Version,
    },
    /// Restart a running member on this version with the desired configuration.
    RestartMember {
        /// The member's ordinal.
        ordinal: u32,
        /// The version to run.
        version: Version,
    },
    /// The recorded intent is finished or obsolete: clear it.
    ClearIntent,
    /// Compact the key-value history up to `revision` (physically, waiting for the backend),
    /// so that a defragmentation can give the space back. Replicated; goes to any member.
    Compact {
        /// The revision to compact to (the current revision when planned).
        revision: i64,
    },
    /// Defragment the backend of one member (member-local; it blocks that member while it
    /// runs).
    Defragment {
        /// The member's ID.
        member_id: u64,
        /// The member's ordinal.
        ordinal: u32,
    },
    /// Disarm an alarm raised on a member.
    DisarmAlarm {
        /// The member the alarm is raised on.
        member_id: u64,
        /// The alarm.
        alarm: Alarm,
    },
    /// Stream a snapshot of the keyspace from one member into the backup folder, then apply
    /// the retention ([`BackupSchedule`]). Reads only; a follower when there is one.
    Snapshot {
        /// The member's ID.
        member_id: u64,
        /// The member's ordinal.
        ordinal: u32,
    },
    /// Verify the last recorded snapshot: read it back from the store, restore it into a
    /// throwaway etcd and check it against what was recorded. Touches no member.
    VerifySnapshot {
        /// The snapshot and what was recorded of it.
        snapshot: super::UnverifiedSnapshot,
    },
    /// Append `entries` raft entries that change no key (lease grants and revokes), so that
    /// every member takes a raft snapshot before it is restarted onto etcd 3.7, which cannot
    /// replay the v2 entries etcd 3.5 wrote (see [`super::wal`]). Writes no key, changes no
    /// revision.
    AdvanceRaftLog {
        /// How many entries to append.
        entries: u64,
    },
    /// Create a new cluster from a snapshot: the data of members `0..members` is restored from
    /// it (all with the full initial cluster), then every member starts. Only when nothing of
    /// the cluster exists.
    RestoreCluster {
        /// How many members to restore.
        members: u32,
        /// The version to run.
        version: Version,
        /// Where the snapshot is.
        source: super::RestoreSource,
    },
}

impl Step {
    /// The intent to record before running this step, for steps that mutate etcd and must be
    /// followed by a runtime change.
    pub fn intent(&self) -> Option<Intent> {
        match self {
            Step::AddLearner { ordinal, peer_url } => Some(Intent::AddLearner {
                ordinal: *ordinal,
                peer_url: peer_url.clone(),
                member_id: None,
            }),
            Step::RemoveMember { member_id, ordinal } => Some(Intent::RemoveMember {
                ordinal: *ordinal,
                member_id: *member_id,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::StartSeed { ordinal, version } => {
                write!(f, "start seed member {ordinal} on {version}")
            }
            Step::AddLearner { ordinal, peer_url } => {
                write!(f, "add member {ordinal} as a learner at {peer_url}")
            }
            Step::StartMember {
                ordinal,
                member_id,
                version,
            } => write!(f, "start member {ordinal} ({member_id:x}) on {version}"),
            Step::PromoteLearner { member_id } => write!(f, "promote learner {member_id:x}"),
            Step::MoveLeader { from, to } => write!(f, "move leadership from {from:x} to {to:x}"),
            Step::RemoveMember { member_id, ordinal } => {
                write!(f, "remove member {ordinal} ({member_id:x}) from etcd")
            }
            Step::DeleteMember { ordinal } => write!(f, "delete runtime member {ordinal}"),
            Step::StartStopped { ordinal, version } => write!(
                f,
                "start stopped member {ordinal} again on {version} with its existing data"
            ),
            Step::RestartMember { ordinal, version } => {
                write!(f, "restart member {ordinal} on {version}")
            }
            Step::ClearIntent => write!(f, "clear the finished intent"),
            Step::Compact { revision } => write!(f, "compact the history to revision {revision}"),
            Step::Defragment { member_id, ordinal } => {
                write!(f, "defragment member {ordinal} ({member_id:x})")
            }
            Step::DisarmAlarm { member_id, alarm } => {
                write!(f, "disarm the {alarm} alarm of member {member_id:x}")
            }
            Step::Snapshot { member_id, ordinal } => {
                write!(f, "take a snapshot from member {ordinal} ({member_id:x})")
            }
            Step::VerifySnapshot { snapshot } => {
                write!(f, "verify snapshot {}", snapshot.location)
            }
            Step::AdvanceRaftLog { entries } => write!(
                f,
                "append {entries} raft entries that change no key (lease grants and revokes)"
            ),
            Step::RestoreCluster {
                members,
                version,
                source,
            } => write!(f, "restore {members} members on {version} from {source}"),
        }
    }
}
