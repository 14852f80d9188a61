//! The pure planner: from the desired state and one observation of the cluster to the status to
//! report and at most one next step.
//!
//! [`plan`] does no I/O and knows nothing of Kubernetes or processes: plain structs in
//! ([`Desired`], [`Observed`]), a [`Plan`] out. The act layer runs [`Plan::next`], and before a
//! step that mutates etcd it records [`Step::intent`] so that the next pass can finish the step
//! if the operator crashed half-way (see [`Intent`]).
//!
//! # Lifecycle
//!
//! - Bootstrap: only the seed (ordinal 0) starts with `--initial-cluster-state=new`
//!   ([`Step::StartSeed`]), and only when etcd is unreachable and the runtime has no member (so no
//!   data) at all, or only a stopped seed whose storage holds no member data yet
//!   ([`DataState::Empty`]: its Pod or process went away before it ever answered). Every later
//!   member joins as a learner.
//! - Recovery: while etcd is unreachable, every stopped member whose storage holds member data
//!   ([`DataState::Present`]) is started again, one per pass without waiting for it to answer
//!   ([`Step::StartStopped`]), as a kubelet restarts the Pods of a StatefulSet after all of them
//!   were deleted or the machines lost power. With data, etcd rejoins with its own identity and
//!   cannot found a new cluster. Members whose data is lost or empty are left for the replace
//!   path, and neither is the member of a step in flight; no seed is ever started while any
//!   runtime member exists with data.
//! - Scale up: [`Step::AddLearner`] → [`Step::StartMember`] → [`Step::PromoteLearner`] once the
//!   learner is started, healthy and its raft index is at least [`PROMOTE_PERCENT`] % of the
//!   leader's.
//! - Scale down: the highest ordinal above the desired count that is not the leader is removed
//!   ([`Step::RemoveMember`], then [`Step::DeleteMember`]); when the leader is the only candidate,
//!   leadership moves first ([`Step::MoveLeader`]).
//! - Replace: a voter whose data is lost, whose runtime member is gone, that carries a `CORRUPT`
//!   alarm, or that failed [`Desired::replace_after_failures`] times is removed, deleted and added
//!   again as a learner, when quorum allows.
//! - Rolling restart (new version or new configuration): one member at a time, followers first,
//!   leadership moved away before the leader restarts, only when every member is healthy. The
//!   version moves at most one minor step and never down; any other change is refused.
//! - Maintenance (see [`Maintenance`]): once nothing else is left to do, a voter whose database
//!   is fragmented beyond the threshold is defragmented ([`Step::Defragment`]), one per pass,
//!   followers first and the leader last. While a NOSPACE alarm is raised (and nothing but
//!   maintenance could run anyway: no member is added or restarted under NOSPACE): the history is
//!   compacted to the current revision ([`Step::Compact`]), every voter not defragmented since
//!   is defragmented (followers first, the leader last), and once every voter's database is
//!   under [`DISARM_BELOW_PERCENT`] % of the quota the alarm is disarmed ([`Step::DisarmAlarm`]);
//!   otherwise the alarm stays and the status says why. Maintenance runs only when every voter
//!   is healthy and running, the leader is known, no learner exists and no intent is recorded,
//!   and a member is defragmented only when the others keep quorum without it.
//!
//! - Snapshots (see [`BackupSchedule`]): once nothing else is left to do (and under the same
//!   conditions as maintenance), a snapshot is due when the last one ([`Observed::last_snapshot`])
//!   is at least [`BackupSchedule::every`] older than [`Observed::now`]; it is taken from the
//!   lowest-ordinal healthy follower, the leader only when it is the only voter
//!   ([`Step::Snapshot`]). Time is an input: the planner stays a pure function.
//! - Restore (see [`Bootstrap`]): when nothing of the cluster exists and a snapshot is named,
//!   every member is restored from it and started ([`Step::RestoreCluster`]) instead of a seed.
//!
//! # Invariants (property-tested in `tests/planner.rs`)
//!
//! 1. No step loses quorum: a voter is removed or restarted only when the remaining healthy voters
//!    are a majority of the voters after the change (a single-member cluster that is meant to
//!    have one member may restart, which makes it briefly unavailable but loses nothing); a
//!    learner is added only when every voter is healthy and the leader is known.
//! 2. At most one learner and one membership change at a time.
//! 3. The leader is never removed or restarted while another healthy voter exists: leadership is
//!    moved first.
//! 4. Versions move at most one minor step at a time, never down, and a minor step only from
//!    the patch floor etcd's upgrade guide names ([`crate::api::versions::UPGRADE_FLOORS`]).
//! 5. Paused, or etcd unreachable: no membership step; while unreachable only a seed over nothing
//!    (or over a seed that never wrote data) and [`Step::StartStopped`] of a member with data.

use std::fmt;
use std::time::{Duration, SystemTime};

/// The largest replica count a cluster may ask for.
pub const MAX_REPLICAS: u32 = 9;

/// The largest ordinal the planner recognises in a member name or peer URL.
pub const MAX_ORDINAL: u32 = 63;

/// A learner is promoted once its raft index is at least this percentage of the leader's.
pub const PROMOTE_PERCENT: u64 = 90;

/// Default for [`Desired::replace_after_failures`].
pub const DEFAULT_REPLACE_AFTER_FAILURES: u32 = 5;

/// etcd's backend quota when `--quota-backend-bytes` is not set (2 GiB).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A NOSPACE alarm is disarmed only once every voter's database file is under this percentage
/// of the quota: disarming a member that is at the quota makes the next write raise it again.
pub const DISARM_BELOW_PERCENT: u64 = 95;

/// What maintenance the planner may run: `spec.maintenance`, with the quota from
/// `spec.etcd.quotaBackendBytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Defragment members whose fragmentation exceeds the threshold.
    pub defragment: bool,
    /// Only members whose database file is at least this large are defragmented for
    /// fragmentation.
    pub defrag_min_db_size: u64,
    /// A member is defragmented when `(db_size - db_size_in_use) * 100 / db_size` exceeds this.
    pub defrag_max_fragmentation_percent: u64,
    /// Recover from the NOSPACE alarm: compact, defragment, disarm.
    pub handle_no_space: bool,
    /// The backend quota the members run with.
    pub quota_backend_bytes: u64,
}

impl Default for Maintenance {
    /// The API's defaults: defragment above 50 % fragmentation from 64 MiB on, handle NOSPACE,
    /// etcd's default quota.
    fn default() -> Self {
        Self {
            defragment: true,
            defrag_min_db_size: 64 * 1024 * 1024,
            defrag_max_fragmentation_percent: 50,
            handle_no_space: true,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
        }
    }
}

impl Maintenance {
    /// Whether a member with these sizes is fragmented beyond the threshold: its database file
    /// is at least [`Maintenance::defrag_min_db_size`] and its free share exceeds
    /// [`Maintenance::defrag_max_fragmentation_percent`].
    pub fn needs_defragmentation(&self, db_size: u64, db_size_in_use: u64) -> bool {
        let free = db_size.saturating_sub(db_size_in_use);
        db_size > 0
            && db_size >= self.defrag_min_db_size
            && u128::from(free) * 100
                > u128::from(db_size) * u128::from(self.defrag_max_fragmentation_percent)
    }

    /// The database size under which a NOSPACE alarm is disarmed.
    pub fn disarm_below(&self) -> u64 {
        let limit = u128::from(self.quota_backend_bytes) * u128::from(DISARM_BELOW_PERCENT) / 100;
        u64::try_from(limit).unwrap_or(u64::MAX)
    }
}

/// Scheduled snapshots (`spec.backup`) the planner may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSchedule {
    /// A snapshot is due once the last successful one is at least this old.
    pub every: Duration,
    /// How many snapshot files the act layer keeps (retention runs after each snapshot).
    pub keep: u32,
    /// The folder the snapshot files go to.
    pub directory: std::path::PathBuf,
}

/// How a new cluster is created when nothing of it exists yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bootstrap {
    /// Empty: a seed member is started and the others join as learners.
    #[default]
    Empty,
    /// From a snapshot: every member's data is restored from it before any member starts
    /// ([`Step::RestoreCluster`]).
    Restore {
        /// The snapshot file.
        path: std::path::PathBuf,
    },
    /// A restore was asked for that this runtime cannot run; nothing is created, the text says
    /// why.
    Unsupported(String),
}

pub use crate::api::versions::{ParseVersionError, Version, VersionSkew};

/// What the user asked for, with the naming facts the planner needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// The cluster's name; members are named `<cluster>-<ordinal>`.
    pub cluster: String,
    /// How many voting members the cluster should have, 1..=[`MAX_REPLICAS`].
    pub replicas: u32,
    /// The etcd version every member should run.
    pub version: Version,
    /// A hash of everything else a member is started with (Pod template, flags, certificates):
    /// a member started with another hash is restarted.
    pub config_hash: String,
    /// Report status only; take no step.
    pub paused: bool,
    /// How to build a member's peer URL: `{name}` is replaced by `<cluster>-<ordinal>`,
    /// `{ordinal}` by the ordinal, and `{port:BASE}` by `BASE + ordinal` (for the local runtime,
    /// where members share an address). For example
    /// `https://{name}.demo.default.svc:2380` or `http://127.0.0.1:{port:12380}`.
    pub peer_url_template: String,
    /// Replace a member after this many consecutive failures ([`RuntimeMember::failures`]);
    /// 0 never replaces a member for failing (a member whose data is lost is still replaced).
    pub replace_after_failures: u32,
    /// What maintenance may run.
    pub maintenance: Maintenance,
    /// Scheduled snapshots, if asked for.
    pub backup: Option<BackupSchedule>,
    /// How the cluster is created when nothing of it exists.
    pub bootstrap: Bootstrap,
}

impl Desired {
    /// A desired state with the default failure threshold, not paused.
    pub fn new(
        cluster: impl Into<String>,
        replicas: u32,
        version: Version,
        config_hash: impl Into<String>,
        peer_url_template: impl Into<String>,
    ) -> Self {
        Self {
            cluster: cluster.into(),
            replicas,
            version,
            config_hash: config_hash.into(),
            paused: false,
            peer_url_template: peer_url_template.into(),
            replace_after_failures: DEFAULT_REPLACE_AFTER_FAILURES,
            maintenance: Maintenance::default(),
            backup: None,
            bootstrap: Bootstrap::Empty,
        }
    }

    /// The member name for an ordinal: `<cluster>-<ordinal>`.
    pub fn member_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// The ordinal of a member name of this cluster (`<cluster>-<ordinal>`, no leading zeros),
    /// if it is one and the ordinal is at most [`MAX_ORDINAL`].
    pub fn ordinal_of(&self, name: &str) -> Option<u32> {
        let digits = name
            .strip_prefix(self.cluster.as_str())?
            .strip_prefix('-')?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        digits.parse().ok().filter(|o| *o <= MAX_ORDINAL)
    }

    /// The peer URL of the member with this ordinal, from [`Desired::peer_url_template`].
    pub fn peer_url(&self, ordinal: u32) -> String {
        let mut out = String::new();
        let mut rest = self.peer_url_template.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start..];
            let Some(end) = after.find('}') else {
                break;
            };
            let key = &after[1..end];
            match key {
                "name" => out.push_str(&self.member_name(ordinal)),
                "ordinal" => out.push_str(&ordinal.to_string()),
                _ => match key
                    .strip_prefix("port:")
                    .and_then(|b| b.parse::<u32>().ok())
                {
                    Some(base) => out.push_str(&base.saturating_add(ordinal).to_string()),
                    None => out.push_str(&after[..=end]),
                },
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The ordinal whose peer URL is `url`, if any ordinal up to [`MAX_ORDINAL`] has it.
    pub fn ordinal_of_peer_url(&self, url: &str) -> Option<u32> {
        (0..=MAX_ORDINAL).find(|o| self.peer_url(*o) == url)
    }
}

/// An alarm etcd raised on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alarm {
    /// The backend quota is exhausted: writes fail until the space is freed and the alarm
    /// disarmed. The planner adds no member and restarts nothing while it is raised.
    NoSpace,
    /// The member's data is corrupt: it is replaced.
    Corrupt,
}

impl fmt::Display for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Alarm::NoSpace => "NOSPACE",
            Alarm::Corrupt => "CORRUPT",
        })
    }
}

/// One member as etcd reports it (MemberList, plus the member's own Status and alarms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// The member ID.
    pub id: u64,
    /// The member name; empty until the member has started.
    pub name: String,
    /// The member's peer URLs.
    pub peer_urls: Vec<String>,
    /// Whether it is a learner (non-voting).
    pub is_learner: bool,
    /// Whether it has started: it has a name and client URLs.
    pub started: bool,
    /// Whether its Status call and health check succeed.
    pub healthy: bool,
    /// The version it reports in Status, if it answered.
    pub version: Option<Version>,
    /// Its raft index from Status (0 if unknown).
    pub raft_index: u64,
    /// Alarms raised on this member.
    pub alarms: Vec<Alarm>,
    /// Size of its database file in bytes, from Status (0 if unknown).
    pub db_size: u64,
    /// Bytes of its database file in use, from Status (0 if unknown). It lags on a member that
    /// has applied nothing since a compaction (bbolt frees the compacted pages only at the next
    /// write), so NOSPACE recovery does not rely on it.
    pub db_size_in_use: u64,
    /// The store revision at which the operator last defragmented this member (from the status
    /// it recorded), if it did.
    pub defragmented_at: Option<i64>,
}

/// etcd's view of the cluster, as read from a reachable member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// All members, voters and learners.
    pub members: Vec<EtcdMember>,
    /// The leader's member ID, if a leader is known.
    pub leader: Option<u64>,
    /// The store's current revision (the highest a member reported; 0 if unknown).
    pub revision: i64,
    /// Whether the history is compacted up to [`Membership::revision`]; `None` when not known
    /// (observe checks it only while a NOSPACE alarm is raised).
    pub compacted: Option<bool>,
}

/// What the runtime knows about a member's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataState {
    /// The member's storage (PVC or data directory) exists and may hold member data.
    Present,
    /// The storage exists but holds no member data yet: etcd never wrote to it (a local data
    /// directory without `member/`), or, where the runtime cannot look inside (a PVC), the
    /// cluster never answered. A stopped seed in this state can be started again with
    /// `--initial-cluster-state=new` without bootstrapping over anyone's data. While etcd
    /// answers it is treated like [`DataState::Present`].
    Empty,
    /// The storage is gone or was wiped while the member should have data.
    Lost,
}

/// One member as the runtime (Pods + PVCs, or local processes) reports it. A member the runtime
/// lists exists in some form: a running Pod or process, or at least its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeMember {
    /// The member's ordinal.
    pub ordinal: u32,
    /// Whether the Pod or process runs.
    pub running: bool,
    /// The state of its data.
    pub data: DataState,
    /// The etcd version it runs (or was last started with).
    pub version: Version,
    /// The configuration hash it was started with (see [`Desired::config_hash`]).
    pub config_hash: String,
    /// Consecutive failures the observe layer counted (crash restarts or failed health checks);
    /// 0 when healthy.
    pub failures: u32,
}

/// A step in flight, recorded by the act layer before it mutates etcd (see [`Step::intent`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Intent {
    /// A learner is being added for `ordinal`; the runtime member must then be started.
    AddLearner {
        /// The ordinal the learner is for.
        ordinal: u32,
        /// Its peer URL, by which it is found before it has a name.
        peer_url: String,
        /// Its member ID, once MemberAdd answered (the act layer may fill it in).
        member_id: Option<u64>,
    },
    /// A member is being removed from etcd; the runtime member must then be deleted.
    RemoveMember {
        /// The member's ordinal.
        ordinal: u32,
        /// The member ID being removed.
        member_id: u64,
    },
}

/// Everything the planner sees in one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// etcd's view, or `None` when no member answered (unreachable or not yet created).
    pub etcd: Option<Membership>,
    /// The runtime's members.
    pub runtime: Vec<RuntimeMember>,
    /// The recorded intent, if a step is in flight.
    pub intent: Option<Intent>,
    /// When this observation was made; `None` takes no time-based step (snapshots).
    pub now: Option<SystemTime>,
    /// When the last successful snapshot finished (from the recorded status), if any.
    pub last_snapshot: Option<SystemTime>,
}

/// The phase to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Creating the seed member of a new cluster.
    Bootstrapping,
    /// Adding or removing members to reach the desired count.
    Scaling,
    /// Replacing a failed member or one whose data is lost.
    Replacing,
    /// Restarting members one at a time for a new version or configuration.
    Upgrading,
    /// Everything matches the desired state.
    Healthy,
    /// Something is wrong that the planner waits out or cannot fix; the message says what.
    Degraded,
    /// etcd did not answer; no membership step is taken.
    Unavailable,
    /// Reconciliation is paused.
    Paused,
    /// Defragmenting a fragmented member; nothing else is pending.
    Maintenance,
}

/// The status to report for this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStatus {
    /// The phase.
    pub phase: Phase,
    /// Healthy voting members.
    pub ready: u32,
    /// The desired number of members.
    pub desired: u32,
    /// Voting members etcd reports.
    pub voters: u32,
    /// Learners etcd reports.
    pub learners: u32,
    /// A human-readable explanation.
    pub message: String,
}

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
    /// Create a new cluster from a snapshot: the data of members `0..members` is restored from
    /// it (all with the full initial cluster), then every member starts. Only when nothing of
    /// the cluster exists.
    RestoreCluster {
        /// How many members to restore.
        members: u32,
        /// The version to run.
        version: Version,
        /// The snapshot file.
        path: std::path::PathBuf,
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

    /// Whether the step changes etcd's membership (add, promote, remove).
    pub fn is_membership_change(&self) -> bool {
        matches!(
            self,
            Step::AddLearner { .. } | Step::PromoteLearner { .. } | Step::RemoveMember { .. }
        )
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
            Step::RestoreCluster {
                members,
                version,
                path,
            } => write!(
                f,
                "restore {members} members on {version} from snapshot {}",
                path.display()
            ),
        }
    }
}

/// The planner's answer: the status to report and at most one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The status to report.
    pub status: PlannedStatus,
    /// The next step, if any.
    pub next: Option<Step>,
}

/// A byte count in MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    let tenths = u128::from(bytes) * 10 / (1024 * 1024);
    format!("{}.{} MiB", tenths / 10, tenths % 10)
}

/// The number of voters that makes a majority of `voters`.
pub const fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// Whether `member` counts as healthy: started, answering, and not corrupt.
pub fn is_healthy(member: &EtcdMember) -> bool {
    member.started && member.healthy && !member.alarms.contains(&Alarm::Corrupt)
}

/// Whether a learner with `learner_index` has caught up with a leader at `leader_index`
/// (at least [`PROMOTE_PERCENT`] % of it).
pub fn caught_up(learner_index: u64, leader_index: u64) -> bool {
    u128::from(learner_index) * 100 >= u128::from(leader_index) * u128::from(PROMOTE_PERCENT)
}

/// Plan the next step: the status to report and at most one step. Pure; see the module docs
/// for the lifecycle and the invariants.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let membership = observed.etcd.as_ref().filter(|m| !m.members.is_empty());
    let counts = Counts::of(desired, membership);
    if desired.paused {
        return counts.wait(Phase::Paused, "reconciliation is paused".to_owned());
    }
    if !(1..=MAX_REPLICAS).contains(&desired.replicas) {
        return counts.wait(
            Phase::Degraded,
            format!(
                "replicas must be between 1 and {MAX_REPLICAS}, not {}",
                desired.replicas
            ),
        );
    }
    match membership {
        None => plan_unreachable(desired, observed, &counts),
        Some(membership) => Cluster::new(desired, observed, membership, counts).plan(),
    }
}

/// Member counts for the status.
struct Counts {
    ready: u32,
    desired: u32,
    voters: u32,
    learners: u32,
}

impl Counts {
    fn of(desired: &Desired, membership: Option<&Membership>) -> Self {
        let members = membership.map(|m| m.members.as_slice()).unwrap_or_default();
        let count = |f: &dyn Fn(&EtcdMember) -> bool| {
            u32::try_from(members.iter().filter(|m| f(m)).count()).unwrap_or(u32::MAX)
        };
        Self {
            ready: count(&|m| !m.is_learner && is_healthy(m)),
            desired: desired.replicas,
            voters: count(&|m| !m.is_learner),
            learners: count(&|m| m.is_learner),
        }
    }

    fn status(&self, phase: Phase, message: String) -> PlannedStatus {
        PlannedStatus {
            phase,
            ready: self.ready,
            desired: self.desired,
            voters: self.voters,
            learners: self.learners,
            message,
        }
    }

    fn wait(&self, phase: Phase, message: String) -> Plan {
        Plan {
            status: self.status(phase, message),
            next: None,
        }
    }

    fn step(&self, phase: Phase, step: Step) -> Plan {
        Plan {
            status: self.status(phase, step.to_string()),
            next: Some(step),
        }
    }
}

/// etcd did not answer: bootstrap if nothing exists, start again what was stopped with its data,
/// else wait.
fn plan_unreachable(desired: &Desired, observed: &Observed, counts: &Counts) -> Plan {
    let intent = observed.intent.as_ref();
    if intent.is_none() && observed.runtime.is_empty() {
        return match &desired.bootstrap {
            Bootstrap::Empty => counts.step(
                Phase::Bootstrapping,
                Step::StartSeed {
                    ordinal: 0,
                    version: desired.version,
                },
            ),
            Bootstrap::Restore { path } => counts.step(
                Phase::Bootstrapping,
                Step::RestoreCluster {
                    members: desired.replicas,
                    version: desired.version,
                    path: path.clone(),
                },
            ),
            Bootstrap::Unsupported(why) => counts.wait(Phase::Degraded, why.clone()),
        };
    }
    let seed = match observed.runtime.as_slice() {
        [only] if only.ordinal == 0 => Some(only),
        _ => None,
    };
    // Its Pod or process went away before it ever wrote member data: nobody's data is at stake,
    // so it starts again as the seed of a new cluster.
    if seed.is_some_and(|r| !r.running && r.data == DataState::Empty) && intent.is_none() {
        return counts.step(
            Phase::Bootstrapping,
            Step::StartSeed {
                ordinal: 0,
                version: desired.version,
            },
        );
    }
    if let Some(plan) = start_stopped(observed, counts) {
        return plan;
    }
    if intent.is_some() {
        return counts.wait(
            Phase::Unavailable,
            "etcd is unreachable; waiting to finish the step in flight".to_owned(),
        );
    }
    if seed.is_some_and(|r| r.running && r.data != DataState::Lost) {
        return counts.wait(
            Phase::Bootstrapping,
            format!(
                "waiting for the seed member {} to answer",
                desired.member_name(0)
            ),
        );
    }
    counts.wait(
        Phase::Unavailable,
        format!(
            "etcd is unreachable; {} runtime member(s) exist, so the cluster is not bootstrapped \
             again; waiting for the running members to answer",
            observed.runtime.len()
        ),
    )
}

/// While etcd is unreachable: start again the lowest stopped member whose storage holds member
/// data, one per pass without waiting for it to answer (quorum comes back only when enough
/// members run at once). Never a member whose data is lost or empty (the replace path handles
/// those once etcd answers), nor the member of the step in flight: a learner being added has no
/// data of its own yet, and a member being removed must not come back.
fn start_stopped(observed: &Observed, counts: &Counts) -> Option<Plan> {
    let in_flight = observed.intent.as_ref().map(|i| match i {
        Intent::AddLearner { ordinal, .. } | Intent::RemoveMember { ordinal, .. } => *ordinal,
    });
    let r = observed
        .runtime
        .iter()
        .filter(|r| !r.running && r.data == DataState::Present && Some(r.ordinal) != in_flight)
        .min_by_key(|r| r.ordinal)?;
    let mut plan = counts.step(
        Phase::Unavailable,
        Step::StartStopped {
            ordinal: r.ordinal,
            version: r.version,
        },
    );
    plan.status.message = format!(
        "etcd is unreachable: {} (it rejoins with its own identity)",
        plan.status.message
    );
    Some(plan)
}

/// One etcd member with its ordinal and runtime member.
#[derive(Clone, Copy)]
struct Slot<'a> {
    ordinal: u32,
    member: &'a EtcdMember,
    runtime: Option<&'a RuntimeMember>,
}

/// The reachable cluster, with etcd members matched to ordinals.
struct Cluster<'a> {
    desired: &'a Desired,
    observed: &'a Observed,
    membership: &'a Membership,
    counts: Counts,
    /// Members matched to an ordinal, sorted by ordinal.
    slots: Vec<Slot<'a>>,
    /// Members that match no ordinal, or share one with another member.
    strangers: Vec<&'a EtcdMember>,
    /// The leader, if it is a known voter.
    leader: Option<Slot<'a>>,
}

impl<'a> Cluster<'a> {
    fn new(
        desired: &'a Desired,
        observed: &'a Observed,
        membership: &'a Membership,
        counts: Counts,
    ) -> Self {
        let runtime = |ordinal: u32| observed.runtime.iter().find(|r| r.ordinal == ordinal);
        let mut slots: Vec<Slot<'a>> = Vec::new();
        let mut strangers = Vec::new();
        for member in &membership.members {
            let ordinal = if member.name.is_empty() {
                member
                    .peer_urls
                    .iter()
                    .find_map(|u| desired.ordinal_of_peer_url(u))
            } else {
                desired.ordinal_of(&member.name)
            };
            match ordinal {
                Some(ordinal) if slots.iter().all(|s| s.ordinal != ordinal) => slots.push(Slot {
                    ordinal,
                    member,
                    runtime: runtime(ordinal),
                }),
                _ => strangers.push(member),
            }
        }
        slots.sort_by_key(|s| s.ordinal);
        let leader = membership.leader.and_then(|id| {
            slots
                .iter()
                .copied()
                .find(|s| s.member.id == id && !s.member.is_learner)
        });
        Self {
            desired,
            observed,
            membership,
            counts,
            slots,
            strangers,
            leader,
        }
    }

    fn voters(&self) -> impl Iterator<Item = Slot<'a>> + '_ {
        self.slots.iter().copied().filter(|s| !s.member.is_learner)
    }

    fn learners(&self) -> impl Iterator<Item = Slot<'a>> + '_ {
        self.slots.iter().copied().filter(|s| s.member.is_learner)
    }

    fn all_members(&self) -> impl Iterator<Item = &'a EtcdMember> + '_ {
        self.slots
            .iter()
            .map(|s| s.member)
            .chain(self.strangers.iter().copied())
    }

    fn slot_by_id(&self, id: u64) -> Option<Slot<'a>> {
        self.slots.iter().copied().find(|s| s.member.id == id)
    }

    fn is_leader(&self, slot: Slot<'_>) -> bool {
        self.leader.is_some_and(|l| l.member.id == slot.member.id)
    }

    fn voter_count(&self) -> usize {
        self.all_members().filter(|m| !m.is_learner).count()
    }

    fn healthy_voters(&self) -> usize {
        self.all_members()
            .filter(|m| !m.is_learner && is_healthy(m))
            .count()
    }

    fn all_voters_healthy(&self) -> bool {
        self.voter_count() > 0 && self.healthy_voters() == self.voter_count()
    }

    fn failed(&self, runtime: &RuntimeMember) -> bool {
        self.desired.replace_after_failures > 0
            && runtime.failures >= self.desired.replace_after_failures
    }

    fn no_space(&self) -> bool {
        self.all_members()
            .any(|m| m.alarms.contains(&Alarm::NoSpace))
    }

    /// Removing this member leaves a majority of healthy voters (learners: always).
    fn can_remove(&self, member: &EtcdMember) -> bool {
        if member.is_learner {
            return true;
        }
        let remaining = self.voter_count() - 1;
        let healthy = self.healthy_voters() - usize::from(is_healthy(member));
        remaining > 0 && healthy >= quorum(remaining)
    }

    /// Restarting this voter leaves a majority of healthy voters, or it is the single member of
    /// a single-member cluster.
    fn can_restart(&self, member: &EtcdMember) -> bool {
        let voters = self.voter_count();
        let healthy_others = self.healthy_voters() - usize::from(is_healthy(member));
        healthy_others >= quorum(voters) || (voters == 1 && self.desired.replicas == 1)
    }

    /// A healthy voter other than the leader to move leadership to, preferring `prefer`, then
    /// the lowest ordinal.
    fn leader_target(&self, prefer: impl Fn(Slot<'a>) -> bool) -> Option<Slot<'a>> {
        let leader = self.leader?;
        let mut candidates: Vec<Slot<'a>> = self
            .voters()
            .filter(|s| s.member.id != leader.member.id && is_healthy(s.member))
            .collect();
        candidates.sort_by_key(|s| (!prefer(*s), s.ordinal));
        candidates.first().copied()
    }

    fn wait(&self, phase: Phase, message: String) -> Plan {
        self.counts.wait(phase, message)
    }

    fn step(&self, phase: Phase, step: Step) -> Plan {
        self.counts.step(phase, step)
    }

    fn name(&self, ordinal: u32) -> String {
        self.desired.member_name(ordinal)
    }

    /// Remove `slot` from etcd if quorum allows, moving leadership away first when it leads.
    fn remove(&self, phase: Phase, slot: Slot<'a>, why: &str) -> Plan {
        if self.is_leader(slot) {
            let stays = |s: Slot<'a>| s.ordinal < self.desired.replicas;
            return match self.leader_target(stays) {
                Some(to) => {
                    let mut plan = self.step(
                        phase,
                        Step::MoveLeader {
                            from: slot.member.id,
                            to: to.member.id,
                        },
                    );
                    plan.status.message = format!(
                        "{}: {} leads and {why}",
                        plan.status.message,
                        self.name(slot.ordinal)
                    );
                    plan
                }
                None => self.wait(
                    Phase::Degraded,
                    format!(
                        "{why}: {} leads and no other voter is healthy to take over",
                        self.name(slot.ordinal)
                    ),
                ),
            };
        }
        if self.can_remove(slot.member) {
            let step = Step::RemoveMember {
                member_id: slot.member.id,
                ordinal: slot.ordinal,
            };
            let mut plan = self.step(phase, step);
            plan.status.message = format!("{}: {why}", plan.status.message);
            plan
        } else {
            self.wait(
                Phase::Degraded,
                format!(
                    "{why}: removing {} now would lose quorum ({} of {} voters healthy)",
                    self.name(slot.ordinal),
                    self.healthy_voters(),
                    self.voter_count()
                ),
            )
        }
    }

    /// The version a new member runs: the desired one when every member may move to it, else
    /// the oldest version a member runs.
    fn new_member_version(&self) -> Version {
        let versions = self
            .slots
            .iter()
            .filter_map(|s| s.runtime.map(|r| r.version));
        let oldest = versions.clone().min();
        let newest = versions.max();
        match (oldest, newest) {
            (Some(oldest), Some(newest)) => {
                if oldest.check_upgrade(self.desired.version).is_ok()
                    && newest.check_upgrade(self.desired.version).is_ok()
                {
                    self.desired.version
                } else {
                    oldest
                }
            }
            _ => self.desired.version,
        }
    }

    fn plan(&self) -> Plan {
        if let Some(intent) = &self.observed.intent {
            return self.resume(intent);
        }
        if let Some(stranger) = self.strangers.first() {
            return self.wait(
                Phase::Degraded,
                format!(
                    "etcd member {:x} ({:?}) matches no free ordinal of {}; remove it by hand",
                    stranger.id, stranger.name, self.desired.cluster
                ),
            );
        }
        if let Some(plan) = self.delete_orphan() {
            return plan;
        }
        if let Some(plan) = self.handle_learner() {
            return plan;
        }
        if let Some(plan) = self.start_stopped_voter() {
            return plan;
        }
        if let Some(plan) = self.replace_failed() {
            return plan;
        }
        if let Some(plan) = self.scale_down() {
            return plan;
        }
        if let Some(plan) = self.recover_no_space() {
            return plan;
        }
        if let Some(plan) = self.scale_up() {
            return plan;
        }
        let plan = self.roll();
        if plan.next.is_none() && plan.status.phase == Phase::Healthy {
            if let Some(defrag) = self.defragment_fragmented() {
                return defrag;
            }
            if let Some(snapshot) = self.snapshot_due() {
                return snapshot;
            }
        }
        plan
    }

    /// Once nothing else is to do: a snapshot when the last one is at least
    /// [`BackupSchedule::every`] old (or there is none), from the lowest-ordinal healthy
    /// follower (the leader only when it is the only voter).
    fn snapshot_due(&self) -> Option<Plan> {
        let every = self.desired.backup.as_ref()?.every;
        let now = self.observed.now?;
        if self.maintenance_blocked().is_some() {
            return None;
        }
        let age = match self.observed.last_snapshot {
            // A last snapshot in the future means the clock went back: take one.
            Some(last) => match now.duration_since(last) {
                Ok(age) if age < every => return None,
                Ok(age) => Some(age),
                Err(_) => None,
            },
            None => None,
        };
        let slot = self.defrag_candidate(is_healthy)?;
        let mut plan = self.step(
            Phase::Healthy,
            Step::Snapshot {
                member_id: slot.member.id,
                ordinal: slot.ordinal,
            },
        );
        plan.status.message = format!(
            "{} ({}{}): {}",
            plan.status.message,
            self.name(slot.ordinal),
            if self.is_leader(slot) {
                ", the leader: no follower"
            } else {
                ", a follower"
            },
            match (self.observed.last_snapshot, age) {
                (None, _) => "no snapshot yet".to_owned(),
                (Some(_), Some(age)) => format!(
                    "the last is {}s old (every {}s)",
                    age.as_secs(),
                    every.as_secs()
                ),
                (Some(_), None) => "the last is dated in the future".to_owned(),
            }
        );
        Some(plan)
    }

    /// Why no maintenance step may run now, if one may not: every voter must be healthy and
    /// running, the leader known, no learner joining, no step in flight.
    fn maintenance_blocked(&self) -> Option<String> {
        if self.observed.intent.is_some() {
            return Some("a membership step is in flight".to_owned());
        }
        if let Some(l) = self.learners().next() {
            return Some(format!("learner {} is joining", self.name(l.ordinal)));
        }
        let down: Vec<String> = self
            .voters()
            .filter(|s| !is_healthy(s.member) || !s.runtime.is_some_and(|r| r.running))
            .map(|s| self.name(s.ordinal))
            .collect();
        if !down.is_empty() || !self.all_voters_healthy() {
            return Some(format!("unhealthy members: {}", down.join(", ")));
        }
        if self.leader.is_none() {
            return Some("no leader is known".to_owned());
        }
        None
    }

    /// The voter to defragment among those matching `pred`: the lowest-ordinal follower, the
    /// leader only when no follower matches.
    fn defrag_candidate(&self, pred: impl Fn(&EtcdMember) -> bool) -> Option<Slot<'a>> {
        let mut candidates: Vec<Slot<'a>> = self.voters().filter(|s| pred(s.member)).collect();
        candidates.sort_by_key(|s| (self.is_leader(*s), s.ordinal));
        candidates.first().copied()
    }

    /// Defragment `slot` if the other voters keep quorum while it is blocked.
    fn defrag_step(&self, phase: Phase, slot: Slot<'a>, why: &str) -> Plan {
        if !self.can_restart(slot.member) {
            return self.wait(
                Phase::Degraded,
                format!(
                    "{why}: defragmenting {} now would block a quorum{}",
                    self.name(slot.ordinal),
                    if self.voter_count() == 2 {
                        " (a two-member cluster cannot spare a member; scale to 3)"
                    } else {
                        ""
                    }
                ),
            );
        }
        let m = slot.member;
        let mut plan = self.step(
            phase,
            Step::Defragment {
                member_id: m.id,
                ordinal: slot.ordinal,
            },
        );
        plan.status.message = format!(
            "{why}: {} ({}: {} of {} in use{})",
            plan.status.message,
            self.name(slot.ordinal),
            mib(m.db_size_in_use),
            mib(m.db_size),
            if self.is_leader(slot) {
                ", the leader, last"
            } else {
                ""
            }
        );
        plan
    }

    /// While a NOSPACE alarm is raised: compact, defragment every voter not defragmented since
    /// the compaction, then disarm once every voter's database is under the disarm limit.
    fn recover_no_space(&self) -> Option<Plan> {
        let raised = self
            .voters()
            .find(|s| s.member.alarms.contains(&Alarm::NoSpace))?;
        let m = self.desired.maintenance;
        if !m.handle_no_space {
            return Some(self.wait(
                Phase::Degraded,
                "a NOSPACE alarm is raised and spec.maintenance.alarms.handleNoSpace is false: \
                 compact, defragment and disarm it by hand"
                    .to_owned(),
            ));
        }
        if let Some(why) = self.maintenance_blocked() {
            return Some(self.wait(
                Phase::Degraded,
                format!("a NOSPACE alarm is raised; recovery waits: {why}"),
            ));
        }
        let revision = self.membership.revision;
        match self.membership.compacted {
            Some(true) => {}
            Some(false) => {
                let mut plan = self.step(Phase::Degraded, Step::Compact { revision });
                plan.status.message = format!("NOSPACE alarm raised: {}", plan.status.message);
                return Some(plan);
            }
            None => {
                return Some(self.wait(
                    Phase::Degraded,
                    format!(
                        "a NOSPACE alarm is raised; waiting to learn whether the history is \
                         compacted to revision {revision}"
                    ),
                ));
            }
        }
        // Compacted at `revision`: a member defragmented at or after it has given back all it can.
        if let Some(slot) =
            self.defrag_candidate(|m| m.defragmented_at.is_none_or(|r| r < revision))
        {
            return Some(self.defrag_step(Phase::Degraded, slot, "NOSPACE alarm raised"));
        }
        let limit = m.disarm_below();
        let over: Vec<String> = self
            .voters()
            .filter(|s| s.member.db_size >= limit)
            .map(|s| format!("{} {}", self.name(s.ordinal), mib(s.member.db_size)))
            .collect();
        if over.is_empty() {
            let mut plan = self.step(
                Phase::Degraded,
                Step::DisarmAlarm {
                    member_id: raised.member.id,
                    alarm: Alarm::NoSpace,
                },
            );
            plan.status.message = format!(
                "{} ({}): compacted and defragmented, every database is under {} of the {} quota",
                plan.status.message,
                self.name(raised.ordinal),
                mib(limit),
                mib(m.quota_backend_bytes)
            );
            return Some(plan);
        }
        Some(self.wait(
            Phase::Degraded,
            format!(
                "a NOSPACE alarm is raised and stays: compacted and defragmented, the data \
                 still does not fit ({}; the alarm is disarmed under {} of the {} quota); delete \
                 data or raise spec.etcd.quotaBackendBytes",
                over.join(", "),
                mib(limit),
                mib(m.quota_backend_bytes)
            ),
        ))
    }

    /// Once nothing else is to do: defragment a voter fragmented beyond the threshold.
    fn defragment_fragmented(&self) -> Option<Plan> {
        let m = self.desired.maintenance;
        if !m.defragment || self.maintenance_blocked().is_some() {
            return None;
        }
        let slot =
            self.defrag_candidate(|e| m.needs_defragmentation(e.db_size, e.db_size_in_use))?;
        let why = format!(
            "fragmentation above {}% (from {} on)",
            m.defrag_max_fragmentation_percent,
            mib(m.defrag_min_db_size)
        );
        let plan = self.defrag_step(Phase::Maintenance, slot, &why);
        // A defragmentation that would block a quorum waits without degrading a healthy cluster.
        plan.next.is_some().then_some(plan)
    }

    /// Finish or drop the recorded intent.
    fn resume(&self, intent: &Intent) -> Plan {
        match intent {
            Intent::AddLearner {
                ordinal,
                peer_url,
                member_id,
            } => {
                let found = self.all_members().find(|m| match member_id {
                    Some(id) => m.id == *id,
                    None => m.peer_urls.iter().any(|u| u == peer_url),
                });
                let runtime = self.observed.runtime.iter().any(|r| r.ordinal == *ordinal);
                match found {
                    Some(m) if m.is_learner && !m.started && !runtime => self.step(
                        Phase::Scaling,
                        Step::StartMember {
                            ordinal: *ordinal,
                            member_id: m.id,
                            version: self.new_member_version(),
                        },
                    ),
                    _ => self.step(Phase::Scaling, Step::ClearIntent),
                }
            }
            Intent::RemoveMember { ordinal, member_id } => {
                if let Some(slot) = self.slot_by_id(*member_id) {
                    return self.remove(Phase::Scaling, slot, "finishing a member removal");
                }
                if self.strangers.iter().any(|m| m.id == *member_id) {
                    return self.wait(
                        Phase::Degraded,
                        format!("member {member_id:x} being removed no longer matches an ordinal"),
                    );
                }
                let member_at_ordinal = self.slots.iter().any(|s| s.ordinal == *ordinal);
                let runtime = self.observed.runtime.iter().any(|r| r.ordinal == *ordinal);
                if runtime && !member_at_ordinal {
                    self.step(Phase::Scaling, Step::DeleteMember { ordinal: *ordinal })
                } else {
                    self.step(Phase::Scaling, Step::ClearIntent)
                }
            }
        }
    }

    /// A runtime member for an ordinal etcd does not know is left over: delete it.
    fn delete_orphan(&self) -> Option<Plan> {
        let orphan = self
            .observed
            .runtime
            .iter()
            .filter(|r| self.slots.iter().all(|s| s.ordinal != r.ordinal))
            .max_by_key(|r| r.ordinal)?;
        Some(self.step(
            Phase::Scaling,
            Step::DeleteMember {
                ordinal: orphan.ordinal,
            },
        ))
    }

    /// Start, promote or remove the learner; while one exists no other membership change runs.
    fn handle_learner(&self) -> Option<Plan> {
        let learners: Vec<Slot<'a>> = self.learners().collect();
        if learners.len() > 1 {
            // Never planned, but repair it: drop the least advanced extra learner.
            let extra = learners
                .iter()
                .copied()
                .max_by_key(|s| (!s.member.started, s.ordinal))?;
            return Some(self.remove(Phase::Scaling, extra, "more than one learner"));
        }
        let learner = *learners.first()?;
        let name = self.name(learner.ordinal);
        if learner.ordinal >= self.desired.replicas {
            return Some(self.remove(Phase::Scaling, learner, "learner no longer wanted"));
        }
        let Some(runtime) = learner.runtime else {
            return Some(if learner.member.started {
                self.remove(Phase::Replacing, learner, "learner lost its runtime member")
            } else {
                self.step(
                    Phase::Scaling,
                    Step::StartMember {
                        ordinal: learner.ordinal,
                        member_id: learner.member.id,
                        version: self.new_member_version(),
                    },
                )
            });
        };
        if runtime.data == DataState::Lost || self.failed(runtime) {
            return Some(self.remove(Phase::Replacing, learner, "learner failed"));
        }
        if !runtime.running {
            return Some(self.step(
                Phase::Scaling,
                Step::StartMember {
                    ordinal: learner.ordinal,
                    member_id: learner.member.id,
                    version: runtime.version,
                },
            ));
        }
        if !is_healthy(learner.member) {
            return Some(self.wait(
                Phase::Scaling,
                format!("waiting for learner {name} to start and become healthy"),
            ));
        }
        let Some(leader) = self.leader else {
            return Some(self.wait(
                Phase::Scaling,
                format!("learner {name} waits for a known leader"),
            ));
        };
        if !caught_up(learner.member.raft_index, leader.member.raft_index) {
            return Some(self.wait(
                Phase::Scaling,
                format!(
                    "learner {name} is catching up (raft index {} of {})",
                    learner.member.raft_index, leader.member.raft_index
                ),
            ));
        }
        let voters = self.voter_count();
        if self.healthy_voters() + 1 < quorum(voters + 1) {
            return Some(self.wait(
                Phase::Degraded,
                format!("promoting learner {name} now would leave the cluster without quorum"),
            ));
        }
        Some(self.step(
            Phase::Scaling,
            Step::PromoteLearner {
                member_id: learner.member.id,
            },
        ))
    }

    /// A voter whose process stopped but whose data is present is started again.
    fn start_stopped_voter(&self) -> Option<Plan> {
        let slot = self.voters().find(|s| {
            s.runtime
                .is_some_and(|r| !r.running && r.data != DataState::Lost && !self.failed(r))
                && !s.member.alarms.contains(&Alarm::Corrupt)
        })?;
        let runtime = slot.runtime?;
        Some(self.step(
            Phase::Degraded,
            Step::StartMember {
                ordinal: slot.ordinal,
                member_id: slot.member.id,
                version: runtime.version,
            },
        ))
    }

    /// Remove a voter that lost its data or runtime member, is corrupt, or keeps failing; the
    /// scale-up path adds it back as a learner.
    fn replace_failed(&self) -> Option<Plan> {
        let reason = |s: &Slot<'a>| -> Option<&'static str> {
            if s.member.alarms.contains(&Alarm::Corrupt) {
                return Some("its data is corrupt");
            }
            match s.runtime {
                None => Some("its runtime member is gone"),
                Some(r) if r.data == DataState::Lost => Some("its data is lost"),
                Some(r) if self.failed(r) && !is_healthy(s.member) => Some("it keeps failing"),
                Some(_) => None,
            }
        };
        let (slot, why) = self
            .voters()
            .filter_map(|s| reason(&s).map(|why| (s, why)))
            .max_by_key(|(s, _)| s.ordinal)?;
        let why = format!("replacing {} because {why}", self.name(slot.ordinal));
        Some(self.remove(Phase::Replacing, slot, &why))
    }

    /// Remove the highest ordinal above the desired count that is not the leader.
    fn scale_down(&self) -> Option<Plan> {
        let mut extra: Vec<Slot<'a>> = self
            .voters()
            .filter(|s| s.ordinal >= self.desired.replicas)
            .collect();
        extra.sort_by_key(|s| std::cmp::Reverse(s.ordinal));
        let first = *extra.first()?;
        let pick = extra
            .iter()
            .copied()
            .find(|s| !self.is_leader(*s))
            .unwrap_or(first);
        Some(self.remove(Phase::Scaling, pick, "scaling down"))
    }

    /// Add the lowest missing ordinal as a learner when every voter is healthy.
    fn scale_up(&self) -> Option<Plan> {
        let missing =
            (0..self.desired.replicas).find(|o| self.slots.iter().all(|s| s.ordinal != *o))?;
        if !self.all_voters_healthy() {
            return Some(self.wait(
                Phase::Degraded,
                format!(
                    "{} of {} voters are healthy; members are added only to a healthy cluster",
                    self.healthy_voters(),
                    self.voter_count()
                ),
            ));
        }
        if self.leader.is_none() {
            return Some(self.wait(
                Phase::Degraded,
                "no leader is known; waiting before adding a member".to_owned(),
            ));
        }
        if self.no_space() {
            return Some(self.wait(
                Phase::Degraded,
                "a NOSPACE alarm is raised; no member is added until it is disarmed".to_owned(),
            ));
        }
        Some(self.step(
            Phase::Scaling,
            Step::AddLearner {
                ordinal: missing,
                peer_url: self.desired.peer_url(missing),
            },
        ))
    }

    /// Restart members on the desired version and configuration, one at a time, followers
    /// first, then the leader after moving leadership away.
    fn roll(&self) -> Plan {
        let unhealthy: Vec<String> = self
            .voters()
            .filter(|s| !is_healthy(s.member) || !s.runtime.is_some_and(|r| r.running))
            .map(|s| self.name(s.ordinal))
            .collect();
        let target = self.desired.version;
        let needs_restart = |s: &Slot<'a>| {
            s.runtime
                .is_some_and(|r| r.version != target || r.config_hash != self.desired.config_hash)
        };
        let pending: Vec<Slot<'a>> = self.voters().filter(needs_restart).collect();
        if pending.is_empty() {
            return if unhealthy.is_empty() {
                self.wait(
                    Phase::Healthy,
                    format!("{} members healthy on {target}", self.voter_count()),
                )
            } else {
                self.wait(
                    Phase::Degraded,
                    format!("unhealthy members: {}", unhealthy.join(", ")),
                )
            };
        }
        for slot in &self.slots {
            if let Some(Err(skew)) = slot.runtime.map(|r| r.version.check_upgrade(target)) {
                return self.wait(
                    Phase::Degraded,
                    format!("{}: {skew}", self.name(slot.ordinal)),
                );
            }
        }
        if !unhealthy.is_empty() {
            return self.wait(
                Phase::Degraded,
                format!(
                    "rolling restart waits for every member to be healthy; unhealthy: {}",
                    unhealthy.join(", ")
                ),
            );
        }
        if let Some(slot) = self.voters().find(|s| {
            s.runtime
                .is_some_and(|r| s.member.version.is_some_and(|v| v != r.version))
        }) {
            return self.wait(
                Phase::Upgrading,
                format!(
                    "waiting for {} to report the version it was started with",
                    self.name(slot.ordinal)
                ),
            );
        }
        if self.no_space() {
            return self.wait(
                Phase::Degraded,
                "a NOSPACE alarm is raised; no member is restarted until it is disarmed".to_owned(),
            );
        }
        let Some(leader) = self.leader else {
            return self.wait(
                Phase::Upgrading,
                "no leader is known; waiting before restarting a member".to_owned(),
            );
        };
        let follower = pending
            .iter()
            .copied()
            .filter(|s| s.member.id != leader.member.id)
            .max_by_key(|s| s.ordinal);
        let slot = match follower {
            Some(slot) => slot,
            None => {
                if self.voter_count() > 1 {
                    let done = |s: Slot<'a>| !needs_restart(&s);
                    return match self.leader_target(done) {
                        Some(to) => self.step(
                            Phase::Upgrading,
                            Step::MoveLeader {
                                from: leader.member.id,
                                to: to.member.id,
                            },
                        ),
                        None => self.wait(
                            Phase::Degraded,
                            "no healthy voter can take over leadership".to_owned(),
                        ),
                    };
                }
                leader
            }
        };
        if !self.can_restart(slot.member) {
            return self.wait(
                Phase::Degraded,
                format!(
                    "restarting {} now would lose quorum{}",
                    self.name(slot.ordinal),
                    if self.voter_count() == 2 {
                        " (a two-member cluster cannot restart a member and keep quorum; \
                         scale to 3 first)"
                    } else {
                        ""
                    }
                ),
            );
        }
        self.step(
            Phase::Upgrading,
            Step::RestartMember {
                ordinal: slot.ordinal,
                version: target,
            },
        )
    }
}
