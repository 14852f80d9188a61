//! Rolling restarts onto a new version or configuration, one member at a time.

use super::reachable::{ReachableCluster, Slot};
use super::*;

impl<'a> ReachableCluster<'a> {
    /// Restart members on the desired version and configuration, one at a time, followers
    /// first, then the leader after moving leadership away.
    pub(super) fn roll(&self) -> Plan {
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
        if let Some(plan) = self.v3_log_guard(&slot, target) {
            return plan;
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
