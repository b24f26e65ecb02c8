//! Where the harness keeps things on disk: the LocalStack venv, PostgreSQL data directories, logs
//! and the state file that `harness up` shares with `harness token`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The workspace root (the folder with the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("target"),
    }
}

/// The harness's own folder under the target directory.
pub fn harness_dir() -> PathBuf {
    std::env::var_os("HARNESS_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("harness"))
}

/// Log files of the processes started by this process.
pub fn logs_dir() -> PathBuf {
    harness_dir().join("logs")
}

/// The Python venv LocalStack runs from.
pub fn localstack_venv() -> PathBuf {
    target_dir().join("localstack-venv")
}

/// The Python venv moto runs from (`HARNESS_SQS=moto`).
pub fn moto_venv() -> PathBuf {
    target_dir().join("moto-venv")
}

/// Where PostgreSQL data directories live. PostgreSQL may run as another user than ours (it
/// refuses root), and that user must be able to reach the folder: when an ancestor of the target
/// directory is closed to others (a checkout under `/root`, say), the system temp dir is used.
pub fn postgres_root() -> PathBuf {
    let preferred = harness_dir().join("postgres");
    let reachable = preferred
        .ancestors()
        .skip(1)
        .filter(|dir| dir.exists())
        .all(|dir| {
            std::fs::metadata(dir)
                .map(|m| m.permissions().mode() & 0o001 != 0)
                .unwrap_or(false)
        });
    if reachable {
        preferred
    } else {
        std::env::temp_dir().join("cashflow-harness-postgres")
    }
}

/// Where in-memory PostgreSQL data directories of native stacks live: a folder on `/dev/shm`
/// (tmpfs) when it exists and has at least 2 GiB free, else `None` (they go to
/// [`postgres_root`]). Runs left by dead processes are removed by the next start, as on disk.
pub fn postgres_memory_root() -> Option<PathBuf> {
    const LEAST_FREE: u64 = 2 << 30;
    let shm = Path::new("/dev/shm");
    let free = free_bytes(shm)?;
    (free >= LEAST_FREE).then(|| shm.join("cashflow-harness-postgres"))
}

/// Bytes of the file system holding `dir` that an unprivileged user may still use.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    stats.f_bavail.checked_mul(stats.f_frsize)
}

/// The PostgreSQL data directory `harness up` keeps across runs on the native backend.
pub fn up_postgres_data() -> PathBuf {
    postgres_root().join("up-data")
}

/// The file `harness up` writes so that `harness token` mints tokens it accepts.
pub fn up_state_file() -> PathBuf {
    harness_dir().join("up").join("state.json")
}

/// The Unix socket a running `harness up`'s cluster listens on (`harness ps`, `rollout`,
/// `scale`).
pub fn up_control_socket() -> PathBuf {
    harness_dir().join("up").join("control.sock")
}
