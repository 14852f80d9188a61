//! Scheduled snapshots.

use super::reachable::ReachableCluster;
use super::*;

impl<'a> ReachableCluster<'a> {
    /// Once nothing else is to do: a snapshot when the last one is at least
    /// [`BackupSchedule::every`] old (or there is none) and no back-off after a failure runs
    /// ([`Observed::snapshot_retry_at`]), from the lowest-ordinal healthy follower (the leader
    /// only when it is the only voter).
    pub(super) fn snapshot_due(&self) -> Option<Plan> {
        let every = self.desired.backup.as_ref()?.every;
        let now = self.observed.now?;
        if self.maintenance_blocked().is_some() {
            return None;
        }
        // A failed attempt backs off (the time is recorded in the status).
        if self.observed.snapshot_retry_at.is_some_and(|at| now < at) {
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
}
