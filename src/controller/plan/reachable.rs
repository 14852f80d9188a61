//! The reachable cluster: etcd members matched to ordinals, and the order in which the rule
//! families are asked for a step.

use super::*;

/// One etcd member with its ordinal and runtime member.
#[derive(Clone, Copy)]
pub(super) struct Slot<'a> {
    pub(super) ordinal: u32,
    pub(super) member: &'a EtcdMember,
    pub(super) runtime: Option<&'a RuntimeMember>,
}

/// The reachable cluster, with etcd members matched to ordinals.
pub(super) struct ReachableCluster<'a> {
    pub(super) desired: &'a Desired,
    pub(super) observed: &'a Observed,
    pub(super) membership: &'a Membership,
    pub(super) counts: Counts,
    /// Members matched to an ordinal, sorted by ordinal.
    pub(super) slots: Vec<Slot<'a>>,
    /// Members that match no ordinal, or share one with another member.
    pub(super) strangers: Vec<&'a EtcdMember>,
    /// The leader, if it is a known voter.
    pub(super) leader: Option<Slot<'a>>,
}

impl<'a> ReachableCluster<'a> {
    pub(super) fn new(
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

    pub(super) fn voters(&self) -> impl Iterator<Item = Slot<'a>> + '_ {
        self.slots.iter().copied().filter(|s| !s.member.is_learner)
    }

    pub(super) fn learners(&self) -> impl Iterator<Item = Slot<'a>> + '_ {
        self.slots.iter().copied().filter(|s| s.member.is_learner)
    }

    pub(super) fn all_members(&self) -> impl Iterator<Item = &'a EtcdMember> + '_ {
        self.slots
            .iter()
            .map(|s| s.member)
            .chain(self.strangers.iter().copied())
    }

    pub(super) fn slot_by_id(&self, id: u64) -> Option<Slot<'a>> {
        self.slots.iter().copied().find(|s| s.member.id == id)
    }

    pub(super) fn is_leader(&self, slot: Slot<'_>) -> bool {
        self.leader.is_some_and(|l| l.member.id == slot.member.id)
    }

    pub(super) fn voter_count(&self) -> usize {
        self.all_members().filter(|m| !m.is_learner).count()
    }

    pub(super) fn healthy_voters(&self) -> usize {
        self.all_members()
            .filter(|m| !m.is_learner && is_healthy(m))
            .count()
    }

    pub(super) fn all_voters_healthy(&self) -> bool {
        self.voter_count() > 0 && self.healthy_voters() == self.voter_count()
    }

    pub(super) fn failed(&self, runtime: &RuntimeMember) -> bool {
        self.desired.replace_after_failures > 0
            && runtime.failures >= self.desired.replace_after_failures
    }

    pub(super) fn no_space(&self) -> bool {
        self.all_members()
            .any(|m| m.alarms.contains(&Alarm::NoSpace))
    }

    /// Removing this member leaves a majority of healthy voters (learners: always).
    pub(super) fn can_remove(&self, member: &EtcdMember) -> bool {
        if member.is_learner {
            return true;
        }
        let remaining = self.voter_count() - 1;
        let healthy = self.healthy_voters() - usize::from(is_healthy(member));
        remaining > 0 && healthy >= quorum(remaining)
    }

    /// Restarting this voter leaves a majority of healthy voters, or it is the single member of
    /// a single-member cluster.
    pub(super) fn can_restart(&self, member: &EtcdMember) -> bool {
        let voters = self.voter_count();
        let healthy_others = self.healthy_voters() - usize::from(is_healthy(member));
        healthy_others >= quorum(voters) || (voters == 1 && self.desired.replicas == 1)
    }

    /// A healthy voter other than the leader to move leadership to, preferring `prefer`, then
    /// the lowest ordinal.
    pub(super) fn leader_target(&self, prefer: impl Fn(Slot<'a>) -> bool) -> Option<Slot<'a>> {
        let leader = self.leader?;
        let mut candidates: Vec<Slot<'a>> = self
            .voters()
            .filter(|s| s.member.id != leader.member.id && is_healthy(s.member))
            .collect();
        candidates.sort_by_key(|s| (!prefer(*s), s.ordinal));
        candidates.first().copied()
    }

    pub(super) fn wait(&self, phase: Phase, message: String) -> Plan {
        self.counts.wait(phase, message)
    }

    pub(super) fn step(&self, phase: Phase, step: Step) -> Plan {
        self.counts.step(phase, step)
    }

    pub(super) fn name(&self, ordinal: u32) -> String {
        self.desired.member_name(ordinal)
    }

    /// Remove `slot` from etcd if quorum allows, moving leadership away first when it leads.
    pub(super) fn remove(&self, phase: Phase, slot: Slot<'a>, why: &str) -> Plan {
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
    pub(super) fn new_member_version(&self) -> Version {
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
                    && self.new_member_may_run(self.desired.version)
                {
                    self.desired.version
                } else {
                    oldest
                }
            }
            _ => self.desired.version,
        }
    }

    pub(super) fn plan(&self) -> Plan {
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
        if let Some(plan) = self.no_majority() {
            return plan;
        }
        if let Some(plan) = self.disarm_stale_corrupt() {
            return plan;
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
            if let Some(verify) = self.verification_due() {
                return verify;
            }
            if let Some(snapshot) = self.snapshot_due() {
                return snapshot;
            }
        }
        plan
    }
}
