//! What the consolidation's reconciler asks of the ledger: digests of merchant-days, read from
//! the `day_digests` summary (one row per merchant-day, kept by a trigger), and replays, which
//! re-publish the `entry.recorded.v1` events of merchant-days through the outbox with their
//! original event ids.
//!
//! Replays are paced by a [`Pacer`] shared by the whole process, so that however many replays
//! are asked for, the outbox relay (which publishes live and replayed events in one FIFO) never
//! receives more than the configured rate of replayed events and live events keep flowing.

use std::time::Duration;

use cashflow_contracts::digest::{DayDigest, format_checksum};
use cashflow_contracts::{ENTRY_RECORDED, EntryKind, EntryRecordedV1, business_date};
use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

/// Events re-published per outbox transaction.
pub const REPLAY_CHUNK: i64 = 100;

/// Which merchant-days a digest or replay covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRange {
    /// First business date.
    pub from: Date,
    /// Last business date (inclusive).
    pub to: Date,
    /// One merchant, or every merchant with entries.
    pub merchant: Option<String>,
}

/// A page of digests after `after` (exclusive), in (business_date, merchant_id) order; returns
/// the digests and the key to continue from when there are more.
pub async fn digests(
    pool: &PgPool,
    range: &DayRange,
    after: Option<(Date, String)>,
    limit: u16,
) -> Result<(Vec<DayDigest>, Option<(Date, String)>), sqlx::Error> {
    let (after_date, after_merchant) = match after {
        Some((d, m)) => (Some(d), m),
        None => (None, String::new()),
    };
    let mut rows: Vec<(Date, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT business_date, merchant_id, entry_count, credits_minor, debits_minor, checksum \
         FROM day_digests \
         WHERE business_date BETWEEN $1 AND $2 \
           AND ($3::text IS NULL OR merchant_id = $3) \
           AND ($4::date IS NULL OR (business_date, merchant_id) > ($4, $5)) \
         ORDER BY business_date, merchant_id LIMIT $6",
    )
    .bind(range.from)
    .bind(range.to)
    .bind(range.merchant.as_deref())
    .bind(after_date)
    .bind(after_merchant)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let next = if rows.len() > usize::from(limit) {
        rows.truncate(usize::from(limit));
        rows.last().map(|r| (r.0, r.1.clone()))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(
            |(date, merchant_id, entry_count, credits_minor, debits_minor, checksum)| DayDigest {
                merchant_id,
                business_date: business_date::format(date),
                entry_count,
                credits_minor,
                debits_minor,
                checksum: format_checksum(checksum),
            },
        )
        .collect();
    Ok((items, next))
}

/// Spaces replayed events out to at most `per_second`, process-wide.
#[derive(Debug)]
pub struct Pacer {
    per_second: u32,
    /// When the next event may be released.
    next: Mutex<Instant>,
}

impl Pacer {
    /// A pacer releasing `per_second` events a second (at least 1).
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `events` more may go. Callers queue on the lock, so concurrent replays share
    /// the rate rather than each getting it.
    pub async fn admit(&self, events: u32) {
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        let cost = Duration::from_secs_f64(f64::from(events) / f64::from(self.per_second));
        *next = (*next).max(now) + cost;
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ReplayRow {
    seq: i64,
    id: Uuid,
    event_id: Option<Uuid>,
    merchant_id: String,
    kind: String,
    amount_minor: i64,
    currency: String,
    business_date: Date,
    reverses_entry_id: Option<Uuid>,
    recorded_at: OffsetDateTime,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplayOutcome {
    /// Events put back in the outbox.
    pub replayed: u64,
    /// Entries without a stored event id (none unless rows predate the migration and their
    /// outbox rows were pruned): not replayable without risking a double count.
    pub skipped: u64,
}

/// Re-publishes the events of `range` (one merchant required) through the outbox, in chunks of
/// [`REPLAY_CHUNK`], each its own transaction, paced by `pacer`. An event still in the outbox
/// is marked unpublished again; one pruned from it is written back with its original id and
/// payload.
pub async fn replay(
    pool: &PgPool,
    merchant: &str,
    from: Date,
    to: Date,
    pacer: &Pacer,
) -> anyhow::Result<ReplayOutcome> {
    use anyhow::Context;
    let mut outcome = ReplayOutcome::default();
    let (mut after_date, mut after_seq) = (from, 0_i64);
    loop {
        let rows: Vec<ReplayRow> = sqlx::query_as(
            "SELECT seq, id, event_id, merchant_id, kind, amount_minor, currency::text AS currency, \
                    business_date, reverses_entry_id, recorded_at \
             FROM entries WHERE merchant_id = $1 AND business_date BETWEEN $2 AND $3 \
               AND (business_date, seq) > ($4, $5) \
             ORDER BY business_date, seq LIMIT $6",
        )
        .bind(merchant)
        .bind(from)
        .bind(to)
        .bind(after_date)
        .bind(after_seq)
        .bind(REPLAY_CHUNK)
        .fetch_all(pool)
        .await
        .context("reading entries to replay")?;
        let Some(last) = rows.last() else {
            break;
        };
        (after_date, after_seq) = (last.business_date, last.seq);
        let full = rows.len() as i64 == REPLAY_CHUNK;
        let mut ids = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(event_id) = row.event_id else {
                outcome.skipped += 1;
                tracing::warn!(entry = %row.id, "entry without an event id; not replayed");
                continue;
            };
            let event = EntryRecordedV1 {
                event_type: ENTRY_RECORDED.into(),
                event_id,
                entry_id: row.id,
                merchant_id: row.merchant_id.parse().context("stored merchant id")?,
                kind: row
                    .kind
                    .parse::<EntryKind>()
                    .map_err(|e| anyhow::anyhow!(e))?,
                amount_minor: row.amount_minor,
                currency: row
                    .currency
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))?,
                business_date: row.business_date,
                recorded_at: row.recorded_at,
                reverses_entry_id: row.reverses_entry_id,
            };
            ids.push(event_id);
            payloads.push(serde_json::to_value(&event)?);
        }
        if !ids.is_empty() {
            pacer
                .admit(u32::try_from(ids.len()).unwrap_or(u32::MAX))
                .await;
            let mut tx = pool
                .begin()
                .await
                .context("starting a replay transaction")?;
            // Through the outbox, never straight to SQS: the relay publishes it like any event.
            // Clearing the claim too: a row being sent right now is then not marked published
            // by that send, and leaves again (ADR 14).
            sqlx::query(
                "INSERT INTO outbox (event_id, event_type, payload) \
                 SELECT id, $3, payload FROM unnest($1::uuid[], $2::jsonb[]) AS r(id, payload) \
                 ON CONFLICT (event_id) DO UPDATE SET published_at = NULL, claimed_until = NULL",
            )
            .bind(&ids)
            .bind(&payloads)
            .bind(ENTRY_RECORDED)
            .execute(&mut *tx)
            .await
            .context("writing replayed events to the outbox")?;
            tx.commit().await.context("committing a replay chunk")?;
            outcome.replayed += ids.len() as u64;
        }
        if !full {
            break;
        }
    }
    Ok(outcome)
}
