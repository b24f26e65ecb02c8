//! `sla-under-fire`: the consolidation SLA measured the way production fails. Two replicas of
//! each service run as their own processes (release binaries) behind the nginx gateway; every
//! request goes through the gateway. Balance and report reads run at the SLA rate (50/s), then in
//! a second pass at 10× it (500/s), while the ledger receives open-loop writes at a steady rate
//! spread over 1,000 merchants (so cached balances really are invalidated). During each pass, in
//! turn, with quiet gaps between: one consolidation replica SIGKILLed and restarted, Redis
//! frozen (SIGSTOP) for 10 s, the consolidation's PostgreSQL restarted, SQS (LocalStack) frozen
//! for 10 s, one ledger replica SIGKILLed and restarted.
//!
//! The ledger and the consolidation have a harness stack each (PostgreSQL, Redis; the queue is
//! the ledger stack's LocalStack), so restarting the consolidation's PostgreSQL leaves the
//! ledger's alone, as in the deployment.
//!
//! Every request is recorded with its start time, outcome and latency (body read included), so
//! each figure is computed overall, per fault window and outside the fault windows. A fault
//! window runs from the injection until the fault is repaired (process ready again, Redis or SQS
//! resumed, PostgreSQL accepting connections) plus [`WINDOW_TAIL`]. Percentiles are raw, and the
//! p99 also with the back-fill for coordinated omission at each goose user's intended interval
//! (users / rate). After the run drains, the system invariant is checked through the HTTP APIs
//! (the gateway, caches included): for every merchant and day, the consolidated totals equal the
//! ledger's entries; every write answered 201 is in the ledger; no entry is listed twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use goose::goose::GooseResponse;
use goose::prelude::*;
use harness::gateway::GatewayConfig;
use harness::process::Supervised;
use harness::replicas::Replica;
use harness::services::ServiceProcess;
use harness::{Dependency, Fault, Scope, ScopeOptions, Stack, StackOptions};
use serde::Serialize;

use crate::latency::{back_filled, percentile};
use crate::report::{self, Figure};
use crate::scenarios;
use crate::target::Target;
use crate::writer::{WriteOutcome, WriteSummary, Writer, WriterConfig};

/// The scenario's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct FireArgs {
    /// Read rates of the sla-under-fire passes, in order (repeat the flag).
    #[arg(long = "fire-read-rate", default_values_t = [50, 500])]
    pub fire_read_rates: Vec<usize>,
    /// The peak write rate: POSTs per second through the gateway during each sla-under-fire
    /// pass, and in the background of the capacity search.
    #[arg(long, default_value_t = 200)]
    pub write_rate: usize,
    /// Merchants the sla-under-fire scenario writes to and reads (at least 1,000 by default so
    /// that caches really are invalidated).
    #[arg(long, default_value_t = 1000)]
    pub fire_merchants: usize,
    /// Quiet seconds before the first fault of a pass and after each fault window.
    #[arg(long, default_value_t = 15)]
    pub fire_gap_seconds: u64,
}

/// Days of data per merchant (the reports' range).
const DAYS: i64 = 7;
/// How long a fault window lasts after the fault is repaired: connections are made again,
/// passive health checks readmit the replica.
const WINDOW_TAIL: Duration = Duration::from_secs(5);
/// How long a killed replica stays down before it is started again.
const DOWN: Duration = Duration::from_secs(2);
/// How long Redis and SQS stay frozen.
const FROZEN: Duration = Duration::from_secs(10);
/// A service's start deadline.
const START: Duration = Duration::from_secs(60);
/// The gateway's throttling for this scenario: far above the offered load, because what is
/// measured is the services behind it (the stage default of 500/s would answer 429 to the
/// 500/s pass plus its writes).
const GATEWAY_RATE: u32 = 100_000;
/// How long the pipeline may take to drain before the invariant is judged.
const DRAIN: Duration = Duration::from_secs(300);

/// The faults of a pass, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum FaultKind {
    ConsolidationReplicaKilled,
    RedisFrozen,
    ConsolidationPostgresRestarted,
    SqsFrozen,
    LedgerReplicaKilled,
}

impl FaultKind {
    const ALL: [Self; 5] = [
        Self::ConsolidationReplicaKilled,
        Self::RedisFrozen,
        Self::ConsolidationPostgresRestarted,
        Self::SqsFrozen,
        Self::LedgerReplicaKilled,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ConsolidationReplicaKilled => "consolidation replica SIGKILL + restart",
            Self::RedisFrozen => "Redis frozen 10 s",
            Self::ConsolidationPostgresRestarted => "consolidation PostgreSQL restart",
            Self::SqsFrozen => "SQS frozen 10 s",
            Self::LedgerReplicaKilled => "ledger replica SIGKILL + restart",
        }
    }
}

/// One fault's window, in seconds since the scenario's epoch.
#[derive(Debug, Clone, Copy, Serialize)]
struct Window {
    fault: FaultKind,
    /// Injected.
    start: f64,
    /// Repaired.
    repaired: f64,
    /// `repaired` + [`WINDOW_TAIL`].
    end: f64,
}

impl Window {
    fn contains(&self, at: f64) -> bool {
        (self.start..self.end).contains(&at)
    }
}

/// One read, as the goose user saw it.
#[derive(Debug, Clone, Copy)]
struct ReadSample {
    /// Start, seconds since the epoch.
    at: f64,
    latency_ms: f64,
    ok: bool,
    /// 0: no answer.
    status: u16,
    /// Answered with the last invalidated answer, marked stale, because the consolidation's
    /// PostgreSQL was unavailable (ADR 0015): a success, counted apart.
    stale: bool,
}

static EPOCH: OnceLock<Instant> = OnceLock::new();
static READS: Mutex<Vec<ReadSample>> = Mutex::new(Vec::new());

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch(at: Instant) -> f64 {
    at.saturating_duration_since(epoch()).as_secs_f64()
}

/// Records a read: goose's response time (from the send, after its throttle let the request
/// go) plus the time to read the body.
async fn record(response: GooseResponse) {
    let metric = &response.request;
    let (status, mut ok) = (metric.status_code, metric.success);
    let stale = response.response.as_ref().is_ok_and(|r| {
        r.headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("stale-if-error"))
    });
    let sent_to_headers = Duration::from_millis(metric.response_time)
        + Duration::from_micros(u64::from(metric.response_time_fraction_us));
    let body_started = Instant::now();
    if let Ok(body) = response.response {
        ok &= body.bytes().await.is_ok();
    }
    let latency = sent_to_headers + body_started.elapsed();
    let sample = ReadSample {
        at: since_epoch(
            body_started
                .checked_sub(sent_to_headers)
                .unwrap_or(body_started),
        ),
        latency_ms: latency.as_secs_f64() * 1000.0,
        ok,
        status,
        stale,
    };
    READS.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
}

async fn fire_balance(user: &mut GooseUser) -> TransactionResult {
    let response = scenarios::request_balance(user).await?;
    record(response).await;
    Ok(())
}

async fn fire_report(user: &mut GooseUser) -> TransactionResult {
    let response = scenarios::request_report(user).await?;
    record(response).await;
    Ok(())
}

/// The two stacks, the replicas and the gateway.
struct Platform<'a> {
    ledger_stack: &'a Stack,
    consolidation_stack: &'a Stack,
    ledger_scope: Scope,
    consolidation_scope: Scope,
    /// `ledger` ×2, then `consolidation` ×2.
    replicas: Vec<Replica>,
    gateway: Option<Supervised>,
    gateway_url: String,
}

impl Platform<'_> {
    fn replica(&self, service: &str, nth: usize) -> &Replica {
        self.replicas
            .iter()
            .filter(|r| r.service.name() == service)
            .nth(nth)
            .expect("two replicas of each service")
    }

    /// Gateway first (nothing new reaches a draining replica), then the replicas.
    async fn stop(&self) {
        if let Some(gateway) = &self.gateway {
            let _ = gateway.stop(Duration::from_secs(10)).await;
        }
        for replica in self.replicas.iter().rev() {
            let _ = replica.process.stop(Duration::from_secs(30)).await;
        }
    }
}

/// Runs the scenario on stacks of its own, and stops everything it started, also when it fails.
pub async fn run(args: &FireArgs) -> anyhow::Result<Vec<Figure>> {
    anyhow::ensure!(
        args.fire_merchants >= 1 && args.write_rate >= 1 && !args.fire_read_rates.is_empty(),
        "sla-under-fire needs merchants, a write rate and at least one read rate"
    );
    epoch();
    eprintln!("sla-under-fire: starting the ledger's and the consolidation's stacks");
    let (ledger_stack, consolidation_stack) = tokio::join!(
        Stack::start(StackOptions::default()),
        Stack::start(StackOptions::default())
    );
    let result = match (&ledger_stack, &consolidation_stack) {
        (Ok(ledger), Ok(consolidation)) => with_stacks(args, ledger, consolidation).await,
        (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!("starting the stacks: {e:#}")),
    };
    for stack in [ledger_stack, consolidation_stack].iter().flatten() {
        stack.shutdown().await;
    }
    result
}

async fn with_stacks(
    args: &FireArgs,
    ledger_stack: &Stack,
    consolidation_stack: &Stack,
) -> anyhow::Result<Vec<Figure>> {
    let ledger_scope = ledger_stack
        .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
        .await?;
    let consolidation_scope = consolidation_stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    let mut platform = Platform {
        ledger_stack,
        consolidation_stack,
        ledger_scope,
        consolidation_scope,
        replicas: Vec::new(),
        gateway: None,
        gateway_url: String::new(),
    };
    let result = async {
        start_platform(&mut platform).await?;
        measure(args, &platform).await
    }
    .await;
    platform.stop().await;
    result
}

/// Two replicas of each service, then the gateway in front of them.
async fn start_platform(platform: &mut Platform<'_>) -> anyhow::Result<()> {
    let free = harness::backend::native::free_port;
    // The consolidations' reconcilers call the first ledger replica's internal listener.
    let ledger_internal = free()?;
    let ledger_internal_url = format!("http://127.0.0.1:{ledger_internal}");
    let queues = platform.ledger_scope.queues.clone();
    for (service, nth) in [
        ("ledger", 1),
        ("ledger", 2),
        ("consolidation", 1),
        ("consolidation", 2),
    ] {
        let scope = if service == "ledger" {
            &platform.ledger_scope
        } else {
            &platform.consolidation_scope
        };
        let spec = ServiceProcess {
            service: service.parse()?,
            label: format!("fire-{service}-{nth}"),
            port: free()?,
            internal_port: if service == "ledger" && nth == 1 {
                ledger_internal
            } else {
                free()?
            },
            ledger_internal_url: ledger_internal_url.clone(),
            database_url: scope.database_url.clone(),
            redis_url: scope.redis_url.clone(),
            sqs_endpoint: platform.ledger_scope.sqs_endpoint.clone(),
            queues: queues.clone(),
            extra_env: vec![("REDIS_KEY_PREFIX".into(), scope.redis_prefix.clone())],
            log_file: harness::paths::logs_dir()
                .join(format!("fire-{service}-{nth}-{}.log", std::process::id())),
        };
        // The ledger stack's identity provider signs every token (one issuer, as in AWS).
        let replica = Replica::new(&spec, platform.ledger_stack)?.with_context(|| {
            format!(
                "the {service} binary is not built next to this one: cargo build --release -p \
                 ledger -p consolidation --bins (make load does)"
            )
        })?;
        eprintln!(
            "sla-under-fire: starting {} on {} ({})",
            spec.label,
            replica.url(),
            replica.process.log_file().display()
        );
        replica
            .start(START)
            .await
            .with_context(|| format!("starting {}", spec.label))?;
        platform.replicas.push(replica);
    }
    let port = free()?;
    let dir = harness::paths::harness_dir().join(format!("fire-gateway-{}", std::process::id()));
    let config = GatewayConfig {
        listen: format!("127.0.0.1:{port}"),
        upstreams: harness::replicas::upstreams(&platform.replicas),
        rate_limit: GATEWAY_RATE,
        burst_limit: GATEWAY_RATE,
        access_log: dir.join("access.log"),
        dir,
        ledger_internal: None,
    };
    let log = harness::paths::logs_dir().join(format!("fire-gateway-{}.log", std::process::id()));
    platform.gateway = Some(
        harness::replicas::start_gateway(&config, log, START)
            .await?
            .context("nginx is not installed (bash ci/install-deps.sh installs it)")?,
    );
    platform.gateway_url = format!("http://127.0.0.1:{port}");
    eprintln!(
        "sla-under-fire: gateway {} (nginx, access log {})",
        platform.gateway_url,
        config.access_log.display()
    );
    Ok(())
}

/// One pass: its rate, windows and samples.
struct Pass {
    rate: usize,
    users: usize,
    start: f64,
    end: f64,
    windows: Vec<Window>,
    reads: Vec<ReadSample>,
    writes: Vec<WriteOutcome>,
    /// goose's own p99 with its co-mitigation (whole pass, busiest request kind).
    goose_p99_co: f64,
}

async fn measure(args: &FireArgs, platform: &Platform<'_>) -> anyhow::Result<Vec<Figure>> {
    let lifetime = Duration::from_secs(4 * 3600);
    let merchants: Vec<String> = (0..args.fire_merchants)
        .map(|i| format!("fire-{i}"))
        .collect();
    let tokens =
        crate::target::mint_tokens(platform.ledger_stack.identity(), &merchants, lifetime)?;
    let target = Target {
        ledger_url: platform.gateway_url.clone(),
        consolidation_url: platform.gateway_url.clone(),
        merchants,
        tokens,
        days: DAYS,
        local: None,
    };
    eprintln!(
        "sla-under-fire: seeding {} merchants × {DAYS} days through the gateway",
        target.merchants.len()
    );
    let seeded = target.seed(1).await?;
    let books = check_books(&target, &[], Duration::from_secs(300)).await?;
    anyhow::ensure!(
        books.holds(),
        "the seeded books do not agree: {:?}",
        books.differing
    );
    eprintln!("sla-under-fire: seeded {seeded} entries, consolidated");

    let mut passes = Vec::new();
    for &rate in &args.fire_read_rates {
        passes.push(pass(args, platform, &target, rate).await?);
    }
    eprintln!("sla-under-fire: waiting for the pipeline to drain, then checking the books");
    let accepted: Vec<(usize, crate::writer::Accepted)> = passes
        .iter()
        .flat_map(|p| &p.writes)
        .filter_map(|w| w.accepted.clone().map(|a| (w.merchant, a)))
        .collect();
    let books = check_books(&target, &accepted, DRAIN).await?;
    let lags = lags(platform).await?;
    let rows: Vec<Row> = passes.iter().flat_map(|p| rows(p, &lags)).collect();
    let markdown = markdown(&rows, &books, args);
    println!("\n{markdown}");
    std::fs::write(report::dir().join("sla-under-fire.md"), &markdown)?;
    std::fs::write(
        report::dir().join("sla-under-fire.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "write_rate": args.write_rate,
            "merchants": args.fire_merchants,
            "rows": rows,
            "windows": passes.iter().map(|p| (p.rate, &p.windows)).collect::<Vec<_>>(),
            "books": books,
        }))?,
    )?;
    Ok(figures(&passes, &rows, &books, args))
}

/// Runs one pass: goose reads at `rate`, writes at the write rate, the faults in turn.
async fn pass(
    args: &FireArgs,
    platform: &Platform<'_>,
    target: &Target,
    rate: usize,
) -> anyhow::Result<Pass> {
    let gap = Duration::from_secs(args.fire_gap_seconds);
    // Enough users that a few stalled ones leave the rest able to keep the rate.
    let users = if rate <= 100 { 16 } else { 64 };
    // The schedule's length: gaps, frozen times, restarts (a few seconds each), and a margin.
    let seconds = (gap.as_secs() * 6 + FROZEN.as_secs() * 2 + 3 * 8 + 10) as usize;
    eprintln!(
        "sla-under-fire: pass at {rate} reads/s ({users} goose users) and {} writes/s for {seconds} s",
        args.write_rate
    );
    READS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let start = since_epoch(Instant::now());
    let writer = Writer::start(
        WriterConfig {
            base_url: target.ledger_url.clone(),
            merchants: Arc::new(target.merchants.clone()),
            tokens: Arc::new(target.tokens.clone()),
            rate: args.write_rate as f64,
            description: "fire".into(),
            retry_deadline: Duration::from_secs(30),
        },
        epoch(),
    )?;
    let reads = scenario!("sla-under-fire")
        .register_transaction(transaction!(fire_balance).set_weight(4)?)
        .register_transaction(transaction!(fire_report).set_weight(1)?);
    let report = format!("sla-under-fire-{rate}");
    let (metrics, windows) = tokio::join!(
        scenarios::attack_metrics(
            target,
            reads,
            &target.consolidation_url,
            users,
            rate,
            seconds,
            &report,
        ),
        inject_faults(platform, gap)
    );
    let writes = writer.stop().await;
    let end = since_epoch(Instant::now());
    let windows = windows?;
    let metrics = metrics?;
    let goose_p99_co = metrics
        .requests
        .values()
        .max_by_key(|a| a.raw_data.counter)
        .map_or(f64::NAN, |a| {
            a.coordinated_omission_data
                .as_ref()
                .unwrap_or(&a.raw_data)
                .percentile_us(0.99) as f64
                / 1000.0
        });
    let reads = std::mem::take(&mut *READS.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Pass {
        rate,
        users,
        start,
        end,
        windows,
        reads,
        writes,
        goose_p99_co,
    })
}

/// The faults in turn, each after a quiet gap; returns their windows.
async fn inject_faults(platform: &Platform<'_>, gap: Duration) -> anyhow::Result<Vec<Window>> {
    let mut windows = Vec::new();
    for fault in FaultKind::ALL {
        tokio::time::sleep(gap).await;
        let start = since_epoch(Instant::now());
        eprintln!("sla-under-fire: t={start:.1} s: {} ...", fault.label());
        match fault {
            FaultKind::ConsolidationReplicaKilled => {
                kill_and_restart(platform.replica("consolidation", 1)).await?;
            }
            FaultKind::LedgerReplicaKilled => {
                // The first ledger replica: the one the reconcilers call too.
                kill_and_restart(platform.replica("ledger", 0)).await?;
            }
            FaultKind::RedisFrozen => {
                freeze(platform.consolidation_stack, Dependency::Redis).await?;
            }
            FaultKind::SqsFrozen => {
                freeze(platform.ledger_stack, Dependency::Sqs).await?;
            }
            FaultKind::ConsolidationPostgresRestarted => {
                platform
                    .consolidation_stack
                    .inject(Dependency::Postgres, Fault::Restart)
                    .await?;
            }
        }
        let repaired = since_epoch(Instant::now());
        eprintln!(
            "sla-under-fire: t={repaired:.1} s: repaired ({:.1} s)",
            repaired - start
        );
        windows.push(Window {
            fault,
            start,
            repaired,
            end: repaired + WINDOW_TAIL.as_secs_f64(),
        });
    }
    Ok(windows)
}

async fn kill_and_restart(replica: &Replica) -> anyhow::Result<()> {
    replica.process.kill().await?;
    tokio::time::sleep(DOWN).await;
    replica.start(START).await
}

/// SIGSTOP for [`FROZEN`], then SIGCONT (a stack shutting down resumes it first anyway).
async fn freeze(stack: &Stack, dependency: Dependency) -> anyhow::Result<()> {
    stack.inject(dependency, Fault::Pause).await?;
    tokio::time::sleep(FROZEN).await;
    stack.inject(dependency, Fault::Resume).await
}

/// End-to-end lag of each `fire` entry: (recorded at, seconds since the epoch; lag in ms), from
/// the ledger's commit time to the consolidation's apply time (both machines' clocks are this
/// machine's).
async fn lags(platform: &Platform<'_>) -> anyhow::Result<Vec<(f64, f64)>> {
    let ledger = platform.ledger_scope.pg_pool().await?;
    let consolidation = platform.consolidation_scope.pg_pool().await?;
    let applied = crate::scenarios::recorded_and_applied(&ledger, &consolidation, "fire").await?;
    ledger.close().await;
    consolidation.close().await;
    // The epoch on the wall clock.
    let epoch_wall = time::OffsetDateTime::now_utc()
        - time::Duration::seconds_f64(epoch().elapsed().as_secs_f64());
    Ok(applied
        .iter()
        .map(|journey| {
            (
                (journey.recorded - epoch_wall).as_seconds_f64(),
                (journey.applied - journey.recorded).as_seconds_f64() * 1000.0,
            )
        })
        .collect())
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    rate: usize,
    window: String,
    /// Seconds covered.
    seconds: f64,
    reads: usize,
    read_failures: usize,
    read_failure_pct: f64,
    /// Reads answered stale while PostgreSQL was unavailable.
    stale_reads: usize,
    /// Failed reads by status (0: no answer).
    failure_statuses: BTreeMap<u16, usize>,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    p99_co_ms: f64,
    writes: WriteSummary,
    lag_entries: usize,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
}

/// Which samples (by time) a row covers.
type Selector<'a> = Box<dyn Fn(f64) -> bool + 'a>;

const WHOLE: &str = "whole pass";
const OUTSIDE: &str = "outside fault windows";

fn rows(pass: &Pass, lags: &[(f64, f64)]) -> Vec<Row> {
    let interval_ms = pass.users as f64 / pass.rate as f64 * 1000.0;
    let in_pass = |at: f64| (pass.start..pass.end).contains(&at);
    let outside = |at: f64| in_pass(at) && !pass.windows.iter().any(|w| w.contains(at));
    let mut selections: Vec<(String, f64, Selector<'_>)> =
        vec![(WHOLE.to_string(), pass.end - pass.start, Box::new(in_pass))];
    for window in &pass.windows {
        selections.push((
            window.fault.label().to_string(),
            window.end - window.start,
            Box::new(move |at| window.contains(at)),
        ));
    }
    let windowed: f64 = pass.windows.iter().map(|w| w.end - w.start).sum();
    selections.push((
        OUTSIDE.to_string(),
        pass.end - pass.start - windowed,
        Box::new(outside),
    ));
    selections
        .into_iter()
        .map(|(window, seconds, select)| {
            let reads: Vec<&ReadSample> = pass.reads.iter().filter(|r| select(r.at)).collect();
            let mut latencies: Vec<f64> = reads.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            let co = back_filled(&latencies, interval_ms);
            let mut failure_statuses = BTreeMap::new();
            for r in reads.iter().filter(|r| !r.ok) {
                *failure_statuses.entry(r.status).or_insert(0) += 1;
            }
            let read_failures = failure_statuses.values().sum();
            let mut lag: Vec<f64> = lags
                .iter()
                .filter(|(at, _)| select(*at))
                .map(|(_, l)| *l)
                .collect();
            lag.sort_by(f64::total_cmp);
            Row {
                rate: pass.rate,
                window,
                seconds,
                reads: reads.len(),
                read_failures,
                read_failure_pct: if reads.is_empty() {
                    0.0
                } else {
                    read_failures as f64 * 100.0 / reads.len() as f64
                },
                stale_reads: reads.iter().filter(|r| r.stale).count(),
                failure_statuses,
                p50_ms: percentile(&latencies, 0.50),
                p95_ms: percentile(&latencies, 0.95),
                p99_ms: percentile(&latencies, 0.99),
                p99_co_ms: percentile(&co, 0.99),
                writes: WriteSummary::of(pass.writes.iter().filter(|w| select(w.at))),
                lag_entries: lag.len(),
                lag_p50_ms: percentile(&lag, 0.50),
                lag_p99_ms: percentile(&lag, 0.99),
            }
        })
        .collect()
}

/// The invariant, checked through the HTTP APIs.
#[derive(Debug, Clone, Default, Serialize)]
struct Books {
    /// Merchant-days compared.
    merchant_days: usize,
    /// Those whose consolidated totals differ from the ledger's entries (first 20 shown).
    differing: Vec<String>,
    differing_count: usize,
    /// Writes answered 201 that the ledger does not list.
    accepted_missing: usize,
    /// Entries listed twice.
    duplicates: usize,
    /// Entries of this run's writes that the ledger recorded but no client got a 201 for (the
    /// client gave up retrying): not a violation, the entry is counted once.
    recorded_without_201: usize,
    /// Seconds waited for the pipeline to drain.
    drained_after_s: f64,
}

impl Books {
    fn holds(&self) -> bool {
        self.differing_count == 0 && self.accepted_missing == 0 && self.duplicates == 0
    }
}

/// Per merchant and day: the ledger's entries (id, kind, minor) and the consolidated
/// (credits, debits, count).
type LedgerDay = Vec<(String, String, i64, String)>;

/// Compares, until they agree or `timeout` passes, every merchant-day's consolidated balance with
/// the ledger's entries, both read through the gateway; checks the accepted writes are listed.
async fn check_books(
    target: &Target,
    accepted: &[(usize, crate::writer::Accepted)],
    timeout: Duration,
) -> anyhow::Result<Books> {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let today = Target::today();
    let dates: Vec<String> = (0..target.days)
        .map(|d| cashflow_contracts::business_date::format(today - time::Duration::days(d)))
        .collect();
    loop {
        let mut jobs = tokio::task::JoinSet::new();
        let mut results = Vec::new();
        for (m, merchant) in target.merchants.iter().enumerate() {
            let (http, token, base, merchant, dates) = (
                http.clone(),
                target.tokens[m].clone(),
                target.ledger_url.clone(),
                merchant.clone(),
                dates.clone(),
            );
            jobs.spawn(async move {
                let mut days = Vec::new();
                for date in dates {
                    let ledger = ledger_day(&http, &base, &merchant, &token, &date).await;
                    let consolidated =
                        consolidated_day(&http, &base, &merchant, &token, &date).await;
                    days.push((date, ledger, consolidated));
                }
                (m, days)
            });
            while jobs.len() >= 16 {
                if let Some(Ok(done)) = jobs.join_next().await {
                    results.push(done);
                }
            }
        }
        while let Some(done) = jobs.join_next().await {
            results.push(done.context("a books task")?);
        }
        let mut books = Books::default();
        let mut listed: HashSet<String> = HashSet::new();
        let mut fire_ids: HashSet<String> = HashSet::new();
        for (m, days) in &results {
            for (date, ledger, consolidated) in days {
                books.merchant_days += 1;
                let differs = match (ledger, consolidated) {
                    (Ok(entries), Ok(totals)) => {
                        let mut sums = (0, 0, 0);
                        for (id, kind, minor, description) in entries {
                            if !listed.insert(id.clone()) {
                                books.duplicates += 1;
                            }
                            if description == "fire" {
                                fire_ids.insert(id.clone());
                            }
                            if kind == "credit" {
                                sums.0 += minor;
                            } else {
                                sums.1 += minor;
                            }
                            sums.2 += 1;
                        }
                        (sums != *totals)
                            .then(|| format!("ledger {sums:?} vs consolidated {totals:?}"))
                    }
                    (l, c) => Some(format!(
                        "unreadable: ledger {:?}, consolidation {:?}",
                        l.as_ref().err(),
                        c.as_ref().err()
                    )),
                };
                if let Some(why) = differs {
                    books.differing_count += 1;
                    if books.differing.len() < 20 {
                        books
                            .differing
                            .push(format!("{} {date}: {why}", target.merchants[*m]));
                    }
                }
            }
        }
        let accepted_ids: HashSet<&str> = accepted.iter().map(|(_, a)| a.id.as_str()).collect();
        books.accepted_missing = accepted_ids
            .iter()
            .filter(|id| !listed.contains(**id))
            .count();
        books.recorded_without_201 = fire_ids
            .iter()
            .filter(|id| !accepted_ids.contains(id.as_str()))
            .count();
        books.drained_after_s = started.elapsed().as_secs_f64();
        if books.holds() || started.elapsed() >= timeout {
            return Ok(books);
        }
        eprintln!(
            "sla-under-fire: {} merchant-days differ (first: {}), {} accepted entries not listed \
             yet; checking again",
            books.differing_count,
            books.differing.first().map_or("-", String::as_str),
            books.accepted_missing
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Every entry of a merchant-day from the ledger's list (all pages).
async fn ledger_day(
    http: &reqwest::Client,
    base: &str,
    merchant: &str,
    token: &str,
    date: &str,
) -> anyhow::Result<LedgerDay> {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/merchants/{merchant}/entries?date={date}&limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let response = http.get(url).bearer_auth(token).send().await?;
        anyhow::ensure!(response.status() == 200, "entries: {}", response.status());
        let page: serde_json::Value = response.json().await?;
        for item in page["items"].as_array().context("items")? {
            entries.push((
                item["id"].as_str().unwrap_or_default().to_string(),
                item["kind"].as_str().unwrap_or_default().to_string(),
                minor(&item["amount"])?,
                item["description"].as_str().unwrap_or_default().to_string(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(entries),
        }
    }
}

/// A merchant-day's consolidated (credits, debits, entry count).
async fn consolidated_day(
    http: &reqwest::Client,
    base: &str,
    merchant: &str,
    token: &str,
    date: &str,
) -> anyhow::Result<(i64, i64, i64)> {
    let response = http
        .get(format!("{base}/v1/merchants/{merchant}/balances/{date}"))
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "balance: {}", response.status());
    let day: serde_json::Value = response.json().await?;
    Ok((
        minor(&day["credits"])?,
        minor(&day["debits"])?,
        day["entry_count"].as_i64().unwrap_or(0),
    ))
}

/// Minor units of a decimal amount string (`"12.30"`; zero allowed, unlike an entry's amount).
fn minor(value: &serde_json::Value) -> anyhow::Result<i64> {
    let text = value.as_str().context("an amount string")?;
    let (negative, digits) = text
        .strip_prefix('-')
        .map_or((false, text), |rest| (true, rest));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let parsed = int.parse::<i64>().ok().zip(
        format!("{frac:0<2}")
            .get(..2)
            .and_then(|f| f.parse::<i64>().ok()),
    );
    let (int, frac) = parsed.with_context(|| format!("amount {text}"))?;
    let minor = int * 100 + frac;
    Ok(if negative { -minor } else { minor })
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn markdown(rows: &[Row], books: &Books, args: &FireArgs) -> String {
    let mut out = format!(
        "sla-under-fire: 2 replicas of each service behind nginx; reads (balances 4 : reports 1) \
         at each pass's rate, writes at {}/s over {} merchants, all through the gateway. Latencies \
         in ms; CO = back-filled for coordinated omission; stale = answered with the last \
         invalidated answer while PostgreSQL was unavailable (ADR 0015); lag = ledger commit → balance applied.\n\n",
        args.write_rate, args.fire_merchants
    );
    out.push_str(
        "| reads/s | window | s | reads | failed | stale | p50 | p95 | p99 | p99 CO | writes | failed | retries (POSTs retried) | write p99 | lag p50 | lag p99 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let failed = if r.read_failures == 0 {
            "0".to_string()
        } else {
            let statuses: Vec<String> = r
                .failure_statuses
                .iter()
                .map(|(s, n)| {
                    if *s == 0 {
                        format!("{n}× no answer")
                    } else {
                        format!("{n}× {s}")
                    }
                })
                .collect();
            format!(
                "{} ({:.2} %: {})",
                r.read_failures,
                r.read_failure_pct,
                statuses.join(", ")
            )
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            r.rate,
            r.window,
            r.seconds,
            r.reads,
            failed,
            r.stale_reads,
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.p99_co_ms),
            r.writes.writes,
            r.writes.failed,
            r.writes.retries,
            r.writes.retried,
            ms(r.writes.p99_ms),
            ms(r.lag_p50_ms),
            ms(r.lag_p99_ms),
        ));
    }
    out.push_str(&format!(
        "\nInvariant after the drain ({:.0} s), through the gateway: {} merchant-days compared, {} \
         differ; {} accepted writes missing from the ledger; {} entries listed twice; {} entries \
         recorded without a 201 (client gave up). {}\n",
        books.drained_after_s,
        books.merchant_days,
        books.differing_count,
        books.accepted_missing,
        books.duplicates,
        books.recorded_without_201,
        if books.holds() { "HOLDS" } else { "BROKEN" }
    ));
    for d in &books.differing {
        out.push_str(&format!("  differs: {d}\n"));
    }
    out
}

fn figures(passes: &[Pass], rows: &[Row], books: &Books, args: &FireArgs) -> Vec<Figure> {
    let mut figures = Vec::new();
    let name = "sla-under-fire";
    for pass in passes {
        let rate = pass.rate;
        let row = |window: &str| rows.iter().find(|r| r.rate == rate && r.window == window);
        if let Some(whole) = row(WHOLE) {
            figures.push(
                Figure::new(
                    name,
                    &format!("{rate}/s: failed reads (goal 0 %)"),
                    whole.read_failure_pct,
                    "%",
                )
                .bound(whole.read_failures == 0 && whole.reads > 0),
            );
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: reads answered stale (ADR 0015)"),
                whole.stale_reads as f64,
                "reads",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: read p99, whole pass"),
                whole.p99_ms,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: read p99 CO back-filled, whole"),
                whole.p99_co_ms,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: goose's own CO p99 (busiest kind)"),
                pass.goose_p99_co,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: writes at {}/s failed", args.write_rate),
                whole.writes.failed as f64,
                "POSTs",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: write retries"),
                whole.writes.retries as f64,
                "retries",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: e2e lag p99, whole pass"),
                whole.lag_p99_ms,
                "ms",
            ));
        }
        if let Some(outside) = row(OUTSIDE) {
            figures.push(
                Figure::new(
                    name,
                    &format!("{rate}/s: read p99 outside faults (goal 50 ms)"),
                    outside.p99_ms,
                    "ms",
                )
                .bound(outside.p99_ms <= 50.0),
            );
        }
    }
    figures.push(
        Figure::new(
            name,
            "invariant: merchant-days differing (goal 0)",
            books.differing_count as f64,
            "",
        )
        .bound(books.differing_count == 0),
    );
    figures.push(
        Figure::new(
            name,
            "invariant: accepted writes lost (goal 0)",
            books.accepted_missing as f64,
            "",
        )
        .bound(books.accepted_missing == 0 && books.duplicates == 0),
    );
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_in_minor_units_zero_and_negative_included() {
        let minor_of = |s: &str| minor(&serde_json::json!(s)).expect("an amount");
        assert_eq!(minor_of("0.00"), 0);
        assert_eq!(minor_of("12.30"), 1230);
        assert_eq!(minor_of("12.3"), 1230);
        assert_eq!(minor_of("7"), 700);
        assert_eq!(minor_of("-1.05"), -105);
        assert!(minor(&serde_json::json!("x.10")).is_err());
    }
}
