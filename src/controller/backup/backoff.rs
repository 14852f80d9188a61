//! The back-off of failed snapshot attempts: 1, 2, 4 ... seconds after each consecutive failure,
//! at most [`MAX_BACKOFF`]. Recorded in the status (`consecutiveFailures`, `nextAttempt`) so that
//! a restarted operator keeps it.

use std::time::Duration;

/// The longest pause between two failed attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The pause after the `failures`-th consecutive failure (1 → 1 s, 2 → 2 s, 3 → 4 s, …, capped).
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
