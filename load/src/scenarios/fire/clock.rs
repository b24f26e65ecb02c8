//! The scenario's one clock: seconds since its epoch, on which reads, writes, lags and fault
//! windows are all placed.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The scenario's epoch: set on first use.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Seconds from the epoch to `at`.
pub fn since_epoch(at: Instant) -> f64 {
    at.saturating_duration_since(epoch()).as_secs_f64()
}
