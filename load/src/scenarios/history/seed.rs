//! The history seeded straight into the consolidation's database: one `daily_balances` row per
//! merchant and day, and the period totals the consumer would have written.

/// Merchants per length.
pub const MERCHANTS: usize = 20;

pub fn merchant(length: i64, i: usize) -> String {
    format!("hist-{length}-{i}")
}

/// One row per merchant and day for `length` days up to `today`, and the period totals.
pub async fn seed(pool: &sqlx::PgPool, length: i64, today: time::Date) -> anyhow::Result<()> {
    let prefix = format!("hist-{length}-");
    sqlx::query(
        "INSERT INTO daily_balances (merchant_id, business_date, currency, credits_minor, \
           debits_minor, entry_count, last_event_recorded_at, entry_checksum) \
         SELECT $1 || m, $2::date - d, 'BRL', 10000 + d, 3000, 4, now(), 0 \
         FROM generate_series(0, $3 - 1) d, generate_series(0, $4 - 1) m \
         ON CONFLICT DO NOTHING",
    )
    .bind(&prefix)
    .bind(today)
    .bind(i32::try_from(length)?)
    .bind(i32::try_from(MERCHANTS)?)
    .execute(pool)
    .await?;
    for (table, column, unit) in [
        ("monthly_totals", "month_start", "month"),
        ("yearly_totals", "year_start", "year"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (merchant_id, {column}, credits_minor, debits_minor, \
               entry_count, last_applied_at) \
             SELECT merchant_id, date_trunc('{unit}', business_date)::date, sum(credits_minor), \
                    sum(debits_minor), sum(entry_count), max(last_applied_at) \
             FROM daily_balances WHERE starts_with(merchant_id, $1) GROUP BY 1, 2 \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&prefix)
        .execute(pool)
        .await?;
    }
    // VACUUM too: a table written once and read for years is all-visible, and the planner's
    // choices (index-only scans) depend on it.
    for table in ["daily_balances", "monthly_totals", "yearly_totals"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}
