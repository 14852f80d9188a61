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
//!   alarm or whose hash the latest consistency check found differing from a majority's
//!   ([`consistency`]), or that failed [`Desired::replace_after_failures`] times is removed, deleted and added
//!   again as a learner, when quorum allows. A `CORRUPT` alarm left on a removed member is then
//!   disarmed ([`Step::DisarmAlarm`]); when no hash is shared by a majority, nothing changes
//!   until a person decides ([`Consistency::NoMajority`]).
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
//! - Verification (see [`verification_due`]): under the same conditions, before the next
//!   snapshot, the last recorded one is verified ([`Step::VerifySnapshot`]) when no verification
//!   of it is recorded and the policy names its number.
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

mod backup;
mod corruption;
mod maintenance;
mod membership;
mod reachable;
mod rolling;
mod step;
mod types;
mod unreachable;
mod version;
pub mod wal;

use std::fmt;
use std::time::{Duration, SystemTime};

use reachable::ReachableCluster;
use unreachable::{Counts, plan_unreachable};

pub use backup::verification_due;
pub use corruption::{Consistency, HashCheck, MemberHash, consistency, corruption_check_due};
pub use step::Step;
pub use types::*;
pub use version::*;
pub use wal::{ADVANCE_MAX, default_snapshot_count};

/// The largest replica count a cluster may ask for.
pub const MAX_REPLICAS: u32 = crate::api::rules::REPLICAS.1 as u32;

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
        Some(membership) => {
            let judged = observed
                .corruption
                .as_ref()
                .and_then(|v| corruption::with_verdict(membership, v));
            let membership = judged.as_ref().unwrap_or(membership);
            ReachableCluster::new(desired, observed, membership, counts).plan()
        }
    }
}
