//! `history`: balance and report reads for merchants with 7, 365 and 1,095 days of history,
//! cache off and on, with today's opening-balance read (ADR 0010: period totals) and the old one
//! (ADR 3: the sum of every earlier day) side by side in the same run, so that "before" and
//! "after" ratios come from the same machine at the same time.
//!
//! The consolidation's database is seeded directly (one `daily_balances` row per merchant and
//! day, and the period totals the consumer would have written), which takes a second where
//! recording the same history through the ledger would take hours. Four consolidations run in
//! this process on that database, none consuming: {old, new} read × cache {off, on}. "Cache
//! off" has its Redis at a port nothing listens on: after three refused connections its breaker
//! opens and every read goes to PostgreSQL (the breaker's probe every 5 s is a refused connect,
//! well under a millisecond). Each "cache on" instance has a Redis key prefix of its own, so
//! neither answers from the other's cache. One goose attack per read (balance,
//! report) and cache setting sends every request to a random (length, design) pair, each named
//! apart so that goose keeps its percentiles: the six pairs share the machine's moments, and a
//! burst of load from elsewhere cannot favour one length or one design.
//!
//! It also writes `EXPLAIN (ANALYZE, BUFFERS)` of every query of a read, for each design and
//! length, to `target/load/history-explain.txt`, and reports the buffers each read touches.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use consolidation::balances::{self, OpeningRead};
use goose::prelude::*;
use rand::Rng;
use sqlx::Row;
use sqlx::postgres::{PgArguments, Postgres};
use tokio_util::sync::CancellationToken;

use crate::report::{self, Figure};
use crate::scenarios::attack_metrics;
use crate::target::Target;

/// History lengths measured, in days.
pub const LENGTHS: [i64; 3] = [7, 365, 1095];
/// Merchants per length.
const MERCHANTS: usize = 20;
/// The two designs: (label, read).
const DESIGNS: [(&str, OpeningRead); 2] = [
    ("old", OpeningRead::EveryEarlierDay),
    ("new", OpeningRead::PeriodTotals),
];

/// Runs the scenario: for each cache setting and read (balance, report), one attack of
/// `seconds` per (length, design) pair at `rate` requests/s, the pairs mixed request by request.
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
        seed(&pool, length, today).await?;
    }
    let mut plans = String::new();
    let mut figures = explain_reads(&pool, today, &mut plans).await?;
    let plans_file = report::dir().join("history-explain.txt");
    std::fs::write(&plans_file, &plans)?;
    eprintln!(
        "history: EXPLAIN (ANALYZE, BUFFERS) in {}",
        plans_file.display()
    );

    // {old, new} × cache {off, on}, none consuming.
    let stop = CancellationToken::new();
    let mut running = Vec::new();
    let mut urls = HashMap::new();
    for (design, read) in DESIGNS {
        for cache in ["off", "on"] {
            let mut config = consolidation_config(stack, &scope, cache == "on", design);
            config.opening_read = read;
            let app = consolidation::Application::build(config).await?;
            urls.insert((design, cache), format!("http://{}", app.local_addr()));
            running.push(tokio::spawn(app.run_until_stopped(stop.clone())));
        }
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
    let mut percentiles = HashMap::new();
    for cache in ["off", "on"] {
        for what in ["balance", "report"] {
            *MIX.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(Mix {
                what,
                urls: DESIGNS.map(|(design, _)| urls[&(design, cache)].clone()),
                tokens: tokens.clone(),
            }));
            let scenario = scenario!("history").register_transaction(transaction!(mixed_read));
            // Every (length, design) pair in one attack, request by request at random: all
            // six see the same machine at the same moments. As many requests per pair as one
            // run of `seconds` at `rate` would make.
            let pairs = LENGTHS.len() * DESIGNS.len();
            let host = urls[&("new", cache)].clone();
            attack_metrics(
                target,
                scenario.clone(),
                &host,
                8,
                rate,
                2,
                "history-warm-up",
            )
            .await?;
            let report = format!("history-{what}-cache-{cache}");
            let metrics =
                attack_metrics(target, scenario, &host, 8, rate, seconds * pairs, &report).await?;
            for length in LENGTHS {
                for (design, _) in DESIGNS {
                    let name = request_name(what, length, design);
                    let Some(aggregate) =
                        metrics.requests.values().find(|a| metrics_name(a) == name)
                    else {
                        anyhow::bail!("goose measured no {name}");
                    };
                    let at = |q: f32| aggregate.raw_data.percentile_us(q) as f64 / 1000.0;
                    let label = format!("{what}, {length} d, cache {cache}, {design} read");
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
                    let requests = aggregate.success_count + aggregate.fail_count;
                    figures.push(
                        Figure::new(
                            "history",
                            &format!("{label}: requests (failed)"),
                            requests as f64,
                            &format!("({})", aggregate.fail_count),
                        )
                        .bound(aggregate.fail_count == 0),
                    );
                    percentiles.insert((cache, what, length, design), (at(0.5), at(0.99)));
                }
            }
        }
    }
    // 1,095 days over 7 days, same attack. The goal (p99 at most 1.2x, cache off) is the new
    // design's; the old design's ratio is the one to beat. p50 beside it: on a shared machine a
    // p99 of ~1,000 requests is the 10th slowest, mostly scheduling.
    for cache in ["off", "on"] {
        for what in ["balance", "report"] {
            for (design, _) in DESIGNS {
                let (short, long) = (
                    percentiles[&(cache, what, 7, design)],
                    percentiles[&(cache, what, 1095, design)],
                );
                let ratio = |long: f64, short: f64| if short > 0.0 { long / short } else { 0.0 };
                let name = format!("{what} 1095 d / 7 d, cache {cache}, {design} read");
                let mut p99 = Figure::new(
                    "history",
                    &format!("{name}: p99"),
                    ratio(long.1, short.1),
                    "x",
                );
                if cache == "off" && design == "new" {
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
    }
    figures.extend(sql_old_vs_new(&pool, today).await?);
    stop.cancel();
    for app in running {
        let _ = app.await;
    }
    pool.close().await;
    Ok(figures)
}

/// What the mixed reads of one attack go to.
struct Mix {
    /// `balance` or `report`.
    what: &'static str,
    /// The consolidation of each design (same order as [`DESIGNS`]).
    urls: [String; 2],
    /// A token per merchant.
    tokens: HashMap<String, String>,
}

static MIX: RwLock<Option<Arc<Mix>>> = RwLock::new(None);

/// goose's name of a read, which keeps its own percentiles.
fn request_name(what: &str, length: i64, design: &str) -> String {
    format!("{what} {length}d {design}")
}

/// The request name of an aggregate (goose keeps it as the aggregate's `path`).
fn metrics_name(aggregate: &goose::metrics::GooseRequestMetricAggregate) -> &str {
    aggregate.path.as_str()
}

/// One read of a random merchant of a random length through a random design: a day's balance
/// (one of the last 7 days) or the report of the last 7 days.
async fn mixed_read(user: &mut GooseUser) -> TransactionResult {
    let mix = MIX
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("mix set before the attack");
    let (length, design, i, back) = {
        let mut rng = rand::thread_rng();
        (
            LENGTHS[rng.gen_range(0..LENGTHS.len())],
            rng.gen_range(0..DESIGNS.len()),
            rng.gen_range(0..MERCHANTS),
            rng.gen_range(0..7),
        )
    };
    let m = merchant(length, i);
    let today = Target::today();
    let day =
        |back: i64| cashflow_contracts::business_date::format(today - time::Duration::days(back));
    let url = if mix.what == "balance" {
        format!(
            "{}/v1/merchants/{m}/balances/{}",
            mix.urls[design],
            day(back)
        )
    } else {
        format!(
            "{}/v1/merchants/{m}/balances?from={}&to={}",
            mix.urls[design],
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
            .name(request_name(mix.what, length, DESIGNS[design].0).as_str())
            .build(),
    )
    .await?;
    Ok(())
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
    // VACUUM too: a table written once and read for years is all-visible, and the planner's
    // choices (index-only scans) depend on it.
    for table in ["daily_balances", "monthly_totals", "yearly_totals"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// A consolidation on the scope's database that does not consume: Redis on (with a key prefix
/// of its own) or refused at once (nothing listens on port 1).
pub(crate) fn consolidation_config(
    stack: &harness::Stack,
    scope: &harness::Scope,
    cache: bool,
    design: &str,
) -> consolidation::Config {
    consolidation::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        redis_url: if cache {
            scope.redis_url.clone()
        } else {
            "redis://127.0.0.1:1".into()
        },
        redis_prefix: format!("{}history-{design}:", scope.redis_prefix),
        cache_ttl: Duration::from_secs(600),
        cache_stale_if_error: Duration::from_secs(600),
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
        consumer: consolidation::config::ConsumerConfig {
            enabled: false,
            ..Default::default()
        },
        report_max_days: 366,
        default_currency: cashflow_contracts::Currency::BRL,
        deadlines: Default::default(),
        reconcile: Default::default(),
        processed_events_retention: consolidation::config::DEFAULT_PROCESSED_EVENTS_RETENTION,
        retention: Default::default(),
        opening_read: OpeningRead::PeriodTotals,
    }
}

/// One of a read's statements with its parameters: the opening balance by `read`, or (`None`)
/// the day rows from `from` to `to`.
fn statement<'q>(
    sql: &'q str,
    merchant: &str,
    read: Option<OpeningRead>,
    from: time::Date,
    to: time::Date,
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let query = sqlx::query(sql).bind(merchant.to_string()).bind(from);
    match read {
        Some(OpeningRead::PeriodTotals) => query
            .bind(balances::year_start(from))
            .bind(balances::month_start(from)),
        Some(OpeningRead::EveryEarlierDay) => query,
        None => query.bind(to),
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of both statements of a balance read (one day, 3 days ago) and
/// a report read (the last 7 days), for each design and length, after a warm-up execution. The
/// text plans go to `out`; the figures are the shared buffers each read touches (hit + read,
/// the planner's work, steady from run to run) and the median execution time of 5.
async fn explain_reads(
    pool: &sqlx::PgPool,
    today: time::Date,
    out: &mut String,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for (what, from, to) in [
        (
            "balance",
            today - time::Duration::days(3),
            today - time::Duration::days(3),
        ),
        ("report", today - time::Duration::days(6), today),
    ] {
        for length in LENGTHS {
            let m = merchant(length, 0);
            for (design, read) in DESIGNS {
                let opening = match read {
                    OpeningRead::PeriodTotals => balances::OPENING_FROM_PERIOD_TOTALS,
                    OpeningRead::EveryEarlierDay => balances::OPENING_FROM_EVERY_DAY,
                };
                let (mut buffers, mut millis) = (0.0, 0.0);
                for (label, sql, part) in [
                    ("opening", opening, Some(read)),
                    ("day rows", balances::DAY_ROWS, None),
                ] {
                    statement(sql, &m, part, from, to).fetch_all(pool).await?;
                    let text = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
                    let lines = statement(&text, &m, part, from, to).fetch_all(pool).await?;
                    let _ = writeln!(
                        out,
                        "== {what} {from}..{to}, {length} days, {design} read: {label}"
                    );
                    for line in lines {
                        let _ = writeln!(out, "{}", line.try_get::<String, _>(0)?);
                    }
                    let _ = writeln!(out);
                    let json = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}");
                    let mut times = Vec::new();
                    let mut touched = 0.0;
                    for _ in 0..5 {
                        let row = statement(&json, &m, part, from, to).fetch_one(pool).await?;
                        let plan: serde_json::Value = row.try_get(0)?;
                        let top = &plan[0];
                        touched = top["Plan"]["Shared Hit Blocks"].as_f64().unwrap_or(0.0)
                            + top["Plan"]["Shared Read Blocks"].as_f64().unwrap_or(0.0);
                        times.push(top["Execution Time"].as_f64().unwrap_or(f64::NAN));
                    }
                    times.sort_by(f64::total_cmp);
                    buffers += touched;
                    millis += times[times.len() / 2];
                }
                let name = format!("{what}, {length} d, {design} read");
                figures.push(Figure::new(
                    "history-plan",
                    &format!("{name}: buffers"),
                    buffers,
                    "blocks",
                ));
                figures.push(Figure::new(
                    "history-plan",
                    &format!("{name}: execution"),
                    millis,
                    "ms",
                ));
            }
        }
    }
    Ok(figures)
}

/// Times whole reads (`balances::report_with` of one day, both statements) with each design
/// directly against PostgreSQL, 300 times each per length, alternating: p50 and p99 in ms.
async fn sql_old_vs_new(pool: &sqlx::PgPool, today: time::Date) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for length in LENGTHS {
        let mut samples: HashMap<&str, Vec<Duration>> = HashMap::new();
        for i in 0..300 {
            let id = merchant(length, i % MERCHANTS)
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for (design, read) in DESIGNS {
                let started = Instant::now();
                balances::report_with(
                    pool,
                    &id,
                    today,
                    today,
                    cashflow_contracts::Currency::BRL,
                    read,
                )
                .await?;
                samples.entry(design).or_default().push(started.elapsed());
            }
        }
        for (design, _) in DESIGNS {
            let mut times = samples.remove(design).unwrap_or_default();
            times.sort();
            let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
            for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
                figures.push(Figure::new(
                    "history-sql",
                    &format!("{design} read, one day, {length} d: {label}"),
                    at(q).as_secs_f64() * 1000.0,
                    "ms",
                ));
            }
        }
    }
    Ok(figures)
}
