//! A circuit breaker in front of Redis.
//!
//! Closed: calls go through; `failures_to_open` consecutive failures open it. Open: no call goes
//! through for `cooldown` — readers go straight to PostgreSQL at its normal latency instead of
//! each paying a Redis timeout first. Then half-open: exactly one caller (the probe) goes
//! through; its success closes the breaker, its failure opens it for another cool-down. A probe
//! whose caller vanished without reporting (its request hit its deadline) is replaced after a
//! cool-down, so the breaker can never stay half-open forever.
//!
//! Hand-written rather than a crate: the state machine is a few lines, it must export its
//! state as a gauge, and the crates on offer (`failsafe`, ...) wrap futures in ways that fight
//! the cache's "try Redis, else PostgreSQL" shape.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// The breaker's state as the gauge shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through (gauge 0).
    Closed,
    /// Calls are refused until the cool-down ends (gauge 1).
    Open,
    /// One probe is allowed through (gauge 2).
    HalfOpen,
}

impl BreakerState {
    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

/// The breaker.
#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    failures_to_open: u32,
    cooldown: Duration,
    gauge: Gauge,
}

impl Breaker {
    /// A closed breaker that opens after `failures_to_open` consecutive failures and stays open
    /// for `cooldown`; its state is mirrored in `gauge`.
    pub fn new(failures_to_open: u32, cooldown: Duration, gauge: Gauge) -> Self {
        gauge.set(BreakerState::Closed.gauge_value());
        Self {
            inner: Mutex::new(Inner::Closed { failures: 0 }),
            failures_to_open: failures_to_open.max(1),
            cooldown,
            gauge,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is valid whatever a panicking holder did: every write is one assignment.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, inner: &mut Inner, next: Inner) {
        *inner = next;
        self.gauge.set(Self::state_of(inner).gauge_value());
    }

    fn state_of(inner: &Inner) -> BreakerState {
        match inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        Self::state_of(&self.lock())
    }

    /// Whether a call may go to Redis now. `true` in the half-open state means "you are the
    /// probe": report its outcome with [`Breaker::success`] or [`Breaker::failure`].
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if now < until => false,
            Inner::Open { .. } => {
                tracing::info!("Redis circuit breaker half-open: probing");
                self.set(&mut inner, Inner::HalfOpen { probe_started: now });
                true
            }
            Inner::HalfOpen { probe_started } if now - probe_started < self.cooldown => false,
            Inner::HalfOpen { .. } => {
                self.set(&mut inner, Inner::HalfOpen { probe_started: now });
                true
            }
        }
    }

    /// A call succeeded: the breaker closes.
    pub fn success(&self) {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { failures: 0 } => {}
            Inner::Closed { .. } => self.set(&mut inner, Inner::Closed { failures: 0 }),
            Inner::Open { .. } | Inner::HalfOpen { .. } => {
                tracing::info!("Redis answers again; circuit breaker closed");
                self.set(&mut inner, Inner::Closed { failures: 0 });
            }
        }
    }

    /// A call failed: counted while closed; a failed probe reopens the breaker.
    pub fn failure(&self) {
        let mut inner = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.cooldown,
        };
        match *inner {
            Inner::Closed { failures } if failures + 1 >= self.failures_to_open => {
                tracing::warn!(
                    failures = failures + 1,
                    cooldown = ?self.cooldown,
                    "Redis keeps failing; circuit breaker open, reading PostgreSQL directly"
                );
                self.set(&mut inner, open);
            }
            Inner::Closed { failures } => self.set(
                &mut inner,
                Inner::Closed {
                    failures: failures + 1,
                },
            ),
            Inner::HalfOpen { .. } => {
                tracing::warn!("Redis probe failed; circuit breaker open again");
                self.set(&mut inner, open);
            }
            // A call that started before the breaker opened: nothing more to learn.
            Inner::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> (Breaker, Gauge) {
        let gauge = Gauge::default();
        (Breaker::new(3, cooldown, gauge.clone()), gauge)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, gauge) = breaker(Duration::from_secs(60));
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "the success reset the count"
        );
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(gauge.get(), 1);
        assert!(!b.allow(), "no calls while open");
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let (b, gauge) = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.failure();
        }
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "the probe");
        assert_eq!(gauge.get(), 2);
        assert!(!b.allow(), "only one probe at a time");
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(gauge.get(), 0);
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let (b, _) = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }
}
