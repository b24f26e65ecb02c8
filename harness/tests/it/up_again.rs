//! `harness up` works every time it is run, on each owning backend: a second run on the data
//! the first kept reaches `ready` and serves what the first recorded, a run after a `kill -9`
//! does too, `--fresh` starts from empty, `harness down` removes what `up` kept, no process or
//! container outlives any run, and a clean stop prints no error.

use crate::running_up::{Down, Up};

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
    let first = Up::start(&state, Some(backend), &[]).await?;
    let entry = first.record(merchant, "10.00").await?;
    let date = entry["business_date"].as_str().expect("a date").to_string();
    first.wait_balance(merchant, &date, "10.00", 1).await?;
    first.stop_cleanly().await?;

    // 2. The second run, on the same state, lists it and shows it in the balance.
    let second = Up::start(&state, Some(backend), &[]).await?;
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
    let third = Up::start(&state, Some(backend), &[]).await?;
    assert_eq!(third.list(merchant, &date).await?.len(), 2);
    third.wait_balance(merchant, &date, "15.00", 2).await?;
    third.stop_cleanly().await?;

    // 4. `--fresh` starts from empty.
    let fresh = Up::start(&state, Some(backend), &["--fresh"]).await?;
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
