//! A service running in-process: the task of its `run_until_stopped` and the token that stops
//! it. Stopping waits for the drain and returns how the run ended; dropping it only cancels the
//! token (the task drains on its own), so a test that panics leaves nothing serving.

use std::future::Future;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A service's run, stoppable.
#[derive(Debug)]
pub struct Running {
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Spawns `run` with a fresh shutdown token (`app.run_until_stopped`).
    pub fn spawn<F>(run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Self {
            shutdown,
            task: Some(task),
        }
    }

    /// Stops it (graceful drain) and returns how its run ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.context("joining the service")?,
            None => Ok(()),
        }
    }

    /// Kills it: the task is dropped mid-flight, with no drain (its token is never cancelled).
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // What Drop cancels is no longer the service's token.
        self.shutdown = CancellationToken::new();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
