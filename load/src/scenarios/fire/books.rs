//! The system invariant, checked through the HTTP APIs (the gateway, caches included): for every
//! merchant and day, the consolidated totals equal the ledger's entries; every write answered 201
//! is in the ledger; no entry is listed twice.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::kit::target::Target;
use crate::kit::writer::Accepted;

/// The invariant, checked through the HTTP APIs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Books {
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

impl Books {
    pub fn holds(&self) -> bool {
        self.differing_count == 0 && self.accepted_missing == 0 && self.duplicates == 0
    }
}

/// Per merchant and day: the ledger's entries (id, kind, minor) and the consolidated
/// (credits, debits, count).
pub type LedgerDay = Vec<(String, String, i64, String)>;

/// Compares, until they agree or `timeout` passes, every merchant-day's consolidated balance with
/// the ledger's entries, both read through the gateway; checks the accepted writes are listed.
pub async fn check_books(
    target: &Target,
    accepted: &[(usize, Accepted)],
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
pub async fn ledger_day(
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
pub async fn consolidated_day(
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
pub fn minor(value: &serde_json::Value) -> anyhow::Result<i64> {
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
