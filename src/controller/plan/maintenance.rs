//! Maintenance: defragmentation and NOSPACE recovery.

use super::reachable::{ReachableCluster, Slot};
use super::*;

impl<'a> ReachableCluster<'a> {
    /// Why no maintenance step may run now, if one may not: every voter must be healthy and
    /// running, the leader known, no learner joining, no step in flight.
    pub(super) fn maintenance_blocked(&self) -> Option<String> {
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
    pub(super) fn defrag_candidate(&self, pred: impl Fn(&EtcdMember) -> bool) -> Option<Slot<'a>> {
        let mut candidates: Vec<Slot<'a>> = self.voters().filter(|s| pred(s.member)).collect();
        candidates.sort_by_key(|s| (self.is_leader(*s), s.ordinal));
        candidates.first().copied()
    }

    /// Defragment `slot` if the other voters keep quorum while it is blocked.
    pub(super) fn defrag_step(&self, phase: Phase, slot: Slot<'a>, why: &str) -> Plan {
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
    pub(super) fn recover_no_space(&self) -> Option<Plan> {
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
    pub(super) fn defragment_fragmented(&self) -> Option<Plan> {
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
}
