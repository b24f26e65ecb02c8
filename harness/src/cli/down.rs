//! `harness down`: stops a running `harness up` (SIGTERM, so it drains as on Ctrl-C) and removes
//! what `up` keeps across runs and what a killed run may have left: the PostgreSQL data (the
//! native data directory and the containers' Docker volume), harness containers whose process
//! is gone, Prometheus's data and the state file. `harness up --fresh` shares the data removal.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::backend::containers;
use crate::paths;

/// How long a running `harness up` may take to stop after SIGTERM (its services drain for up to
/// 30 s each).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) async fn run() -> anyhow::Result<()> {
    if let Some(pid) = super::up::running_up() {
        eprintln!("harness: stopping the running harness up (pid {pid}) ...");
        stop(pid).await?;
        containers::remove_containers_of_process(pid).await;
    }
    containers::remove_stale_containers().await;
    remove_kept_data().await?;
    for leftover in [
        paths::up_state_file(),
        paths::harness_dir().join("up").join("prometheus"),
    ] {
        if leftover.is_dir() {
            std::fs::remove_dir_all(&leftover)
        } else if leftover.exists() {
            std::fs::remove_file(&leftover)
        } else {
            continue;
        }
        .with_context(|| format!("removing {}", leftover.display()))?;
        eprintln!("harness: removed {}", leftover.display());
    }
    eprintln!("harness: down (the next `make up` starts from empty)");
    Ok(())
}

/// Removes the PostgreSQL data `harness up` keeps: the native backend's data directory and the
/// containers backend's volume.
pub(super) async fn remove_kept_data() -> anyhow::Result<()> {
    let dir = paths::up_postgres_data();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        eprintln!("harness: removed the data directory {}", dir.display());
    }
    if containers::remove_up_volume().await? {
        eprintln!(
            "harness: removed the Docker volume {}",
            containers::up_postgres_volume()
        );
    }
    Ok(())
}

async fn stop(pid: u32) -> anyhow::Result<()> {
    let target = i32::try_from(pid).context("pid out of range")?;
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(target, libc::SIGTERM) };
    if rc != 0 {
        return Ok(()); // Gone already.
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "harness up (pid {pid}) did not stop within {STOP_TIMEOUT:?} of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("harness: stopped harness up (pid {pid})");
    Ok(())
}

/// Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}
