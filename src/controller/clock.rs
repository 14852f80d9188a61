//! The time a pass reads once: for the planner's schedules and, cut to whole seconds, for the
//! status.

use std::time::SystemTime;

/// The time of one pass, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    /// For the planner's schedules.
    pub system: SystemTime,
    /// RFC 3339 (UTC, whole seconds), for the status.
    pub text: String,
}

impl Now {
    /// The current time.
    pub fn current() -> Self {
        let system = SystemTime::now();
        Now {
            system,
            text: whole_seconds(system),
        }
    }
}

/// `time` in RFC 3339 (UTC), cut to whole seconds. Cut, never rounded: a time rounded up lies
/// up to half a second in the future, and a schedule reading it back in the next pass took it
/// for a clock that went back (a second snapshot in the same second, overwriting the first's
/// object under the same name).
pub fn whole_seconds(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map_or_else(|_| format!("{secs}"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_times_are_cut_to_the_second_never_later_than_now() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_900);
        let text = whole_seconds(t);
        assert_eq!(text, "2025-11-24T16:00:00Z");
        let back: k8s_openapi::jiff::Timestamp = text.parse().expect("RFC 3339");
        assert!(
            SystemTime::from(back) <= t,
            "{text} lies after the time it records"
        );
    }
}
