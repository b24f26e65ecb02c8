//! A running `harness up` as the other commands see it: the state file it writes (its pid, the
//! dependencies, the identity provider's keys, where its control endpoint listens), and the
//! data it keeps across runs. `up` writes and removes it; `down`, and `token` read it. Neither `up` nor `down` imports the other: both use this.

use std::io::Write;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::backend::{Endpoints, containers};
use crate::identity::IssuerKeys;
use crate::paths;

/// What `harness up` shares with the other commands while it runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpState {
    /// Process id of the running `harness up` (`harness down` stops it).
    #[serde(default)]
    pub pid: u32,
    /// The dependencies.
    pub endpoints: Endpoints,
    /// The identity provider's keys.
    pub identity: IssuerKeys,
    /// The main queue URL.
    pub queue_url: String,
    /// The DLQ URL.
    pub dlq_url: String,
    /// The gateway's URL (the one entry point), when nginx runs.
    #[serde(default)]
    pub gateway_url: Option<String>,
}

impl UpState {
    /// The state of the running `harness up`, or an error saying how to start one.
    pub fn read() -> anyhow::Result<Self> {
        let file = paths::up_state_file();
        let text = std::fs::read_to_string(&file).with_context(|| {
            format!(
                "no running `harness up` found ({} is missing); start it with: make up",
                file.display()
            )
        })?;
        serde_json::from_str(&text).context("reading the `harness up` state")
    }

    /// Writes the state file, readable by its owner only (it holds a signing key).
    pub fn write(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = paths::up_state_file();
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        out.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// Removes the state file (`up` stopping).
    pub fn remove() {
        let _ = std::fs::remove_file(paths::up_state_file());
    }
}

/// The pid of a `harness up` that runs with this state folder, if any.
pub fn running_up() -> Option<u32> {
    let text = std::fs::read_to_string(paths::up_state_file()).ok()?;
    let state: UpState = serde_json::from_str(&text).ok()?;
    let alive = state.pid != 0
        && state.pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{}/cmdline", state.pid))
            .is_ok_and(|cmdline| cmdline.contains("harness"));
    alive.then_some(state.pid)
}

/// Removes the PostgreSQL data `harness up` keeps: the native backend's data directory and the
/// containers backend's volume (`harness down`, `harness up --fresh`).
pub async fn remove_kept_data() -> anyhow::Result<()> {
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
