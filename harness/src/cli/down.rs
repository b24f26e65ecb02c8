//! `harness down`: stops a running `harness up` (SIGTERM, so it drains as on Ctrl-C) and removes
//! what `up` keeps across runs and what a killed run may have left: the PostgreSQL data (the
//! native data directory and the containers' Docker volume), harness containers whose process
//! is gone, Prometheus's data and the state file. `harness up --fresh` shares the data removal.

use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};

use super::running;
use crate::backend::containers;
use crate::paths;

/// How long a running `harness up` may take to stop after SIGTERM (its services drain for up to
/// 30 s each).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);

pub(super) async fn run() -> anyhow::Result<()> {
    if let Some(pid) = running::running_up() {
        eprintln!("harness: stopping the running harness up (pid {pid}) ...");
        stop(pid).await?;
        containers::remove_containers_of_process(pid).await;
    }
    containers::remove_stale_containers().await;
    running::remove_kept_data().await?;
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

async fn stop(pid: u32) -> anyhow::Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .context("pid out of range")?;
    if kill_process(target, Signal::TERM).is_err() {
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
