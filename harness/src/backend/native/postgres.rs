//! PostgreSQL 15 from the local binaries. `initdb` runs once per machine into a golden data
//! directory; each stack runs on a copy of it (a copy takes milliseconds, `initdb` seconds).
//! PostgreSQL refuses to run as root, so under root it runs as the `postgres` user (or `nobody`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;

use super::host::{remove_stale_runs, which};
use crate::paths;
use crate::process::{ProcessSpec, Signal};

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

pub(super) async fn prepare(
    port: u16,
    persistent: Option<&Path>,
    in_memory: bool,
    run: &str,
) -> anyhow::Result<ProcessSpec> {
    let bin = bin_dir()?;
    let user = server_user()?;
    let root = paths::postgres_root();
    // A process restart keeps its data directory, in memory too: native stacks may restart
    // PostgreSQL whatever its data is on.
    let runs_root = match paths::postgres_memory_root() {
        Some(memory) if in_memory => memory,
        _ => root.clone(),
    };
    let persistent = persistent.map(Path::to_path_buf);
    // Throwaway data skips fsync: tests never survive an OS crash anyway. synchronous_commit
    // stays on, so a commit reaches the kernel before it is acknowledged and survives a kill -9
    // of PostgreSQL, which the fault tests rely on.
    let durable = if persistent.is_some() { "on" } else { "off" };
    let run_owned = run.to_string();
    let bin_for_init = bin.clone();
    let data_dir = tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let golden = golden_data_dir(&bin_for_init, &root, user)?;
        match persistent {
            Some(dir) => {
                if !dir.join("PG_VERSION").exists() {
                    copy_dir(&golden, &dir)?;
                }
                remove_stale_pid_file(&dir)?;
                Ok(dir)
            }
            None => {
                remove_stale_runs(&root);
                if let Some(memory) = paths::postgres_memory_root() {
                    remove_stale_runs(&memory);
                }
                let dir = runs_root.join(format!("run-{run_owned}"));
                let _ = std::fs::remove_dir_all(&dir);
                copy_dir(&golden, &dir)?;
                Ok(dir)
            }
        }
    })
    .await??;

    let mut args = vec![
        "-D".to_string(),
        data_dir.display().to_string(),
        "-p".into(),
        port.to_string(),
    ];
    for setting in [
        "listen_addresses=127.0.0.1".to_string(),
        "unix_socket_directories=".into(),
        format!("fsync={durable}"),
        format!("full_page_writes={durable}"),
        "max_connections=500".into(),
        "shared_buffers=128MB".into(),
        "log_min_messages=warning".into(),
        "log_checkpoints=off".into(),
    ] {
        args.push("-c".into());
        args.push(setting);
    }
    Ok(ProcessSpec {
        name: "postgres".into(),
        program: bin.join("postgres"),
        args,
        env: vec![("LC_ALL".into(), "C".into())],
        cwd: Some(data_dir),
        user,
        // Logged at LOG level even with log_min_messages=warning.
        ready_line: "ready to accept connections".into(),
        // SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to disconnect.
        stop_signal: Signal::INT,
        log_file: paths::logs_dir().join(format!("postgres-{run}.log")),
    })
}

/// A kept data directory whose server was killed (a `kill -9` of `harness up`) still holds its
/// `postmaster.pid`. PostgreSQL removes a stale one itself unless its pid now belongs to another
/// live process, when it refuses to start: so a file whose pid is not a live server on this
/// directory goes (a zombie, whose command line is empty, is not live). A live one means another
/// server runs on this directory, which must not start twice.
fn remove_stale_pid_file(dir: &Path) -> anyhow::Result<()> {
    let file = dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let pid = text.lines().next().unwrap_or_default().trim();
    let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let command = String::from_utf8_lossy(&command);
    if !pid.is_empty() && command.contains(&*dir.to_string_lossy()) {
        bail!(
            "a PostgreSQL server (pid {pid}) already runs on the kept data directory {}: \
             is another `harness up` running? Stop it first (Ctrl-C there, or `make down`)",
            dir.display()
        );
    }
    std::fs::remove_file(&file).with_context(|| format!("removing the stale {}", file.display()))
}

/// Waits until a connection succeeds and answers `SELECT 1`.
pub(super) async fn wait_accepting(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = async {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            conn.close().await
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) if Instant::now() >= deadline => {
                return Err(e).context(format!("PostgreSQL at {url} does not accept connections"));
            }
            Err(_) if Instant::now() >= deadline => bail!("PostgreSQL at {url} does not answer"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HARNESS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let default = PathBuf::from(DEFAULT_BIN);
    if default.join("postgres").is_file() && default.join("initdb").is_file() {
        return Ok(default);
    }
    if let (Some(postgres), Some(_)) = (which("postgres"), which("initdb"))
        && let Some(dir) = postgres.parent()
    {
        return Ok(dir.to_path_buf());
    }
    bail!(
        "the PostgreSQL 15 server binaries (postgres, initdb) were not found in {DEFAULT_BIN} or on \
         PATH; install them with: apt-get install -y postgresql-15 (or set HARNESS_PG_BIN)"
    )
}

/// The (uid, gid) PostgreSQL runs as: `None` (ourselves) unless we are root.
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3
                && fields[0] == wanted
                && let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse())
            {
                return Ok(Some((uid, gid)));
            }
        }
    }
    bail!(
        "running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as"
    )
}

/// The initialised data directory every stack copies, made once (under a lock, so that parallel
/// test processes do not race).
fn golden_data_dir(bin: &Path, root: &Path, user: Option<(u32, u32)>) -> anyhow::Result<PathBuf> {
    let golden = root.join("initdb-15");
    if golden.join("PG_VERSION").exists() {
        return Ok(golden);
    }
    let lock = File::create(root.join("initdb.lock")).context("creating the initdb lock")?;
    lock.lock().context("locking the initdb lock")?;
    if golden.join("PG_VERSION").exists() {
        return Ok(golden);
    }
    eprintln!("harness: initialising PostgreSQL's data directory (once per machine)");
    let building = root.join(format!("initdb-15.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&building, Some(uid), Some(gid))
            .with_context(|| format!("giving {} to uid {uid}", building.display()))?;
    }
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .args(["-D", &building.display().to_string()])
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .env("LC_ALL", "C")
        .current_dir(root);
    if let Some((uid, gid)) = user {
        std::os::unix::process::CommandExt::uid(&mut initdb, uid);
        std::os::unix::process::CommandExt::gid(&mut initdb, gid);
    }
    let output = initdb.output().context("running initdb")?;
    if !output.status.success() {
        bail!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&building, &golden).context("publishing the initialised data directory")?;
    Ok(golden)
}

/// `cp -a` keeps ownership and the 0700 mode PostgreSQL insists on.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!(
            "copying {} to {} failed ({status})",
            from.display(),
            to.display()
        );
    }
    Ok(())
}
