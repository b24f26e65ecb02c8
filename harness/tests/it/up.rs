//! `harness up` reaches `ready`, its token is accepted by the ledger it runs, and SIGTERM stops
//! everything it started. Needs the service binaries (`cargo test --workspace` builds them).

use std::process::Stdio;
use std::time::Duration;

use cashflow_platform::auth::JwtVerifier;
use tokio::io::{AsyncBufReadExt, BufReader};

fn free_port() -> u16 {
    harness::backend::native::free_port().expect("a free port")
}

#[tokio::test]
async fn up_prints_urls_and_ready_then_stops_everything_on_sigterm() -> anyhow::Result<()> {
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    // Native whatever the default: this checks the process tree `harness up` leaves behind.
    // Its own state folder: a developer's running `make up` is left alone.
    let state = std::env::temp_dir().join(format!("harness-up-test-{}", uuid::Uuid::new_v4()));
    let identity_port = free_port();
    let ledger_port = free_port();
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("up")
        .args(["--gateway-port", &free_port().to_string()])
        .args(["--identity-port", &identity_port.to_string()])
        .args(["--ledger-port", &ledger_port.to_string()])
        .args(["--consolidation-port", &free_port().to_string()])
        .args(["--postgres-port", &free_port().to_string()])
        .args(["--redis-port", &free_port().to_string()])
        .args(["--sqs-port", &free_port().to_string()])
        .env("HARNESS_STATE_DIR", &state)
        .env("HARNESS_BACKEND", "native")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = i32::try_from(up.id().expect("running"))?;
    let mut lines = BufReader::new(up.stdout.take().expect("piped")).lines();
    let mut printed = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            let done = line.contains("ready");
            printed.push(line);
            if done {
                return anyhow::Ok(true);
            }
        }
        Ok(false)
    })
    .await??;
    assert!(
        ready,
        "harness up ended without printing ready:\n{}",
        printed.join("\n")
    );
    let text = printed.join("\n");
    // The emulator the environment chose is named, not LocalStack whatever it is.
    let emulator = harness::backend::SqsEmulator::from_env()?;
    for expected in [
        "ledger",
        "consolidation",
        "identity",
        &format!("sqs ({emulator})"),
        "postgres",
        "redis",
        "TOKEN=",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }

    let token = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["token", "--merchant", "m7", "--scope", "balances:read"])
        .env("HARNESS_STATE_DIR", &state)
        .output()
        .await?;
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let verifier = JwtVerifier::new(harness::identity::auth_config(
        &format!("http://127.0.0.1:{identity_port}"),
        harness::identity::DEFAULT_AUDIENCE,
        None,
    ));
    let principal = verifier
        .verify(String::from_utf8(token.stdout)?.trim())
        .await?;
    assert_eq!(principal.merchants, ["m7"]);
    assert_eq!(principal.scopes, ["balances:read"]);

    // The ledger it runs records an entry with a token from `harness token`.
    let writer = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["token", "--merchant", "m7"])
        .env("HARNESS_STATE_DIR", &state)
        .output()
        .await?;
    let recorded = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{ledger_port}/v1/merchants/m7/entries"
        ))
        .bearer_auth(String::from_utf8(writer.stdout)?.trim())
        .json(&serde_json::json!({"kind": "credit", "amount": "10.00", "currency": "BRL"}))
        .send()
        .await?;
    assert_eq!(recorded.status(), 201, "{}", recorded.text().await?);

    // `harness fault` reaches the running up: the ledger's PostgreSQL link slows down, shows
    // in `fault list`, and heals.
    let fault = |args: &'static [&'static str]| {
        let state = state.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_harness"))
                .arg("fault")
                .args(args)
                .env("HARNESS_STATE_DIR", &state)
                .output()
                .await
                .expect("harness fault runs");
            assert!(
                output.status.success(),
                "harness fault {args:?}: {output:?}"
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    fault(&["ledger", "postgres", "latency", "300ms"]).await;
    assert!(fault(&["list"]).await.contains("ledger→postgres"));
    let started = std::time::Instant::now();
    let ready = reqwest::get(format!("http://127.0.0.1:{ledger_port}/health/ready")).await?;
    assert_eq!(ready.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "readiness went through the slowed link ({:?})",
        started.elapsed()
    );
    fault(&["ledger", "postgres", "heal"]).await;
    assert!(!fault(&["list"]).await.contains("latency"));
    // And its SQS fault layer: a rule shows in the list until healed.
    fault(&[
        "sqs",
        "SendMessageBatch",
        "fail-entries",
        "0.3",
        "--rate",
        "0.5",
    ])
    .await;
    assert!(
        fault(&["list"])
            .await
            .contains("SendMessageBatch fail-entries 0.3")
    );
    fault(&["sqs", "heal"]).await;
    assert!(fault(&["list"]).await.contains("no SQS faults"));

    let children = children_of(pid);
    assert!(
        children.len() >= 4,
        "postgres, redis, localstack and the ledger run under harness up: {children:?}"
    );
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(60), up.wait()).await??;
    assert!(status.success(), "harness up exited with {status}");
    assert!(
        crate::orphans::survivors(&children).is_empty(),
        "processes outlived harness up"
    );
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .is_some_and(|text| {
                    let rest = text.rfind(')').map(|i| &text[i + 2..]).unwrap_or_default();
                    rest.split_whitespace().nth(1) == Some(&parent.to_string())
                })
        })
        .collect()
}
