//! The planner's inputs and outputs: the desired state, the observation, the plan.

use super::*;

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
    /// How often the consistency check runs (see [`corruption_check_due`]); `None`: never.
    pub corruption_check_every: Option<Duration>,
}

impl Default for Maintenance {
    /// The API's defaults: defragment above 50 % fragmentation from 64 MiB on, handle NOSPACE,
    /// etcd's default quota, a consistency check every 5 minutes.
    fn default() -> Self {
        Self {
            defragment: true,
            defrag_min_db_size: 64 * 1024 * 1024,
            defrag_max_fragmentation_percent: 50,
            handle_no_space: true,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
            corruption_check_every: Some(Duration::from_secs(300)),
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
    /// How many snapshots the act layer keeps (retention runs after each snapshot).
    pub keep: u32,
    /// Where the snapshots go.
    pub target: crate::controller::backup::BackupTarget,
    /// Verify one snapshot in this many (the first, then every Nth: see
    /// [`verification_due`](super::verification_due)); 0 verifies none.
    pub verify_every_nth: u32,
}

/// The last recorded snapshot while it has not been verified: what a verification checks it
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UnverifiedSnapshot {
    /// The schedule's count of snapshots, this one included (0: not counted).
    pub sequence: u64,
    /// The object's name in the store.
    pub object: String,
    /// Where it is (for messages).
    pub location: String,
    /// The SHA-256 recorded when it was stored (hex).
    pub sha256: String,
    /// The revision recorded when it was stored.
    pub revision: i64,
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
        /// Where the snapshot is.
        source: RestoreSource,
    },
    /// A restore was asked for that this runtime cannot run; nothing is created, the text says
    /// why.
    Unsupported(String),
}

/// Where the snapshot of a restore is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RestoreSource {
    /// A snapshot file the operator can read.
    File(std::path::PathBuf),
    /// An object in a store.
    Store {
        /// The store (and the Secrets for it).
        target: Box<crate::controller::backup::BackupTarget>,
        /// The object's name; `None`: the newest snapshot of `cluster`.
        object: Option<String>,
        /// The cluster whose snapshots are looked for when no object is named.
        cluster: String,
    },
}

impl std::fmt::Display for RestoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreSource::File(path) => write!(f, "snapshot {}", path.display()),
            RestoreSource::Store {
                target,
                object: Some(object),
                ..
            } => write!(f, "snapshot {object} in {}", store_url(target)),
            RestoreSource::Store {
                target, cluster, ..
            } => write!(
                f,
                "the newest snapshot of {cluster} in {}",
                store_url(target)
            ),
        }
    }
}

fn store_url(target: &crate::controller::backup::BackupTarget) -> String {
    let base = target.destination.url();
    if target.prefix.is_empty() {
        base
    } else {
        format!("{}/{}", base.trim_end_matches('/'), target.prefix)
    }
}

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
    /// `https://{name}.default.svc.cluster.local:2380` or `http://127.0.0.1:{port:12380}`.
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
    /// `spec.etcd.snapshotCount`, if set: how many applied entries a member keeps in its log
    /// before it takes a raft snapshot (otherwise the version's default,
    /// [`default_snapshot_count`]).
    pub snapshot_count: Option<u64>,
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
            snapshot_count: None,
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
    /// Alarms raised on member IDs that are not in [`Membership::members`] (a member removed
    /// while its alarm stayed).
    pub orphan_alarms: Vec<(u64, Alarm)>,
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
    /// Why it keeps failing, when the runtime can tell (its last words, or a known cause with
    /// its remedy): reported in the status, never read by the planner.
    pub diagnosis: Option<String>,
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
    /// After failed snapshot attempts: no snapshot is planned before this time (the back-off
    /// recorded in the status).
    pub snapshot_retry_at: Option<SystemTime>,
    /// The last recorded snapshot, when no verification of it is recorded yet.
    pub unverified_snapshot: Option<UnverifiedSnapshot>,
    /// The raft index from which every log entry was written by etcd 3.6 or later
    /// (`status.upgrade.v3LogFromIndex`); `None` while not known. See [`Step::AdvanceRaftLog`].
    pub v3_log_from_index: Option<u64>,
    /// What the latest consistency check found (this pass's, or the one the status records);
    /// `None` when none ran. See [`consistency`].
    pub corruption: Option<Consistency>,
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

/// The planner's answer: the status to report and at most one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The status to report.
    pub status: PlannedStatus,
    /// The next step, if any.
    pub next: Option<Step>,
}
