//! The goose glue every scenario uses: transactions that carry their scenario's state (typed,
//! captured by the transaction: no global), the requests they make, and one attack's run with
//! its summary.
//!
//! Coordinated omission: every attack uses `--co-mitigation average`: when a request takes
//! longer than a user's average cadence, goose back-fills the requests that user would have sent
//! meanwhile, so a stall shows in the percentiles instead of silently lowering the rate. Both
//! the raw and the mitigated p99 are reported.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use goose::config::GooseConfiguration;
use goose::goose::GooseResponse;
use goose::metrics::{GooseCoordinatedOmissionMitigation, GooseMetrics};
use goose::prelude::*;
use rand::Rng;

use super::report;
use super::target::Target;

/// What a transaction returns: a future borrowing the goose user.
pub type Step<'u> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'u>>;

/// A goose transaction running `run` with `state`, the scenario's own (its target, its
/// samples): goose transactions are called with the user alone, so the state is captured here.
pub fn transaction<S: Send + Sync + 'static>(
    state: &Arc<S>,
    run: for<'u> fn(&'u mut GooseUser, Arc<S>) -> Step<'u>,
) -> Transaction {
    let state = Arc::clone(state);
    Transaction::new(Arc::new(move |user| run(user, Arc::clone(&state))))
}

/// Balance and report reads (4 : 1) of random merchants and days of `target`.
pub fn reads(target: &Target) -> anyhow::Result<Scenario> {
    let target = Arc::new(target.clone());
    Ok(scenario!("reads")
        .register_transaction(transaction(&target, read_balance).set_weight(4)?)
        .register_transaction(transaction(&target, read_report).set_weight(1)?))
}

fn read_balance(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        request_balance(user, &target).await?;
        Ok(())
    })
}

fn read_report(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        request_report(user, &target).await?;
        Ok(())
    })
}

/// POSTs of entries described `description` to `target`'s merchants in turn.
pub fn writes(target: &Target, description: &'static str) -> Scenario {
    let post = Arc::new((target.clone(), description));
    scenario!("writes").register_transaction(transaction(&post, post_described))
}

fn post_described<'u>(user: &'u mut GooseUser, post: Arc<(Target, &'static str)>) -> Step<'u> {
    Box::pin(async move { post_entry(user, &post.0, post.1).await })
}

/// A counter making each POST's amount distinct.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// POSTs an entry with `description` (e2e-lag finds its own entries by it).
pub async fn post_entry(
    user: &mut GooseUser,
    target: &Target,
    description: &str,
) -> TransactionResult {
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

fn pick(target: &Target) -> (usize, String) {
    let mut rng = rand::thread_rng();
    let merchant = rng.gen_range(0..target.merchants.len());
    let day = Target::today() - time::Duration::days(rng.gen_range(0..target.days.max(1)));
    (merchant, cashflow_contracts::business_date::format(day))
}

/// GETs sent a second time because their connection closed before any answer came.
static RESENT_GETS: AtomicU64 = AtomicU64::new(0);

/// How many GETs this process sent a second time, on a new connection, because the first
/// connection closed before any answer came (see [`get_as`]).
pub fn resent_gets() -> u64 {
    RESENT_GETS.load(Ordering::Relaxed)
}

/// A GET of `path` (on goose's host, or a whole URL) with `token`, named `name` in goose's
/// metrics (any 2xx is a success).
///
/// A GET that got no answer because its connection failed (not a timeout) is sent once more,
/// on a new connection, as RFC 9112 §9.3.1 lets a client do with an idempotent request and as
/// browsers do: a gateway that reloads closes its idle keep-alive connections, and a request
/// sent on one at that instant is never answered. The answer's time counts from the first
/// send; goose's own table keeps the first attempt as a failure; [`resent_gets`] counts them.
pub async fn get_as(
    user: &mut GooseUser,
    path: &str,
    token: &str,
    name: &str,
) -> Result<GooseResponse, Box<TransactionError>> {
    let first_sent = std::time::Instant::now();
    let first = get_once(user, path, token, name).await?;
    match &first.response {
        Err(e) if e.is_request() && !e.is_timeout() => {
            RESENT_GETS.fetch_add(1, Ordering::Relaxed);
            let mut second = get_once(user, path, token, name).await?;
            let micros = u64::try_from(first_sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            second.request.response_time = micros / 1000;
            second.request.response_time_fraction_us = u16::try_from(micros % 1000).unwrap_or(0);
            Ok(second)
        }
        _ => Ok(first),
    }
}

async fn get_once(
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
pub async fn post_entry_as(
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

/// A balance read of a random merchant and day (of the target's days).
pub async fn request_balance(
    user: &mut GooseUser,
    target: &Target,
) -> Result<GooseResponse, Box<TransactionError>> {
    let (m, day) = pick(target);
    let path = format!("/v1/merchants/{}/balances/{day}", target.merchants[m]);
    get_as(user, &path, &target.tokens[m], "balance").await
}

/// The report of a random merchant over the target's days.
pub async fn request_report(
    user: &mut GooseUser,
    target: &Target,
) -> Result<GooseResponse, Box<TransactionError>> {
    let (m, _) = pick(target);
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

/// What a goose run measured.
#[derive(Debug, Clone, Copy, Default)]
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

    /// The summary of goose's metrics, all request kinds together.
    pub fn of(metrics: &GooseMetrics) -> Self {
        let mut requests = 0;
        let mut failures = 0;
        let mut raw = Vec::new();
        let mut mitigated = Vec::new();
        for aggregate in metrics.requests.values() {
            requests += sent(aggregate);
            failures += failed(aggregate);
            raw.push(&aggregate.raw_data);
            mitigated.push(
                aggregate
                    .coordinated_omission_data
                    .as_ref()
                    .unwrap_or(&aggregate.raw_data),
            );
        }
        Self {
            requests,
            failures,
            rate: requests as f64 / metrics.duration.max(1) as f64,
            p50: percentile_ms(&raw, 0.5),
            p95: percentile_ms(&raw, 0.95),
            p99: percentile_ms(&raw, 0.99),
            p99_mitigated: percentile_ms(&mitigated, 0.99),
        }
    }
}

/// The requests of a kind goose really sent. Its success and failure counts also count the
/// requests its coordinated-omission mitigation back-fills after a stall (goose 0.19 increments
/// them for each synthetic time), which were never sent: a rate or a CPU-per-request figure
/// made from them overstates what the service did. The raw times hold only the real ones.
pub fn sent(aggregate: &goose::metrics::GooseRequestMetricAggregate) -> usize {
    aggregate.raw_data.counter
}

/// The failures of a kind, at most the requests sent (a back-filled copy of a failed request
/// counts as a failure too: never fewer than the real ones).
pub fn failed(aggregate: &goose::metrics::GooseRequestMetricAggregate) -> usize {
    aggregate.fail_count.min(sent(aggregate))
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

/// One goose attack: `users` users on `host`, at most `rate` requests/s (0: unthrottled), for
/// `seconds`; goose's HTML report goes to `target/load/<report>.html`.
#[derive(Debug, Clone)]
pub struct Attack<'a> {
    /// Where relative paths go (a whole URL in a request overrides it).
    pub host: &'a str,
    /// goose users, all started at once.
    pub users: usize,
    /// Requests per second at most, all users together (0: unthrottled).
    pub rate: usize,
    /// How long it runs.
    pub seconds: usize,
    /// goose's HTML report: `target/load/<report>.html`.
    pub report: &'a str,
}

impl Attack<'_> {
    /// Runs `scenario` and summarises it.
    pub async fn run(&self, scenario: Scenario) -> anyhow::Result<Run> {
        Ok(Run::of(&self.metrics(scenario).await?))
    }

    /// Runs `scenario`, returning goose's metrics (per request name).
    pub async fn metrics(&self, scenario: Scenario) -> anyhow::Result<GooseMetrics> {
        let html = report::dir().join(format!("{}.html", self.report));
        let users = self.users;
        let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?
            .register_scenario(scenario)
            .set_default(GooseDefault::Host, self.host)?
            .set_default(GooseDefault::Users, users)?
            .set_default(GooseDefault::IncreaseRate, users.to_string().as_str())?
            .set_default(GooseDefault::RunTime, self.seconds)?
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
        if self.rate > 0 {
            attack = attack.set_default(GooseDefault::ThrottleRequests, self.rate)?;
        }
        attack.execute().await.context("running goose")
    }
}
