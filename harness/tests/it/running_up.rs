//! A `harness up` run as a child process by a test, with its own ports and state folder, and
//! what the tests do with it: mint tokens, record and read through it, run `harness` commands
//! against it, stop it cleanly or kill it, and check that nothing it started outlives it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::orphans::survivors;

/// What `harness up` says when a port it was given is bound by someone else.
const PORT_TAKEN: &str = "is taken; choose another with --";

/// Removes what the runs kept (data directory, Docker volume) even when the test fails.
pub(crate) struct Down(pub std::path::PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("down")
            .env("HARNESS_STATE_DIR", &self.0)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `harness up` with its own ports and state folder.
pub(crate) struct Up {
    child: tokio::process::Child,
    pid: i32,
    state: std::path::PathBuf,
    /// The gateway's URL.
    pub gateway: String,
    /// The first ledger replica's own URL.
    pub ledger: String,
    /// The first consolidation replica's own URL.
    pub consolidation: String,
    /// Everything it printed on stderr so far.
    stderr: Arc<Mutex<String>>,
    /// Its process groups (it and its children), to check none outlives it.
    groups: Vec<i32>,
    http: reqwest::Client,
}

impl Up {
    /// Starts it on `backend` (`None`: the environment's choice) and waits until it is ready.
    ///
    /// The ports are chosen here and bound by the child a moment later; another test running
    /// in parallel can bind one of them in between. When the child says a port is taken, the
    /// start is tried again on fresh ports (that race is the test's, not the harness's).
    pub async fn start(
        state: &std::path::Path,
        backend: Option<&'static str>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            match Self::try_start(state, backend, extra).await? {
                Ok(up) => return Ok(up),
                Err(said) if said.contains(PORT_TAKEN) && attempt < ATTEMPTS => {
                    eprintln!("a chosen port was taken meanwhile; starting again on others");
                }
                Err(said) => {
                    panic!("harness up {extra:?} on {backend:?} did not reach ready:\n{said}")
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One start: `Ok(Err(what it said))` when it did not reach ready.
    async fn try_start(
        state: &std::path::Path,
        backend: Option<&'static str>,
        extra: &[&str],
    ) -> anyhow::Result<Result<Self, String>> {
        let port = || harness::backend::native::free_port().expect("a free port");
        let (gateway, ledger, consolidation) = (port(), port(), port());
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"));
        if let Some(backend) = backend {
            command.env("HARNESS_BACKEND", backend);
        }
        let mut child = command
            .arg("up")
            .args(["--gateway-port", &gateway.to_string()])
            .args(["--identity-port", &port().to_string()])
            .args(["--ledger-port", &ledger.to_string()])
            .args(["--ledger-internal-port", &port().to_string()])
            .args(["--consolidation-port", &consolidation.to_string()])
            .args(["--postgres-port", &port().to_string()])
            .args(["--redis-port", &port().to_string()])
            .args(["--sqs-port", &port().to_string()])
            .args(["--prometheus-port", "0"])
            .args(extra)
            .env("HARNESS_STATE_DIR", state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = i32::try_from(child.id().expect("running"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let collected = Arc::clone(&stderr);
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut text = collected.lock().unwrap_or_else(|p| p.into_inner());
                text.push_str(&line);
                text.push('\n');
            }
        });
        let mut out_lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(180), async {
            while let Some(line) = out_lines.next_line().await? {
                if line.contains("ready in") {
                    return anyhow::Ok(true);
                }
            }
            Ok(false)
        })
        .await;
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
        if !matches!(ready, Ok(Ok(true))) {
            // Everything it said, its error included (printed as it exits), and the services' logs.
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let printed = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let logs: String = std::fs::read_dir(state.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.starts_with("ledger") || name.starts_with("consolidation")
                })
                .map(|e| {
                    format!(
                        "--- {}\n{}",
                        e.path().display(),
                        harness::process::tail(&e.path(), 60)
                    )
                })
                .collect();
            return Ok(Err(format!("{ready:?}\n{printed}\n{logs}")));
        }
        let mut groups = crate::up::children_of(pid);
        groups.push(pid);
        Ok(Ok(Self {
            child,
            pid,
            state: state.to_path_buf(),
            gateway: format!("http://127.0.0.1:{gateway}"),
            ledger: format!("http://127.0.0.1:{ledger}"),
            consolidation: format!("http://127.0.0.1:{consolidation}"),
            stderr,
            groups,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        }))
    }

    pub async fn token(&self, merchant: &str) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["token", "--merchant", merchant])
            .env("HARNESS_STATE_DIR", &self.state)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    pub async fn record(&self, merchant: &str, amount: &str) -> anyhow::Result<Value> {
        let answer = self
            .http
            .post(format!("{}/v1/merchants/{merchant}/entries", self.ledger))
            .bearer_auth(self.token(merchant).await?)
            .json(&serde_json::json!({"kind": "credit", "amount": amount, "currency": "BRL"}))
            .send()
            .await?;
        anyhow::ensure!(answer.status() == 201, "{}", answer.text().await?);
        Ok(answer.json().await?)
    }

    /// Ids of the merchant's entries on `date`.
    pub async fn list(&self, merchant: &str, date: &str) -> anyhow::Result<Vec<String>> {
        let answer = self
            .http
            .get(format!(
                "{}/v1/merchants/{merchant}/entries?date={date}&limit=100",
                self.ledger
            ))
            .bearer_auth(self.token(merchant).await?)
            .send()
            .await?;
        anyhow::ensure!(answer.status() == 200, "{}", answer.text().await?);
        let page: Value = answer.json().await?;
        Ok(page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["id"].as_str().map(String::from))
            .collect())
    }

    pub async fn wait_balance(
        &self,
        merchant: &str,
        date: &str,
        credits: &str,
        count: u64,
    ) -> anyhow::Result<()> {
        let token = self.token(merchant).await?;
        let url = format!(
            "{}/v1/merchants/{merchant}/balances/{date}",
            self.consolidation
        );
        // The reconciler's first pass runs at start, then waits its grace period (15 s) before it
        // replays what the broker lost.
        harness::eventually(Duration::from_secs(90), "the balance", || async {
            let answer = self.http.get(&url).bearer_auth(&token).send().await.ok()?;
            let balance: Value = answer.json().await.ok()?;
            (balance["credits"] == credits && balance["entry_count"] == count).then_some(())
        })
        .await;
        Ok(())
    }

    /// What it printed on stderr so far (its progress and the replicas' events).
    pub fn printed(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `harness <args>` against it; fails unless it succeeds.
    pub async fn harness(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.harness_output(args).await?;
        anyhow::ensure!(
            output.status.success(),
            "harness {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs `harness <args>` against it.
    pub async fn harness_output(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Ok(tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(args)
            .env("HARNESS_STATE_DIR", &self.state)
            .env("RUST_BACKTRACE", "0")
            .output()
            .await?)
    }

    /// `harness ps --json`.
    pub async fn ps(&self) -> anyhow::Result<Vec<harness::cluster::ReplicaStatus>> {
        Ok(serde_json::from_str(
            &self.harness(&["ps", "--json"]).await?,
        )?)
    }

    /// SIGTERM: it must exit 0, print no error while it stops, and leave no process or
    /// container behind.
    pub async fn stop_cleanly(mut self) -> anyhow::Result<()> {
        let before = self.printed().len();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(90), self.child.wait()).await??;
        // Its stderr closes when it exits; give the reader a moment to take the last lines.
        let printed = harness::eventually(Duration::from_secs(5), "the last lines", || async {
            let text = self
                .stderr
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            text.contains("harness: stopped").then_some(text)
        })
        .await;
        assert!(exit.success(), "harness up exited with {exit}:\n{printed}");
        let stopping = &printed[before.min(printed.len())..];
        for bad in ["ERROR", "error", "panicked"] {
            assert!(
                !stopping.contains(bad),
                "a clean stop printed {bad:?}:\n{printed}"
            );
        }
        self.nothing_left().await
    }

    /// `kill -9`: nothing it started may survive it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        self.nothing_left().await
    }

    async fn nothing_left(&self) -> anyhow::Result<()> {
        let groups = self.groups.clone();
        harness::eventually(Duration::from_secs(30), "no process left", || async {
            survivors(&groups).is_empty().then_some(())
        })
        .await;
        if self.printed().contains("backend Containers") {
            let label = format!("label=cashflow.harness.pid={}", self.pid);
            harness::eventually(Duration::from_secs(30), "no container left", || async {
                let out = tokio::process::Command::new("docker")
                    .args(["ps", "-aq", "--filter", &label])
                    .output()
                    .await
                    .ok()?;
                out.stdout.iter().all(u8::is_ascii_whitespace).then_some(())
            })
            .await;
        }
        Ok(())
    }
}
