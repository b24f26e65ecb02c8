//! One replica of a service and its lifecycle, as the kubelet runs a pod's container: start it,
//! wait until `/health/ready` answers, report it ready (the cluster then puts it in the
//! gateway), watch it, and when it exits on its own start it again after the restart policy's
//! back-off, on the same port with the same settings. Stopping it is not its business: the
//! cluster takes it out of the gateway first, then cancels [`Replica::stop`] and sends SIGTERM.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::event::{Event, EventKind, seconds};
use super::restart::RestartPolicy;
use crate::Service;
use crate::process::Supervised;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Started, not ready yet: not in the gateway.
    #[default]
    Starting,
    /// Answers `/health/ready`: in the gateway (once the reload is done).
    Ready,
    /// Exited; waits out its back-off before the next start.
    BackOff,
    /// Out of the gateway and stopping (a rollout, a scale-down, `up` stopping).
    Terminating,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::BackOff => "back-off",
            Self::Terminating => "terminating",
        })
    }
}

/// How a replica last exited on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastExit {
    /// `signal 9`, `exit code 1`, `not ready within 60 s`.
    pub status: String,
    /// Why, from its last output, when it said (an error report's message and causes).
    pub reason: Option<String>,
    /// Seconds since.
    pub secs_ago: f64,
}

/// One replica as `harness ps` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// `consolidation-2`.
    pub name: String,
    /// Its service.
    pub service: Service,
    /// Where it is in its life.
    pub phase: Phase,
    /// Whether the gateway sends it requests now.
    pub in_gateway: bool,
    /// Starts after the first.
    pub restarts: u32,
    /// Its own HTTP port.
    pub port: u16,
    /// Its process while one runs.
    pub pid: Option<i32>,
    /// Seconds since the replica was made (restarts do not reset it, as a pod's age).
    pub age_secs: f64,
    /// Seconds until the next start, in back-off.
    pub restart_in_secs: Option<f64>,
    /// How it last exited on its own.
    pub last_exit: Option<LastExit>,
    /// Its log file.
    pub log_file: String,
}

#[derive(Debug, Default)]
struct Status {
    phase: Phase,
    restarts: u32,
    /// Set when the cluster decided to stop it: out of the gateway from then on.
    leaving: bool,
    in_gateway: bool,
    restart_at: Option<Instant>,
    last_exit: Option<(String, Option<String>, Instant)>,
}

/// What a replica's lifecycle needs from the cluster around it.
#[derive(Debug, Clone)]
pub(super) struct Surroundings {
    /// Where events go.
    pub events: broadcast::Sender<Event>,
    /// Woken when the set of replicas the gateway should serve may have changed.
    pub gateway_changed: Arc<Notify>,
    /// The back-off between restarts.
    pub policy: RestartPolicy,
    /// How long a start may take until `/health/ready` answers.
    pub start_timeout: Duration,
}

/// One replica: its process and its status.
#[derive(Debug)]
pub(super) struct Replica {
    /// `consolidation-2`.
    pub name: String,
    /// Its service.
    pub service: Service,
    /// 1-based, never reused within a run.
    pub ordinal: u16,
    /// Its own HTTP port (the gateway's upstream).
    pub port: u16,
    /// Its internal listener (the ledger's digests and replays).
    pub internal_port: u16,
    /// The process, started again on the same port after an exit.
    pub process: Supervised,
    /// Cancelled when the cluster stops it: the lifecycle then leaves the process alone.
    pub stop: CancellationToken,
    created: Instant,
    status: Mutex<Status>,
}

impl Replica {
    pub fn new(
        service: Service,
        ordinal: u16,
        port: u16,
        internal_port: u16,
        process: Supervised,
    ) -> Self {
        Self {
            name: format!("{service}-{ordinal}"),
            service,
            ordinal,
            port,
            internal_port,
            process,
            stop: CancellationToken::new(),
            created: Instant::now(),
            status: Mutex::default(),
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the gateway should send it requests: ready, and not being stopped.
    pub fn serves(&self) -> bool {
        let status = self.status();
        status.phase == Phase::Ready && !status.leaving
    }

    /// Whether it is not being stopped.
    pub fn live(&self) -> bool {
        !self.status().leaving
    }

    /// Where it is in its life.
    pub fn phase(&self) -> Phase {
        self.status().phase
    }

    /// Whether the gateway's configuration in force sends it requests.
    pub fn in_gateway(&self) -> bool {
        self.status().in_gateway
    }

    /// Records whether the configuration in force sends it requests; true when it just joined.
    pub fn set_in_gateway(&self, in_gateway: bool) -> bool {
        let mut status = self.status();
        let joined = in_gateway && !status.in_gateway;
        status.in_gateway = in_gateway;
        joined
    }

    /// Marks it as being stopped: the next gateway update leaves it out.
    pub fn set_leaving(&self) {
        let mut status = self.status();
        status.leaving = true;
        status.phase = Phase::Terminating;
    }

    /// `host:port` of its HTTP listener, as the gateway names it.
    pub fn upstream(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `host:port` of its internal listener.
    pub fn internal_upstream(&self) -> String {
        format!("127.0.0.1:{}", self.internal_port)
    }

    /// Its restarts so far and how it last exited (for an operation's error message).
    pub fn exits(&self) -> (u32, Option<String>) {
        let status = self.status();
        let last = status
            .last_exit
            .as_ref()
            .map(|(status, reason, _)| match reason {
                Some(reason) => format!("{status}: {reason}"),
                None => status.clone(),
            });
        (status.restarts, last)
    }

    /// What `harness ps` shows of it.
    pub fn report(&self) -> ReplicaStatus {
        let now = Instant::now();
        let status = self.status();
        ReplicaStatus {
            name: self.name.clone(),
            service: self.service,
            phase: status.phase,
            in_gateway: status.in_gateway,
            restarts: status.restarts,
            port: self.port,
            pid: self.process.pid().filter(|_| self.process.is_running()),
            age_secs: now.duration_since(self.created).as_secs_f64(),
            restart_in_secs: status
                .restart_at
                .filter(|_| status.phase == Phase::BackOff)
                .map(|at| at.saturating_duration_since(now).as_secs_f64()),
            last_exit: status
                .last_exit
                .as_ref()
                .map(|(status, reason, at)| LastExit {
                    status: status.clone(),
                    reason: reason.clone(),
                    secs_ago: now.duration_since(*at).as_secs_f64(),
                }),
            log_file: self.process.log_file().display().to_string(),
        }
    }

    /// The lifecycle, until [`Replica::stop`] is cancelled: start, ready, watch, and on an exit
    /// of its own, back off and start again.
    pub async fn run(self: Arc<Self>, around: Surroundings) {
        let mut previous_wait = None;
        loop {
            let log_offset = file_len(self.process.log_file());
            let started = Instant::now();
            self.status().phase = Phase::Starting;
            // `biased`: a stop decided by the cluster wins over an exit it caused.
            let ready = tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                ready = self.start(around.start_timeout) => ready,
            };
            // A signal says all there is to say; an exit of its own (a bad setting) or a start
            // that never became ready is explained by the process's last words.
            let (status, explain) = match ready {
                Ok(()) => {
                    // The cluster puts it in the gateway, and then says it is ready.
                    self.status().phase = Phase::Ready;
                    around.gateway_changed.notify_one();
                    let exited = tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return,
                        exited = self.wait_exit() => exited,
                    };
                    (describe(exited), exited.code().is_some())
                }
                Err(not_ready) => match self.process.exited() {
                    Some(exited) => (describe(exited), exited.code().is_some()),
                    None => {
                        let _ = self.process.kill().await;
                        (format!("{not_ready:#}"), true)
                    }
                },
            };
            if self.stop.is_cancelled() {
                return;
            }
            let reason = explain
                .then(|| why(self.process.log_file(), log_offset))
                .flatten();
            let wait = around.policy.wait(previous_wait, started.elapsed());
            previous_wait = Some(wait);
            {
                let mut state = self.status();
                state.phase = Phase::BackOff;
                state.in_gateway = false;
                state.restart_at = Some(Instant::now() + wait);
                state.last_exit = Some((status.clone(), reason.clone(), Instant::now()));
            }
            around.gateway_changed.notify_one();
            let _ = around.events.send(self.event(EventKind::Exited {
                status,
                reason,
                restart_in: wait,
            }));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.stop.cancelled() => return,
            }
            self.status().restarts += 1;
        }
    }

    fn event(&self, kind: EventKind) -> Event {
        Event {
            subject: self.name.clone(),
            kind,
        }
    }

    /// Starts the process and waits until `/health/ready` answers 200; fails when it exits
    /// first or is not ready within `timeout`.
    async fn start(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        self.process.start(timeout).await?;
        loop {
            if self.process.exited().is_some() {
                anyhow::bail!("exited before it was ready");
            }
            if crate::services::is_ready(self.port).await {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "not ready within {}",
                seconds(timeout)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the process exits (polled: the exit is noticed within 50 ms).
    async fn wait_exit(&self) -> std::process::ExitStatus {
        loop {
            if let Some(exited) = self.process.exited() {
                return exited;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `signal 9`, `exit code 1`.
pub(super) fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Why the process exited, from what it wrote since `offset`: the message and causes of the
/// error report it ended with (`Error: …` / `Caused by:`), else its last line.
fn why(log: &Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(log).ok()?;
    file.seek(std::io::SeekFrom::Start(offset)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let reason = match lines.iter().rposition(|line| line.starts_with("Error: ")) {
        Some(start) => {
            let mut parts = vec![
                lines[start]
                    .trim_start_matches("Error: ")
                    .trim()
                    .to_string(),
            ];
            for line in &lines[start + 1..] {
                let line = line.trim();
                if line.starts_with("Stack backtrace") {
                    break;
                }
                // `0: cause`, `1: cause`, ...
                if let Some((number, cause)) = line.split_once(": ")
                    && number.chars().all(|c| c.is_ascii_digit())
                {
                    parts.push(cause.to_string());
                } else if line.is_empty() || line == "Caused by:" {
                    continue;
                } else if parts.len() == 1 {
                    // A single cause is printed without a number.
                    parts.push(line.to_string());
                }
            }
            parts.join(": ")
        }
        None => lines
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())?
            .trim()
            .to_string(),
    };
    const LONGEST: usize = 240;
    Some(match reason.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}…", &reason[..cut]),
        None => reason,
    })
}

#[cfg(test)]
mod tests {
    use super::why;

    #[test]
    fn why_reads_the_error_report_a_bad_setting_ends_with() {
        let dir = std::env::temp_dir().join(format!("why-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let log = dir.join("consolidation-3.log");
        let earlier = "an earlier run's line\n";
        let report = "{\"level\":\"INFO\",\"msg\":\"starting\"}\nError: reading the configuration\n\n\
             Caused by:\n    0: SHUTDOWN_DRAIN_TIMEOUT_MS=\"soon\" is not valid\n    \
             1: invalid digit found in string\n\nStack backtrace:\n   0: anyhow::error\n";
        std::fs::write(&log, format!("{earlier}{report}")).expect("written");
        assert_eq!(
            why(&log, earlier.len() as u64).as_deref(),
            Some(
                "reading the configuration: SHUTDOWN_DRAIN_TIMEOUT_MS=\"soon\" is not valid: \
                 invalid digit found in string"
            )
        );
        std::fs::write(&log, "started\nthread 'main' panicked at src/main.rs:1:1\n")
            .expect("written");
        assert_eq!(
            why(&log, 0).as_deref(),
            Some("thread 'main' panicked at src/main.rs:1:1")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
