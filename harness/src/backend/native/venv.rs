//! Python venvs the native backend runs emulators from (LocalStack, moto), made on first use
//! under the target directory from the repository's pinned requirements, and made again when
//! those change.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::host::which;

/// Makes the venv `dir` for `name` if it is missing or `requirements` changed; returns `dir`.
/// Idempotent and safe to call from parallel processes (a lock file beside it).
pub(super) fn ensure(name: &str, dir: &Path, requirements: &str) -> anyhow::Result<PathBuf> {
    let venv = dir.to_path_buf();
    let marker = venv.join(".requirements.sha256");
    let wanted = format!("{:x}", Sha256::digest(requirements.as_bytes()));
    let current = || std::fs::read_to_string(&marker).unwrap_or_default();
    if current().trim() == wanted && venv.join("bin/python").exists() {
        return Ok(venv);
    }
    let parent = venv.parent().context("venv has no parent folder")?;
    std::fs::create_dir_all(parent)?;
    let file_name = venv.file_name().unwrap_or_default().to_string_lossy();
    let lock =
        File::create(parent.join(format!("{file_name}.lock"))).context("creating the venv lock")?;
    lock.lock().context("locking the venv lock")?;
    if current().trim() == wanted && venv.join("bin/python").exists() {
        return Ok(venv);
    }

    let python = match std::env::var_os("HARNESS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => which("python3").with_context(|| {
            format!(
                "python3 was not found on PATH; {name} needs Python 3.11: \
                 apt-get install -y python3 python3-venv"
            )
        })?,
    };
    eprintln!(
        "harness: creating the {name} venv in {} (first use, about a minute)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv)).context(
        "creating the venv failed; install the venv module with: apt-get install -y python3-venv",
    )?;
    let file = venv.join("requirements.txt");
    std::fs::write(&file, requirements)?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&file))
    .with_context(|| format!("installing {name} into its venv (pip needs PyPI)"))?;
    std::fs::write(&marker, &wanted)?;
    eprintln!("harness: {name} venv ready");
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
