//! `history`: balance and report reads for merchants with 7, 365 and 1,095 days of history,
//! cache off and on (ADR 0010: a read's cost must not grow with the history).
//!
//! The consolidation's database is seeded directly (one `daily_balances` row per merchant and
//! day, and the period totals the consumer would have written), which takes a second where
//! recording the same history through the ledger would take hours. "Cache off" is a second
//! consolidation in this process on the same database, with its Redis at a port nothing
//! listens on: after three refused connections its breaker opens and every read goes to
//! PostgreSQL (the breaker's probe every 5 s is a refused connect, well under a millisecond).
//! The old read (ADR 3's sum over every earlier day) is also timed at the SQL level beside the
//! new one, since the old code path is gone from the service.

use std::time::{Duration, Instant};

use goose::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::report::Figure;
use crate::scenarios::{attack, read_balance, read_report};
use crate::target::Target;

/// History lengths measured, in days.
pub const LENGTHS: [i64; 3] = [7, 365, 1095];
/// Merchants per length.
const MERCHANTS: usize = 20;

/// Runs the scenario: for each length, cache off then on, balance then report, `seconds` each
/// at `rate` requests/s.
pub async fn history(target: &Target, rate: usize, seconds: usize) -> anyhow::Result<Vec<Figure>> {
    let local = target.local.as_ref().ok_or_else(|| {
        anyhow::anyhow!("history seeds the database: it needs the local platform")
    })?;
    let (scope_url, stack) = {
        let system = local.system.lock().await;
        (system.consolidation_scope.database_url.clone(), local.stack)
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&scope_url)
        .await?;
    let today = Target::today();
    for length in LENGTHS {
        seed(&pool, length, today).await?;
    }
    // The cache-off consolidation: same database, no consumer, no reconciler, no Redis.
    let mut config = {
        let system = local.system.lock().await;
        cache_off_config(stack, &system.consolidation_scope)
    };
    config.consumer.enabled = false;
    let app = consolidation::Application::build(config).await?;
    let cache_off_url = format!("http://{}", app.local_addr());
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));

    let mut figures = Vec::new();
    let mut p99 = std::collections::HashMap::new();
    for (cache, url) in [
        ("off", cache_off_url.as_str()),
        ("on", target.consolidation_url.as_str()),
    ] {
        for length in LENGTHS {
            let system = local.system.lock().await;
            let merchants: Vec<String> = (0..MERCHANTS).map(|i| merchant(length, i)).collect();
            let tokens = merchants
                .iter()
                .map(|m| system.full_token(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            drop(system);
            let reads = Target {
                consolidation_url: url.to_string(),
                merchants,
                tokens,
                days: 7,
                ..target.clone()
            };
            for (what, scenario) in [
                (
                    "balance",
                    scenario!("history-balance").register_transaction(transaction!(read_balance)),
                ),
                (
                    "report",
                    scenario!("history-report").register_transaction(transaction!(read_report)),
                ),
            ] {
                let report = format!("history-{what}-{length}d-cache-{cache}");
                // A short unmeasured run first: connections, JWKS and plans warm.
                attack(&reads, scenario.clone(), url, 8, rate, 2, "history-warm-up").await?;
                let run = attack(&reads, scenario, url, 8, rate, seconds, &report).await?;
                let name = format!("{what}, {length} days, cache {cache}");
                figures.push(Figure::new(
                    "history",
                    &format!("{name}: p50"),
                    run.p50,
                    "ms",
                ));
                figures.push(Figure::new(
                    "history",
                    &format!("{name}: p99"),
                    run.p99,
                    "ms",
                ));
                figures.push(
                    Figure::new(
                        "history",
                        &format!("{name}: failures"),
                        run.failure_ratio() * 100.0,
                        "%",
                    )
                    .bound(run.failures == 0),
                );
                p99.insert((cache, what, length), run.p99);
            }
        }
    }
    for what in ["balance", "report"] {
        let (short, long) = (p99[&("off", what, 7)], p99[&("off", what, 1095)]);
        let ratio = if short > 0.0 { long / short } else { 0.0 };
        figures.push(
            Figure::new(
                "history",
                &format!("{what} p99 1095 d / 7 d, cache off (goal <= 1.2)"),
                ratio,
                "x",
            )
            .bound(ratio <= 1.2),
        );
    }
    figures.extend(sql_old_vs_new(&pool, today).await?);
    stop.cancel();
    let _ = running.await;
    pool.close().await;
    Ok(figures)
}

fn merchant(length: i64, i: usize) -> String {
    format!("hist-{length}-{i}")
}

/// One row per merchant and day for `length` days up to `today`, and the period totals.
async fn seed(pool: &sqlx::PgPool, length: i64, today: time::Date) -> anyhow::Result<()> {
    let prefix = format!("hist-{length}-");
    sqlx::query(
        "INSERT INTO daily_balances (merchant_id, business_date, currency, credits_minor, \
           debits_minor, entry_count, last_event_recorded_at, entry_checksum) \
         SELECT $1 || m, $2::date - d, 'BRL', 10000 + d, 3000, 4, now(), 0 \
         FROM generate_series(0, $3 - 1) d, generate_series(0, $4 - 1) m \
         ON CONFLICT DO NOTHING",
    )
    .bind(&prefix)
    .bind(today)
    .bind(i32::try_from(length)?)
    .bind(i32::try_from(MERCHANTS)?)
    .execute(pool)
    .await?;
    for (table, column, unit) in [
        ("monthly_totals", "month_start", "month"),
        ("yearly_totals", "year_start", "year"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (merchant_id, {column}, credits_minor, debits_minor, \
               entry_count, last_applied_at) \
             SELECT merchant_id, date_trunc('{unit}', business_date)::date, sum(credits_minor), \
                    sum(debits_minor), sum(entry_count), max(last_applied_at) \
             FROM daily_balances WHERE starts_with(merchant_id, $1) GROUP BY 1, 2 \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&prefix)
        .execute(pool)
        .await?;
    }
    sqlx::query("ANALYZE daily_balances, monthly_totals, yearly_totals")
        .execute(pool)
        .await?;
    Ok(())
}

fn cache_off_config(stack: &harness::Stack, scope: &harness::Scope) -> consolidation::Config {
    consolidation::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        // Nothing listens on port 1: connections are refused at once.
        redis_url: "redis://127.0.0.1:1".into(),
        redis_prefix: scope.redis_prefix.clone(),
        cache_ttl: Duration::from_secs(600),
        redis: Default::default(),
        queue_url: scope.queues.url.clone(),
        dlq_url: scope.queues.dlq_url.clone(),
        sqs: cashflow_platform::sqs::SqsSettings {
            endpoint_url: Some(scope.sqs_endpoint.clone()),
            region: scope.aws_region.clone(),
        },
        auth: cashflow_platform::auth::AuthConfig {
            issuer: stack.identity().issuer().to_string(),
            audience: stack.identity().audience().to_string(),
            jwks_uri: Some(stack.identity().jwks_uri()),
            leeway: Duration::from_secs(30),
            keys: Default::default(),
        },
        consumer: Default::default(),
        report_max_days: 366,
        default_currency: cashflow_contracts::Currency::BRL,
        deadlines: Default::default(),
        reconcile: Default::default(),
        processed_events_retention_days: 45,
        retention: Default::default(),
    }
}

/// ADR 3's opening-balance query, as it was before ADR 0010.
const OLD_OPENING: &str = "SELECT COALESCE(sum(credits_minor - debits_minor) \
       FILTER (WHERE business_date < $2), 0)::int8, \
     max(last_applied_at) FILTER (WHERE business_date < $2), min(currency)::text \
     FROM daily_balances WHERE merchant_id = $1";

/// Times the old opening-balance query and the new read (`balances::report` of one day)
/// directly against PostgreSQL, 300 times each per length: p50 and p99 in ms.
async fn sql_old_vs_new(pool: &sqlx::PgPool, today: time::Date) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for length in LENGTHS {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for i in 0..300 {
            let m = merchant(length, i % MERCHANTS);
            let started = Instant::now();
            let _: (i64, Option<time::OffsetDateTime>, Option<String>) =
                sqlx::query_as(OLD_OPENING)
                    .bind(&m)
                    .bind(today)
                    .fetch_one(pool)
                    .await?;
            old.push(started.elapsed());
            let id = m.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let started = Instant::now();
            consolidation::balances::report(
                pool,
                &id,
                today,
                today,
                cashflow_contracts::Currency::BRL,
            )
            .await?;
            new.push(started.elapsed());
        }
        for (label, mut samples) in [
            ("old (ADR 3) opening query", old),
            ("new read, opening + day rows (ADR 10)", new),
        ] {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
            figures.push(Figure::new(
                "history-sql",
                &format!("{label}, {length} d: p50"),
                at(0.5).as_secs_f64() * 1000.0,
                "ms",
            ));
            figures.push(Figure::new(
                "history-sql",
                &format!("{label}, {length} d: p99"),
                at(0.99).as_secs_f64() * 1000.0,
                "ms",
            ));
        }
    }
    Ok(figures)
}
