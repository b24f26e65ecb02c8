//! Supervised child processes: the native backend's PostgreSQL, Redis and SQS emulator, the
//! gateway, the services' replicas.
//!
//! Three guarantees matter here:
//! - no orphan survives the process that started it, also after a panic or a `kill -9` of that
//!   process: next to each child runs a reaper, a `sh` in a process group of its own blocked
//!   reading a pipe whose other end only this process holds. However this process ends, the
//!   kernel closes that end; the reaper's read returns and it kills the child's whole process
//!   group (an nginx master's workers too, which a parent-death signal on the master would
//!   leave serving). When the child ends normally, its reaper is killed with it;
//! - each child leads its own process group, so a fault (stop, kill, pause) reaches the whole
//!   group (nginx's workers too) and a terminal's Ctrl-C reaches only `harness up`, which then
//!   stops its children in order;
//! - output goes to a log file per process, and readiness is a line in that output.
//!
//! Signals go through `rustix` (safe wrappers of the system calls; no `unsafe` here).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use rustix::process::Signal;
use rustix::process::{Pid, kill_process_group};
use tokio::sync::watch;

/// What a supervised process needs to start, kept so that it can be started again (a restart keeps
/// the same port, data directory and arguments).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name used in logs and errors (`postgres`, `redis`, `localstack`).
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory, if it matters.
    pub cwd: Option<PathBuf>,
    /// Run as this (uid, gid): PostgreSQL refuses to run as root.
    pub user: Option<(u32, u32)>,
    /// A line containing this text in stdout or stderr means the process is ready.
    pub ready_line: String,
    /// Signal that asks the process to shut down cleanly (SIGINT is PostgreSQL's fast shutdown).
    pub stop_signal: Signal,
    /// Where the output goes (appended: restarts add to the same file).
    pub log_file: PathBuf,
}

/// A running (or stopped) supervised process.
#[derive(Debug)]
pub struct Supervised {
    spec: ProcessSpec,
    state: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    child: Arc<Mutex<Child>>,
    pid: i32,
    /// Flips to true when the ready line has been seen.
    ready: watch::Receiver<bool>,
    /// Kills the process group if this process ends first (see the module's documentation).
    reaper: Reaper,
}

impl Supervised {
    /// Describes a process without starting it.
    pub fn new(spec: ProcessSpec) -> Self {
        Self {
            spec,
            state: Mutex::new(None),
        }
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The log file its output goes to.
    pub fn log_file(&self) -> &Path {
        &self.spec.log_file
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.lock().as_ref().map(|r| r.pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts the process and waits until its ready line appears, it exits, or `timeout` passes.
    pub async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        let ready = {
            let mut state = self.lock();
            if let Some(running) = state.as_ref()
                && is_alive(&running.child)
            {
                bail!(
                    "{} is already running (pid {})",
                    self.spec.name,
                    running.pid
                );
            }
            // What is left of an earlier run's group (it was killed from outside) goes first.
            if let Some(previous) = state.take() {
                let _ = signal_group(previous.pid, Signal::KILL);
                previous.reaper.dismiss();
            }
            let running = spawn(&self.spec)?;
            let ready = running.ready.clone();
            *state = Some(running);
            ready
        };
        self.wait_ready(ready, timeout).await
    }

    async fn wait_ready(
        &self,
        mut ready: watch::Receiver<bool>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if *ready.borrow_and_update() {
                return Ok(());
            }
            if let Some(status) = self.exit_status() {
                bail!(
                    "{} exited ({status}) before it was ready; its output is in {}:\n{}",
                    self.spec.name,
                    self.spec.log_file.display(),
                    tail(&self.spec.log_file, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready (no line containing {:?}) within {timeout:?}; its output is in {}:\n{}",
                    self.spec.name,
                    self.spec.ready_line,
                    self.spec.log_file.display(),
                    tail(&self.spec.log_file, 20)
                );
            }
            // Woken by the reader thread, or every 50 ms to notice an exit.
            let _ = tokio::time::timeout(Duration::from_millis(50), ready.changed()).await;
        }
    }

    /// `Some(description)` when the process has exited (or was never started).
    pub fn exit_status(&self) -> Option<String> {
        let state = self.lock();
        let Some(running) = state.as_ref() else {
            return Some("not started".into());
        };
        let mut child = running.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown: {e}")),
        }
    }

    /// Whether the process is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Sends `signal` to the process group.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.spec.name))?;
        signal_group(pid, signal).with_context(|| format!("signalling {}", self.spec.name))
    }

    /// Sends `signal` to the process alone, not its group (a reload of an nginx master).
    pub fn signal_leader(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .and_then(Pid::from_raw)
            .with_context(|| format!("{} is not running", self.spec.name))?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("signalling {}", self.spec.name))
    }

    /// How the process ended, once it has (`None` while it runs or before it started).
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        let state = self.lock();
        let mut child = state
            .as_ref()?
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    /// Asks the process to shut down cleanly and waits for it; kills it after `grace`.
    pub async fn stop(&self, grace: Duration) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let pid = self.pid().unwrap_or_default();
        // A paused process cannot act on the stop signal.
        let _ = signal_group(pid, Signal::CONT);
        let _ = signal_group(pid, self.spec.stop_signal);
        if self.wait_exit(grace).await {
            return Ok(());
        }
        tracing::warn!(name = %self.spec.name, "did not stop within {grace:?}; killing it");
        self.kill().await
    }

    /// Kills the whole process group with SIGKILL and waits until the process is gone.
    pub async fn kill(&self) -> anyhow::Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let pid = self.pid().unwrap_or_default();
        let _ = signal_group(pid, Signal::KILL);
        if self.wait_exit(Duration::from_secs(10)).await {
            Ok(())
        } else {
            bail!("{} (pid {pid}) survived SIGKILL for 10 s", self.spec.name)
        }
    }

    /// Pauses the whole process group (SIGSTOP): it holds its ports but answers nothing.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(Signal::STOP)
    }

    /// Resumes a paused process group (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::CONT)
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.reap_group();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Members of the group that outlived its leader (nginx's workers after a kill -9 of the
    /// master) would hold the port: they go too, and the reaper with them.
    fn reap_group(&self) {
        if let Some(running) = self.lock().as_ref() {
            let _ = signal_group(running.pid, Signal::KILL);
            running.reaper.dismiss();
        }
    }

    /// Stops the process synchronously (used from `Drop` and signal paths, where no runtime is).
    pub fn stop_blocking(&self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        let pid = self.pid().unwrap_or_default();
        let _ = signal_group(pid, Signal::CONT);
        let _ = signal_group(pid, self.spec.stop_signal);
        let deadline = Instant::now() + grace;
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.reap_group();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop_blocking(Duration::from_secs(5));
    }
}

fn is_alive(child: &Mutex<Child>) -> bool {
    let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
    matches!(child.try_wait(), Ok(None))
}

/// Sends `signal` to the process group `pid` leads (every child leads its own group).
pub fn signal_group(pid: i32, signal: Signal) -> std::io::Result<()> {
    let pid = Pid::from_raw(pid)
        .filter(|_| pid > 0)
        .ok_or_else(|| std::io::Error::other("no process"))?;
    Ok(kill_process_group(pid, signal)?)
}

/// The reaper of one child's process group: a `sh` in a group of its own, blocked reading a pipe
/// whose write end is here. When this process ends, however it ends, the kernel closes that end
/// and the reaper kills the group with SIGKILL. [`Reaper::dismiss`] (the child ended normally)
/// kills the reaper instead. Its own group keeps the signals sent to the child's group (a stop,
/// a pause) from reaching it.
#[derive(Debug)]
struct Reaper {
    child: Mutex<Option<Child>>,
}

impl Reaper {
    fn spawn(group: i32) -> std::io::Result<Self> {
        let child = Command::new("sh")
            .arg("-c")
            .arg("read _ignored; kill -KILL \"-$0\" 2>/dev/null")
            .arg(group.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Self {
            child: Mutex::new(Some(child)),
        })
    }

    /// Stops the reaper without letting it act (the group is gone or going), and reaps it.
    fn dismiss(&self) {
        let taken = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// The live children of process `pid` (an nginx master's workers), from `/proc`.
pub fn children(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // After the command name (which may hold spaces): state, then the parent.
                let mut fields = stat
                    .rfind(')')
                    .map(|i| stat[i + 1..].split_whitespace())
                    .into_iter()
                    .flatten();
                let state = fields.next();
                !matches!(state, Some("Z" | "X"))
                    && fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(pid)
            })
        })
        .collect()
}

/// Last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn spawn(spec: &ProcessSpec) -> anyhow::Result<Running> {
    if let Some(dir) = spec.log_file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log_file)
        .with_context(|| format!("opening {}", spec.log_file.display()))?;

    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    if let Some((uid, gid)) = spec.user {
        command.uid(uid);
        command.gid(gid);
    }

    let mut child = command
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let reaper = match Reaper::spawn(pid) {
        Ok(reaper) => reaper,
        Err(e) => {
            let _ = signal_group(pid, Signal::KILL);
            let _ = child.wait();
            return Err(e).context("starting the reaper (sh) of a child process");
        }
    };

    let (ready_tx, ready_rx) = watch::channel(false);
    let ready_tx = Arc::new(ready_tx);
    let log = Arc::new(Mutex::new(log));
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let log = Arc::clone(&log);
        let ready_tx = Arc::clone(&ready_tx);
        let needle = spec.ready_line.clone();
        std::thread::Builder::new()
            .name(format!("{}-output", spec.name))
            .spawn(move || copy_output(stream, &log, &ready_tx, &needle))
            .context("spawning output thread")?;
    }
    Ok(Running {
        child: Arc::new(Mutex::new(child)),
        pid,
        ready: ready_rx,
        reaper,
    })
}

fn copy_output(
    stream: Box<dyn Read + Send>,
    log: &Mutex<File>,
    ready: &watch::Sender<bool>,
    needle: &str,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&line);
        }
        if !*ready.borrow() && String::from_utf8_lossy(&line).contains(needle) {
            ready.send_replace(true);
        }
    }
}
