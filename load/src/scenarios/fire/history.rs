//! The clients' history of `sla-under-fire` (issue 30), checked with [`testkit::history`]: every
//! balance read (each goose user a client, recorded by the sampler) and every write, from the
//! seeded books on. After the drain: monotonic reads per client on answers not marked stale,
//! read validity, and every acknowledged entry listed by the ledger.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use testkit::history::{Day, History, Verdict, Write};

use super::books::ledger_day;
use super::clock::epoch;
use crate::kit::target::Target;
use crate::kit::writer::WriteOutcome;
use testkit::books::{DayTotals, consolidated_day};

/// How long after its acknowledgement an entry may still be missing from a fresh balance: the
/// longest fault windows hold the pipeline for 10 s (SQS or Redis frozen), and the backlog
/// drains after that. The check reports the largest lag it saw.
pub const LAG_ALLOWANCE: Duration = Duration::from_secs(60);

/// Clients numbered apart per pass: pass `n`'s goose users are `n * CLIENTS_PER_PASS + user`.
pub const CLIENTS_PER_PASS: usize = 10_000;

/// A new history whose baseline is every merchant-day's balance now (the seeded books, which
/// agree), read through the gateway.
pub async fn start(target: &Target) -> anyhow::Result<Arc<History>> {
    let history = Arc::new(History::default());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let today = Target::today();
    let mut jobs = tokio::task::JoinSet::new();
    for (m, merchant) in target.merchants.iter().enumerate() {
        for d in 0..target.days {
            let date = cashflow_contracts::business_date::format(today - time::Duration::days(d));
            let (http, base, token, merchant) = (
                http.clone(),
                target.consolidation_url.clone(),
                target.tokens[m].clone(),
                merchant.clone(),
            );
            jobs.spawn(async move {
                let totals = DayTotals::from(
                    &consolidated_day(&http, &base, &token, &merchant, &date).await?,
                );
                anyhow::Ok((Day::new(merchant, date), totals))
            });
            while jobs.len() >= 16 {
                if let Some(done) = jobs.join_next().await {
                    let (day, totals) = done??;
                    history.baseline(day, totals);
                }
            }
        }
    }
    while let Some(done) = jobs.join_next().await {
        let (day, totals) = done??;
        history.baseline(day, totals);
    }
    Ok(history)
}

/// Records a pass's writes: from the scheduled send to the last answer, on today's date when
/// the ledger gave none (it records undated entries on the merchant's today).
pub fn record_writes(history: &History, target: &Target, writes: &[WriteOutcome]) {
    let today = cashflow_contracts::business_date::format(Target::today());
    for write in writes {
        let start = epoch() + Duration::from_secs_f64(write.at);
        let (kind, amount) = write.sent;
        let date = write
            .accepted
            .as_ref()
            .map_or_else(|| today.clone(), |a| a.business_date.clone());
        history.write(Write {
            client: write.merchant,
            day: Day::new(target.merchants[write.merchant].clone(), date),
            totals: DayTotals::entry(kind == "credit", amount),
            start,
            end: (start + Duration::from_secs_f64(write.latency_ms / 1000.0)).min(Instant::now()),
            acknowledged: write.accepted.as_ref().map(|a| a.id.clone()),
        });
    }
}

/// The checks, once the pipeline has drained: the ledger's list of each day with an
/// acknowledged entry, then [`History::check`].
pub async fn check(target: &Target, history: &History) -> anyhow::Result<Verdict> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let index: std::collections::HashMap<&str, usize> = target
        .merchants
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut listed = HashSet::new();
    let mut jobs = tokio::task::JoinSet::new();
    for day in history.acknowledged_days() {
        let m = index
            .get(day.merchant.as_str())
            .copied()
            .unwrap_or_default();
        let (http, base, token) = (
            http.clone(),
            target.ledger_url.clone(),
            target.tokens[m].clone(),
        );
        jobs.spawn(async move { ledger_day(&http, &base, &day.merchant, &token, &day.date).await });
        while jobs.len() >= 16 {
            if let Some(done) = jobs.join_next().await {
                listed.extend(done??.into_iter().map(|entry| entry.id));
            }
        }
    }
    while let Some(done) = jobs.join_next().await {
        listed.extend(done??.into_iter().map(|entry| entry.id));
    }
    Ok(history.check(&listed, LAG_ALLOWANCE))
}

/// The counts, for the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub reads_checked: u64,
    pub reads_stale: u64,
    pub reads_failed: u64,
    pub regressions_on_fresh_answers: u64,
    pub reads_outside_validity: u64,
    pub acknowledged: u64,
    pub acknowledged_missing: u64,
    pub max_lag_ms: u128,
    pub lag_allowance_ms: u128,
    pub holds: bool,
}

impl From<&Verdict> for Counts {
    fn from(v: &Verdict) -> Self {
        Self {
            reads_checked: v.reads_checked,
            reads_stale: v.reads_stale,
            reads_failed: v.reads_failed,
            regressions_on_fresh_answers: v.regressions,
            reads_outside_validity: v.invalid,
            acknowledged: v.acknowledged,
            acknowledged_missing: v.missing,
            max_lag_ms: v.max_lag.as_millis(),
            lag_allowance_ms: LAG_ALLOWANCE.as_millis(),
            holds: v.holds(),
        }
    }
}
