//! The books check: the ledger's books and the consolidation's, merchant-day by merchant-day,
//! each side read as [`DayDigest`]s (the ledger's digest API, its `day_digests` table, the
//! consolidation's balances API or its `daily_balances` table) and compared on entry count,
//! credits and debits. The one comparison the acceptance suite, the soak and the fire scenario
//! make.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context;
use cashflow_contracts::business_date;
use cashflow_contracts::digest::{DayDigest, DigestPage};
use serde_json::Value;
use time::Date;

/// One merchant-day's totals, as either side states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayTotals {
    /// Entries counted.
    pub entry_count: i64,
    /// Sum of credits, minor units.
    pub credits_minor: i64,
    /// Sum of debits, minor units.
    pub debits_minor: i64,
}

impl From<&DayDigest> for DayTotals {
    fn from(digest: &DayDigest) -> Self {
        Self {
            entry_count: digest.entry_count,
            credits_minor: digest.credits_minor,
            debits_minor: digest.debits_minor,
        }
    }
}

/// One side's books: totals per (merchant, business date). Days without entries are left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Books(pub BTreeMap<(String, Date), DayTotals>);

impl Books {
    /// The books the digests state (a day with no entries is left out).
    pub fn of<'a>(digests: impl IntoIterator<Item = &'a DayDigest>) -> anyhow::Result<Self> {
        let mut days = BTreeMap::new();
        for digest in digests {
            if digest.entry_count == 0 {
                continue;
            }
            let date = business_date::parse(&digest.business_date)
                .map_err(|e| anyhow::anyhow!("{}: {e}", digest.business_date))?;
            days.insert((digest.merchant_id.clone(), date), DayTotals::from(digest));
        }
        Ok(Self(days))
    }

    /// Merchant-days in the books.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no merchant-day has entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A merchant-day the two sides state differently (`None`: that side has no entries that day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Whose books.
    pub merchant: String,
    /// Which day.
    pub date: Date,
    /// The ledger's totals.
    pub ledger: Option<DayTotals>,
    /// The consolidation's totals.
    pub consolidated: Option<DayTotals>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |totals: &Option<DayTotals>| {
            totals.map_or_else(
                || "nothing".to_string(),
                |t| {
                    format!(
                        "{} entries, credits {} debits {}",
                        t.entry_count, t.credits_minor, t.debits_minor
                    )
                },
            )
        };
        write!(
            f,
            "{} {}: ledger {} vs consolidated {}",
            self.merchant,
            business_date::format(self.date),
            side(&self.ledger),
            side(&self.consolidated)
        )
    }
}

/// Every merchant-day where the consolidated books differ from the ledger's, a day only one
/// side has included; empty when the books agree.
pub fn differences(ledger: &Books, consolidated: &Books) -> Vec<Difference> {
    let mut keys: Vec<&(String, Date)> = ledger.0.keys().chain(consolidated.0.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (l, c) = (ledger.0.get(key).copied(), consolidated.0.get(key).copied());
            (l != c).then(|| Difference {
                merchant: key.0.clone(),
                date: key.1,
                ledger: l,
                consolidated: c,
            })
        })
        .collect()
}

/// The ledger's digests of `merchant` from `from` to `to`, through its internal digest API at
/// `internal_url` with a service token (`ledger:reconcile`), every page.
pub async fn ledger_digests(
    http: &reqwest::Client,
    internal_url: &str,
    token: &str,
    merchant: &str,
    (from, to): (Date, Date),
) -> anyhow::Result<Vec<DayDigest>> {
    let mut digests = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let response = http
            .get(format!(
                "{internal_url}/internal/v1/digests?from={}&to={}&merchant={merchant}{}",
                business_date::format(from),
                business_date::format(to),
                // Base64url: safe in a query string as it is.
                cursor
                    .as_ref()
                    .map(|c| format!("&cursor={c}"))
                    .unwrap_or_default()
            ))
            .bearer_auth(token)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "digests: {}",
            response.status()
        );
        let page: DigestPage = response.json().await?;
        digests.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(digests),
        }
    }
}

/// The consolidated days of `merchant` from `from` to `to`, through its public API at `url`
/// with a merchant token (`balances:read`): the report over the window (so that a day the ledger
/// does not have shows up), then each day with entries through `GET .../balances/{date}`, the
/// Redis-cached path. The API carries no checksum: it is left empty.
pub async fn consolidated_days(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    merchant: &str,
    (from, to): (Date, Date),
) -> anyhow::Result<Vec<DayDigest>> {
    let response = http
        .get(format!(
            "{url}/v1/merchants/{merchant}/balances?from={}&to={}",
            business_date::format(from),
            business_date::format(to),
        ))
        .bearer_auth(token)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "report: {}",
        response.status()
    );
    let report: Value = response.json().await?;
    let mut days = Vec::new();
    for day in report["days"].as_array().context("report days")? {
        if day["entry_count"].as_i64().unwrap_or(0) == 0 {
            continue;
        }
        let date = day["date"].as_str().context("date")?;
        days.push(consolidated_day(http, url, token, merchant, date).await?);
    }
    Ok(days)
}

/// One consolidated day of `merchant` (`YYYY-MM-DD`) through `GET .../balances/{date}`.
pub async fn consolidated_day(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    merchant: &str,
    date: &str,
) -> anyhow::Result<DayDigest> {
    let response = http
        .get(format!("{url}/v1/merchants/{merchant}/balances/{date}"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "balance of {date}: {status}");
    let day: Value = response.json().await?;
    Ok(DayDigest {
        merchant_id: merchant.to_string(),
        business_date: date.to_string(),
        entry_count: day["entry_count"].as_i64().unwrap_or(0),
        credits_minor: minor_units(&day["credits"])?,
        debits_minor: minor_units(&day["debits"])?,
        checksum: String::new(),
    })
}

/// Every merchant-day of the ledger's `day_digests` table.
pub async fn ledger_digests_in(ledger: &sqlx::PgPool) -> anyhow::Result<Vec<DayDigest>> {
    digests_in(ledger, "day_digests", "checksum").await
}

/// Every merchant-day of the consolidation's `daily_balances` table.
pub async fn consolidated_days_in(consolidation: &sqlx::PgPool) -> anyhow::Result<Vec<DayDigest>> {
    digests_in(consolidation, "daily_balances", "entry_checksum").await
}

async fn digests_in(
    pool: &sqlx::PgPool,
    table: &str,
    checksum: &str,
) -> anyhow::Result<Vec<DayDigest>> {
    let rows: Vec<(String, Date, i64, i64, i64, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor, {checksum} \
         FROM {table}"
    ))
    .fetch_all(pool)
    .await
    .with_context(|| format!("reading {table}"))?;
    Ok(rows
        .into_iter()
        .map(|(merchant, date, count, credits, debits, sum)| DayDigest {
            merchant_id: merchant,
            business_date: business_date::format(date),
            entry_count: count,
            credits_minor: credits,
            debits_minor: debits,
            checksum: cashflow_contracts::digest::format_checksum(sum.unwrap_or(0)),
        })
        .collect())
}

/// Minor units of a decimal amount string as the APIs write them (`"12.30"`; zero and negative
/// allowed, unlike an entry's amount).
pub fn minor_units(value: &Value) -> anyhow::Result<i64> {
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

    fn digest(merchant: &str, date: &str, count: i64, credits: i64) -> DayDigest {
        DayDigest {
            merchant_id: merchant.into(),
            business_date: date.into(),
            entry_count: count,
            credits_minor: credits,
            debits_minor: 0,
            checksum: String::new(),
        }
    }

    #[test]
    fn books_agree_only_when_every_day_matches_on_both_sides() -> anyhow::Result<()> {
        let ledger = Books::of(&[
            digest("m1", "2026-11-01", 2, 300),
            digest("m1", "2026-11-02", 1, 100),
        ])?;
        assert!(differences(&ledger, &ledger.clone()).is_empty());
        // A day with no entries is no day.
        let with_empty_day = Books::of(&[
            digest("m1", "2026-11-01", 2, 300),
            digest("m1", "2026-11-02", 1, 100),
            digest("m1", "2026-11-03", 0, 0),
        ])?;
        assert!(differences(&ledger, &with_empty_day).is_empty());
        let short = Books::of(&[digest("m1", "2026-11-01", 2, 200)])?;
        let found = differences(&ledger, &short);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].consolidated.map(|t| t.credits_minor), Some(200));
        assert_eq!(found[1].consolidated, None);
        assert_eq!(differences(&short, &ledger).len(), 2);
        Ok(())
    }

    #[test]
    fn amounts_read_in_minor_units_zero_and_negative_included() -> anyhow::Result<()> {
        let minor = |text: &str| minor_units(&Value::String(text.into()));
        assert_eq!(minor("12.30")?, 1230);
        assert_eq!(minor("12.3")?, 1230);
        assert_eq!(minor("-1.05")?, -105);
        assert_eq!(minor("0.00")?, 0);
        assert_eq!(minor("-5.07")?, -507);
        assert_eq!(minor("7")?, 700);
        assert!(minor("abc").is_err());
        assert!(minor("x.10").is_err());
        assert!(minor_units(&Value::Null).is_err());
        Ok(())
    }
}
