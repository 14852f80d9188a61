//! How steps are named in metrics, Events and logs, and the Events a pass publishes.

use super::plan::Step;

/// The kind of a step, as metrics and Events name it.
pub fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::StartSeed { .. } => "StartSeed",
        Step::AddLearner { .. } => "AddLearner",
        Step::StartMember { .. } => "StartMember",
        Step::PromoteLearner { .. } => "PromoteLearner",
        Step::MoveLeader { .. } => "MoveLeader",
        Step::RemoveMember { .. } => "RemoveMember",
        Step::DeleteMember { .. } => "DeleteMember",
        Step::StartStopped { .. } => "StartStopped",
        Step::RestartMember { .. } => "RestartMember",
        Step::ClearIntent => "ClearIntent",
        Step::Compact { .. } => "Compact",
        Step::Defragment { .. } => "Defragment",
        Step::DisarmAlarm { .. } => "DisarmAlarm",
        Step::Snapshot { .. } => "Snapshot",
        Step::RestoreCluster { .. } => "RestoreCluster",
        Step::AdvanceRaftLog { .. } => "AdvanceRaftLog",
        Step::VerifySnapshot { .. } => "VerifySnapshot",
    }
}

/// The Event reason recorded after a step ran, if the step is worth an Event (every membership,
/// member or version change is).
pub fn event_reason(step: &Step) -> Option<&'static str> {
    Some(match step {
        Step::StartSeed { .. } => "SeedStarted",
        Step::AddLearner { .. } => "LearnerAdded",
        Step::StartMember { .. } => "MemberStarted",
        Step::PromoteLearner { .. } => "LearnerPromoted",
        Step::MoveLeader { .. } => "LeaderMoved",
        Step::RemoveMember { .. } => "MemberRemoved",
        Step::DeleteMember { .. } => "MemberDeleted",
        Step::StartStopped { .. } => "StoppedMemberStarted",
        Step::RestartMember { .. } => "MemberRestarted",
        Step::ClearIntent => return None,
        // Maintenance steps publish their own Event, with what they did.
        Step::Compact { .. }
        | Step::Defragment { .. }
        | Step::DisarmAlarm { .. }
        | Step::Snapshot { .. }
        | Step::VerifySnapshot { .. } => return None,
        Step::RestoreCluster { .. } => "ClusterRestored",
        Step::AdvanceRaftLog { .. } => "RaftLogAdvanced",
    })
}

/// An Event about one cluster, as a runtime publishes it (a Kubernetes Event, a line in the
/// local cluster's event log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEvent {
    /// A warning (a step failed) rather than a normal Event.
    pub warning: bool,
    /// The reason, `UpperCamelCase` (`SeedStarted`, `Defragmented`, `StepFailed`).
    pub reason: String,
    /// What happened, for people.
    pub note: String,
    /// The step kind that led to it ([`step_kind`]).
    pub action: &'static str,
}

/// `s` with its first letter upper-cased.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
