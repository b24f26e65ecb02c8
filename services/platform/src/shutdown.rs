//! Graceful shutdown: SIGTERM and Ctrl-C both cancel one token that everything is passed.

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
