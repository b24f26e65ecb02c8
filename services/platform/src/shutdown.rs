//! Graceful shutdown: SIGTERM and Ctrl-C both cancel one token that everything is passed, and
//! the drain that follows is bounded by a deadline.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on SIGTERM or Ctrl-C (SIGINT). Returns when either arrives or the token is
/// cancelled some other way.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for shutdown signals");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; draining"),
        _ = interrupt.recv() => tracing::info!("Ctrl-C received; draining"),
        () = token.cancelled() => return,
    }
    token.cancel();
}

/// The one deadline of a shutdown: set when shutdown is first noticed, `length` later. HTTP
/// draining, background tasks and closing the pool all fit in it, so SIGTERM to exit is bounded
/// by `SHUTDOWN_DRAIN_TIMEOUT_MS` whatever hangs.
#[derive(Debug)]
pub struct Drain {
    length: std::time::Duration,
    deadline: std::sync::OnceLock<tokio::time::Instant>,
}

impl Drain {
    /// A drain of `length`, not started.
    pub fn new(length: std::time::Duration) -> Self {
        Self {
            length,
            deadline: std::sync::OnceLock::new(),
        }
    }

    /// The deadline, starting the drain now if nobody has yet.
    pub fn deadline(&self) -> tokio::time::Instant {
        *self
            .deadline
            .get_or_init(|| tokio::time::Instant::now() + self.length)
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> std::time::Duration {
        self.deadline()
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish, but not
/// past the `drain` deadline: a request stuck on a dead dependency must not keep a terminating
/// pod alive until the orchestrator kills it mid-write. Past the deadline the server stops
/// waiting (their connections go when the process exits) and a warning says so.
pub async fn serve_with_drain_deadline(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    drain: &Drain,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep_until(drain.deadline()).await;
    };
    tokio::select! {
        served = server => served.context("serving HTTP"),
        () = deadline => {
            tracing::warn!(drain = ?drain.length, "shutdown drain deadline passed; leaving in-flight requests");
            Ok(())
        }
    }
}

/// Waits for every task of `tasks` to finish until the `drain` deadline, then aborts the rest.
pub async fn join_within<T: 'static>(tasks: &mut tokio::task::JoinSet<T>, drain: &Drain) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout_at(drain.deadline(), all)
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tasks.len(),
            "background tasks did not stop within the drain deadline; aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Closes `pool` (waiting for connections in use to come back) until the `drain` deadline.
pub async fn close_pool_within(pool: &sqlx::PgPool, drain: &Drain) {
    if tokio::time::timeout_at(drain.deadline(), pool.close())
        .await
        .is_err()
    {
        tracing::warn!("connections still in use at the drain deadline; not waiting for them");
    }
}
