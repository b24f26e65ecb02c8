//! The books after the load: every merchant-day's totals agree between the ledger's digests and
//! the consolidation's days.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;

pub type DayTotals = HashMap<(String, time::Date), (i64, i64, i64)>;

/// Per merchant-day (entries, credits, debits): the ledger's digests and the consolidation's
/// days.
pub async fn books(
    ledger: &PgPool,
    consolidation: &PgPool,
) -> anyhow::Result<(DayTotals, DayTotals)> {
    let read = |sql: &'static str, pool: PgPool| async move {
        let rows: Vec<(String, time::Date, i64, i64, i64)> =
            sqlx::query_as(sql).fetch_all(&pool).await?;
        anyhow::Ok(
            rows.into_iter()
                .map(|(m, d, n, c, b)| ((m, d), (n, c, b)))
                .collect::<DayTotals>(),
        )
    };
    Ok((
        read(
            "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor \
             FROM day_digests",
            ledger.clone(),
        )
        .await?,
        read(
            "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor \
             FROM daily_balances",
            consolidation.clone(),
        )
        .await?,
    ))
}

/// Waits (up to 3 minutes: consumer lag is not a difference) until every merchant-day's totals
/// agree between the ledger's digests and the consolidation's days; returns how many differ,
/// and of how many.
pub async fn books_agree(
    ledger: &PgPool,
    consolidation: &PgPool,
) -> anyhow::Result<(usize, usize)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (ledger_days, consolidated) = books(ledger, consolidation).await?;
        let differ = ledger_days
            .iter()
            .filter(|(key, totals)| consolidated.get(*key) != Some(*totals))
            .count()
            + consolidated
                .keys()
                .filter(|key| !ledger_days.contains_key(*key))
                .count();
        if differ == 0 || Instant::now() > deadline {
            return Ok((differ, ledger_days.len()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
