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

/// Serves `router` on `listener` until `shutdown`, then lets in-flight requests finish, but for
/// at most `drain`: a request stuck on a dead dependency must not keep a terminating pod alive
/// until the orchestrator kills it mid-write. Past the deadline the remaining connections are
/// dropped (their transactions roll back) and a warning says so.
pub async fn serve_with_drain_deadline(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    drain: std::time::Duration,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = server => served.context("serving HTTP"),
        () = deadline => {
            tracing::warn!(?drain, "shutdown drain deadline passed; dropping in-flight requests");
            Ok(())
        }
    }
}

/// Waits for every task of `tasks` to finish, for at most `drain`, then aborts the rest.
pub async fn join_within<T: 'static>(
    tasks: &mut tokio::task::JoinSet<T>,
    drain: std::time::Duration,
) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, all).await.is_err() {
        tracing::warn!(
            ?drain,
            remaining = tasks.len(),
            "background tasks did not stop within the drain deadline; aborting them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}
