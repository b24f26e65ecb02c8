//! The goose scenarios: `sla`, `capacity`, `ledger-writes`, `e2e-lag`, `replay` (and the
//! reads `history` reuses).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use goose::config::GooseConfiguration;
use goose::goose::GooseResponse;
use goose::metrics::{GooseCoordinatedOmissionMitigation, GooseMetrics};
use goose::prelude::*;
use rand::Rng;

use crate::report::{self, Figure};
use crate::target::Target;

/// The target the transactions read (goose transactions are plain functions).
static TARGET: RwLock<Option<Arc<Target>>> = RwLock::new(None);
/// A counter making each POST's amount distinct.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn target() -> Arc<Target> {
    TARGET
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("target set before the attack")
}

fn pick(target: &Target) -> (usize, String) {
    let mut rng = rand::thread_rng();
    let merchant = rng.gen_range(0..target.merchants.len());
    let day = Target::today() - time::Duration::days(rng.gen_range(0..target.days.max(1)));
    (merchant, cashflow_contracts::business_date::format(day))
}

/// A GET of `path` (on goose's host, or a whole URL) with `token`, named `name` in goose's
/// metrics (any 2xx is a success).
pub(crate) async fn get_as(
    user: &mut GooseUser,
    path: &str,
    token: &str,
    name: &str,
) -> Result<GooseResponse, Box<TransactionError>> {
    let builder = user
        .get_request_builder(&GooseMethod::Get, path)?
        .bearer_auth(token);
    user.request(
        GooseRequest::builder()
            .set_request_builder(builder)
            .name(name)
            .build(),
    )
    .await
}

/// A POST of an entry (`body`) to `path` with `token`, named `entry` in goose's metrics; a
/// success is a 201. With `idempotency_key`, it carries a new `Idempotency-Key`.
pub(crate) async fn post_entry_as(
    user: &mut GooseUser,
    path: &str,
    token: &str,
    body: &serde_json::Value,
    idempotency_key: bool,
) -> TransactionResult {
    let mut builder = user
        .get_request_builder(&GooseMethod::Post, path)?
        .bearer_auth(token)
        .json(body);
    if idempotency_key {
        builder = builder.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    }
    user.request(
        GooseRequest::builder()
            .set_request_builder(builder)
            .name("entry")
            .expect_status_code(201)
            .build(),
    )
    .await?;
    Ok(())
}

pub(crate) async fn read_balance(user: &mut GooseUser) -> TransactionResult {
    request_balance(user).await?;
    Ok(())
}

pub(crate) async fn read_report(user: &mut GooseUser) -> TransactionResult {
    request_report(user).await?;
    Ok(())
}

/// A balance read of a random merchant and day (of the target's days).
pub(crate) async fn request_balance(
    user: &mut GooseUser,
) -> Result<GooseResponse, Box<TransactionError>> {
    let target = target();
    let (m, day) = pick(&target);
    let path = format!("/v1/merchants/{}/balances/{day}", target.merchants[m]);
    get_as(user, &path, &target.tokens[m], "balance").await
}

/// The report of a random merchant over the target's days.
pub(crate) async fn request_report(
    user: &mut GooseUser,
) -> Result<GooseResponse, Box<TransactionError>> {
    let target = target();
    let (m, _) = pick(&target);
    let today = Target::today();
    let from = cashflow_contracts::business_date::format(
        today - time::Duration::days(target.days.max(1) - 1),
    );
    let to = cashflow_contracts::business_date::format(today);
    let path = format!(
        "/v1/merchants/{}/balances?from={from}&to={to}",
        target.merchants[m]
    );
    get_as(user, &path, &target.tokens[m], "report").await
}

async fn post_entry(user: &mut GooseUser) -> TransactionResult {
    post(user, "load").await
}

async fn post_e2e(user: &mut GooseUser) -> TransactionResult {
    post(user, "e2e").await
}

/// POSTs an entry with `description` (e2e-lag finds its own entries by it).
async fn post(user: &mut GooseUser, description: &str) -> TransactionResult {
    let target = target();
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let m = usize::try_from(n).unwrap_or_default() % target.merchants.len();
    let body = serde_json::json!({
        "kind": if n.is_multiple_of(4) { "debit" } else { "credit" },
        "amount": format!("{}.{:02}", 1 + n % 500, n % 100),
        "currency": "BRL",
        "description": description,
    });
    let path = format!("/v1/merchants/{}/entries", target.merchants[m]);
    post_entry_as(user, &path, &target.tokens[m], &body, false).await
}

/// What a goose run measured.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Requests made (goose's own count, without back-filled ones).
    pub requests: usize,
    /// Failed requests.
    pub failures: usize,
    /// Requests per second achieved.
    pub rate: f64,
    /// Latency percentiles in ms, raw.
    pub p50: f64,
    /// 95th percentile, raw.
    pub p95: f64,
    /// 99th percentile, raw.
    pub p99: f64,
    /// 99th percentile with coordinated-omission back-fill.
    pub p99_mitigated: f64,
}

impl Run {
    /// Failures over requests.
    pub fn failure_ratio(&self) -> f64 {
        if self.requests == 0 {
            1.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

fn summarize(metrics: &GooseMetrics) -> Run {
    let mut requests = 0;
    let mut failures = 0;
    let mut raw = Vec::new();
    let mut mitigated = Vec::new();
    for aggregate in metrics.requests.values() {
        requests += aggregate.success_count + aggregate.fail_count;
        failures += aggregate.fail_count;
        raw.push(&aggregate.raw_data);
        mitigated.push(
            aggregate
                .coordinated_omission_data
                .as_ref()
                .unwrap_or(&aggregate.raw_data),
        );
    }
    Run {
        requests,
        failures,
        rate: requests as f64 / metrics.duration.max(1) as f64,
        p50: percentile_ms(&raw, 0.5),
        p95: percentile_ms(&raw, 0.95),
        p99: percentile_ms(&raw, 0.99),
        p99_mitigated: percentile_ms(&mitigated, 0.99),
    }
}

/// Percentile `q` of every request kind together, in ms: a scenario's p99 is that of all its
/// requests (a slow minority kind, such as reports beside balances, counts). goose keeps each
/// kind's times in buckets a few percent wide; with several kinds their buckets are merged and
/// the percentile is the start of the bucket it falls in.
fn percentile_ms(kinds: &[&goose::metrics::GooseRequestMetricTimingData], q: f64) -> f64 {
    if let [one] = kinds {
        return one.percentile_us(q as f32) as f64 / 1000.0;
    }
    let mut buckets: std::collections::BTreeMap<u64, usize> = Default::default();
    for kind in kinds {
        for (&bucket, &count) in kind.times_us.iter() {
            *buckets.entry(bucket).or_default() += count;
        }
    }
    let rank = ((buckets.values().sum::<usize>() as f64 * q).ceil() as usize).max(1);
    let mut seen = 0;
    for (bucket, count) in buckets {
        seen += count;
        if seen >= rank {
            return bucket as f64 / 1000.0;
        }
    }
    0.0
}

/// Runs one goose attack: `users` users, at most `rate` requests/s (0: unthrottled), for
/// `seconds`, writing goose's HTML report to `target/load/<report>.html`.
pub async fn attack(
    target: &Target,
    scenario: Scenario,
    host: &str,
    users: usize,
    rate: usize,
    seconds: usize,
    report: &str,
) -> anyhow::Result<Run> {
    let metrics = attack_metrics(target, scenario, host, users, rate, seconds, report).await?;
    Ok(summarize(&metrics))
}

/// [`attack`], returning goose's metrics (per request name) instead of a summary.
pub async fn attack_metrics(
    target: &Target,
    scenario: Scenario,
    host: &str,
    users: usize,
    rate: usize,
    seconds: usize,
    report: &str,
) -> anyhow::Result<GooseMetrics> {
    *TARGET.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(target.clone()));
    let html = report::dir().join(format!("{report}.html"));
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, host)?
        .set_default(GooseDefault::Users, users)?
        .set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?
        .set_default(GooseDefault::RunTime, seconds)?
        .set_default(GooseDefault::ReportFile, html.to_string_lossy().as_ref())?
        .set_default(
            GooseDefault::CoordinatedOmissionMitigation,
            GooseCoordinatedOmissionMitigation::Average,
        )?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoErrorSummary, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoResetMetrics, false)?
        .set_default(GooseDefault::Quiet, 1)?;
    if rate > 0 {
        attack = attack.set_default(GooseDefault::ThrottleRequests, rate)?;
    }
    attack.execute().await.context("running goose")
}

fn reads() -> anyhow::Result<Scenario> {
    Ok(scenario!("reads")
        .register_transaction(transaction!(read_balance).set_weight(4)?)
        .register_transaction(transaction!(read_report).set_weight(1)?))
}

/// `sla`: balance and report reads at `rate`/s for `seconds`. Passes when at most 5 % fail.
pub async fn sla(
    target: &Target,
    rate: usize,
    seconds: usize,
    axum_ceiling: Option<f64>,
) -> anyhow::Result<(Run, Vec<Figure>)> {
    let run = attack(
        target,
        reads()?,
        &target.consolidation_url,
        16,
        rate,
        seconds,
        "sla",
    )
    .await?;
    let ok = run.failure_ratio() <= 0.05;
    let mut rate_figure = Figure::new(
        "sla",
        &format!("achieved rate (asked {rate}/s)"),
        run.rate,
        "req/s",
    );
    if let Some(ceiling) = axum_ceiling {
        rate_figure = rate_figure.against("trivial axum handler", ceiling);
    }
    let figures = vec![
        Figure::new(
            "sla",
            "failure ratio (bound 5 %)",
            run.failure_ratio() * 100.0,
            "%",
        )
        .bound(ok),
        rate_figure,
        Figure::new("sla", "p50", run.p50, "ms"),
        Figure::new("sla", "p95", run.p95, "ms"),
        Figure::new("sla", "p99 (goal 20 ms)", run.p99, "ms").bound(run.p99 <= 20.0),
        Figure::new("sla", "p99 with CO back-fill", run.p99_mitigated, "ms"),
    ];
    Ok((run, figures))
}

/// `capacity`: read rate raised step by step until a failure appears, p99 exceeds 100 ms, or
/// the achieved rate stops growing (the service is saturated: raising the asked rate adds less
/// than 5 %), while the ledger receives open-loop writes at `write_rate`/s in the background
/// (0: none) through the same target. Reports the highest achieved read rate of a passing step
/// beside the trivial axum handler.
///
/// The achieved rate, not the asked one, is the figure: goose's throttle releases its tokens
/// after timer sleeps that overshoot, so it delivers 88-94 % of the asked rate even to a service
/// answering in 2 ms (a rule of "at least 90 % of the asked rate" failed steps the service
/// passed).
pub async fn capacity(
    target: &Target,
    steps: &[usize],
    seconds: usize,
    axum_ceiling: f64,
    write_rate: usize,
) -> anyhow::Result<Vec<Figure>> {
    let started = std::time::Instant::now();
    let writer = if write_rate > 0 {
        Some(crate::writer::Writer::start(
            crate::writer::WriterConfig {
                base_url: target.ledger_url.clone(),
                merchants: Arc::new(target.merchants.clone()),
                tokens: Arc::new(target.tokens.clone()),
                rate: write_rate as f64,
                description: "capacity".into(),
                retry_deadline: Duration::from_secs(30),
            },
            started,
        )?)
    } else {
        None
    };
    let mut best: Option<Run> = None;
    let mut searched = Ok(());
    for &rate in steps {
        let metrics = match attack_metrics(
            target,
            reads()?,
            &target.consolidation_url,
            64,
            rate,
            seconds,
            &format!("capacity-{rate}"),
        )
        .await
        {
            Ok(metrics) => metrics,
            Err(e) => {
                searched = Err(e);
                break;
            }
        };
        let run = summarize(&metrics);
        let kinds: Vec<String> = metrics
            .requests
            .iter()
            .map(|(name, kind)| {
                format!(
                    "{name} {} ({} failed) p99 {:.1} ms",
                    kind.success_count + kind.fail_count,
                    kind.fail_count,
                    kind.raw_data.percentile_us(0.99) as f64 / 1000.0
                )
            })
            .collect();
        println!(
            "capacity: asked {rate}/s got {:.0}/s, failures {}, p99 {:.1} ms (writes {write_rate}/s behind): {}",
            run.rate,
            run.failures,
            run.p99,
            kinds.join(", ")
        );
        if run.failures > 0 || run.p99 > 100.0 {
            break;
        }
        let previous = best.map_or(0.0, |b| b.rate);
        if run.rate > previous {
            best = Some(run);
        }
        if run.rate < previous * 1.05 {
            break;
        }
    }
    let writes = match writer {
        Some(writer) => writer.stop().await,
        None => Vec::new(),
    };
    searched?;
    let best = best.unwrap_or(Run {
        requests: 0,
        failures: 0,
        rate: 0.0,
        p50: 0.0,
        p95: 0.0,
        p99: 0.0,
        p99_mitigated: 0.0,
    });
    let summary = crate::writer::WriteSummary::of(&writes);
    let mut figures = vec![
        Figure::new(
            "capacity",
            &format!("highest passing read rate, writes {write_rate}/s (goal 10 000)"),
            best.rate,
            "req/s",
        )
        .against("trivial axum handler", axum_ceiling)
        .bound(best.rate >= 10_000.0),
        Figure::new("capacity", "p99 at that rate", best.p99, "ms"),
    ];
    if write_rate == 0 {
        return Ok(figures);
    }
    figures.extend([
        Figure::new(
            "capacity",
            &format!("background writes accepted (asked {write_rate}/s)"),
            (summary.writes - summary.failed) as f64 / started.elapsed().as_secs_f64().max(0.001),
            "req/s",
        ),
        Figure::new(
            "capacity",
            "background writes failed (after retries)",
            summary.failed as f64,
            "POSTs",
        ),
        Figure::new("capacity", "background write p99", summary.p99_ms, "ms"),
    ]);
    Ok(figures)
}

/// `ledger-writes`: POST rate raised step by step; the highest with zero errors, judged against
/// `pgbench` (measured in the same run) when there is one to judge it by.
pub async fn ledger_writes(
    target: &Target,
    steps: &[usize],
    seconds: usize,
    pgbench: Option<f64>,
) -> anyhow::Result<Vec<Figure>> {
    let scenario = || scenario!("writes").register_transaction(transaction!(post_entry));
    let mut best: Option<Run> = None;
    for &rate in steps {
        let run = attack(
            target,
            scenario(),
            &target.ledger_url,
            32,
            rate,
            seconds,
            &format!("ledger-writes-{rate}"),
        )
        .await?;
        println!(
            "ledger-writes: asked {rate}/s got {:.0}/s, failures {}, p99 {:.1} ms",
            run.rate, run.failures, run.p99
        );
        if run.failures > 0 || run.rate < 0.9 * rate as f64 {
            break;
        }
        best = Some(run);
    }
    let best = best.unwrap_or(Run {
        requests: 0,
        failures: 0,
        rate: 0.0,
        p50: 0.0,
        p95: 0.0,
        p99: 0.0,
        p99_mitigated: 0.0,
    });
    let mut highest = Figure::new(
        "ledger-writes",
        "highest sustained POST rate, 0 errors",
        best.rate,
        "req/s",
    );
    if let Some(pgbench) = pgbench {
        highest = highest
            .against("pgbench, the ledger's statement", pgbench)
            .bound(best.rate >= 0.5 * pgbench);
    }
    Ok(vec![
        highest,
        Figure::new("ledger-writes", "p99 at that rate", best.p99, "ms"),
    ])
}

/// `e2e-lag`: POSTs at `rate`/s for `seconds`; then, per entry, the time from the ledger
/// committing it to the consolidation applying it (from both databases' clocks, which are the
/// same PostgreSQL here). In-process targets only. The apply rate is shown beside the emulator's
/// receive+delete rate measured in the same run.
pub async fn e2e_lag(
    target: &Target,
    rate: usize,
    seconds: usize,
    localstack: crate::ceilings::LocalStack,
) -> anyhow::Result<Vec<Figure>> {
    let local = target
        .local
        .as_ref()
        .context("e2e-lag needs the platform started by this process")?;
    // Start from a drained pipeline: a backlog left by an earlier scenario would be measured.
    local
        .system
        .lock()
        .await
        .wait_consistent(&target.merchants, Duration::from_secs(600))
        .await?;
    let scenario = scenario!("e2e").register_transaction(transaction!(post_e2e));
    let metrics = local.system.lock().await.consolidation_metrics.clone();
    let batches = || {
        let consumer = &metrics.as_ref()?.consumer;
        Some((consumer.received.get(), consumer.apply_seconds.count()))
    };
    let batches_before = batches();
    let meter = crate::drain::CpuMeter::start(local.stack).await;
    let run = attack(
        target,
        scenario,
        &target.ledger_url,
        32,
        rate,
        seconds,
        "e2e-lag",
    )
    .await?;
    let busy = meter.stop(local.stack).await;
    let batches_after = batches();
    let system = local.system.lock().await;
    system
        .wait_consistent(&target.merchants, Duration::from_secs(300))
        .await?;
    let ledger = system.ledger_scope.pg_pool().await?;
    let consolidation = system.consolidation_scope.pg_pool().await?;
    let journeys = recorded_and_applied(&ledger, &consolidation, "e2e").await?;
    let ms = |from: time::OffsetDateTime, to: time::OffsetDateTime| {
        (to - from).as_seconds_f64() * 1000.0
    };
    let sorted = |values: &mut dyn Iterator<Item = f64>| {
        let mut values: Vec<f64> = values.collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let lags = sorted(&mut journeys.iter().map(|j| ms(j.recorded, j.applied)));
    // The two halves: the ledger's relay, and the consumer (SQS's queueing included).
    let relayed = sorted(
        &mut journeys
            .iter()
            .filter_map(|j| Some(ms(j.recorded, j.published?))),
    );
    let consumed = sorted(
        &mut journeys
            .iter()
            .filter_map(|j| Some(ms(j.published?, j.applied))),
    );
    let at = crate::latency::percentile;
    let span = journeys
        .iter()
        .map(|j| j.recorded)
        .min()
        .zip(journeys.iter().map(|j| j.applied).max());
    let apply_rate = span.map_or(0.0, |(first, last)| {
        lags.len() as f64 / (last - first).as_seconds_f64().max(0.001)
    });
    let mut figures = vec![
        Figure::new(
            "e2e-lag",
            &format!("POST rate achieved (asked {rate}/s)"),
            run.rate,
            "req/s",
        ),
        Figure::new("e2e-lag", "entries measured", lags.len() as f64, ""),
        Figure::new("e2e-lag", "lag p50", at(&lags, 0.5), "ms"),
        Figure::new("e2e-lag", "lag p99 (goal 1000 ms)", at(&lags, 0.99), "ms")
            .bound(at(&lags, 0.99) <= 1000.0),
        // Why the lag grows at a rate the receive+delete ceiling alone would allow: each event
        // is also sent through the same one-request-at-a-time emulator.
        Figure::new("e2e-lag", "POST rate achieved", run.rate, "req/s").against(
            "LocalStack whole path (send, receive, delete)",
            localstack.whole_path(),
        ),
        Figure::new(
            "e2e-lag",
            "apply rate (bounded by the POST rate)",
            apply_rate,
            "events/s",
        )
        .against("LocalStack receive+delete", localstack.receive_delete),
    ];
    for (half, lags) in [
        ("commit to publish (relay)", &relayed),
        ("publish to apply (consumer)", &consumed),
    ] {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            figures.push(Figure::new(
                "e2e-lag",
                &format!("{half}, {name}"),
                at(lags, q),
                "ms",
            ));
        }
    }
    // How full the consumer's batches were: a receive returns what is there, up to ten, so a
    // live queue costs the emulator more calls per event than a filled one.
    if let (Some((received_0, batches_0)), Some((received_1, batches_1))) =
        (batches_before, batches_after)
    {
        figures.push(Figure::new(
            "e2e-lag",
            "events per applied batch, mean (at most 10)",
            (received_1 - received_0) as f64 / (batches_1 - batches_0).max(1) as f64,
            "",
        ));
    }
    // The whole path again, at the CPU the emulator got while the POSTs ran rather than the
    // CPU it had to itself: the rate it could serve then, which the POSTs are judged against.
    if let (Some(during), Some(alone)) = (busy.emulator, localstack.emulator_cpu) {
        figures.push(
            Figure::new("e2e-lag", "POST rate achieved", run.rate, "req/s").against(
                "LocalStack whole path at its CPU during the POSTs",
                localstack.whole_path() * during / alone.max(f64::EPSILON),
            ),
        );
    }
    // Who used the two cores while the POSTs ran: the emulator serves the relay's sends and the
    // consumer's receives and deletes; this process runs goose, the ledger and the consolidation.
    figures.extend(busy.figures(
        "e2e-lag",
        "the POSTs",
        "this process (goose, ledger, consolidation)",
    ));
    Ok(figures)
}

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

    let scenario = || scenario!("writes").register_transaction(transaction!(post_entry));
    let idle = attack(
        target,
        scenario(),
        &target.ledger_url,
        32,
        rate,
        seconds,
        "replay-idle",
    )
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
    let during = attack(
        target,
        scenario(),
        &target.ledger_url,
        32,
        rate,
        seconds,
        "replay-during",
    )
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

/// Each applied entry described `description`: when the ledger committed it and when the
/// consolidation applied its event (both clocks are this machine's). Entries not applied yet
/// are left out.
pub(crate) async fn recorded_and_applied(
    ledger: &sqlx::PgPool,
    consolidation: &sqlx::PgPool,
    description: &str,
) -> anyhow::Result<Vec<Journey>> {
    let recorded: Vec<(
        uuid::Uuid,
        time::OffsetDateTime,
        Option<time::OffsetDateTime>,
    )> = sqlx::query_as(
        "SELECT o.event_id, e.recorded_at, o.published_at FROM outbox o \
             JOIN entries e ON e.id = (o.payload->>'entry_id')::uuid WHERE e.description = $1",
    )
    .bind(description)
    .fetch_all(ledger)
    .await?;
    let applied: std::collections::HashMap<uuid::Uuid, time::OffsetDateTime> =
        sqlx::query_as("SELECT event_id, processed_at FROM processed_events")
            .fetch_all(consolidation)
            .await?
            .into_iter()
            .collect();
    Ok(recorded
        .into_iter()
        .filter_map(|(event, recorded, published)| {
            applied.get(&event).map(|applied| Journey {
                recorded,
                published,
                applied: *applied,
            })
        })
        .collect())
}

/// When one event passed each stage (all on this machine's clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Journey {
    /// The ledger's commit.
    pub recorded: time::OffsetDateTime,
    /// The relay's publish to SQS, as the outbox row records it once SQS accepted it; `None`
    /// when the row was not marked (a relay stopped between the send and the mark).
    pub published: Option<time::OffsetDateTime>,
    /// The consumer's commit.
    pub applied: time::OffsetDateTime,
}
