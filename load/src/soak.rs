//! `soak` (`make soak`): a steady mixed load for a long while, with every retention window
//! shortened by configuration so that it elapses several times within the run, to show that
//! nothing keeps growing: tables (rows and bytes, both databases), each service's memory and
//! connections, Redis's memory, and the backlogs.
//!
//! The services run as their own processes (the release binaries, started the way `harness up`
//! starts them, `harness::services`), so the RSS, file descriptors and sockets sampled from
//! `/proc/<pid>` are theirs alone; in this process they would be mixed with goose's. Their
//! dependencies come from a harness stack of their own (native or containers).
//!
//! Windows (defaults; each a flag): idempotency keys, published outbox rows, cached answers and
//! their stale copies 60 s; the queues' message retention 60 s (SQS's minimum) and so dedup records 190 s, the shortest
//! the consolidation's start-up check accepts above 60 + 60 s of SQS retention and its minute of
//! clock margin; pruning every 10 s. Replays could reach further back than that, so the
//! consolidation runs without a reconciler (`RECONCILE_ENABLED=false`, no `LEDGER_URL`), which
//! is what lets the check accept a window under a day.
//!
//! Judging: the part of the run after the longest window and two pruning intervals have elapsed
//! is cut in thirds; a series keeps growing when the median of its last third exceeds the median
//! of its middle third by 5 % or more, and by more than its resolution (one row or connection,
//! one 8 KiB page, one second of writes for a backlog, whose instant value is the relay's and
//! the consumer's batching). The books themselves (`entries`) grow with every entry by design:
//! they are drawn, not judged; their bytes per row are judged.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use goose::prelude::*;
use harness::process::Supervised;
use harness::{Scope, ScopeOptions, Stack, StackOptions};
use rand::Rng;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::report::{self, Figure};
use crate::scenarios::attack;
use crate::target::Target;

/// `soak`'s settings (`cargo run --release -p load -- soak --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the soak's load runs, in minutes.
    #[arg(long, env = "SOAK_MINUTES", default_value_t = 10.0)]
    pub soak_minutes: f64,
    /// Requests per second in all: 1 in 4 a POST to the ledger, 2 a day's balance, 1 a report.
    #[arg(long, env = "SOAK_RATE", default_value_t = 200)]
    pub soak_rate: usize,
    /// Merchants the load spreads over.
    #[arg(long, env = "SOAK_MERCHANTS", default_value_t = 200)]
    pub soak_merchants: usize,
    /// Seconds between two samples (default: the run's length / 60, 2 to 10 s).
    #[arg(long)]
    pub soak_sample_seconds: Option<u64>,
    /// IDEMPOTENCY_KEY_RETENTION_SECONDS (more than twice the 10 s request deadline).
    #[arg(long, default_value_t = 60)]
    pub idempotency_seconds: u64,
    /// OUTBOX_RETENTION_SECONDS.
    #[arg(long, default_value_t = 60)]
    pub outbox_seconds: u64,
    /// CACHE_TTL_SECONDS.
    #[arg(long, default_value_t = 60)]
    pub cache_ttl_seconds: u64,
    /// CACHE_STALE_IF_ERROR_SECONDS: how long retired answers are kept (ADR 0015).
    #[arg(long, default_value_t = 60)]
    pub stale_if_error_seconds: u64,
    /// The queues' MessageRetentionPeriod (set on them) and SQS_*_RETENTION_SECONDS (60 to
    /// 1209600).
    #[arg(long, default_value_t = 60)]
    pub sqs_retention_seconds: u64,
    /// PROCESSED_EVENTS_RETENTION_SECONDS: must exceed twice the SQS retention plus a minute.
    #[arg(long, default_value_t = 190)]
    pub dedup_seconds: u64,
    /// RETENTION_INTERVAL_SECONDS of both services.
    #[arg(long, default_value_t = 10)]
    pub prune_interval_seconds: u64,
}

impl SoakArgs {
    fn run_seconds(&self) -> u64 {
        (self.soak_minutes * 60.0).round().max(10.0) as u64
    }

    fn sample_every(&self) -> Duration {
        Duration::from_secs(
            self.soak_sample_seconds
                .unwrap_or_else(|| (self.run_seconds() / 60).clamp(2, 10))
                .max(1),
        )
    }

    /// When the windows have elapsed: the longest one and two pruning passes.
    fn warm_up(&self) -> u64 {
        [
            self.idempotency_seconds,
            self.outbox_seconds,
            self.cache_ttl_seconds,
            self.stale_if_error_seconds,
            self.dedup_seconds,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 2 * self.prune_interval_seconds
    }

    fn ledger_env(&self) -> Vec<(String, String)> {
        [
            (
                "IDEMPOTENCY_KEY_RETENTION_SECONDS",
                self.idempotency_seconds,
            ),
            ("OUTBOX_RETENTION_SECONDS", self.outbox_seconds),
            ("RETENTION_INTERVAL_SECONDS", self.prune_interval_seconds),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    fn consolidation_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("CACHE_TTL_SECONDS", self.cache_ttl_seconds),
            ("CACHE_STALE_IF_ERROR_SECONDS", self.stale_if_error_seconds),
            ("PROCESSED_EVENTS_RETENTION_SECONDS", self.dedup_seconds),
            ("SQS_MESSAGE_RETENTION_SECONDS", self.sqs_retention_seconds),
            ("SQS_DLQ_RETENTION_SECONDS", self.sqs_retention_seconds),
            ("RETENTION_INTERVAL_SECONDS", self.prune_interval_seconds),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        // No replays: see the module's documentation.
        env.push(("RECONCILE_ENABLED".into(), "false".into()));
        env.push(("LEDGER_URL".into(), String::new()));
        env
    }

    fn describe_windows(&self) -> String {
        format!(
            "idempotency keys {} s, published outbox rows {} s, cache TTL {} s, stale copies {} s, \
             SQS retention {} s, dedup records {} s, pruning every {} s; judged after {} s",
            self.idempotency_seconds,
            self.outbox_seconds,
            self.cache_ttl_seconds,
            self.stale_if_error_seconds,
            self.sqs_retention_seconds,
            self.dedup_seconds,
            self.prune_interval_seconds,
            self.warm_up()
        )
    }
}

/// What the goose transactions of this module read.
static SOAK: RwLock<Option<Arc<Target>>> = RwLock::new(None);

fn soak_target() -> Arc<Target> {
    SOAK.read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("soak target set before the attack")
}

fn day_back(days: i64) -> String {
    cashflow_contracts::business_date::format(Target::today() - time::Duration::days(days))
}

/// POSTs an entry with a fresh Idempotency-Key: today, or one of the last 6 days (1 in 5).
async fn soak_post(user: &mut GooseUser) -> TransactionResult {
    let target = soak_target();
    let (m, kind, cents, back) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_range(0..target.merchants.len()),
            if rng.gen_bool(0.25) {
                "debit"
            } else {
                "credit"
            },
            rng.gen_range(100..100_000),
            if rng.gen_bool(0.2) {
                rng.gen_range(1..target.days)
            } else {
                0
            },
        )
    };
    let body = serde_json::json!({
        "kind": kind,
        "amount": format!("{}.{:02}", cents / 100, cents % 100),
        "currency": "BRL",
        "business_date": day_back(back),
        "description": "soak",
    });
    let url = format!(
        "{}/v1/merchants/{}/entries",
        target.ledger_url, target.merchants[m]
    );
    crate::scenarios::post_entry_as(user, &url, &target.tokens[m], &body, true).await
}

/// One day's balance, of the last `days`.
async fn soak_balance(user: &mut GooseUser) -> TransactionResult {
    let target = soak_target();
    let (m, back) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_range(0..target.merchants.len()),
            rng.gen_range(0..target.days),
        )
    };
    let url = format!(
        "{}/v1/merchants/{}/balances/{}",
        target.consolidation_url,
        target.merchants[m],
        day_back(back)
    );
    crate::scenarios::get_as(user, &url, &target.tokens[m], "balance").await?;
    Ok(())
}

/// A report over a random range of the last two weeks: many distinct cached answers, each with
/// its own TTL.
async fn soak_report(user: &mut GooseUser) -> TransactionResult {
    let target = soak_target();
    let (m, to, length) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_range(0..target.merchants.len()),
            rng.gen_range(0..7),
            rng.gen_range(2..8),
        )
    };
    let url = format!(
        "{}/v1/merchants/{}/balances?from={}&to={}",
        target.consolidation_url,
        target.merchants[m],
        day_back(to + length - 1),
        day_back(to)
    );
    crate::scenarios::get_as(user, &url, &target.tokens[m], "report").await?;
    Ok(())
}

/// The unit of a series, which also sets its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    Rows,
    Bytes,
    Count,
    /// A backlog: its resolution is one second of writes.
    Backlog,
}

/// Whether a series is judged, and the verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
enum Verdict {
    /// Drawn, never judged (the books, the load itself), with the same medians for reading.
    Drawn {
        note: &'static str,
        middle: f64,
        last: f64,
        growth: f64,
    },
    /// Too few samples after the windows elapsed.
    NotJudged { reason: String },
    /// Flat or shrinking.
    Flat { middle: f64, last: f64, growth: f64 },
    /// Its last third grew by 5 % or more over its middle third.
    Growing { middle: f64, last: f64, growth: f64 },
}

#[derive(Debug, Clone, Serialize)]
struct Series {
    name: String,
    unit: Unit,
    /// Why it is drawn but not judged, if it is not.
    drawn_only: Option<&'static str>,
    /// (seconds since the load started, value).
    points: Vec<(f64, f64)>,
    verdict: Option<Verdict>,
}

/// Every series by name, in a stable order.
#[derive(Debug, Default)]
struct Samples {
    series: BTreeMap<String, Series>,
}

impl Samples {
    fn push(&mut self, name: &str, unit: Unit, at: f64, value: f64) {
        self.series
            .entry(name.to_string())
            .or_insert_with(|| Series {
                name: name.to_string(),
                unit,
                drawn_only: None,
                points: Vec::new(),
                verdict: None,
            })
            .points
            .push((at, value));
    }

    fn push_books(&mut self, name: &str, unit: Unit, at: f64, value: f64) {
        self.push(name, unit, at, value);
        if let Some(series) = self.series.get_mut(name) {
            series.drawn_only = Some("books: grow by design");
        }
    }
}

/// A running service process.
struct Service {
    label: &'static str,
    process: Supervised,
    database: String,
}

impl Service {
    fn pid(&self) -> anyhow::Result<i32> {
        match self.process.pid().filter(|_| self.process.is_running()) {
            Some(pid) => Ok(pid),
            None => anyhow::bail!(
                "the {} exited ({}): {}",
                self.label,
                self.process.exit_status().unwrap_or_default(),
                harness::process::tail(self.process.log_file(), 30)
            ),
        }
    }
}

/// RSS in bytes, open file descriptors, and how many of them are sockets.
fn process_figures(pid: i32) -> anyhow::Result<(f64, f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")?;
    let (mut fds, mut sockets) = (0.0, 0.0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        fds += 1.0;
        if std::fs::read_link(entry.path())
            .is_ok_and(|link| link.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1.0;
        }
    }
    Ok((rss_kib * 1024.0, fds, sockets))
}

/// Row count and total size (heap, indexes, TOAST) of every table of a database.
async fn table_figures(pool: &PgPool) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut figures = Vec::with_capacity(tables.len());
    for (table, bytes) in tables {
        // Names come from the catalogue; quote_ident-style quoting keeps them names.
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{}\"",
            table.replace('"', "\"\"")
        ))
        .fetch_one(pool)
        .await?;
        figures.push((table, rows, bytes));
    }
    Ok(figures)
}

/// A field of Redis's `INFO`.
fn info_field(info: &str, field: &str) -> Option<f64> {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// What the sampler reads from.
struct Sampler {
    ledger: Service,
    consolidation: Service,
    ledger_pool: PgPool,
    consolidation_pool: PgPool,
    redis: redis::aio::MultiplexedConnection,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    started: Instant,
}

/// The sampler's own connections are left out of the services' counts by this name.
const SAMPLER: &str = "soak-sampler";

impl Sampler {
    async fn sample(&mut self, samples: &mut Samples) -> anyhow::Result<()> {
        let at = self.started.elapsed().as_secs_f64();
        for service in [&self.ledger, &self.consolidation] {
            let (rss, fds, sockets) = process_figures(service.pid()?)?;
            samples.push(&format!("{} RSS", service.label), Unit::Bytes, at, rss);
            samples.push(&format!("{} open fds", service.label), Unit::Count, at, fds);
            samples.push(
                &format!("{} sockets", service.label),
                Unit::Count,
                at,
                sockets,
            );
        }
        let connections: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, count(*) FROM pg_stat_activity \
             WHERE datname = ANY($1) AND application_name <> $2 GROUP BY 1",
        )
        .bind(vec![
            self.ledger.database.clone(),
            self.consolidation.database.clone(),
        ])
        .bind(SAMPLER)
        .fetch_all(&self.ledger_pool)
        .await?;
        for service in [&self.ledger, &self.consolidation] {
            let count = connections
                .iter()
                .find(|(db, _)| *db == service.database)
                .map_or(0, |(_, n)| *n);
            samples.push(
                &format!("{} PG connections", service.label),
                Unit::Count,
                at,
                count as f64,
            );
        }
        for (db, pool) in [
            ("ledger", &self.ledger_pool),
            ("consolidation", &self.consolidation_pool),
        ] {
            for (table, rows, bytes) in table_figures(pool).await? {
                let name = format!("{db}.{table}");
                if table == "entries" {
                    samples.push_books(&format!("{name} rows"), Unit::Rows, at, rows as f64);
                    samples.push_books(&format!("{name} bytes"), Unit::Bytes, at, bytes as f64);
                    if rows > 0 {
                        samples.push(
                            &format!("{name} bytes per row"),
                            Unit::Bytes,
                            at,
                            bytes as f64 / rows as f64,
                        );
                    }
                } else {
                    samples.push(&format!("{name} rows"), Unit::Rows, at, rows as f64);
                    samples.push(&format!("{name} bytes"), Unit::Bytes, at, bytes as f64);
                }
            }
        }
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.ledger_pool)
                .await?;
        samples.push(
            "outbox backlog (unpublished)",
            Unit::Backlog,
            at,
            backlog as f64,
        );
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .context("reading the queue's depth")?
            .attributes
            .unwrap_or_default();
        let depth: f64 = attributes
            .values()
            .filter_map(|v| v.parse::<f64>().ok())
            .sum();
        samples.push("SQS queue depth", Unit::Backlog, at, depth);
        let memory: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.redis)
            .await?;
        let clients: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut self.redis)
            .await?;
        let keys: i64 = redis::cmd("DBSIZE").query_async(&mut self.redis).await?;
        samples.push(
            "redis used_memory",
            Unit::Bytes,
            at,
            info_field(&memory, "used_memory").unwrap_or(f64::NAN),
        );
        samples.push("redis keys", Unit::Count, at, keys as f64);
        samples.push(
            "redis clients",
            Unit::Count,
            at,
            info_field(&clients, "connected_clients").unwrap_or(f64::NAN),
        );
        Ok(())
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The thirds of the judged part: `(start, middle third's start, last third's start)`.
fn thirds(warm_up: f64, end: f64) -> (f64, f64, f64) {
    let third = (end - warm_up) / 3.0;
    (warm_up, warm_up + third, warm_up + 2.0 * third)
}

fn judge(series: &Series, warm_up: f64, end: f64, write_rate: f64) -> Verdict {
    let (_, middle_start, last_start) = thirds(warm_up, end);
    let mut middle: Vec<f64> = series
        .points
        .iter()
        .filter(|(t, _)| *t >= middle_start && *t < last_start)
        .map(|(_, v)| *v)
        .collect();
    let mut last: Vec<f64> = series
        .points
        .iter()
        .filter(|(t, _)| *t >= last_start)
        .map(|(_, v)| *v)
        .collect();
    if end <= warm_up || middle.len() < 2 || last.len() < 2 {
        return Verdict::NotJudged {
            reason: format!(
                "the run ({end:.0} s) leaves too few samples after the windows elapse \
                 ({warm_up:.0} s)"
            ),
        };
    }
    let (middle, last) = (median(&mut middle), median(&mut last));
    let growth = if middle.abs() > f64::EPSILON {
        (last - middle) / middle
    } else if last > middle {
        f64::INFINITY
    } else {
        0.0
    };
    if let Some(note) = series.drawn_only {
        return Verdict::Drawn {
            note,
            middle,
            last,
            growth,
        };
    }
    let resolution = match series.unit {
        Unit::Rows | Unit::Count => 1.0,
        Unit::Bytes => 8192.0,
        Unit::Backlog => write_rate.max(1.0),
    };
    if growth >= 0.05 && last - middle > resolution {
        Verdict::Growing {
            middle,
            last,
            growth,
        }
    } else {
        Verdict::Flat {
            middle,
            last,
            growth,
        }
    }
}

fn human(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes if value.abs() >= 1024.0 * 1024.0 => {
            format!("{:.2} MiB", value / 1024.0 / 1024.0)
        }
        Unit::Bytes if value.abs() >= 1024.0 => format!("{:.1} KiB", value / 1024.0),
        _ if value.fract().abs() > f64::EPSILON && value.abs() < 100.0 => format!("{value:.1}"),
        _ => format!("{value:.0}"),
    }
}

/// A growth as a signed percentage; "from 0" when the middle third's median was 0.
fn percent(growth: f64) -> String {
    if growth.is_finite() {
        format!("{:+.1} %", growth * 100.0)
    } else {
        "from 0".to_string()
    }
}

/// Where a series goes in the tables and the plot: each process's figures, Redis, the backlogs,
/// then the tables of each database.
fn rank(name: &str) -> (u8, String) {
    let group = if name.starts_with("ledger ") {
        0
    } else if name.starts_with("consolidation ") {
        1
    } else if name.starts_with("redis ") {
        2
    } else if name.contains("backlog") || name.starts_with("SQS") || name.starts_with("load:") {
        3
    } else if name.starts_with("ledger.") {
        4
    } else {
        5
    };
    (group, name.to_string())
}

/// Draws every series as a small chart of its own (its own scale, so that a slow growth of a
/// small series shows), the judged thirds shaded, the verdict in the caption.
fn plot(
    path: &Path,
    series: &[&Series],
    warm_up: f64,
    end: f64,
    title: &[String],
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    const COLUMNS: usize = 4;
    const HEADER: u32 = 80;
    let rows = series.len().div_ceil(COLUMNS).max(1);
    let root = SVGBackend::new(path, (1600, HEADER + 230 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    for (i, line) in title.iter().enumerate() {
        let size = if i == 0 { 18 } else { 13 };
        header.draw_text(
            line,
            &("sans-serif", size).into_text_style(&header),
            (12, 8 + 22 * i32::try_from(i).unwrap_or(0)),
        )?;
    }
    let cells = body.split_evenly((rows, COLUMNS));
    let minutes = end > 300.0;
    let (_, middle_start, last_start) = thirds(warm_up, end);
    for (cell, s) in cells.iter().zip(series) {
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        let (low, high) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let (low, high) = if low.is_finite() {
            let pad = ((high - low) * 0.1).max(high.abs() * 0.02).max(1.0);
            ((low - pad).max(0.0), high + pad)
        } else {
            (0.0, 1.0)
        };
        let (verdict, colour) = match &s.verdict {
            Some(Verdict::Drawn { note, growth, .. }) => {
                (format!("{note} ({})", percent(*growth)), BLACK.mix(0.5))
            }
            Some(Verdict::NotJudged { .. }) | None => ("not judged".to_string(), BLACK.mix(0.5)),
            Some(Verdict::Flat { growth, .. }) => {
                (format!("flat ({})", percent(*growth)), BLUE.mix(1.0))
            }
            Some(Verdict::Growing { growth, .. }) => {
                (format!("GROWING ({})", percent(*growth)), RED.mix(1.0))
            }
        };
        let unit = s.unit;
        let mut chart = ChartBuilder::on(cell)
            .caption(format!("{} — {verdict}", s.name), ("sans-serif", 13))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..end.max(1.0), low..high)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| {
                if minutes {
                    format!("{:.0} min", t / 60.0)
                } else {
                    format!("{t:.0} s")
                }
            })
            .y_label_formatter(&|v| human(*v, unit))
            .label_style(("sans-serif", 10))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        if end > warm_up {
            chart.draw_series([
                Rectangle::new(
                    [(middle_start, low), (last_start, high)],
                    BLUE.mix(0.06).filled(),
                ),
                Rectangle::new([(last_start, low), (end, high)], BLUE.mix(0.12).filled()),
            ])?;
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(warm_up.min(end), low), (warm_up.min(end), high)],
            BLACK.mix(0.6).stroke_width(2),
        )))?;
        chart.draw_series(LineSeries::new(finite, colour.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

/// Writes every sample as CSV: `seconds,series,value`.
fn write_csv(path: &Path, series: &[&Series]) -> anyhow::Result<()> {
    let mut csv = String::from("seconds,series,value\n");
    for s in series {
        for (t, v) in &s.points {
            csv.push_str(&format!("{t:.1},{},{v}\n", s.name));
        }
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// Starts a service process on free ports and waits until it is ready.
async fn start_service(
    stack: &Stack,
    service: &'static str,
    scope: &Scope,
    queues: &harness::sqs::QueuePair,
    ledger_internal_url: String,
    extra_env: Vec<(String, String)>,
) -> anyhow::Result<(Service, String, String)> {
    let port = harness::backend::native::free_port()?;
    let internal_port = harness::backend::native::free_port()?;
    let spec = harness::services::ServiceProcess {
        service: service.parse()?,
        label: format!("soak-{service}"),
        port,
        internal_port,
        ledger_internal_url,
        database_url: scope.database_url.clone(),
        redis_url: scope.redis_url.clone(),
        sqs_endpoint: scope.sqs_endpoint.clone(),
        queues: queues.clone(),
        extra_env,
        log_file: harness::paths::logs_dir()
            .join(format!("soak-{service}-{}.log", std::process::id())),
    };
    let process = spec.supervised(stack)?.with_context(|| {
        format!(
            "the {service} binary is not built next to this one: cargo build --release -p \
             ledger -p consolidation --bins (make soak does)"
        )
    })?;
    eprintln!(
        "soak: starting the {service} ({})",
        process.log_file().display()
    );
    process
        .start(Duration::from_secs(60))
        .await
        .with_context(|| format!("starting the {service}"))?;
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let ready = format!("{url}/health/ready");
    harness::eventually(
        Duration::from_secs(60),
        &format!("the {service} ready"),
        || {
            let (http, ready) = (http.clone(), ready.clone());
            async move {
                let response = http.get(ready).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await;
    Ok((
        Service {
            label: service,
            process,
            database: scope.database.clone(),
        },
        url,
        format!("http://127.0.0.1:{internal_port}"),
    ))
}

/// Shortens the retention of both queues, so that what the consolidation is told
/// (`SQS_*_RETENTION_SECONDS`) is what SQS does.
async fn set_queue_retention(
    sqs: &aws_sdk_sqs::Client,
    queues: &harness::sqs::QueuePair,
    seconds: u64,
) -> anyhow::Result<()> {
    for url in [&queues.url, &queues.dlq_url] {
        sqs.set_queue_attributes()
            .queue_url(url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
                seconds.to_string(),
            )
            .send()
            .await
            .with_context(|| format!("setting the retention of {url}"))?;
    }
    Ok(())
}

/// One entry per merchant and day of the last `days`, so that the set of merchant-days (and so
/// the rows of the per-day tables) is complete before the load starts.
async fn seed(target: &Target) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut jobs = tokio::task::JoinSet::new();
    let mut sent = 0;
    for (merchant, token) in target.merchants.iter().zip(&target.tokens) {
        for back in 0..target.days {
            let url = format!("{}/v1/merchants/{merchant}/entries", target.ledger_url);
            let body = serde_json::json!({
                "kind": "credit", "amount": "100.00", "currency": "BRL",
                "business_date": day_back(back), "description": "soak seed",
            });
            let (http, token) = (http.clone(), token.clone());
            jobs.spawn(async move {
                let response = http.post(url).bearer_auth(token).json(&body).send().await?;
                anyhow::ensure!(response.status() == 201, "seeding: {}", response.status());
                anyhow::Ok(())
            });
            sent += 1;
            while jobs.len() >= 16 {
                jobs.join_next().await.context("seed task")???;
            }
        }
    }
    while let Some(job) = jobs.join_next().await {
        job??;
    }
    Ok(sent)
}

type DayTotals = HashMap<(String, time::Date), (i64, i64, i64)>;

/// Per merchant-day (entries, credits, debits): the ledger's digests and the consolidation's
/// days.
async fn books(ledger: &PgPool, consolidation: &PgPool) -> anyhow::Result<(DayTotals, DayTotals)> {
    let read = |sql: &'static str, pool: PgPool| async move {
        let rows: Vec<(String, time::Date, i64, i64, i64)> =
            sqlx::query_as(sql).fetch_all(&pool).await?;
        anyhow::Ok(
            rows.into_iter()
                .map(|(m, d, n, c, b)| ((m, d), (n, c, b)))
                .collect::<DayTotals>(),
        )
    };
    Ok((
        read(
            "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor \
             FROM day_digests",
            ledger.clone(),
        )
        .await?,
        read(
            "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor \
             FROM daily_balances",
            consolidation.clone(),
        )
        .await?,
    ))
}

async fn sampler_pool(url: &str) -> anyhow::Result<PgPool> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.application_name(SAMPLER))
        .await?)
}

/// Runs the soak: starts its own stack and both services, loads them for `--soak-minutes`,
/// samples, draws, judges. Fails naming every series that kept growing.
pub async fn run(args: &SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.soak_rate >= 4 && args.soak_merchants >= 1,
        "--soak-rate must be at least 4 and --soak-merchants at least 1"
    );
    let run_seconds = args.run_seconds();
    eprintln!(
        "soak: {run_seconds} s at {} req/s over {} merchants; {}",
        args.soak_rate,
        args.soak_merchants,
        args.describe_windows()
    );
    if run_seconds <= args.warm_up() + 6 * args.sample_every().as_secs() {
        eprintln!(
            "soak: WARNING: {run_seconds} s is too short to judge anything: the windows need {} \
             s to elapse (a run of {} min judges every series); the samples are drawn all the same",
            args.warm_up(),
            (args.warm_up() * 3 / 2 / 60 + 2)
        );
    }
    let stack: &'static Stack = Box::leak(Box::new(Stack::start(StackOptions::default()).await?));
    let result = soak(stack, args, run_seconds).await;
    stack.shutdown().await;
    result
}

async fn soak(stack: &'static Stack, args: &SoakArgs, run_seconds: u64) -> anyhow::Result<()> {
    let ledger_scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
        .await?;
    let consolidation_scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    let queues = ledger_scope.queues.clone();
    let sqs = ledger_scope.sqs();
    set_queue_retention(&sqs, &queues, args.sqs_retention_seconds).await?;
    let (ledger, ledger_url, ledger_internal) = start_service(
        stack,
        "ledger",
        &ledger_scope,
        &queues,
        String::new(),
        args.ledger_env(),
    )
    .await?;
    let mut consolidation_env = args.consolidation_env();
    consolidation_env.push((
        "REDIS_KEY_PREFIX".into(),
        consolidation_scope.redis_prefix.clone(),
    ));
    let started = start_service(
        stack,
        "consolidation",
        &consolidation_scope,
        &queues,
        ledger_internal,
        consolidation_env,
    )
    .await;
    let (consolidation, consolidation_url, _) = match started {
        Ok(started) => started,
        Err(e) => {
            let _ = ledger.process.stop(Duration::from_secs(30)).await;
            return Err(e);
        }
    };
    load_and_sample(
        stack,
        args,
        run_seconds,
        ledger,
        consolidation,
        (&ledger_url, &consolidation_url),
        (&ledger_scope, &consolidation_scope),
    )
    .await
}

#[allow(clippy::too_many_lines)]
async fn load_and_sample(
    stack: &'static Stack,
    args: &SoakArgs,
    run_seconds: u64,
    ledger: Service,
    consolidation: Service,
    (ledger_url, consolidation_url): (&str, &str),
    (ledger_scope, consolidation_scope): (&Scope, &Scope),
) -> anyhow::Result<()> {
    let merchants: Vec<String> = (0..args.soak_merchants)
        .map(|i| format!("soak-{i}"))
        .collect();
    let lifetime = Duration::from_secs(run_seconds + 3600);
    let tokens = crate::target::mint_tokens(stack.identity(), &merchants, lifetime)?;
    let target = Target {
        ledger_url: ledger_url.to_string(),
        consolidation_url: consolidation_url.to_string(),
        merchants,
        tokens,
        days: 7,
        local: None,
    };
    let seeded = seed(&target).await?;
    eprintln!("soak: seeded {seeded} entries (every merchant-day of the last 7 days)");
    *SOAK.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(target.clone()));

    let ledger_pool = sampler_pool(&ledger_scope.database_url).await?;
    let consolidation_pool = sampler_pool(&consolidation_scope.database_url).await?;
    let write_rate = args.soak_rate as f64 / 4.0;
    let mut sampler = Sampler {
        ledger,
        consolidation,
        ledger_pool: ledger_pool.clone(),
        consolidation_pool: consolidation_pool.clone(),
        redis: consolidation_scope.redis().await?,
        sqs: ledger_scope.sqs(),
        queue_url: ledger_scope.queues.url.clone(),
        started: Instant::now(),
    };
    let mut samples = Samples::default();
    let scenario = scenario!("soak")
        .register_transaction(transaction!(soak_post).set_weight(1)?)
        .register_transaction(transaction!(soak_balance).set_weight(2)?)
        .register_transaction(transaction!(soak_report).set_weight(1)?);
    let every = args.sample_every();
    let stop = CancellationToken::new();
    let load = {
        let stop = stop.clone();
        let target = target.clone();
        let consolidation_url = consolidation_url.to_string();
        let rate = args.soak_rate;
        async move {
            let run = attack(
                &target,
                scenario,
                &consolidation_url,
                16,
                rate,
                usize::try_from(run_seconds).unwrap_or(usize::MAX),
                "soak",
            )
            .await;
            stop.cancel();
            run
        }
    };
    let sampling = async {
        sampler.started = Instant::now();
        let mut next = Instant::now();
        let mut printed = Instant::now();
        while !stop.is_cancelled() {
            if let Err(e) = sampler.sample(&mut samples).await {
                stop.cancel();
                return Err(e);
            }
            if printed.elapsed() >= Duration::from_secs(60) || samples.series.len() < 2 {
                printed = Instant::now();
                print_progress(&samples);
            }
            next += every;
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                () = stop.cancelled() => {}
            }
        }
        anyhow::Ok(())
    };
    let (run, sampled) = tokio::join!(load, sampling);
    let end = sampler
        .started
        .elapsed()
        .as_secs_f64()
        .min(run_seconds as f64);
    let run = run?;
    sampled?;

    // The books after the load: nothing lost, nothing counted twice, with dedup records pruned
    // all along. The pipeline drains first (consumer lag is not a difference).
    eprintln!("soak: load done; waiting for the books to agree");
    let (differ, merchant_days) = books_agree(&ledger_pool, &consolidation_pool).await?;

    // The load itself, from the books' growth: a window-bound table holds (write rate) x
    // (window) rows, so a rate that drifts (a machine busy with other work) moves it too.
    let writes: Vec<(f64, f64)> = samples
        .series
        .get("ledger.entries rows")
        .map(|s| {
            s.points
                .windows(2)
                .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(0.001)))
                .collect()
        })
        .unwrap_or_default();
    for (at, rate) in writes {
        samples.push("load: ledger writes/s", Unit::Count, at, rate);
    }
    if let Some(series) = samples.series.get_mut("load: ledger writes/s") {
        series.drawn_only = Some("the load: drawn, not judged");
    }
    let warm_up = args.warm_up() as f64;
    for series in samples.series.values_mut() {
        series.verdict = Some(judge(series, warm_up, end, write_rate));
    }
    let mut ordered: Vec<&Series> = samples.series.values().collect();
    ordered.sort_by_key(|s| rank(&s.name));
    let dir = report::dir();
    let svg = dir.join("soak.svg");
    let title = [
        format!(
            "soak: {:.1} min at {} req/s asked ({:.0} writes/s; {:.1} req/s achieved) over {} \
             merchants; {} series still growing after the windows",
            end / 60.0,
            args.soak_rate,
            write_rate,
            run.rate,
            args.soak_merchants,
            ordered
                .iter()
                .filter(|s| matches!(s.verdict, Some(Verdict::Growing { .. })))
                .count()
        ),
        format!("windows: {}", args.describe_windows()),
        "dark vertical line: the windows have elapsed; shaded: the middle and the last third of the rest, \
         whose medians are compared (growing: +5 % and more than one row, connection, 8 KiB page, \
         or second of writes for a backlog)"
            .to_string(),
    ];
    plot(&svg, &ordered, warm_up, end, &title)?;
    let csv = dir.join("soak.csv");
    write_csv(&csv, &ordered)?;
    std::fs::write(
        dir.join("soak-series.json"),
        serde_json::to_vec_pretty(&ordered)?,
    )?;

    println!("\nsoak: {}", args.describe_windows());
    let (growing, not_judged) = print_verdicts(&ordered);
    let figures = vec![
        Figure::new("soak", "requests (goose)", run.requests as f64, "requests"),
        Figure::new("soak", "achieved rate", run.rate, "req/s"),
        Figure::new("soak", "failed requests", run.failures as f64, "").bound(run.failures == 0),
        Figure::new("soak", "p99 (raw)", run.p99, "ms"),
        Figure::new(
            "soak",
            "merchant-days where the books differ",
            differ as f64,
            &format!("of {merchant_days}"),
        )
        .bound(differ == 0),
        Figure::new(
            "soak",
            "series still growing after the windows",
            growing.len() as f64,
            &format!("of {}", ordered.len()),
        )
        .bound(growing.is_empty()),
    ];
    report::publish("soak", &figures)?;
    println!(
        "plot: {}   samples: {}   goose: {}",
        svg.display(),
        csv.display(),
        dir.join("soak.html").display()
    );

    for service in [&sampler.consolidation, &sampler.ledger] {
        service.process.stop(Duration::from_secs(30)).await?;
    }
    ledger_pool.close().await;
    consolidation_pool.close().await;

    let mut failures = Vec::new();
    if !growing.is_empty() {
        let load = ordered
            .iter()
            .find(|s| s.name == "load: ledger writes/s")
            .and_then(|s| match s.verdict {
                Some(Verdict::Drawn { growth, .. }) if growth >= 0.05 => Some(growth),
                _ => None,
            })
            .map_or_else(String::new, |growth| {
                format!(
                    " (the write rate itself rose {:.0} % between those thirds, and a table \
                     bound by a window holds rate x window rows: rerun on a quieter machine)",
                    growth * 100.0
                )
            });
        failures.push(format!(
            "still growing after the windows elapsed: {}{load}",
            growing.join(", ")
        ));
    }
    if differ > 0 {
        failures.push(format!(
            "{differ} of {merchant_days} merchant-days differ between the ledger and the \
             consolidation"
        ));
    }
    if run.failures > 0 {
        failures.push(format!("{} requests failed", run.failures));
    }
    if !not_judged.is_empty() {
        println!(
            "soak: NOT JUDGED ({} series): the run was too short for the windows; use a longer \
             SOAK_MINUTES",
            not_judged.len()
        );
    }
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    Ok(())
}

/// Waits (up to 3 minutes: consumer lag is not a difference) until every merchant-day's totals
/// agree between the ledger's digests and the consolidation's days; returns how many differ,
/// and of how many.
async fn books_agree(ledger: &PgPool, consolidation: &PgPool) -> anyhow::Result<(usize, usize)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (ledger_days, consolidated) = books(ledger, consolidation).await?;
        let differ = ledger_days
            .iter()
            .filter(|(key, totals)| consolidated.get(*key) != Some(*totals))
            .count()
            + consolidated
                .keys()
                .filter(|key| !ledger_days.contains_key(*key))
                .count();
        if differ == 0 || Instant::now() > deadline {
            return Ok((differ, ledger_days.len()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Prints one line per series; returns the names of those growing and of those not judged.
fn print_verdicts(ordered: &[&Series]) -> (Vec<String>, Vec<String>) {
    println!(
        "{:<44} {:>14} {:>14} {:>9}  verdict",
        "series", "middle third", "last third", "growth"
    );
    let mut growing = Vec::new();
    let mut not_judged = Vec::new();
    for s in ordered {
        match &s.verdict {
            Some(Verdict::Flat {
                middle,
                last,
                growth,
            }) => println!(
                "{:<44} {:>14} {:>14} {:>9}  flat",
                s.name,
                human(*middle, s.unit),
                human(*last, s.unit),
                percent(*growth)
            ),
            Some(Verdict::Growing {
                middle,
                last,
                growth,
            }) => {
                println!(
                    "{:<44} {:>14} {:>14} {:>9}  GROWING",
                    s.name,
                    human(*middle, s.unit),
                    human(*last, s.unit),
                    percent(*growth)
                );
                growing.push(s.name.clone());
            }
            Some(Verdict::Drawn {
                note,
                middle,
                last,
                growth,
            }) => println!(
                "{:<44} {:>14} {:>14} {:>9}  {note}",
                s.name,
                human(*middle, s.unit),
                human(*last, s.unit),
                percent(*growth)
            ),
            Some(Verdict::NotJudged { reason }) => {
                println!("{:<44} not judged: {reason}", s.name);
                not_judged.push(s.name.clone());
            }
            None => {}
        }
    }
    (growing, not_judged)
}

fn print_progress(samples: &Samples) {
    let pick = |name: &str| {
        samples
            .series
            .get(name)
            .and_then(|s| s.points.last().map(|(t, v)| (*t, human(*v, s.unit))))
    };
    let at = pick("ledger RSS").map_or(0.0, |(t, _)| t);
    let show = [
        "ledger RSS",
        "consolidation RSS",
        "ledger.idempotency_keys rows",
        "ledger.outbox rows",
        "consolidation.processed_events rows",
        "redis used_memory",
        "outbox backlog (unpublished)",
    ]
    .iter()
    .filter_map(|name| pick(name).map(|(_, v)| format!("{name} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    eprintln!("soak: {at:>5.0} s  {show}");
}
