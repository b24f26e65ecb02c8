//! Daily balances: applying a batch of events idempotently, and reading a day or a range.
//!
//! Besides the days, the consumer keeps additive monthly and yearly totals per merchant in the
//! same transaction (ADR 0010), so the opening balance of any day is read from at most
//! (years of history) + 11 months + 30 days rows, whatever the length of the history.

use std::collections::{BTreeMap, BTreeSet};

use cashflow_contracts::money::format_minor;
use cashflow_contracts::{Currency, EntryKind, EntryRecordedV1, MerchantId, business_date};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Events that changed a balance.
    pub applied: Vec<Uuid>,
    /// Events seen before (redeliveries), which changed nothing.
    pub duplicates: Vec<Uuid>,
    /// For each merchant touched, the earliest day that changed: that day and every later
    /// closing balance moved.
    pub earliest_change: BTreeMap<MerchantId, Date>,
}

/// First day of `date`'s month.
pub fn month_start(date: Date) -> Date {
    date.replace_day(1).unwrap_or(date)
}

/// 1 January of `date`'s year.
pub fn year_start(date: Date) -> Date {
    Date::from_calendar_date(date.year(), time::Month::January, 1).unwrap_or(date)
}

/// A batch's whole change as one statement, so one round trip and its implicit commit: the
/// dedup insert returns the fresh ids; only those are summed into the years, then the months,
/// then the days. Each upsert waits for the one before it through a one-time filter on the
/// earlier CTE's count (data-modifying CTEs run in an unspecified order otherwise), and each
/// sorts its rows by key: every batch locks rows in one order (years, months, days; each in
/// key order), so concurrent batches cannot deadlock. The hot rows (a merchant's year) stay
/// locked from their upsert to the commit that ends the same statement, rather than across
/// three more round trips as with a statement each, which is what bounded concurrent poll
/// loops (issue 15).
const APPLY_BATCH: &str = "\
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[], $4::text[], $5::int8[], $6::int8[],
                         $7::int8[], $8::timestamptz[])
        AS i(event_id, merchant_id, business_date, currency, credit, debit, checksum, recorded_at)
), fresh AS (
    INSERT INTO processed_events (event_id, merchant_id)
    SELECT event_id, merchant_id FROM input ORDER BY event_id
    ON CONFLICT DO NOTHING RETURNING event_id
), applied AS (
    SELECT input.* FROM input JOIN fresh USING (event_id)
), years AS (
    INSERT INTO yearly_totals AS t (merchant_id, year_start, credits_minor, debits_minor, entry_count)
    SELECT merchant_id, date_trunc('year', business_date::timestamp)::date, sum(credit),
           sum(debit), count(*)
    FROM applied GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (merchant_id, year_start) DO UPDATE SET
        credits_minor = t.credits_minor + EXCLUDED.credits_minor,
        debits_minor = t.debits_minor + EXCLUDED.debits_minor,
        entry_count = t.entry_count + EXCLUDED.entry_count,
        last_applied_at = now()
    RETURNING 1
), months AS (
    INSERT INTO monthly_totals AS t (merchant_id, month_start, credits_minor, debits_minor, entry_count)
    SELECT merchant_id, date_trunc('month', business_date::timestamp)::date, sum(credit),
           sum(debit), count(*)
    FROM applied WHERE (SELECT count(*) FROM years) >= 0 GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (merchant_id, month_start) DO UPDATE SET
        credits_minor = t.credits_minor + EXCLUDED.credits_minor,
        debits_minor = t.debits_minor + EXCLUDED.debits_minor,
        entry_count = t.entry_count + EXCLUDED.entry_count,
        last_applied_at = now()
    RETURNING 1
), days AS (
    INSERT INTO daily_balances AS b (merchant_id, business_date, currency, credits_minor,
        debits_minor, entry_count, last_event_recorded_at, entry_checksum)
    SELECT merchant_id, business_date, min(currency), sum(credit), sum(debit), count(*),
           max(recorded_at), bit_xor(checksum)
    FROM applied WHERE (SELECT count(*) FROM months) >= 0 GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (merchant_id, business_date) DO UPDATE SET
        credits_minor = b.credits_minor + EXCLUDED.credits_minor,
        debits_minor = b.debits_minor + EXCLUDED.debits_minor,
        entry_count = b.entry_count + EXCLUDED.entry_count,
        entry_checksum = b.entry_checksum # EXCLUDED.entry_checksum,
        last_event_recorded_at = GREATEST(b.last_event_recorded_at, EXCLUDED.last_event_recorded_at),
        last_applied_at = now()
    RETURNING 1
)
SELECT event_id FROM fresh WHERE (SELECT count(*) FROM days) >= 0";

/// Applies events atomically (one statement, see `APPLY_BATCH`): each event id is recorded in
/// the same transaction as the balance change, so a redelivered event changes nothing.
pub async fn apply(pool: &PgPool, events: &[EntryRecordedV1]) -> Result<Applied, sqlx::Error> {
    let mut by_id: BTreeMap<Uuid, &EntryRecordedV1> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for event in events {
        if by_id.insert(event.event_id, event).is_some() {
            duplicates.push(event.event_id);
        }
    }
    let n = by_id.len();
    let (mut ids, mut merchants, mut days) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut currencies, mut credits, mut debits) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut checksums, mut recorded) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (id, event) in &by_id {
        ids.push(*id);
        merchants.push(event.merchant_id.to_string());
        days.push(event.business_date);
        currencies.push(event.currency.code());
        let (credit, debit) = match event.kind {
            EntryKind::Credit => (event.amount_minor, 0),
            EntryKind::Debit => (0, event.amount_minor),
        };
        credits.push(credit);
        debits.push(debit);
        checksums.push(cashflow_contracts::digest::entry_id_hash(&event.entry_id));
        recorded.push(event.recorded_at);
    }
    let fresh: BTreeSet<Uuid> = sqlx::query_scalar::<_, Uuid>(APPLY_BATCH)
        .bind(&ids)
        .bind(&merchants)
        .bind(&days)
        .bind(&currencies)
        .bind(&credits)
        .bind(&debits)
        .bind(&checksums)
        .bind(&recorded)
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    let mut outcome = Applied {
        duplicates,
        ..Applied::default()
    };
    for (id, event) in by_id {
        if !fresh.contains(&id) {
            outcome.duplicates.push(id);
            continue;
        }
        outcome.applied.push(id);
        let earliest = outcome
            .earliest_change
            .entry(event.merchant_id.clone())
            .or_insert(event.business_date);
        *earliest = (*earliest).min(event.business_date);
    }
    Ok(outcome)
}

/// One day of a merchant's books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayBalance {
    /// Whose books.
    pub merchant_id: String,
    /// The business date.
    #[schema(example = "2026-11-24")]
    pub date: String,
    /// ISO currency.
    #[schema(example = "BRL")]
    pub currency: String,
    /// Sum of credits.
    #[schema(example = "100.10")]
    pub credits: String,
    /// Sum of debits.
    #[schema(example = "30.05")]
    pub debits: String,
    /// Credits minus debits.
    #[schema(example = "70.05")]
    pub net: String,
    /// Closing balance of the day before (all earlier days).
    #[schema(example = "200.00")]
    pub opening_balance: String,
    /// Opening plus net.
    #[schema(example = "270.05")]
    pub closing_balance: String,
    /// Entries in the day.
    pub entry_count: i64,
    /// When the latest event counted in this closing balance was applied; null before any.
    pub as_of: Option<String>,
}

/// A range of days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// Whose books.
    pub merchant_id: String,
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// ISO currency.
    pub currency: String,
    /// Every day of the range, in order, days without entries included.
    pub days: Vec<DayBalance>,
}

impl Report {
    /// The report as CSV, one line per day.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(
            "date,currency,credits,debits,net,opening_balance,closing_balance,entry_count,as_of\n",
        );
        for d in &self.days {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                d.date,
                d.currency,
                d.credits,
                d.debits,
                d.net,
                d.opening_balance,
                d.closing_balance,
                d.entry_count,
                d.as_of.as_deref().unwrap_or("")
            ));
        }
        csv
    }
}

/// A day's row of the report.
struct DayRow {
    business_date: Date,
    credits_minor: i64,
    debits_minor: i64,
    entry_count: i64,
    last_applied_at: OffsetDateTime,
}

/// ADR 0010's opening balance of day `$2` for merchant `$1`, `$3` being the first day of `$2`'s
/// year and `$4` of its month: (balance, as_of, currency). Each part is a range of one primary
/// key. The currency's ORDER BY makes it one step of the primary key: with a bare LIMIT 1 the
/// planner may pick a sequential scan for a merchant with many rows, a scan that grows with the
/// history.
macro_rules! opening_from_period_totals {
    () => {
        "WITH y AS (SELECT sum(credits_minor - debits_minor) AS net, \
                       max(last_applied_at) AS at FROM yearly_totals \
                WHERE merchant_id = $1 AND year_start < $3), \
          m AS (SELECT sum(credits_minor - debits_minor) AS net, \
                       max(last_applied_at) AS at FROM monthly_totals \
                WHERE merchant_id = $1 AND month_start >= $3 AND month_start < $4), \
          d AS (SELECT sum(credits_minor - debits_minor) AS net, \
                       max(last_applied_at) AS at FROM daily_balances \
                WHERE merchant_id = $1 AND business_date >= $4 AND business_date < $2) \
     SELECT (COALESCE(y.net, 0) + COALESCE(m.net, 0) + COALESCE(d.net, 0))::int8, \
            GREATEST(y.at, m.at, d.at), \
            (SELECT currency::text FROM daily_balances WHERE merchant_id = $1 \
             ORDER BY business_date DESC LIMIT 1) \
     FROM y, m, d"
    };
}

/// The opening balance alone ([`opening_from_period_totals`]); the `history` load scenario
/// times it against ADR 3's.
pub const OPENING_FROM_PERIOD_TOTALS: &str = opening_from_period_totals!();

/// The day rows of merchant `$1` from `$2` to `$3` alone; the `history` load scenario times
/// them.
pub const DAY_ROWS: &str = "SELECT business_date, credits_minor, debits_minor, entry_count, \
       last_applied_at \
     FROM daily_balances WHERE merchant_id = $1 AND business_date BETWEEN $2 AND $3 \
     ORDER BY business_date";

/// A report in one statement, so one round trip and one snapshot: the opening balance (`$1` to
/// `$4` as in [`OPENING_FROM_PERIOD_TOTALS`]) on every row, beside the day rows from `$2` to
/// `$5` (none: one row whose day columns are null). Two statements cost PostgreSQL a second
/// parse, bind and execute per uncached read, and could see a commit land between the opening
/// and the days.
const REPORT: &str = concat!(
    "SELECT o.balance, o.as_of, o.currency, d.business_date, d.credits_minor, d.debits_minor, \
       d.entry_count, d.last_applied_at \
     FROM (",
    opening_from_period_totals!(),
    ") AS o(balance, as_of, currency) \
     LEFT JOIN (SELECT business_date, credits_minor, debits_minor, entry_count, last_applied_at \
         FROM daily_balances WHERE merchant_id = $1 AND business_date BETWEEN $2 AND $5) AS d \
       ON true \
     ORDER BY d.business_date"
);

/// A row of [`REPORT`].
#[derive(sqlx::FromRow)]
struct ReportRow {
    balance: i64,
    as_of: Option<OffsetDateTime>,
    currency: Option<String>,
    business_date: Option<Date>,
    credits_minor: Option<i64>,
    debits_minor: Option<i64>,
    entry_count: Option<i64>,
    last_applied_at: Option<OffsetDateTime>,
}

/// The report for `from..=to` (the caller bounds the range), the opening balance read from
/// the period totals (ADR 0010).
pub async fn report(
    pool: &PgPool,
    merchant: &MerchantId,
    from: Date,
    to: Date,
    default_currency: Currency,
) -> Result<Report, sqlx::Error> {
    let found: Vec<ReportRow> = sqlx::query_as(REPORT)
        .bind(merchant.as_str())
        .bind(from)
        .bind(year_start(from))
        .bind(month_start(from))
        .bind(to)
        .fetch_all(pool)
        .await?;
    let (before, as_of_before, currency) = found.first().map_or((0, None, None), |row| {
        (row.balance, row.as_of, row.currency.clone())
    });
    let rows = found.into_iter().filter_map(|row| {
        Some(DayRow {
            business_date: row.business_date?,
            credits_minor: row.credits_minor?,
            debits_minor: row.debits_minor?,
            entry_count: row.entry_count?,
            last_applied_at: row.last_applied_at?,
        })
    });
    let currency = currency.unwrap_or_else(|| default_currency.code().to_string());
    let mut rows = rows.peekable();
    let mut balance = before;
    let mut as_of = as_of_before;
    let mut days = Vec::new();
    let mut day = from;
    loop {
        let (credits, debits, count) = match rows.peek() {
            Some(row) if row.business_date == day => {
                let row = rows.next().expect("peeked");
                as_of = as_of.max(Some(row.last_applied_at));
                (row.credits_minor, row.debits_minor, row.entry_count)
            }
            _ => (0, 0, 0),
        };
        let opening = balance;
        balance += credits - debits;
        days.push(DayBalance {
            merchant_id: merchant.to_string(),
            date: business_date::format(day),
            currency: currency.clone(),
            credits: format_minor(credits),
            debits: format_minor(debits),
            net: format_minor(credits - debits),
            opening_balance: format_minor(opening),
            closing_balance: format_minor(balance),
            entry_count: count,
            as_of: as_of.map(cashflow_contracts::format_timestamp),
        });
        if day >= to {
            break;
        }
        day = day.next_day().unwrap_or(to);
    }
    Ok(Report {
        merchant_id: merchant.to_string(),
        from: business_date::format(from),
        to: business_date::format(to),
        currency,
        days,
    })
}
