//! Crash injection for tests, a build feature: only a binary built with the `crash-points`
//! feature (the one the tests run; see Cargo.toml) exits at once (status 99) when the act layer
//! reaches the point named by the `ETCD_OPERATOR_CRASH_AT` environment variable. The crash tests
//! use it to check that every step is resumed from its recorded intent. In every other build
//! (`cargo build`, `make static`) [`CrashPoint::check`] does nothing and the variable's name is
//! not even in the binary.

/// Whether this build has crash points.
pub const ENABLED: bool = cfg!(feature = "crash-points");

/// A point in the act layer where a test build can be made to exit abruptly: between an etcd
/// mutation and the runtime change or record that follows it, in the order a step reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// The AddLearner intent is recorded (and the member's Service prepared); MemberAdd not sent.
    AfterAddIntent,
    /// MemberAdd answered; the intent does not hold the member ID yet and nothing started.
    AfterMemberAdd,
    /// The learner's member ID is recorded in the intent; its runtime member is not started.
    AfterLearnerRecorded,
    /// The learner's runtime member started; it is not promoted.
    AfterStartBeforePromote,
    /// MemberPromote answered; nothing recorded since.
    AfterPromote,
    /// MoveLeader answered; the member it moved away from is neither removed nor restarted.
    AfterMoveLeader,
    /// The RemoveMember intent is recorded; MemberRemove not sent.
    AfterRemoveIntent,
    /// MemberRemove answered; the runtime member is not deleted.
    AfterMemberRemove,
    /// The removed member's runtime member and data are deleted; the intent is not cleared.
    AfterDeleteMember,
    /// A member being upgraded is stopped and not yet started on the new version.
    MidUpgrade,
    /// A restarted member runs on its new version; nothing recorded since.
    AfterRestart,
    /// Compact answered; nothing recorded since.
    AfterCompact,
    /// Defragment answered; the member's new size is not recorded.
    AfterDefragment,
    /// AlarmDisarm answered; nothing recorded since.
    AfterDisarm,
    /// A snapshot is committed to the store (and the retention applied); the status does not record it yet.
    AfterSnapshot,
    /// A snapshot's verification finished; its result is not recorded.
    AfterVerify,
    /// Every member of a new cluster is restored from the snapshot; nothing recorded since.
    AfterRestore,
}

impl CrashPoint {
    /// Every point.
    pub const ALL: [CrashPoint; 17] = [
        CrashPoint::AfterAddIntent,
        CrashPoint::AfterMemberAdd,
        CrashPoint::AfterLearnerRecorded,
        CrashPoint::AfterStartBeforePromote,
        CrashPoint::AfterPromote,
        CrashPoint::AfterMoveLeader,
        CrashPoint::AfterRemoveIntent,
        CrashPoint::AfterMemberRemove,
        CrashPoint::AfterDeleteMember,
        CrashPoint::MidUpgrade,
        CrashPoint::AfterRestart,
        CrashPoint::AfterCompact,
        CrashPoint::AfterDefragment,
        CrashPoint::AfterDisarm,
        CrashPoint::AfterSnapshot,
        CrashPoint::AfterVerify,
        CrashPoint::AfterRestore,
    ];

    /// The name a test gives the point.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterAddIntent => "after-add-intent",
            CrashPoint::AfterMemberAdd => "after-member-add",
            CrashPoint::AfterLearnerRecorded => "after-learner-recorded",
            CrashPoint::AfterStartBeforePromote => "after-start-before-promote",
            CrashPoint::AfterPromote => "after-promote",
            CrashPoint::AfterMoveLeader => "after-move-leader",
            CrashPoint::AfterRemoveIntent => "after-remove-intent",
            CrashPoint::AfterMemberRemove => "after-member-remove",
            CrashPoint::AfterDeleteMember => "after-delete-member",
            CrashPoint::MidUpgrade => "mid-upgrade",
            CrashPoint::AfterRestart => "after-restart",
            CrashPoint::AfterCompact => "after-compact",
            CrashPoint::AfterDefragment => "after-defragment",
            CrashPoint::AfterDisarm => "after-disarm",
            CrashPoint::AfterSnapshot => "after-snapshot",
            CrashPoint::AfterVerify => "after-verify",
            CrashPoint::AfterRestore => "after-restore",
        }
    }

    /// With the `crash-points` feature: exits the process with status 99 when
    /// `ETCD_OPERATOR_CRASH_AT` names this point.
    #[cfg(feature = "crash-points")]
    pub fn check(self) {
        if std::env::var("ETCD_OPERATOR_CRASH_AT").is_ok_and(|v| v == self.name()) {
            tracing::error!(point = self.name(), "crash injection: exiting abruptly");
            std::process::exit(99);
        }
    }

    /// Without the `crash-points` feature: nothing.
    #[cfg(not(feature = "crash-points"))]
    #[inline(always)]
    pub fn check(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_have_distinct_names_and_tests_have_them() {
        let mut names: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CrashPoint::ALL.len());
        // Test builds get the feature through the package's dev-dependency on itself.
        const { assert!(ENABLED, "the tests were built without crash points") };
    }
}
