//! Paced traffic through the gateway while the cluster changes under it: entries recorded at a
//! fixed rate (each with its own `Idempotency-Key`, as a client that may retry sends them) and
//! balances read, every request's outcome and latency kept, so that a test can say how many
//! failed, what the books must hold, and what p99 was in each window.
//!
//! At most [`IN_FLIGHT`] requests are out at once: on a machine too busy for the asked rate
//! (debug builds, tests running beside), the rate achieved drops instead of a queue growing
//! until requests hit their deadlines. These tests judge what a rollout does to requests, not
//! capacity (the load suite measures that); the figures say which rate was achieved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Most requests out at once.
const IN_FLIGHT: usize = 32;

/// One request and its outcome.
#[derive(Debug, Clone)]
pub struct Op {
    /// Since the traffic started.
    pub at: Duration,
    /// How long it took.
    pub latency: Duration,
    /// A write (POST of an entry) or a read (GET of a balance).
    pub write: bool,
    /// Which merchant.
    pub merchant: usize,
    /// The entry's amount in cents (writes).
    pub cents: u64,
    /// The entry's business date, as the ledger answered (writes that succeeded).
    pub date: Option<String>,
    /// `Err` with what went wrong for a transport error or an answer that is not 2xx.
    pub outcome: Result<(), String>,
    /// Why the request was sent a second time, if it was. Every request is safe to repeat (a
    /// GET, or a POST with the same `Idempotency-Key`), so the client repeats it once, as HTTP
    /// clients do.
    pub retried: Option<Retry>,
}

/// Why a request was sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retry {
    /// The first attempt failed before any answer: the gateway closed a kept-alive connection
    /// as the request went out (its old worker exiting after a reload).
    Connection(String),
    /// The service answered its own `503` with `Retry-After` (a dependency too slow on a busy
    /// machine), which asks the client to try again after that time.
    Unavailable,
}

/// Traffic running in the background.
pub struct Traffic {
    started: Instant,
    stop: CancellationToken,
    writes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<Op>>,
}

/// Where the traffic goes and how much of it.
pub struct Plan {
    /// The gateway's URL.
    pub gateway: String,
    /// Merchants and a token for each.
    pub merchants: Vec<(String, String)>,
    /// Entries recorded per second (all merchants together).
    pub writes_per_second: u32,
    /// Balances read per second.
    pub reads_per_second: u32,
    /// The date balances are read for.
    pub read_date: String,
}

impl Traffic {
    /// Starts sending.
    pub fn start(plan: Plan) -> Self {
        let started = Instant::now();
        let stop = CancellationToken::new();
        let writes = Arc::new(AtomicU64::new(0));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("an HTTP client");
        let task = tokio::spawn(run(plan, http, started, stop.clone(), Arc::clone(&writes)));
        Self {
            started,
            stop,
            writes,
            task,
        }
    }

    /// Since it started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `more` further writes were answered (a window of steady traffic).
    pub async fn run_for_writes(&self, more: u64) {
        let target = self.writes.load(Ordering::Relaxed) + more;
        harness::eventually(Duration::from_secs(120), "the traffic's writes", || async {
            (self.writes.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    /// Stops sending and returns every request once all have been answered.
    pub async fn stop(self) -> Vec<Op> {
        self.stop.cancel();
        self.task.await.expect("the traffic task ends")
    }
}

async fn run(
    plan: Plan,
    http: reqwest::Client,
    started: Instant,
    stop: CancellationToken,
    writes: Arc<AtomicU64>,
) -> Vec<Op> {
    let plan = Arc::new(plan);
    let mut requests = tokio::task::JoinSet::new();
    let every = |per_second: u32| Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
    let mut write_tick = tokio::time::interval(every(plan.writes_per_second));
    let mut read_tick = tokio::time::interval(every(plan.reads_per_second));
    // A tick missed while waiting for a permit is not made up for in a burst.
    write_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    read_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let (mut sent_writes, mut sent_reads) = (0usize, 0usize);
    let mut ops = Vec::new();
    loop {
        let write = tokio::select! {
            () = stop.cancelled() => break,
            _ = write_tick.tick(), if plan.writes_per_second > 0 => true,
            _ = read_tick.tick(), if plan.reads_per_second > 0 => false,
        };
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
        };
        let n = if write {
            &mut sent_writes
        } else {
            &mut sent_reads
        };
        let merchant = *n % plan.merchants.len();
        // Cents vary so that a lost or doubled entry shows in the sums, not only in the count.
        let cents = 100 + (*n as u64 % 97);
        *n += 1;
        let (plan, http, writes) = (Arc::clone(&plan), http.clone(), Arc::clone(&writes));
        requests.spawn(async move {
            let at = started.elapsed();
            let (name, token) = &plan.merchants[merchant];
            let key = uuid::Uuid::new_v4().to_string();
            let request = || {
                if write {
                    http.post(format!("{}/v1/merchants/{name}/entries", plan.gateway))
                        .bearer_auth(token)
                        .header("Idempotency-Key", &key)
                        .json(&serde_json::json!({
                            "kind": "credit",
                            "amount": format!("{}.{:02}", cents / 100, cents % 100),
                            "currency": "BRL",
                        }))
                } else {
                    http.get(format!(
                        "{}/v1/merchants/{name}/balances/{}",
                        plan.gateway, plan.read_date
                    ))
                    .bearer_auth(token)
                }
            };
            let sent = Instant::now();
            let mut retried = None;
            let mut outcome = answer(request().send().await).await;
            let again = match &outcome {
                Answer::NotSent(e) => Some(Retry::Connection(e.clone())),
                Answer::Unavailable { retry_after, .. } => {
                    tokio::time::sleep(Duration::from_secs((*retry_after).min(5))).await;
                    Some(Retry::Unavailable)
                }
                _ => None,
            };
            if let Some(again) = again {
                retried = Some(again);
                outcome = answer(request().send().await).await;
            }
            let (outcome, date) = match outcome {
                Answer::Ok(date) => (Ok(()), date),
                Answer::NotSent(e) | Answer::Failed(e) => (Err(e), None),
                Answer::Unavailable { body, .. } => {
                    (Err(format!("503 Service Unavailable: {body}")), None)
                }
            };
            if write {
                writes.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
            op(at, sent, write, merchant, cents, date, outcome, retried)
        });
        // Keep the set small: collect what is done.
        while let Some(done) = requests.try_join_next() {
            ops.extend(done.ok());
        }
    }
    // The answers still coming.
    while let Some(done) = requests.join_next().await {
        ops.extend(done.ok());
    }
    ops
}

/// The `q` quantile (0..=1) of the latencies of `ops`, in milliseconds.
pub fn quantile_ms<'a>(ops: impl IntoIterator<Item = &'a Op>, q: f64) -> f64 {
    let mut latencies: Vec<f64> = ops
        .into_iter()
        .map(|op| op.latency.as_secs_f64() * 1e3)
        .collect();
    if latencies.is_empty() {
        return f64::NAN;
    }
    latencies.sort_by(f64::total_cmp);
    let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
    latencies[index.min(latencies.len() - 1)]
}

/// What came back, sorted by what a client does next.
enum Answer {
    /// 2xx, with the entry's business date for a write.
    Ok(Option<String>),
    /// No answer: the connection failed as the request went out; safe to send again.
    NotSent(String),
    /// The service's own 503 with `Retry-After` (not the gateway's "no replica answered").
    Unavailable { retry_after: u64, body: String },
    /// Anything else.
    Failed(String),
}

async fn answer(sent: Result<reqwest::Response, reqwest::Error>) -> Answer {
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_request() && !e.is_timeout() => return Answer::NotSent(chain(&e)),
        Err(e) => return Answer::Failed(chain(&e)),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        return Answer::Ok(body["business_date"].as_str().map(String::from));
    }
    let body = response.text().await.unwrap_or_default();
    match retry_after {
        Some(retry_after)
            if status == 503 && body.contains("cashflow.dev/problems/unavailable") =>
        {
            Answer::Unavailable { retry_after, body }
        }
        _ => Answer::Failed(format!("{status}: {body}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn op(
    at: Duration,
    sent: Instant,
    write: bool,
    merchant: usize,
    cents: u64,
    date: Option<String>,
    outcome: Result<(), String>,
    retried: Option<Retry>,
) -> Op {
    Op {
        at,
        latency: sent.elapsed(),
        write,
        merchant,
        cents,
        date,
        outcome,
        retried,
    }
}

/// An error with its causes (reqwest's own message names only the URL).
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
