//! `replay`: what a replay costs live recording.

use std::time::Duration;

use anyhow::Context;

use crate::kit::goose::{Attack, writes};
use crate::kit::report::Figure;
use crate::kit::target::Target;

/// `replay`: the cost of a replay to live recording. POSTs at `rate`/s for `seconds` while idle,
/// then again while the ledger replays `events` events of one merchant-day (written straight into
/// its database, never published: the consumer applies them as the replay delivers them). Passes
/// when every POST is answered 201 and the write p99 during the replay is at most twice the idle
/// one. In-process targets only.
pub async fn replay(
    target: &Target,
    events: usize,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<Vec<Figure>> {
    let local = target
        .local
        .as_ref()
        .context("the replay scenario needs the in-process platform")?;
    let (internal_url, ledger_db, token) = {
        let system = local.system.lock().await;
        let token = system
            .placement()
            .ledger
            .identity()
            .token()
            .client("load-replay")
            .scope("ledger:reconcile")
            .mint()?;
        (
            system.ledger_internal_url().to_string(),
            system.ledger_scope.database_url.clone(),
            token,
        )
    };
    let merchant = "load-replay-source";
    let today = Target::today();
    let pool = sqlx::PgPool::connect(&ledger_db).await?;
    sqlx::query(
        "INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date, event_id) \
         SELECT gen_random_uuid(), $1, 'credit', 100 + g, 'BRL', $2, gen_random_uuid() \
         FROM generate_series(1, $3::int) AS g",
    )
    .bind(merchant)
    .bind(today)
    .bind(i32::try_from(events).unwrap_or(i32::MAX))
    .execute(&pool)
    .await
    .context("seeding the entries to replay")?;
    pool.close().await;

    let scenario = || writes(target, "load");
    let idle = Attack {
        host: &target.ledger_url,
        users: 32,
        rate,
        seconds,
        report: "replay-idle",
    }
    .run(scenario())
    .await?;
    println!(
        "replay: idle writes {:.0}/s, failures {}, p99 {:.1} ms",
        idle.rate, idle.failures, idle.p99
    );

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let day = cashflow_contracts::business_date::format(today);
    let replaying = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let response = http
            .post(format!("{internal_url}/internal/v1/replays"))
            .bearer_auth(token)
            .json(&serde_json::json!({"merchant_id": merchant, "from": day}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "replay: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await?;
        Ok::<_, anyhow::Error>((body["replayed"].as_u64().unwrap_or(0), started.elapsed()))
    });
    let during = Attack {
        host: &target.ledger_url,
        users: 32,
        rate,
        seconds,
        report: "replay-during",
    }
    .run(scenario())
    .await?;
    let (replayed, took) = replaying.await.context("joining the replay")??;
    println!(
        "replay: {replayed} events replayed in {:.1} s; writes meanwhile {:.0}/s, failures {}, p99 {:.1} ms",
        took.as_secs_f64(),
        during.rate,
        during.failures,
        during.p99
    );
    Ok(vec![
        Figure::new("replay", "write p99, idle", idle.p99, "ms"),
        Figure::new("replay", "write p99 during a replay", during.p99, "ms")
            .bound(during.p99 <= 2.0 * idle.p99.max(1.0)),
        Figure::new(
            "replay",
            "failed POSTs during the replay",
            during.failures as f64,
            "",
        )
        .bound(during.failures == 0 && idle.failures == 0),
        Figure::new("replay", "events replayed", replayed as f64, "events")
            .bound(replayed as usize == events),
        Figure::new("replay", "replay duration", took.as_secs_f64(), "s"),
    ])
}
