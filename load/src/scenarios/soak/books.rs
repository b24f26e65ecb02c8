//! The books after the load: every merchant-day's totals agree between the ledger's digests and
//! the consolidation's days (testkit's check, on both tables).

use std::time::{Duration, Instant};

use sqlx::PgPool;
use testkit::books::{Books, consolidated_days_in, differences, ledger_digests_in};

/// Waits (up to 3 minutes: consumer lag is not a difference) until every merchant-day's totals
/// agree between the ledger's digests and the consolidation's days; returns how many differ,
/// and of how many.
pub async fn books_agree(
    ledger: &PgPool,
    consolidation: &PgPool,
) -> anyhow::Result<(usize, usize)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ledger_books = Books::of(&ledger_digests_in(ledger).await?)?;
        let consolidated = Books::of(&consolidated_days_in(consolidation).await?)?;
        let differ = differences(&ledger_books, &consolidated).len();
        if differ == 0 || Instant::now() > deadline {
            return Ok((differ, ledger_books.len()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
