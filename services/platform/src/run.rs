//! The run loop both services share: serve the listeners, keep the background tasks running
//! under the [`Supervisor`], and on shutdown drain everything within one deadline.
//!
//! The order of a shutdown, and why:
//! 1. the listeners stop accepting and finish their in-flight requests;
//! 2. tasks that must see what those requests committed (the outbox relay) stop after that,
//!    [`Stops::AfterRequests`]; tasks that take in new work (the queue consumer) stop at once,
//!    [`Stops::AtShutdown`], and finish the batch they hold;
//! 3. the database pool closes.
//!
//! All of it fits in [`crate::shutdown::Drain`]'s one deadline (`SHUTDOWN_DRAIN_TIMEOUT_MS`):
//! what is still running then is left behind with a warning, so SIGTERM to exit stays bounded.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::shutdown::{Drain, close_pool_within, join_within, serve_with_drain_deadline};
use crate::supervise::Supervisor;

/// When a background task is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stops {
    /// As soon as shutdown begins: it takes in new work, which a stopping process should not.
    AtShutdown,
    /// Once the listeners have drained: it handles what requests leave behind.
    AfterRequests,
}

/// One listener and what it serves.
#[derive(Debug)]
struct Listener {
    what: &'static str,
    listener: TcpListener,
    router: axum::Router,
}

/// A service being run: its listeners and supervised tasks, until `shutdown`.
#[derive(Debug)]
pub struct Runner {
    /// The service's name, for the log.
    name: &'static str,
    /// Cancelled by SIGTERM/Ctrl-C (or a test): stops the listeners and [`Stops::AtShutdown`].
    shutdown: CancellationToken,
    /// Cancelled once the listeners have drained: stops [`Stops::AfterRequests`].
    requests_drained: CancellationToken,
    /// Restarts failed tasks; readiness reads it.
    supervisor: Supervisor,
    /// The running tasks.
    tasks: tokio::task::JoinSet<()>,
    /// The listeners, served when [`Runner::run`] is called.
    listeners: Vec<Listener>,
    /// Longest shutdown.
    drain: Duration,
}

impl Runner {
    /// A run of service `name` until `shutdown`, with tasks under `supervisor`, draining within
    /// `drain`.
    pub fn new(
        name: &'static str,
        shutdown: CancellationToken,
        supervisor: Supervisor,
        drain: Duration,
    ) -> Self {
        Self {
            name,
            shutdown,
            requests_drained: CancellationToken::new(),
            supervisor,
            tasks: tokio::task::JoinSet::new(),
            listeners: Vec::new(),
            drain,
        }
    }

    /// Serves `router` on `listener` (`what` names it in errors).
    pub fn serve(&mut self, what: &'static str, listener: TcpListener, router: axum::Router) {
        self.listeners.push(Listener {
            what,
            listener,
            router,
        });
    }

    /// Starts the supervised task `name` now: `make` is called with the task's stop token for
    /// each run (the first and every restart), and its future should return `Ok` once the token
    /// is cancelled.
    pub fn task<F, Fut>(&mut self, name: &'static str, stops: Stops, mut make: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = match stops {
            Stops::AtShutdown => self.shutdown.clone(),
            Stops::AfterRequests => self.requests_drained.clone(),
        };
        let token = stop.clone();
        self.supervisor
            .spawn(&mut self.tasks, name, stop, move || make(token.clone()));
    }

    /// Serves until shutdown, then drains as the module says and closes `pool`. An error of a
    /// listener is returned once everything has stopped.
    pub async fn run(mut self, pool: &PgPool) -> anyhow::Result<()> {
        let drain = Drain::new(self.drain);
        let served = futures::future::join_all(self.listeners.into_iter().map(|l| {
            let (what, shutdown, drain) = (l.what, self.shutdown.clone(), &drain);
            async move {
                let served =
                    serve_with_drain_deadline(l.listener, l.router, shutdown.clone(), drain)
                        .await
                        .with_context(|| format!("serving {what}"));
                // A listener that failed on its own stops the rest of the service too.
                if served.is_err() {
                    shutdown.cancel();
                }
                served
            }
        }))
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()
        .map(|_| ());
        self.requests_drained.cancel();
        join_within(&mut self.tasks, &drain).await;
        close_pool_within(pool, &drain).await;
        tracing::info!(service = self.name, "stopped");
        served
    }
}
