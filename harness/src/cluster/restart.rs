//! When a replica that exited is started again: the kubelet's CrashLoopBackOff, scaled down for a
//! laptop. The first restart waits [`RestartPolicy::initial`], each next one twice as long up to
//! [`RestartPolicy::max`]; a replica that stayed up [`RestartPolicy::reset_after`] starts from
//! the initial wait again. A replica that exits at once on every start (a bad setting) so costs
//! a start every 30 s at most instead of spinning, while one killed once is back within a second.

use std::time::Duration;

/// The back-off between restarts of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart (the kubelet's is 10 s).
    pub initial: Duration,
    /// Longest wait (the kubelet's is 5 min).
    pub max: Duration,
    /// Time up after which the next exit counts as a first one again (the kubelet's is 10 min).
    pub reset_after: Duration,
}

impl Default for RestartPolicy {
    /// A tenth of the kubelet's: 1 s doubling to 30 s, reset after 60 s up.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The wait after `previous`: twice as long, at most [`RestartPolicy::max`].
    pub fn next(&self, previous: Duration) -> Duration {
        (previous * 2).min(self.max)
    }

    /// The wait before restarting a replica that was up for `up_for` and whose previous wait was
    /// `previous` (`None`: it never exited before).
    pub fn wait(&self, previous: Option<Duration>, up_for: Duration) -> Duration {
        match previous {
            Some(previous) if up_for < self.reset_after => self.next(previous),
            _ => self.initial,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::RestartPolicy;

    #[test]
    fn the_wait_doubles_up_to_the_cap_and_resets_after_a_good_run() {
        let policy = RestartPolicy::default();
        let quick = Duration::from_millis(100);
        let mut waits = Vec::new();
        let mut previous = None;
        for _ in 0..8 {
            let wait = policy.wait(previous, quick);
            waits.push(wait.as_secs());
            previous = Some(wait);
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            policy.wait(previous, Duration::from_secs(61)),
            Duration::from_secs(1)
        );
    }
}
