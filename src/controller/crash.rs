//! Crash injection for tests, a build feature: only a binary built with the `crash-points`
//! feature (the one the tests run; see Cargo.toml) exits at once (status 99) when the act layer
//! reaches the point named by the `ETCD_OPERATOR_CRASH_AT` environment variable. The crash tests
//! use it to check that every step is resumed from its recorded intent. In every other build
//! (`cargo build`, `make static`) [`CrashPoint::check`] does nothing and the variable's name is
//! not even in the binary.

/// Whether this build has crash points.
pub const ENABLED: bool = cfg!(feature = "crash-points");

/// A point in the act layer where a test build can be made to exit abruptly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// MemberAdd answered; the intent does not hold the member ID yet and nothing started.
    AfterMemberAdd,
    /// The learner's runtime member started; it is not promoted.
    AfterStartBeforePromote,
    /// MemberRemove answered; the runtime member is not deleted.
    AfterMemberRemove,
    /// A member being upgraded is stopped and not yet started on the new version.
    MidUpgrade,
}

impl CrashPoint {
    /// Every point.
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::AfterMemberAdd,
        CrashPoint::AfterStartBeforePromote,
        CrashPoint::AfterMemberRemove,
        CrashPoint::MidUpgrade,
    ];

    /// The name a test gives the point.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterMemberAdd => "after-member-add",
            CrashPoint::AfterStartBeforePromote => "after-start-before-promote",
            CrashPoint::AfterMemberRemove => "after-member-remove",
            CrashPoint::MidUpgrade => "mid-upgrade",
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
