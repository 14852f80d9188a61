//! Scheduled snapshots and their verification.

use super::reachable::ReachableCluster;
use super::*;

/// Whether the snapshot numbered `sequence` (1 for the schedule's first) is verified under
/// `every_nth` (`spec.backup.verify.everyNth`): none with 0; else the first and every Nth after
/// it (1, N+1, 2N+1 ...), so that a schedule's first snapshot is always verified (it finds a
/// misconfiguration at once). A snapshot recorded without a count (0) counts as the first.
pub fn verification_due(every_nth: u32, sequence: u64) -> bool {
    every_nth > 0
        && sequence
            .saturating_sub(1)
            .is_multiple_of(u64::from(every_nth))
}

impl<'a> ReachableCluster<'a> {
    /// Once nothing else is to do (the gate of snapshots): a verification of the last recorded
    /// snapshot when none is recorded for it and [`verification_due`] says its number is
    /// verified. Planned before the next snapshot, so that every snapshot the policy names is
    /// verified before it is superseded.
    pub(super) fn verification_due(&self) -> Option<Plan> {
        let every_nth = self.desired.backup.as_ref()?.verify_every_nth;
        let snapshot = self.observed.unverified_snapshot.as_ref()?;
        if !verification_due(every_nth, snapshot.sequence) || self.maintenance_blocked().is_some() {
            return None;
        }
        let mut plan = self.step(
            Phase::Healthy,
            Step::VerifySnapshot {
                snapshot: snapshot.clone(),
            },
        );
        plan.status.message = format!(
            "{}: snapshot number {} of the schedule, verified one in {every_nth}",
            plan.status.message,
            snapshot.sequence.max(1)
        );
        Some(plan)
    }

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
