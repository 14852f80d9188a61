//! Crash injection for tests: with `ETCD_OPERATOR_CRASH_AT=<point>` the process exits at once
//! (status 99) when the act layer reaches that point. The crash tests use it to check that every
//! step is resumed from its recorded intent.

/// A point in the act layer where `ETCD_OPERATOR_CRASH_AT` makes the process exit abruptly.
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
    /// The name used in `ETCD_OPERATOR_CRASH_AT`.
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterMemberAdd => "after-member-add",
            CrashPoint::AfterStartBeforePromote => "after-start-before-promote",
            CrashPoint::AfterMemberRemove => "after-member-remove",
            CrashPoint::MidUpgrade => "mid-upgrade",
        }
    }

    /// Exits the process with status 99 when `ETCD_OPERATOR_CRASH_AT` names this point.
    pub fn check(self) {
        if std::env::var("ETCD_OPERATOR_CRASH_AT").is_ok_and(|v| v == self.name()) {
            tracing::error!(point = self.name(), "crash injection: exiting abruptly");
            std::process::exit(99);
        }
    }
}
