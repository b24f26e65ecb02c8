//! Supervised background tasks: a task that panics, fails or returns before shutdown is logged
//! with its cause and restarted after an exponential backoff with jitter (the `backon` crate's
//! schedule), and readiness says so while it is down. A panic is never silent.
//!
//! A task is a factory of futures (`FnMut() -> Future<Output = anyhow::Result<()>>`): each
//! restart gets a fresh future, run in its own tokio task so that a panic is caught as a
//! `JoinError` instead of unwinding through the supervisor. The delays are the platform's one
//! [`Backoff`] schedule, which restarts from its minimum after a run that lasted [`HEALTHY_RUN`].
//!
//! With the `fault-injection` feature (tests only: the services' dev-dependencies turn it on,
//! so no release build carries it), `Supervisor::inject_panic` makes a running task panic where
//! it stands, so that the services' tests prove their tasks are supervised.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
#[cfg(any(test, feature = "fault-injection"))]
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// A run at least this long resets the backoff to its minimum.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// One task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Running.
    Running,
    /// Failed; restarting after a backoff.
    Restarting {
        /// Why it stopped.
        cause: String,
    },
    /// Stopped for shutdown.
    Stopped,
}

#[derive(Debug)]
struct Task {
    state: TaskState,
    restarts: u64,
    /// Fault injection: notified, the running task panics.
    #[cfg(any(test, feature = "fault-injection"))]
    panic: Arc<Notify>,
}

/// The label of a task's metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// The task's name.
    pub task: String,
}

/// Restarts by task, for alerting on a task that keeps failing.
#[derive(Debug, Clone, Default)]
pub struct TaskMetrics {
    /// `background_task_restarts{task}`.
    pub restarts: Family<TaskLabel, Counter>,
}

impl TaskMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "background_task_restarts",
            "Restarts of a supervised background task after a failure or panic",
            metrics.restarts.clone(),
        );
        metrics
    }
}

/// The supervised tasks of one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Supervisor {
    tasks: Arc<Mutex<HashMap<&'static str, Task>>>,
    backoff: Backoff,
    metrics: TaskMetrics,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

impl Supervisor {
    /// A supervisor restarting after `min_backoff`, doubling up to `max_backoff`.
    pub fn new(min_backoff: Duration, max_backoff: Duration) -> Self {
        Self {
            tasks: Arc::default(),
            backoff: Backoff::new(min_backoff, max_backoff),
            metrics: TaskMetrics::default(),
        }
    }

    /// Counts restarts in `metrics`.
    pub fn with_metrics(mut self, metrics: TaskMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Task>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, name: &'static str, state: TaskState) {
        if let Some(task) = self.lock().get_mut(name) {
            task.state = state;
        }
    }

    /// Spawns `make()`'s futures in `set` under supervision until `shutdown`. A future that
    /// returns `Ok` once `shutdown` is cancelled has stopped as asked; anything else — an
    /// error, a panic, an early return — is logged and restarted.
    pub fn spawn<F, Fut>(
        &self,
        set: &mut tokio::task::JoinSet<()>,
        name: &'static str,
        shutdown: CancellationToken,
        mut make: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        #[cfg(any(test, feature = "fault-injection"))]
        let panic = Arc::new(Notify::new());
        self.lock().insert(
            name,
            Task {
                state: TaskState::Running,
                restarts: 0,
                #[cfg(any(test, feature = "fault-injection"))]
                panic: Arc::clone(&panic),
            },
        );
        let supervisor = self.clone();
        set.spawn(async move {
            let schedule = || supervisor.backoff.endless();
            let mut backoff = schedule();
            loop {
                let started = Instant::now();
                supervisor.set(name, TaskState::Running);
                let run = make();
                #[cfg(any(test, feature = "fault-injection"))]
                let run = {
                    let panic = Arc::clone(&panic);
                    async move {
                        tokio::select! {
                            result = run => result,
                            () = panic.notified() => panic!("panic injected into {name}"),
                        }
                    }
                };
                let outcome = tokio::spawn(run).await;
                let cause = match outcome {
                    Ok(Ok(())) if shutdown.is_cancelled() => break,
                    Ok(Ok(())) => "returned before shutdown".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(join) if join.is_panic() => {
                        let payload = join.into_panic();
                        let message = payload
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_string())
                            .or_else(|| payload.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a non-string panic".into());
                        format!("panicked: {message}")
                    }
                    Err(join) => format!("was cancelled: {join}"),
                };
                if shutdown.is_cancelled() {
                    tracing::warn!(task = name, %cause, "background task ended during shutdown");
                    break;
                }
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = schedule();
                }
                let delay = backoff.next().unwrap_or(supervisor.backoff.max);
                tracing::error!(task = name, %cause, retry_in = ?delay, "background task failed; restarting");
                supervisor
                    .metrics
                    .restarts
                    .get_or_create(&TaskLabel {
                        task: name.to_string(),
                    })
                    .inc();
                if let Some(task) = supervisor.lock().get_mut(name) {
                    task.restarts += 1;
                    task.state = TaskState::Restarting { cause };
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => break,
                }
            }
            supervisor.set(name, TaskState::Stopped);
        });
    }

    /// How many times `name` was restarted.
    pub fn restarts(&self, name: &str) -> u64 {
        self.lock().get(name).map_or(0, |t| t.restarts)
    }

    /// Each task's state.
    pub fn states(&self) -> Vec<(&'static str, TaskState)> {
        let mut states: Vec<_> = self
            .lock()
            .iter()
            .map(|(name, task)| (*name, task.state.clone()))
            .collect();
        states.sort_by_key(|(name, _)| *name);
        states
    }

    /// `Err` naming the first task that is down (restarting), for readiness.
    pub fn check(&self) -> Result<(), String> {
        for (name, state) in self.states() {
            if let TaskState::Restarting { cause } = state {
                return Err(format!("background task {name} is restarting: {cause}"));
            }
        }
        Ok(())
    }

    /// Makes the running task `name` panic (fault injection, with the `fault-injection`
    /// feature only). `false` when there is no such task.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn inject_panic(&self, name: &str) -> bool {
        match self.lock().get(name) {
            Some(task) => {
                task.panic.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_failing_task_is_restarted_and_readiness_shows_it_meanwhile() {
        let supervisor = Supervisor::new(Duration::from_millis(300), Duration::from_secs(1));
        let runs = Arc::new(AtomicU32::new(0));
        let shutdown = CancellationToken::new();
        let mut set = tokio::task::JoinSet::new();
        let counted = Arc::clone(&runs);
        let stop = shutdown.clone();
        supervisor.spawn(&mut set, "flaky", shutdown.clone(), move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            async move {
                match run {
                    0 => anyhow::bail!("first run fails"),
                    1 => panic!("second run panics"),
                    _ => {
                        stop.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(supervisor.check().is_err(), "down while backing off");
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "restarted twice");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(supervisor.restarts("flaky"), 2);
        assert!(supervisor.check().is_ok(), "running again");
        supervisor.inject_panic("flaky");
        let deadline = Instant::now() + Duration::from_secs(5);
        while runs.load(Ordering::SeqCst) < 4 {
            assert!(
                Instant::now() < deadline,
                "restarted after the injected panic"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        while set.join_next().await.is_some() {}
        assert_eq!(supervisor.states(), [("flaky", TaskState::Stopped)]);
    }
}
