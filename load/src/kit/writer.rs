//! Open-loop ledger writes in the background of a read scenario: POSTs at a steady rate whatever
//! the answers' latency. Each POST is sent at its scheduled time (a stall shows as latency, never
//! as a lower rate: no coordinated omission), carries its own `Idempotency-Key`, and is retried
//! like a real client retries (429, 502/503/504, a connection error or a timeout: the same key and
//! body again, after `Retry-After` or a short backoff, until a deadline). Every outcome is kept
//! with its scheduled time, so that it can be judged per fault window and the accepted entries
//! checked against the ledger afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// What to write, where, and how fast.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The ledger's (or the gateway's) base URL.
    pub base_url: String,
    /// Merchants written to, in turn.
    pub merchants: Arc<Vec<String>>,
    /// A token per merchant (same order) with `entries:write`.
    pub tokens: Arc<Vec<String>>,
    /// POSTs per second.
    pub rate: f64,
    /// The entries' description (finds them in the ledger afterwards).
    pub description: String,
    /// How long a client keeps retrying one POST.
    pub retry_deadline: Duration,
}

/// An entry the ledger accepted (answered 201).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its id.
    pub id: String,
    /// `credit` or `debit`.
    pub kind: &'static str,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Its business date (`YYYY-MM-DD`).
    pub business_date: String,
}

/// The outcome of one POST, retries included.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// Index of the merchant in [`WriterConfig::merchants`].
    pub merchant: usize,
    /// Its scheduled send time, in seconds since the epoch given to [`Writer::start`].
    pub at: f64,
    /// From the scheduled send time to the final answer, in ms.
    pub latency_ms: f64,
    /// The final status (0: no answer: connection error or timeout).
    pub status: u16,
    /// Attempts made (1: no retry).
    pub attempts: u32,
    /// What it asked to record, answered or not: `credit` or `debit`, and the amount in minor
    /// units (the clients' history counts what was sent, not only what was acknowledged).
    pub sent: (&'static str, i64),
    /// The entry, when the ledger answered 201.
    pub accepted: Option<Accepted>,
}

/// A running writer.
#[derive(Debug)]
pub struct Writer {
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<Vec<WriteOutcome>>,
}

/// In-flight POSTs at most; beyond that, sending waits (and the wait shows as latency).
const MAX_IN_FLIGHT: usize = 1024;
/// Deadline of one attempt: above the gateway's own read deadline (15 s).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(16);

impl Writer {
    /// Starts writing at once; times are measured from `epoch`.
    pub fn start(config: WriterConfig, epoch: Instant) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.rate > 0.0 && !config.merchants.is_empty(),
            "a writer needs a rate and merchants"
        );
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(256)
            .build()?;
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run(config, http, epoch, stop.clone()));
        Ok(Self { stop, handle })
    }

    /// Stops scheduling new POSTs, waits for those in flight (each has its retry deadline) and
    /// returns every outcome.
    pub async fn stop(self) -> Vec<WriteOutcome> {
        self.stop.cancel();
        self.handle.await.unwrap_or_default()
    }
}

async fn run(
    config: WriterConfig,
    http: reqwest::Client,
    epoch: Instant,
    stop: CancellationToken,
) -> Vec<WriteOutcome> {
    let config = Arc::new(config);
    let interval = Duration::from_secs_f64(1.0 / config.rate);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut jobs = tokio::task::JoinSet::new();
    let mut outcomes = Vec::new();
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    for n in 0u64.. {
        let scheduled = started + interval * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep_until(scheduled.into()) => {}
        }
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            break;
        };
        while let Some(done) = jobs.try_join_next() {
            if let Ok(outcome) = done {
                outcomes.push(outcome);
            }
        }
        let (config, http) = (Arc::clone(&config), http.clone());
        let key = format!("{run_id}-{n}");
        jobs.spawn(async move {
            let outcome = post(&config, &http, n, &key, scheduled, epoch).await;
            drop(permit);
            outcome
        });
    }
    while let Some(done) = jobs.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by(|a, b| a.at.total_cmp(&b.at));
    outcomes
}

/// One POST, retried with the same key and body until it gets an answer that is not worth
/// retrying, or the deadline passes.
async fn post(
    config: &WriterConfig,
    http: &reqwest::Client,
    n: u64,
    key: &str,
    scheduled: Instant,
    epoch: Instant,
) -> WriteOutcome {
    let merchant = usize::try_from(n).unwrap_or_default() % config.merchants.len();
    let kind = if n.is_multiple_of(4) {
        "debit"
    } else {
        "credit"
    };
    let amount_minor = i64::try_from(100 + n % 50_000).unwrap_or(100);
    let body = serde_json::json!({
        "kind": kind,
        "amount": format!("{}.{:02}", amount_minor / 100, amount_minor % 100),
        "currency": "BRL",
        "description": config.description,
    });
    let url = format!(
        "{}/v1/merchants/{}/entries",
        config.base_url, config.merchants[merchant]
    );
    let deadline = scheduled + config.retry_deadline;
    let mut attempts = 0;
    let (status, accepted) = loop {
        attempts += 1;
        let answer = http
            .post(&url)
            .bearer_auth(&config.tokens[merchant])
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        let (status, retry_after) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                if status == 201 {
                    let entry: serde_json::Value = response.json().await.unwrap_or_default();
                    let accepted = Accepted {
                        id: entry["id"].as_str().unwrap_or_default().to_string(),
                        kind,
                        amount_minor,
                        business_date: entry["business_date"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    };
                    break (status, Some(accepted));
                }
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                (status, retry_after)
            }
            Err(_) => (0, None),
        };
        let retryable = matches!(status, 0 | 429 | 502 | 503 | 504);
        // Retry-After capped at 1 s: a client with a user waiting does not sleep longer, and the
        // key makes an early retry harmless.
        let pause = retry_after.map_or_else(
            || Duration::from_millis(50 << attempts.min(4)),
            |s| Duration::from_secs_f64(s.clamp(0.05, 1.0)),
        );
        if !retryable || Instant::now() + pause >= deadline {
            break (status, None);
        }
        tokio::time::sleep(pause).await;
    };
    WriteOutcome {
        merchant,
        at: scheduled.saturating_duration_since(epoch).as_secs_f64(),
        latency_ms: scheduled.elapsed().as_secs_f64() * 1000.0,
        status,
        attempts,
        sent: (kind, amount_minor),
        accepted,
    }
}

/// What a set of write outcomes shows.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct WriteSummary {
    /// POSTs scheduled.
    pub writes: usize,
    /// Without a 201 in the end.
    pub failed: usize,
    /// Retries made (attempts beyond the first).
    pub retries: usize,
    /// POSTs that needed at least one retry.
    pub retried: usize,
    /// Latency from the scheduled send to the final answer, ms.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
}

impl WriteSummary {
    /// The summary of `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a WriteOutcome>) -> Self {
        let mut summary = Self::default();
        let mut latencies = Vec::new();
        for outcome in outcomes {
            summary.writes += 1;
            summary.failed += usize::from(outcome.accepted.is_none());
            let retries = outcome.attempts.saturating_sub(1) as usize;
            summary.retries += retries;
            summary.retried += usize::from(retries > 0);
            latencies.push(outcome.latency_ms);
        }
        latencies.sort_by(f64::total_cmp);
        summary.p50_ms = testkit::stats::percentile(&latencies, 0.50);
        summary.p99_ms = testkit::stats::percentile(&latencies, 0.99);
        summary
    }
}
