//! The one backoff schedule of the platform: exponential from `min`, doubling, capped at `max`,
//! with jitter, as the `backon` crate computes it. The outbox relay, the consumer's redelivery
//! delays (visibility timeouts), the reconciler's calls to the ledger and the supervisor's
//! restarts all use it, so a retry behaves the same everywhere and is tuned in one place.
//!
//! Jitter (backon's): each delay is the exponential step plus a random part of up to the same
//! again, so failures that happened together are not retried together. The step stops doubling
//! at `max / 2`, so no delay is longer than `max` (an SQS visibility timeout has a hard limit)
//! and delays at the cap still spread over `max / 2 ..= max` instead of all landing on `max`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// An exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay (before jitter).
    pub min: Duration,
    /// No delay is longer.
    pub max: Duration,
}

impl Backoff {
    /// From `min`, doubling up to `max`.
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The schedule for backon's `.retry(...)`, at most `times` retries.
    pub fn retrying(&self, times: usize) -> ExponentialBuilder {
        self.exponential().with_max_times(times)
    }

    /// The endless schedule (for a loop that retries until it is stopped).
    pub fn endless(&self) -> backon::ExponentialBackoff {
        self.exponential().without_max_times().build()
    }

    /// The delay before retry number `attempt` (1 for the first), jittered, at most `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let nth = usize::try_from(attempt.clamp(1, 64) - 1).unwrap_or(0);
        self.endless().nth(nth).unwrap_or(self.max).min(self.max)
    }

    fn exponential(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.min)
            .with_max_delay((self.max / 2).max(self.min))
            .with_factor(2.0)
            .with_jitter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_min_with_jitter_and_never_pass_max() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..200 {
            let first = backoff.delay(1);
            assert!(
                (Duration::from_millis(100)..=Duration::from_millis(200)).contains(&first),
                "{first:?}"
            );
            let third = backoff.delay(3);
            assert!(
                (Duration::from_millis(400)..=Duration::from_millis(800)).contains(&third),
                "{third:?}"
            );
            let capped = backoff.delay(40);
            assert!(
                (Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&capped),
                "{capped:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_equal_attempts() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.delay(2)).collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
