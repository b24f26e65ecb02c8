//! `harness shared-deps` (nextest's setup script): the dependencies it starts serve tests through
//! the lease, and stop when the process they serve ends, however it ends.

use std::time::Duration;

#[tokio::test]
async fn shared_dependencies_serve_through_the_lease_and_stop_when_the_runner_is_killed()
-> anyhow::Result<()> {
    if std::env::var("HARNESS_BACKEND").is_ok_and(|b| b == "external") {
        return Ok(());
    }
    let state = std::env::temp_dir().join(format!("harness-shared-{}", uuid::Uuid::new_v4()));
    // A stand-in for nextest: a shell that runs the setup step and then lives on, as nextest
    // does while tests run. Without $NEXTEST_ENV the lease line is printed.
    let runner = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} shared-deps start --watch-pid $$ && exec sleep 300",
            env!("CARGO_BIN_EXE_harness")
        ))
        .env("HARNESS_STATE_DIR", &state)
        .env_remove("NEXTEST_ENV")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let runner_pid = runner.id().expect("running");
    let mut stdout = tokio::io::BufReader::new(runner.stdout.expect("piped"));
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(240),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await??;
    let lease = line
        .trim()
        .strip_prefix(&format!("{}=", harness::lease::LEASE_VAR))
        .unwrap_or_else(|| panic!("a lease line, not {line:?}"))
        .to_string();

    // A test process uses them as an external backend: a scope works on them.
    let endpoints = harness::lease::read(std::path::Path::new(&lease))?;
    let stack =
        harness::Stack::start(harness::StackOptions::default().with_external(endpoints)).await?;
    assert_eq!(stack.backend().name(), "external");
    let scope = stack.scope().await?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&scope.database_url).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    assert_eq!(one, 1);
    sqlx::Connection::close(conn).await?;

    // The runner is killed: the dependencies go, and the lease with them.
    let serve = serve_pid(runner_pid).expect("a shared-deps serve process");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &runner_pid.to_string()])
        .status()?;
    assert!(status.success());
    harness::eventually(Duration::from_secs(60), "serve to stop", || async {
        (!std::path::Path::new(&format!("/proc/{serve}/cmdline")).exists()
            || std::fs::read(format!("/proc/{serve}/cmdline")).is_ok_and(|c| c.is_empty()))
        .then_some(())
    })
    .await;
    assert!(
        !std::path::Path::new(&lease).exists(),
        "the lease is removed"
    );
    let label = format!("label=cashflow.harness.pid={serve}");
    harness::eventually(Duration::from_secs(30), "no container left", || async {
        let out = tokio::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .await
            .ok();
        out.is_none_or(|o| o.stdout.iter().all(u8::is_ascii_whitespace))
            .then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&state);
    Ok(())
}

/// The `harness shared-deps serve` that watches `runner`.
fn serve_pid(runner: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains("shared-deps serve")
                && cmdline.contains(&format!("--watch-pid {runner}")))
            .then_some(pid)
        })
}
