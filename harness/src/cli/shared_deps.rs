//! `harness shared-deps`: one set of dependencies for a whole `cargo nextest run`.
//!
//! Under nextest every test is its own process, so [`crate::shared`] would start a stack per
//! test. Instead nextest's setup script (`.config/nextest.toml`) runs `harness shared-deps start`,
//! which starts a detached `harness shared-deps serve` and waits until it is ready. `serve` starts
//! the dependencies with the usual backend choice, writes their endpoints to a lease file, and
//! hands its path to every test through `$NEXTEST_ENV` (`HARNESS_SHARED_LEASE`), where
//! [`crate::shared`] uses them as an external backend. Each test still gets its own database,
//! queues and key prefix; tests that need a stack of their own still start one.
//!
//! `serve` watches the nextest process: when it ends, however it ends (the run finishing, Ctrl-C,
//! `kill -9`), `serve` stops the dependencies and removes the lease. It is in its own session,
//! so a terminal's Ctrl-C reaches nextest, not it, and it stops after nextest, in order.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::lease::{self, LEASE_VAR};
use crate::{Stack, StackOptions, paths};
/// How long the dependencies may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, Args)]
pub(super) struct SharedDepsArgs {
    #[command(subcommand)]
    command: SharedDepsCommand,
}

#[derive(Debug, Subcommand)]
enum SharedDepsCommand {
    /// Start the dependencies for this nextest run and export their lease to the tests (writes
    /// `HARNESS_SHARED_LEASE=…` to `$NEXTEST_ENV`, or prints it without one).
    Start {
        /// Serve this process (default: the nextest process this runs under, else the parent).
        #[arg(long)]
        watch_pid: Option<u32>,
    },
    /// Run the dependencies until the watched process ends (started by `start`).
    Serve {
        /// Where to write the endpoints once ready.
        #[arg(long)]
        lease: PathBuf,
        /// Stop when this process is gone.
        #[arg(long)]
        watch_pid: u32,
    },
}

pub(super) async fn run(args: SharedDepsArgs) -> anyhow::Result<()> {
    match args.command {
        SharedDepsCommand::Start { watch_pid } => start(watch_pid).await,
        SharedDepsCommand::Serve { lease, watch_pid } => serve(&lease, watch_pid).await,
    }
}

async fn start(watch_pid: Option<u32>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let watched = watch_pid
        .or_else(nextest_ancestor)
        .unwrap_or_else(std::os::unix::process::parent_id);
    let dir = paths::harness_dir().join("shared-deps");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lease = dir.join(format!("lease-{watched}.json"));
    let log_file = paths::logs_dir().join(format!("shared-deps-{watched}.log"));
    std::fs::create_dir_all(paths::logs_dir())?;
    let _ = std::fs::remove_file(&lease);
    let log = std::fs::File::create(&log_file)
        .with_context(|| format!("creating {}", log_file.display()))?;
    let mut serve = std::process::Command::new(std::env::current_exe()?);
    serve
        .args(["shared-deps", "serve", "--watch-pid", &watched.to_string()])
        .arg("--lease")
        .arg(&lease)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: the terminal's Ctrl-C goes to nextest; this one follows it.
        .process_group(0);
    let mut child = serve
        .spawn()
        .context("starting harness shared-deps serve")?;
    let deadline = Instant::now() + START_TIMEOUT;
    while !lease.exists() {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "the shared dependencies did not start ({status}); their log {}:\n{}",
                log_file.display(),
                crate::process::tail(&log_file, 30)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!(
                "the shared dependencies were not ready within {START_TIMEOUT:?}; their log {}:\n{}",
                log_file.display(),
                crate::process::tail(&log_file, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = format!("{LEASE_VAR}={}\n", lease.display());
    match std::env::var_os("NEXTEST_ENV") {
        Some(env_file) => {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&env_file)
                .context("opening $NEXTEST_ENV")?
                .write_all(line.as_bytes())?;
        }
        None => print!("{line}"),
    }
    eprintln!(
        "harness: shared dependencies ready for process {watched} (lease {}, log {})",
        lease.display(),
        log_file.display()
    );
    Ok(())
}

async fn serve(lease_file: &Path, watched: u32) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Tests that stop dependencies start stacks of their own: this one's data can live in memory.
    let stack = Stack::start(StackOptions::default().in_memory()).await?;
    // The emulator's own endpoints: each test process puts its own fault layer in front.
    lease::write(lease_file, stack.backend().endpoints())?;
    eprintln!("harness: shared dependencies ready; watching process {watched}");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if !alive(watched) {
                    break;
                }
            }
        }
    }
    eprintln!("harness: process {watched} is gone; stopping the shared dependencies");
    let _ = std::fs::remove_file(lease_file);
    stack.shutdown().await;
    Ok(())
}

/// The nearest ancestor that is nextest itself (the setup script may run under `cargo run`).
fn nextest_ancestor() -> Option<u32> {
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..16 {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim().starts_with("cargo-nextest") {
            return Some(pid);
        }
        pid = parent_of(pid)?;
        if pid <= 1 {
            return None;
        }
    }
    None
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X"))
    })
}
