//! LocalStack (SQS only) without Docker: `python -m localstack.runtime.main` from a venv under
//! the target directory, made on first use from the pinned `localstack/requirements.txt`.

use std::path::PathBuf;

use anyhow::Context;

use super::host::remove_stale_runs;
use crate::paths;
use crate::process::{ProcessSpec, Signal};

/// The pinned requirements; the venv is rebuilt when they change.
const REQUIREMENTS: &str = include_str!("../../../../localstack/requirements.txt");

pub(super) async fn spec(port: u16, run: &str) -> anyhow::Result<ProcessSpec> {
    let venv = tokio::task::spawn_blocking(ensure_venv).await??;
    let root = paths::harness_dir().join("localstack");
    remove_stale_runs(&root);
    let filesystem = root.join(format!("run-{run}"));
    std::fs::create_dir_all(&filesystem)
        .with_context(|| format!("creating {}", filesystem.display()))?;
    let gateway = format!("127.0.0.1:{port}");
    let env = [
        ("SERVICES", "sqs"),
        ("EAGER_SERVICE_LOADING", "1"),
        ("GATEWAY_LISTEN", gateway.as_str()),
        ("LOCALSTACK_HOST", gateway.as_str()),
        // Queue URLs as http://host:port/queue/region/account/name: no DNS names needed.
        ("SQS_ENDPOINT_STRATEGY", "path"),
        // No DNS server, no analytics: nothing that needs the internet.
        ("DNS_ADDRESS", "0"),
        ("DISABLE_EVENTS", "1"),
        ("FILESYSTEM_ROOT", &filesystem.display().to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    Ok(ProcessSpec {
        name: "localstack".into(),
        program: venv.join("bin").join("python"),
        args: vec!["-m".into(), "localstack.runtime.main".into()],
        env,
        cwd: Some(filesystem),
        user: None,
        ready_line: "Ready.".into(),
        stop_signal: Signal::TERM,
        log_file: paths::logs_dir().join(format!("localstack-{run}.log")),
    })
}

/// Makes the LocalStack venv if it is missing or its requirements changed; returns its folder.
/// Idempotent and safe to call from parallel processes.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    super::venv::ensure("LocalStack", &paths::localstack_venv(), REQUIREMENTS)
}
