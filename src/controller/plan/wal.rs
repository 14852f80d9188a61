//! The etcd 3.7 log-replay trap: etcd 3.7.3 cannot apply the v2 entries that etcd 3.5 wrote
//! into the raft log (for example the cluster version as `PUT /0/version`; 3.7 panics with
//! "unmarshal should never fail"). A member replays its log from its last raft snapshot when it
//! starts, and a new member is sent the leader's log from the leader's last snapshot, so a
//! member may run 3.7 only once the snapshot it starts from was taken after the cluster's last
//! v2 entry.
//!
//! The operator records the raft index from which every entry was written by 3.6 or later
//! ([`Observed::v3_log_from_index`]: when every member first reports storage version 3.6). etcd
//! takes a raft snapshot every `snapshotCount` applied entries, so a member whose raft index is
//! at least that index plus its snapshot count has taken one since. Before restarting a member
//! onto 3.7 the planner checks this; on a cluster that writes too little to get there it
//! appends entries that change no key ([`Step::AdvanceRaftLog`]: lease grants and revokes, which
//! bump no revision and wake no watcher), at most [`ADVANCE_MAX`] per pass. A new member joins on
//! the version the others run until the leader is past the same mark.

use super::reachable::{ReachableCluster, Slot};
use super::*;

/// The most entries one [`Step::AdvanceRaftLog`] appends.
pub const ADVANCE_MAX: u64 = 5_000;

/// Entries appended beyond the strict need, for the entries a member applies between the
/// observation and the check.
const MARGIN: u64 = 16;

/// etcd's `--snapshot-count` default for a version: 100 000 up to 3.5, 10 000 from 3.6 on.
pub fn default_snapshot_count(version: Version) -> u64 {
    if (version.major, version.minor) >= (3, 6) {
        10_000
    } else {
        100_000
    }
}

/// Whether a member moving from `from` to `to` must start from a log without v2 entries.
pub fn needs_v3_log(from: Version, to: Version) -> bool {
    (from.major, from.minor) < (3, 7) && (to.major, to.minor) >= (3, 7)
}

/// How many more entries a member running `running` at `raft_index` needs before it has taken
/// a raft snapshot past `v3_from` (0: it has). `v3_from` 0 is a log that never held a v2 entry
/// (a cluster created on 3.6 or later): nothing is missing.
pub fn entries_missing(
    raft_index: u64,
    v3_from: u64,
    running: Version,
    snapshot_count: Option<u64>,
) -> u64 {
    if v3_from == 0 {
        return 0;
    }
    let count = snapshot_count.unwrap_or_else(|| default_snapshot_count(running));
    v3_from
        .saturating_add(count)
        .saturating_add(MARGIN)
        .saturating_sub(raft_index)
}

impl<'a> ReachableCluster<'a> {
    /// Entries the member of `slot` still needs before it may run `target`: `Ok(0)` when it may,
    /// `Err` (a message) when the mark is not known yet.
    pub(super) fn v3_log_missing(&self, slot: &Slot<'a>, target: Version) -> Result<u64, String> {
        let Some(running) = slot.runtime.map(|r| r.version) else {
            return Ok(0);
        };
        if !needs_v3_log(running, target) {
            return Ok(0);
        }
        let Some(from) = self.observed.v3_log_from_index else {
            return Err(format!(
                "waiting for every member to report storage version 3.6 before {} moves to \
                 {target} (etcd 3.7 cannot replay the v2 log entries etcd 3.5 wrote)",
                self.name(slot.ordinal)
            ));
        };
        Ok(entries_missing(
            slot.member.raft_index,
            from,
            running,
            self.desired.snapshot_count,
        ))
    }

    /// Before `slot` restarts onto `target`: `None` when it may, else the plan that gets it
    /// there (entries appended, or a wait saying why).
    pub(super) fn v3_log_guard(&self, slot: &Slot<'a>, target: Version) -> Option<Plan> {
        match self.v3_log_missing(slot, target) {
            Ok(0) => None,
            Ok(missing) => Some(self.counts.step_with(
                Phase::Upgrading,
                Step::AdvanceRaftLog {
                    entries: missing.min(ADVANCE_MAX),
                },
                format!(
                    "{} must take a raft snapshot on {} before it runs {target} (etcd 3.7 cannot \
                     replay the v2 log entries etcd 3.5 wrote): appending {} of the {missing} \
                     raft entries it still needs (lease grants and revokes; no key changes)",
                    self.name(slot.ordinal),
                    slot.runtime.map_or(target, |r| r.version),
                    missing.min(ADVANCE_MAX),
                ),
            )),
            Err(why) => Some(self.wait(Phase::Upgrading, why)),
        }
    }

    /// Whether a new member may join on `version` now: not 3.7 while others run 3.6 and the
    /// leader (whose log it is sent) may still hold v2 entries.
    pub(super) fn new_member_may_run(&self, version: Version) -> bool {
        let Some(leader) = self.leader else {
            return true;
        };
        self.v3_log_missing(&leader, version)
            .is_ok_and(|missing| missing == 0)
    }
}
