//! moto's server mode (SQS), the second emulator (`HARNESS_SQS=moto`), from a venv under the
//! target directory made on first use from the pinned `moto/requirements.txt`. Its state lives
//! in memory: a restart comes back empty, as LocalStack's community edition does.

use std::path::PathBuf;

use crate::paths;
use crate::process::{ProcessSpec, Signal};

/// The pinned requirements; the venv is rebuilt when they change.
const REQUIREMENTS: &str = include_str!("../../../../moto/requirements.txt");

pub(super) async fn spec(port: u16, run: &str) -> anyhow::Result<ProcessSpec> {
    let venv = tokio::task::spawn_blocking(ensure_venv).await??;
    Ok(ProcessSpec {
        name: "moto".into(),
        program: venv.join("bin").join("moto_server"),
        args: vec![
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ],
        env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
        cwd: None,
        user: None,
        // werkzeug's start line, on stderr.
        ready_line: "Running on".into(),
        stop_signal: Signal::TERM,
        log_file: paths::logs_dir().join(format!("moto-{run}.log")),
    })
}

/// Makes the moto venv if it is missing or its requirements changed; returns its folder.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    super::venv::ensure("moto", &paths::moto_venv(), REQUIREMENTS)
}
