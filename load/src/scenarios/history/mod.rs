//! `history`: balance and report reads for merchants with 7, 365 and 1,095 days of history,
//! cache off and on, and today's opening-balance read (ADR 0010: period totals) beside the old one
//! (ADR 3: the sum of every earlier day) in the same run, so that "before" and "after" ratios come
//! from the same machine at the same time. The old read is this scenario's own SQL
//! ([`OPENING_FROM_EVERY_DAY`]): the consolidation serves only today's.
//!
//! The consolidation's database is seeded directly (one `daily_balances` row per merchant and
//! day, and the period totals the consumer would have written), which takes a second where
//! recording the same history through the ledger would take hours. Two consolidations run in
//! this process on that database, none consuming: cache off and on. "Cache off" has its Redis at
//! a port nothing listens on: after three refused connections its breaker opens and every read
//! goes to PostgreSQL (the breaker's probe every 5 s is a refused connect, well under a
//! millisecond). One goose attack per read (balance, report) and cache setting sends every
//! request to a random length, each named apart so that goose keeps its percentiles: the three
//! lengths share the machine's moments, and a burst of load from elsewhere cannot favour one.
//!
//! The two designs are compared against PostgreSQL alone, both reads run by this scenario: it
//! writes `EXPLAIN (ANALYZE, BUFFERS)` of every statement of a read, for each design and
//! length, to `target/load/history-explain.txt`, reports the buffers each read touches, and
//! times whole reads of one day with each design, checking that both find the same opening
//! balance.

mod designs;
mod seed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use goose::prelude::*;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use self::seed::{MERCHANTS, merchant};
use crate::kit::goose::{Attack, Step, transaction};
use crate::kit::report::{self, Figure};
use crate::kit::services::consolidation_config;
use crate::kit::target::Target;

/// History lengths measured, in days.
pub const LENGTHS: [i64; 3] = [7, 365, 1095];
/// The cache settings.
const CACHES: [&str; 2] = ["off", "on"];
/// The reads.
const READS: [&str; 2] = ["balance", "report"];

/// Runs the scenario: the designs compared against PostgreSQL, then for each cache setting and
/// read (balance, report), one attack of `seconds` per length at `rate` requests/s, the lengths
/// mixed request by request.
pub async fn history(target: &Target, rate: usize, seconds: usize) -> anyhow::Result<Vec<Figure>> {
    let local = target.local.as_ref().ok_or_else(|| {
        anyhow::anyhow!("history seeds the database: it needs the local platform")
    })?;
    let (scope, stack) = {
        let system = local.system.lock().await;
        (system.consolidation_scope.clone(), local.stack)
    };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&scope.database_url)
        .await?;
    let today = Target::today();
    for length in LENGTHS {
        seed::seed(&pool, length, today).await?;
    }
    let mut plans = String::new();
    let mut figures = designs::explain_reads(&pool, &LENGTHS, today, &mut plans).await?;
    let plans_file = report::dir().join("history-explain.txt");
    std::fs::write(&plans_file, &plans)?;
    eprintln!(
        "history: EXPLAIN (ANALYZE, BUFFERS) in {}",
        plans_file.display()
    );
    figures.extend(designs::time_reads(&pool, &LENGTHS, today).await?);

    // Cache off and on, neither consuming.
    let stop = CancellationToken::new();
    let mut running = Vec::new();
    let mut urls = HashMap::new();
    for cache in CACHES {
        let config =
            consolidation_config(stack, &scope, cache == "on", &format!("history-{cache}"));
        let app = consolidation::Application::build(config).await?;
        urls.insert(cache, format!("http://{}", app.local_addr()));
        running.push(tokio::spawn(app.run_until_stopped(stop.clone())));
    }
    let mut tokens = HashMap::new();
    {
        let system = local.system.lock().await;
        for length in LENGTHS {
            for i in 0..MERCHANTS {
                let m = merchant(length, i);
                tokens.insert(m.clone(), system.full_token(&m)?);
            }
        }
    }
    let measured = attacks(&urls, &tokens, rate, seconds).await;
    stop.cancel();
    for app in running {
        let _ = app.await;
    }
    pool.close().await;
    figures.extend(measured?);
    Ok(figures)
}

/// Per cache setting and read, the lengths' percentiles and their ratios 1,095 days over 7.
async fn attacks(
    urls: &HashMap<&str, String>,
    tokens: &HashMap<String, String>,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut percentiles = HashMap::new();
    for cache in CACHES {
        for what in READS {
            let mix = Arc::new(Mix {
                what,
                url: urls[cache].clone(),
                tokens: tokens.clone(),
            });
            let scenario = scenario!("history").register_transaction(transaction(&mix, mixed_read));
            // Every length in one attack, request by request at random: all see the same
            // machine at the same moments. As many requests per length as one run of `seconds`
            // at `rate` would make.
            let warm_up = Attack {
                host: &urls[cache],
                users: 8,
                rate,
                seconds: 2,
                report: "history-warm-up",
            };
            warm_up.metrics(scenario.clone()).await?;
            let report = format!("history-{what}-cache-{cache}");
            let measured = Attack {
                seconds: seconds * LENGTHS.len(),
                report: &report,
                ..warm_up
            };
            let metrics = measured.metrics(scenario).await?;
            for length in LENGTHS {
                let name = request_name(what, length);
                let Some(aggregate) = metrics.requests.values().find(|a| a.path == name) else {
                    anyhow::bail!("goose measured no {name}");
                };
                let at = |q: f32| aggregate.raw_data.percentile_us(q) as f64 / 1000.0;
                let label = format!("{what}, {length} d, cache {cache}");
                figures.push(Figure::new(
                    "history",
                    &format!("{label}: p50"),
                    at(0.5),
                    "ms",
                ));
                figures.push(Figure::new(
                    "history",
                    &format!("{label}: p99"),
                    at(0.99),
                    "ms",
                ));
                let failed = crate::kit::goose::failed(aggregate);
                figures.push(
                    Figure::new(
                        "history",
                        &format!("{label}: requests (failed)"),
                        crate::kit::goose::sent(aggregate) as f64,
                        &format!("({failed})"),
                    )
                    .bound(failed == 0),
                );
                percentiles.insert((cache, what, length), (at(0.5), at(0.99)));
            }
        }
    }
    // 1,095 days over 7 days, same attack. The goal: p99 at most 1.2x, cache off. p50 beside
    // it: on a shared machine a p99 of ~1,000 requests is the 10th slowest, mostly scheduling.
    for cache in CACHES {
        for what in READS {
            let (short, long) = (
                percentiles[&(cache, what, 7)],
                percentiles[&(cache, what, 1095)],
            );
            let ratio = |long: f64, short: f64| if short > 0.0 { long / short } else { 0.0 };
            let name = format!("{what} 1095 d / 7 d, cache {cache}");
            let mut p99 = Figure::new(
                "history",
                &format!("{name}: p99"),
                ratio(long.1, short.1),
                "x",
            );
            if cache == "off" {
                p99 = p99.bound(ratio(long.1, short.1) <= 1.2);
            }
            figures.push(p99);
            figures.push(Figure::new(
                "history",
                &format!("{name}: p50"),
                ratio(long.0, short.0),
                "x",
            ));
        }
    }
    Ok(figures)
}

/// What the mixed reads of one attack go to.
struct Mix {
    /// `balance` or `report`.
    what: &'static str,
    /// The consolidation.
    url: String,
    /// A token per merchant.
    tokens: HashMap<String, String>,
}

/// goose's name of a read, which keeps its own percentiles (goose reports it as the path).
fn request_name(what: &str, length: i64) -> String {
    format!("{what} {length}d")
}

/// One read of a random merchant of a random length: a day's balance (one of the last 7 days)
/// or the report of the last 7 days.
fn mixed_read(user: &mut GooseUser, mix: Arc<Mix>) -> Step<'_> {
    Box::pin(async move {
        let (length, i, back) = {
            let mut rng = rand::thread_rng();
            (
                LENGTHS[rng.gen_range(0..LENGTHS.len())],
                rng.gen_range(0..MERCHANTS),
                rng.gen_range(0..7),
            )
        };
        let m = merchant(length, i);
        let today = Target::today();
        let day = |back: i64| {
            cashflow_contracts::business_date::format(today - time::Duration::days(back))
        };
        let url = if mix.what == "balance" {
            format!("{}/v1/merchants/{m}/balances/{}", mix.url, day(back))
        } else {
            format!(
                "{}/v1/merchants/{m}/balances?from={}&to={}",
                mix.url,
                day(6),
                day(0)
            )
        };
        let builder = user
            .get_request_builder(&GooseMethod::Get, &url)?
            .bearer_auth(&mix.tokens[&m]);
        user.request(
            GooseRequest::builder()
                .set_request_builder(builder)
                .name(request_name(mix.what, length).as_str())
                .build(),
        )
        .await?;
        Ok(())
    })
}
