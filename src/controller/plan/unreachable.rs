//! Planning while etcd does not answer: bootstrap, restore, start stopped members again.

use super::*;

/// Member counts for the status.
pub(super) struct Counts {
    pub(super) ready: u32,
    pub(super) desired: u32,
    pub(super) voters: u32,
    pub(super) learners: u32,
}

impl Counts {
    pub(super) fn of(desired: &Desired, membership: Option<&Membership>) -> Self {
        let members = membership.map(|m| m.members.as_slice()).unwrap_or_default();
        let count = |f: &dyn Fn(&EtcdMember) -> bool| {
            u32::try_from(members.iter().filter(|m| f(m)).count()).unwrap_or(u32::MAX)
        };
        Self {
            ready: count(&|m| !m.is_learner && is_healthy(m)),
            desired: desired.replicas,
            voters: count(&|m| !m.is_learner),
            learners: count(&|m| m.is_learner),
        }
    }

    pub(super) fn status(&self, phase: Phase, message: String) -> PlannedStatus {
        PlannedStatus {
            phase,
            ready: self.ready,
            desired: self.desired,
            voters: self.voters,
            learners: self.learners,
            message,
        }
    }

    pub(super) fn wait(&self, phase: Phase, message: String) -> Plan {
        Plan {
            status: self.status(phase, message),
            next: None,
        }
    }

    pub(super) fn step(&self, phase: Phase, step: Step) -> Plan {
        Plan {
            status: self.status(phase, step.to_string()),
            next: Some(step),
        }
    }

    /// A step with a message of its own (why the step is needed), not the step's description.
    pub(super) fn step_with(&self, phase: Phase, step: Step, message: String) -> Plan {
        Plan {
            status: self.status(phase, message),
            next: Some(step),
        }
    }
}

/// etcd did not answer: bootstrap if nothing exists, start again what was stopped with its data,
/// else wait.
pub(super) fn plan_unreachable(desired: &Desired, observed: &Observed, counts: &Counts) -> Plan {
    let intent = observed.intent.as_ref();
    if intent.is_none() && observed.runtime.is_empty() {
        return match &desired.bootstrap {
            Bootstrap::Empty => counts.step(
                Phase::Bootstrapping,
                Step::StartSeed {
                    ordinal: 0,
                    version: desired.version,
                },
            ),
            Bootstrap::Restore { source } => counts.step(
                Phase::Bootstrapping,
                Step::RestoreCluster {
                    members: desired.replicas,
                    version: desired.version,
                    source: source.clone(),
                },
            ),
            Bootstrap::Unsupported(why) => counts.wait(Phase::Degraded, why.clone()),
        };
    }
    let seed = match observed.runtime.as_slice() {
        [only] if only.ordinal == 0 => Some(only),
        _ => None,
    };
    // Its Pod or process went away before it ever wrote member data: nobody's data is at stake,
    // so it starts again as the seed of a new cluster.
    if seed.is_some_and(|r| !r.running && r.data == DataState::Empty) && intent.is_none() {
        return counts.step(
            Phase::Bootstrapping,
            Step::StartSeed {
                ordinal: 0,
                version: desired.version,
            },
        );
    }
    if let Some(plan) = start_stopped(observed, counts) {
        return plan;
    }
    if intent.is_some() {
        return counts.wait(
            Phase::Unavailable,
            "etcd is unreachable; waiting to finish the step in flight".to_owned(),
        );
    }
    if seed.is_some_and(|r| r.running && r.data != DataState::Lost) {
        return counts.wait(
            Phase::Bootstrapping,
            format!(
                "waiting for the seed member {} to answer",
                desired.member_name(0)
            ),
        );
    }
    counts.wait(
        Phase::Unavailable,
        format!(
            "etcd is unreachable; {} runtime member(s) exist, so the cluster is not bootstrapped \
             again; waiting for the running members to answer",
            observed.runtime.len()
        ),
    )
}

/// While etcd is unreachable: start again the lowest stopped member whose storage holds member
/// data, one per pass without waiting for it to answer (quorum comes back only when enough
/// members run at once). Never a member whose data is lost or empty (the replace path handles
/// those once etcd answers), nor the member of the step in flight: a learner being added has no
/// data of its own yet, and a member being removed must not come back.
fn start_stopped(observed: &Observed, counts: &Counts) -> Option<Plan> {
    let in_flight = observed.intent.as_ref().map(|i| match i {
        Intent::AddLearner { ordinal, .. } | Intent::RemoveMember { ordinal, .. } => *ordinal,
    });
    let r = observed
        .runtime
        .iter()
        .filter(|r| !r.running && r.data == DataState::Present && Some(r.ordinal) != in_flight)
        .min_by_key(|r| r.ordinal)?;
    let mut plan = counts.step(
        Phase::Unavailable,
        Step::StartStopped {
            ordinal: r.ordinal,
            version: r.version,
        },
    );
    plan.status.message = format!(
        "etcd is unreachable: {} (it rejoins with its own identity)",
        plan.status.message
    );
    Some(plan)
}
