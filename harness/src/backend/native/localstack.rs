//! LocalStack (SQS only) without Docker: `python -m localstack.runtime.main` from a venv under
//! the target directory, made on first use from the pinned `localstack/requirements.txt`.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{remove_stale_runs, which};
use crate::paths;
use crate::process::ProcessSpec;

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
        stop_signal: libc::SIGTERM,
        log_file: paths::logs_dir().join(format!("localstack-{run}.log")),
    })
}

/// Makes the LocalStack venv if it is missing or its requirements changed; returns its folder.
/// Idempotent and safe to call from parallel processes.
pub fn ensure_venv() -> anyhow::Result<PathBuf> {
    let venv = paths::localstack_venv();
    let marker = venv.join(".requirements.sha256");
    let wanted = format!("{:x}", Sha256::digest(REQUIREMENTS.as_bytes()));
    let current = || std::fs::read_to_string(&marker).unwrap_or_default();
    if current().trim() == wanted && venv.join("bin/python").exists() {
        return Ok(venv);
    }
    let parent = venv.parent().context("venv has no parent folder")?;
    std::fs::create_dir_all(parent)?;
    let lock =
        File::create(parent.join("localstack-venv.lock")).context("creating the venv lock")?;
    lock.lock().context("locking the venv lock")?;
    if current().trim() == wanted && venv.join("bin/python").exists() {
        return Ok(venv);
    }

    let python = match std::env::var_os("HARNESS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => which("python3").context(
            "python3 was not found on PATH; LocalStack needs Python 3.11: apt-get install -y python3 python3-venv",
        )?,
    };
    eprintln!(
        "harness: creating the LocalStack venv in {} (first use, about a minute)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv)).context(
        "creating the venv failed; install the venv module with: apt-get install -y python3-venv",
    )?;
    let requirements = venv.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS)?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))
    .context("installing LocalStack into its venv (pip needs PyPI)")?;
    std::fs::write(&marker, &wanted)?;
    eprintln!("harness: LocalStack venv ready");
    Ok(venv)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
