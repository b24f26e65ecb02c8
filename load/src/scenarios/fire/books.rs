//! The system invariant, checked through the HTTP APIs (the gateway, caches included): for every
//! merchant and day, the consolidated totals (testkit's reader of a day's balance) equal the
//! totals of the ledger's entries; every write answered 201 is in the ledger; no entry is listed
//! twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use testkit::books::{DayTotals, consolidated_day, minor_units};

use crate::kit::target::Target;
use crate::kit::writer::Accepted;

/// The invariant, checked through the HTTP APIs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Invariant {
    /// Merchant-days compared.
    pub merchant_days: usize,
    /// Those whose consolidated totals differ from the ledger's entries (first 20 shown).
    pub differing: Vec<String>,
    pub differing_count: usize,
    /// Writes answered 201 that the ledger does not list.
    pub accepted_missing: usize,
    /// Entries listed twice.
    pub duplicates: usize,
    /// Entries of this run's writes that the ledger recorded but no client got a 201 for (the
    /// client gave up retrying): not a violation, the entry is counted once.
    pub recorded_without_201: usize,
    /// Seconds waited for the pipeline to drain.
    pub drained_after_s: f64,
}

impl Invariant {
    /// Whether the invariant holds.
    pub fn holds(&self) -> bool {
        self.differing_count == 0 && self.accepted_missing == 0 && self.duplicates == 0
    }
}

/// One entry as the ledger lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: String,
    pub credit: bool,
    pub minor: i64,
    pub description: String,
}

/// The totals of a day's listed entries.
fn totals(entries: &[Listed]) -> DayTotals {
    let mut totals = DayTotals::default();
    for entry in entries {
        if entry.credit {
            totals.credits_minor += entry.minor;
        } else {
            totals.debits_minor += entry.minor;
        }
        totals.entry_count += 1;
    }
    totals
}

/// Compares, until they agree or `timeout` passes, every merchant-day's consolidated balance with
/// the ledger's entries, both read through the gateway; checks the accepted writes are listed.
pub async fn check_books(
    target: &Target,
    accepted: &[(usize, Accepted)],
    timeout: Duration,
) -> anyhow::Result<Invariant> {
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
                    let consolidated = consolidated_day(&http, &base, &token, &merchant, &date)
                        .await
                        .map(|day| DayTotals::from(&day));
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
        let mut books = Invariant::default();
        let mut listed: HashSet<String> = HashSet::new();
        let mut fire_ids: HashSet<String> = HashSet::new();
        for (m, days) in &results {
            for (date, ledger, consolidated) in days {
                books.merchant_days += 1;
                let differs = match (ledger, consolidated) {
                    (Ok(entries), Ok(consolidated)) => {
                        for entry in entries {
                            if !listed.insert(entry.id.clone()) {
                                books.duplicates += 1;
                            }
                            if entry.description == "fire" {
                                fire_ids.insert(entry.id.clone());
                            }
                        }
                        let ledger = totals(entries);
                        (ledger != *consolidated)
                            .then(|| format!("ledger {ledger:?} vs consolidated {consolidated:?}"))
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
pub async fn ledger_day(
    http: &reqwest::Client,
    base: &str,
    merchant: &str,
    token: &str,
    date: &str,
) -> anyhow::Result<Vec<Listed>> {
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
            entries.push(Listed {
                id: item["id"].as_str().unwrap_or_default().to_string(),
                credit: item["kind"] == "credit",
                minor: minor_units(&item["amount"])?,
                description: item["description"].as_str().unwrap_or_default().to_string(),
            });
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(entries),
        }
    }
}
