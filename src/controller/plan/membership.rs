//! Membership: resuming an intent, learners, replacing, scaling down and up.

use super::reachable::{ReachableCluster, Slot};
use super::*;

impl<'a> ReachableCluster<'a> {
    /// Finish or drop the recorded intent.
    pub(super) fn resume(&self, intent: &Intent) -> Plan {
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
    pub(super) fn delete_orphan(&self) -> Option<Plan> {
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
    pub(super) fn handle_learner(&self) -> Option<Plan> {
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
    pub(super) fn start_stopped_voter(&self) -> Option<Plan> {
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
    pub(super) fn replace_failed(&self) -> Option<Plan> {
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
    pub(super) fn scale_down(&self) -> Option<Plan> {
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
    pub(super) fn scale_up(&self) -> Option<Plan> {
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
}
