//! `harness up` works every time it is run, on each owning backend: a second run on the data
//! the first kept reaches `ready` and serves what the first recorded, a run after a `kill -9`
//! does too, `--fresh` starts from empty, `harness down` removes what `up` kept, no process or
//! container outlives any run, and a clean stop prints no error.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::orphans::survivors;

#[tokio::test]
async fn up_again_on_kept_data_native() -> anyhow::Result<()> {
    up_again_on_kept_data("native").await
}

#[tokio::test]
async fn up_again_on_kept_data_containers() -> anyhow::Result<()> {
    if let Err(why) = harness::backend::containers::available().await {
        eprintln!("skipped: the containers backend cannot run here: {why:#}");
        return Ok(());
    }
    up_again_on_kept_data("containers").await
}

async fn up_again_on_kept_data(backend: &'static str) -> anyhow::Result<()> {
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    // Its own state folder (and so its own data directory and Docker volume): a developer's
    // `make up` data is never touched.
    let state = std::env::temp_dir().join(format!("harness-up-again-{}", uuid::Uuid::new_v4()));
    let _cleanup = Down(state.clone());
    let merchant = "m-kept";

    // 1. A first run records an entry and waits until the consolidation has applied it (what
    //    is in flight in SQS at a stop is not kept: LocalStack keeps no messages).
    let first = Up::start(&state, backend, &[]).await?;
    let entry = first.record(merchant, "10.00").await?;
    let date = entry["business_date"].as_str().expect("a date").to_string();
    first.wait_balance(merchant, &date, "10.00", 1).await?;
    first.stop_cleanly().await?;

    // 2. The second run, on the same state, lists it and shows it in the balance.
    let second = Up::start(&state, backend, &[]).await?;
    let listed = second.list(merchant, &date).await?;
    assert!(
        listed.contains(&entry["id"].as_str().expect("an id").to_string()),
        "the second run lists the first run's entry: {listed:?}"
    );
    second.wait_balance(merchant, &date, "10.00", 1).await?;
    // What it records before it is killed is kept too.
    second.record(merchant, "5.00").await?;
    second.kill().await?;

    // 3. A run after a `kill -9` (a stale postmaster.pid in the kept data) is ready too, and its
    //    balance holds what the killed run recorded: published and applied before the kill, or
    //    lost with LocalStack's messages and then replayed by the reconciler.
    let third = Up::start(&state, backend, &[]).await?;
    assert_eq!(third.list(merchant, &date).await?.len(), 2);
    third.wait_balance(merchant, &date, "15.00", 2).await?;
    third.stop_cleanly().await?;

    // 4. `--fresh` starts from empty.
    let fresh = Up::start(&state, backend, &["--fresh"]).await?;
    assert!(fresh.list(merchant, &date).await?.is_empty());
    fresh.stop_cleanly().await?;

    // 5. `harness down` removes what `up` kept.
    let down = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("down")
        .env("HARNESS_STATE_DIR", &state)
        .env("HARNESS_BACKEND", backend)
        .output()
        .await?;
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "harness down failed: {said}");
    match backend {
        "containers" => assert!(said.contains("removed the Docker volume"), "{said}"),
        _ => assert!(said.contains("removed the data directory"), "{said}"),
    }
    Ok(())
}

/// Removes what the runs kept (data directory, Docker volume) even when the test fails.
struct Down(std::path::PathBuf);

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
struct Up {
    child: tokio::process::Child,
    pid: i32,
    backend: &'static str,
    state: std::path::PathBuf,
    ledger: String,
    consolidation: String,
    /// Everything it printed on stderr so far.
    stderr: Arc<Mutex<String>>,
    /// Its process groups (it and its children), to check none outlives it.
    groups: Vec<i32>,
    http: reqwest::Client,
}

impl Up {
    async fn start(
        state: &std::path::Path,
        backend: &'static str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let port = || harness::backend::native::free_port().expect("a free port");
        let (ledger, consolidation) = (port(), port());
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .arg("up")
            .args(["--gateway-port", &port().to_string()])
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
            .env("HARNESS_BACKEND", backend)
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
            panic!(
                "harness up {extra:?} on {backend} did not reach ready: {ready:?}\n{printed}\n{logs}"
            );
        }
        let mut groups = crate::up::children_of(pid);
        groups.push(pid);
        Ok(Self {
            child,
            pid,
            backend,
            state: state.to_path_buf(),
            ledger: format!("http://127.0.0.1:{ledger}"),
            consolidation: format!("http://127.0.0.1:{consolidation}"),
            stderr,
            groups,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    async fn token(&self, merchant: &str) -> anyhow::Result<String> {
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

    async fn record(&self, merchant: &str, amount: &str) -> anyhow::Result<Value> {
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
    async fn list(&self, merchant: &str, date: &str) -> anyhow::Result<Vec<String>> {
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

    async fn wait_balance(
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

    /// SIGTERM: it must exit 0, print no error, and leave no process or container behind.
    async fn stop_cleanly(mut self) -> anyhow::Result<()> {
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
        for bad in ["ERROR", "error", "panicked"] {
            assert!(
                !printed.contains(bad),
                "a clean stop printed {bad:?}:\n{printed}"
            );
        }
        self.nothing_left().await
    }

    /// `kill -9`: nothing it started may survive it.
    async fn kill(mut self) -> anyhow::Result<()> {
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
        if self.backend == "containers" {
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
