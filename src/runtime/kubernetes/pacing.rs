//! Pacing of passes over one `EtcdCluster`: the controller is woken by every change of the
//! cluster and of the objects it owns, the operator's own status writes included. Without a
//! gate, a step etcd refuses for a while ("unhealthy cluster" for five seconds after a
//! membership change) was retried about ten times a second, each retry woken by the status
//! write of the one before. [`Pacing`] keeps, per cluster, the earliest time of its next pass:
//! shortly after a step ran, later and later (doubling) while etcd answers "not yet", and at
//! once when the spec changes (a new `metadata.generation`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest pause between two passes over the same generation after a step ran.
pub const AFTER_STEP: Duration = Duration::from_millis(1000);
/// The first pause after etcd answered "not yet"; doubled on each further "not yet".
pub const NOT_YET_FIRST: Duration = Duration::from_secs(1);
/// The longest pause after repeated "not yet" answers.
pub const NOT_YET_MAX: Duration = Duration::from_secs(16);

/// How a pass ended, as far as pacing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// Nothing to do: no gate.
    Idle,
    /// A step ran.
    Stepped,
    /// The next step is not possible yet.
    NotYet,
}

/// The gate of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    generation: Option<i64>,
    not_before: Instant,
    not_yet_streak: u32,
}

/// The pause after the `streak`-th "not yet" in a row (1 for the first).
pub fn not_yet_pause(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    NOT_YET_FIRST
        .saturating_mul(1u32 << doublings)
        .min(NOT_YET_MAX)
}

/// Per-cluster gates, keyed by the cluster's UID.
#[derive(Debug, Default)]
pub struct Pacing {
    gates: Mutex<HashMap<String, Gate>>,
}

impl Pacing {
    /// How long a pass over cluster `uid` at `generation` must still wait, or `None` when it may
    /// run now (no gate, the gate expired, or the spec changed since).
    pub fn wait(&self, uid: &str, generation: Option<i64>, now: Instant) -> Option<Duration> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let gate = gates.get(uid)?;
        if gate.generation != generation || now >= gate.not_before {
            return None;
        }
        Some(gate.not_before - now)
    }

    /// Records how a pass over cluster `uid` at `generation` ended at `now`; answers the pause
    /// before the next pass.
    pub fn record(
        &self,
        uid: &str,
        generation: Option<i64>,
        end: PassEnd,
        now: Instant,
    ) -> Option<Duration> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let streak = gates
            .get(uid)
            .filter(|g| g.generation == generation)
            .map_or(0, |g| g.not_yet_streak);
        let (pause, streak) = match end {
            PassEnd::Idle => {
                gates.remove(uid);
                return None;
            }
            PassEnd::Stepped => (AFTER_STEP, 0),
            PassEnd::NotYet => (not_yet_pause(streak + 1), streak + 1),
        };
        gates.insert(
            uid.to_owned(),
            Gate {
                generation,
                not_before: now + pause,
                not_yet_streak: streak,
            },
        );
        Some(pause)
    }

    /// Forgets cluster `uid` (deleted).
    pub fn forget(&self, uid: &str) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_yet_pauses_double_up_to_the_cap() {
        assert_eq!(not_yet_pause(1), Duration::from_secs(1));
        assert_eq!(not_yet_pause(2), Duration::from_secs(2));
        assert_eq!(not_yet_pause(3), Duration::from_secs(4));
        assert_eq!(not_yet_pause(5), Duration::from_secs(16));
        assert_eq!(not_yet_pause(40), NOT_YET_MAX);
    }

    #[test]
    fn a_gate_holds_passes_of_the_same_generation_only() {
        let p = Pacing::default();
        let t0 = Instant::now();
        assert_eq!(p.wait("u", Some(1), t0), None);
        assert_eq!(
            p.record("u", Some(1), PassEnd::NotYet, t0),
            Some(Duration::from_secs(1))
        );
        // Woken by its own status write 100 ms later: held back.
        let held = p.wait("u", Some(1), t0 + Duration::from_millis(100));
        assert_eq!(held, Some(Duration::from_millis(900)));
        // A spec change passes at once.
        assert_eq!(p.wait("u", Some(2), t0 + Duration::from_millis(100)), None);
        // Another cluster is not held.
        assert_eq!(p.wait("v", Some(1), t0), None);
        // Expired.
        assert_eq!(p.wait("u", Some(1), t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn repeated_not_yet_backs_off_and_a_step_or_idle_resets() {
        let p = Pacing::default();
        let t = Instant::now();
        let pauses: Vec<_> = (0..4)
            .map(|_| p.record("u", Some(1), PassEnd::NotYet, t))
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8].map(|s| Some(Duration::from_secs(s))).to_vec()
        );
        assert_eq!(
            p.record("u", Some(1), PassEnd::Stepped, t),
            Some(AFTER_STEP)
        );
        assert_eq!(
            p.record("u", Some(1), PassEnd::NotYet, t),
            Some(Duration::from_secs(1))
        );
        assert_eq!(p.record("u", Some(1), PassEnd::Idle, t), None);
        assert_eq!(p.wait("u", Some(1), t), None);
        // A new generation starts a new streak.
        p.record("u", Some(1), PassEnd::NotYet, t);
        p.record("u", Some(1), PassEnd::NotYet, t);
        assert_eq!(
            p.record("u", Some(2), PassEnd::NotYet, t),
            Some(Duration::from_secs(1))
        );
        p.forget("u");
        assert_eq!(p.wait("u", Some(2), t), None);
    }
}
