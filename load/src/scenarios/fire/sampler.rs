//! What `sla-under-fire` records: every read with its start time, outcome and latency (body
//! read included), and every `fire` entry's end-to-end lag, all on the scenario's clock, so that
//! the judge can cut them by fault window.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use goose::goose::GooseResponse;
use goose::prelude::*;
use testkit::books::DayTotals;
use testkit::history::{Day, History, Read, marked_stale};

use super::clock::{epoch, since_epoch};
use super::platform::Platform;
use super::windows::Window;
use crate::kit::goose::{Step, request_balance, request_report, transaction};
use crate::kit::journey::recorded_and_applied;
use crate::kit::target::Target;
use crate::kit::writer::WriteOutcome;

/// One read, as the goose user saw it.
#[derive(Debug, Clone, Copy)]
pub struct ReadSample {
    /// Start, seconds since the epoch.
    pub at: f64,
    pub latency_ms: f64,
    pub ok: bool,
    /// 0: no answer.
    pub status: u16,
    /// Answered with the last invalidated answer, marked stale, because the consolidation's
    /// PostgreSQL was unavailable (ADR 0015): a success, counted apart.
    pub stale: bool,
}

/// One pass: its rate, windows and samples.
#[derive(Debug)]
pub struct Pass {
    pub rate: usize,
    pub users: usize,
    pub start: f64,
    pub end: f64,
    pub windows: Vec<Window>,
    pub reads: Vec<ReadSample>,
    pub writes: Vec<WriteOutcome>,
    /// goose's own p99 with its co-mitigation (whole pass, busiest request kind).
    pub goose_p99_co: f64,
}

/// The reads of one pass: balances 4 : reports 1 of `target`, each recorded; the balance reads
/// also in the clients' history (each goose user a client).
#[derive(Debug)]
pub struct Reads {
    target: Target,
    samples: Mutex<Vec<ReadSample>>,
    history: Arc<History>,
    /// Added to each goose user's index to name its client: passes apart.
    first_client: usize,
}

impl Reads {
    pub fn new(target: Target, history: Arc<History>, first_client: usize) -> Arc<Self> {
        Arc::new(Self {
            target,
            samples: Mutex::default(),
            history,
            first_client,
        })
    }

    /// The goose scenario recording into `self`.
    pub fn scenario(self: &Arc<Self>) -> anyhow::Result<Scenario> {
        Ok(scenario!("sla-under-fire")
            .register_transaction(transaction(self, balance).set_weight(4)?)
            .register_transaction(transaction(self, report).set_weight(1)?))
    }

    /// The reads recorded so far.
    pub fn take(&self) -> Vec<ReadSample> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records a read: goose's response time (from the send, after its throttle let the
    /// request go) plus the time to read the body. A balance read (`client` given) goes into
    /// the clients' history too.
    async fn record(&self, response: GooseResponse, client: Option<usize>) {
        let metric = &response.request;
        let (status, mut ok) = (metric.status_code, metric.success);
        let stale = response.response.as_ref().is_ok_and(|r| {
            marked_stale(
                r.headers()
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok()),
            )
        });
        let sent_to_headers = Duration::from_millis(metric.response_time)
            + Duration::from_micros(u64::from(metric.response_time_fraction_us));
        let body_started = Instant::now();
        let mut body = None;
        if let Ok(response) = response.response {
            let bytes = response.bytes().await;
            ok &= bytes.is_ok();
            body = bytes.ok();
        }
        let latency = sent_to_headers + body_started.elapsed();
        let start = body_started
            .checked_sub(sent_to_headers)
            .unwrap_or(body_started);
        if let (Some(client), Some(day)) = (client, balance_day(&metric.raw.url)) {
            let totals = body
                .as_deref()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|answer| DayTotals::of_balance(&answer));
            self.history.read(Read {
                client: self.first_client + client,
                day,
                start,
                end: Instant::now(),
                status: Some(status).filter(|s| *s != 0),
                totals: totals.filter(|_| status == 200),
                stale,
            });
        }
        let sample = ReadSample {
            at: since_epoch(start),
            latency_ms: latency.as_secs_f64() * 1000.0,
            ok,
            status,
            stale,
        };
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
    }
}

fn balance(user: &mut GooseUser, reads: Arc<Reads>) -> Step<'_> {
    Box::pin(async move {
        let response = request_balance(user, &reads.target).await?;
        reads
            .record(response, Some(user.weighted_users_index))
            .await;
        Ok(())
    })
}

fn report(user: &mut GooseUser, reads: Arc<Reads>) -> Step<'_> {
    Box::pin(async move {
        let response = request_report(user, &reads.target).await?;
        reads.record(response, None).await;
        Ok(())
    })
}

/// The merchant's day a balance read's URL names (`.../v1/merchants/{m}/balances/{date}`).
fn balance_day(url: &str) -> Option<Day> {
    let path = url.split('?').next()?;
    let (before, date) = path.rsplit_once("/balances/")?;
    let merchant = before.rsplit_once("/v1/merchants/")?.1;
    Some(Day::new(merchant, date))
}

/// End-to-end lag of each `fire` entry: (recorded at, seconds since the epoch; lag in ms), from
/// the ledger's commit time to the consolidation's apply time (both machines' clocks are this
/// machine's).
pub async fn lags(platform: &Platform<'_>) -> anyhow::Result<Vec<(f64, f64)>> {
    let ledger = platform.ledger_scope.pg_pool().await?;
    let consolidation = platform.consolidation_scope.pg_pool().await?;
    let applied = recorded_and_applied(&ledger, &consolidation, "fire").await?;
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
