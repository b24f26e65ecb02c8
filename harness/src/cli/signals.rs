//! How the long-running commands (`up`, `identity`) wait to be stopped: SIGTERM or Ctrl-C.

/// Waits for SIGTERM or Ctrl-C, and says which came.
pub(super) async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => eprintln!("harness: SIGTERM received"),
        _ = interrupt.recv() => eprintln!("harness: Ctrl-C received"),
    }
    Ok(())
}
