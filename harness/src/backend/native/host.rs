//! What the native backend asks of the machine: programs on `PATH`, free ports, and the run
//! folders its processes leave (named after the process, so that a later run removes what a dead
//! one left). The dependencies' modules use these; none of them needs the backend itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Identifies this stack's files: the process id (a later run removes what a dead process left)
/// and a counter (a process may start several stacks).
pub(super) fn run_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the process that made a `run-<pid>-<n>` entry is gone.
fn left_by_dead_process(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("run-")
        .and_then(|rest| rest.split('-').next())
    else {
        return false;
    };
    pid.parse::<u32>()
        .is_ok_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes `run-*` entries in `dir` left by processes that no longer exist.
pub(super) fn remove_stale_runs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if left_by_dead_process(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
///
/// Chosen at random below the kernel's ephemeral range (`ip_local_port_range`), not by binding
/// port 0: a port 0 bind returns an ephemeral port, the very ones every outgoing connection and
/// every other port-0 listener on the machine draw from, so between this answer and the
/// dependency binding it, another test's connection could take it ("Address already in use").
pub fn free_port() -> anyhow::Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    const LOWEST: u16 = 10_000;
    if ephemeral_low > LOWEST {
        for _ in 0..200 {
            let port = rand::Rng::gen_range(&mut rand::thread_rng(), LOWEST..ephemeral_low);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Finds a program on `PATH`.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
