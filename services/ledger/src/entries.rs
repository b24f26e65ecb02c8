//! Entries: storing an entry together with its outbox event, reversing, reading and listing.
//! (A request to record one is checked against the rules in [`crate::entry_request`].)

use cashflow_contracts::{
    Amount, Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1, MerchantId, business_date,
};
use cashflow_platform::problem::FieldError;
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::config::EntryRules;
use crate::zone::ZoneError;
use cashflow_platform::edge::ApiError;

/// Longest description, in characters.
pub const MAX_DESCRIPTION: usize = 200;
/// Longest category, in characters.
pub const MAX_CATEGORY: usize = 64;

/// A checked request to record an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Whose books.
    pub merchant: MerchantId,
    /// Credit or debit.
    pub kind: EntryKind,
    /// Positive amount.
    pub amount: Amount,
    /// The merchant's currency.
    pub currency: Currency,
    /// The day it belongs to.
    pub business_date: Date,
    /// Free text.
    pub description: Option<String>,
    /// Free classification.
    pub category: Option<String>,
}

/// An entry as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Entry id.
    pub id: Uuid,
    /// Whose books.
    pub merchant_id: String,
    /// `credit` or `debit`.
    #[schema(example = "credit")]
    pub kind: String,
    /// Decimal string with two decimals.
    #[schema(example = "100.10")]
    pub amount: String,
    /// ISO 4217 code.
    #[schema(example = "BRL")]
    pub currency: String,
    /// `YYYY-MM-DD`.
    #[schema(example = "2026-11-24")]
    pub business_date: String,
    /// Free text, up to 200 characters.
    pub description: Option<String>,
    /// Free classification.
    pub category: Option<String>,
    /// For a reversal, the entry it undoes.
    pub reverses_entry_id: Option<Uuid>,
    /// When the ledger committed it (RFC 3339, UTC).
    pub recorded_at: String,
}

#[derive(Debug, sqlx::FromRow)]
struct EntryRow {
    id: Uuid,
    seq: i64,
    merchant_id: String,
    kind: String,
    amount_minor: i64,
    currency: String,
    business_date: Date,
    description: Option<String>,
    category: Option<String>,
    reverses_entry_id: Option<Uuid>,
    recorded_at: OffsetDateTime,
}

const COLUMNS: &str = "id, seq, merchant_id, kind, amount_minor, currency, business_date, \
                       description, category, reverses_entry_id, recorded_at";

impl From<EntryRow> for Entry {
    fn from(row: EntryRow) -> Self {
        Self {
            id: row.id,
            merchant_id: row.merchant_id,
            kind: row.kind,
            amount: cashflow_contracts::money::format_minor(row.amount_minor),
            currency: row.currency,
            business_date: business_date::format(row.business_date),
            description: row.description,
            category: row.category,
            reverses_entry_id: row.reverses_entry_id,
            recorded_at: cashflow_contracts::format_timestamp(row.recorded_at),
        }
    }
}

/// Today in the merchants' time zone.
pub fn today(rules: &EntryRules) -> Result<Date, ZoneError> {
    rules.timezone.today()
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        field: name.to_string(),
        message: message.to_string(),
    }
}

/// The one rule for free-text fields (description, category, a reversal's description), on
/// every path that writes them: at most `max` characters, no control characters other than
/// tab, line feed and carriage return (PostgreSQL refuses NUL in text, and the others break
/// CSV exports and terminals downstream), surrounding whitespace trimmed, and blank is absent.
pub fn check_text(name: &str, text: &str, max: usize) -> Result<Option<String>, FieldError> {
    if text.chars().count() > max {
        return Err(field(name, &format!("is longer than {max} characters")));
    }
    if let Some((at, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(field(
            name,
            &format!(
                "contains the control character U+{:04X} at position {at}; only tab, line feed \
                 and carriage return are allowed",
                u32::from(c)
            ),
        ));
    }
    let trimmed = text.trim();
    Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
}

/// The statement that records an entry and its event: one statement, so the two rows commit
/// together even outside an explicit transaction, in one round trip. The entry keeps its event
/// id, so a replay re-publishes the same id after the outbox row is gone.
const INSERT_ENTRY_AND_EVENT: &str = "WITH entry AS ( \
       INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date, \
         description, category, reverses_entry_id, recorded_at, event_id) \
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
       RETURNING id, seq, merchant_id, kind, amount_minor, currency, business_date, \
         description, category, reverses_entry_id, recorded_at), \
     event AS ( \
       INSERT INTO outbox (event_id, event_type, payload, traceparent) \
       VALUES ($11, $12, $13, $14)) \
     SELECT * FROM entry";

/// The time an entry is recorded at: now, truncated to the microseconds PostgreSQL keeps, so
/// that the event, the answer and the row agree exactly.
pub fn recording_time() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// Inserts the entry and its `entry.recorded.v1` event atomically, on a pool or inside the
/// caller's transaction.
pub async fn insert<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    entry: &NewEntry,
    reverses: Option<Uuid>,
    traceparent: &str,
) -> Result<Entry, ApiError> {
    let recorded_at = recording_time();
    let event = EntryRecordedV1 {
        event_type: ENTRY_RECORDED.into(),
        event_id: Uuid::now_v7(),
        entry_id: Uuid::now_v7(),
        merchant_id: entry.merchant.clone(),
        kind: entry.kind,
        amount_minor: entry.amount.minor(),
        currency: entry.currency,
        business_date: entry.business_date,
        recorded_at,
        reverses_entry_id: reverses,
    };
    let row: EntryRow = sqlx::query_as(INSERT_ENTRY_AND_EVENT)
        .bind(event.entry_id)
        .bind(entry.merchant.as_str())
        .bind(entry.kind.as_str())
        .bind(entry.amount.minor())
        .bind(entry.currency.code())
        .bind(entry.business_date)
        .bind(&entry.description)
        .bind(&entry.category)
        .bind(reverses)
        .bind(recorded_at)
        .bind(event.event_id)
        .bind(ENTRY_RECORDED)
        .bind(sqlx::types::Json(&event))
        .bind(traceparent)
        .fetch_one(executor)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db)
                if db.constraint() == Some("entries_reverses_entry_id_key") =>
            {
                ApiError::Conflict("the entry has already been reversed".into())
            }
            _ => ApiError::from(e),
        })?;
    Ok(row.into())
}

/// A new entry made ready to be written together with others ([`insert_batch`]): its ids, its
/// event and the answer its request gets, all decided before the write, so that the batch's
/// statement needs no `RETURNING` and a retry alone writes exactly the same rows.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    /// The answer (the entry as the API returns it, as it will read back).
    pub entry: Entry,
    checked: NewEntry,
    event_id: Uuid,
    recorded_at: OffsetDateTime,
    payload: String,
    traceparent: String,
    /// `entry` as JSON: the 201's body, stored with the request's key.
    answer: String,
}

impl PreparedEntry {
    /// Gives `checked` its entry and event ids, recorded at `recorded_at` (see
    /// [`recording_time`]).
    pub fn new(
        checked: NewEntry,
        recorded_at: OffsetDateTime,
        traceparent: String,
    ) -> Result<Self, serde_json::Error> {
        let event = EntryRecordedV1 {
            event_type: ENTRY_RECORDED.into(),
            event_id: Uuid::now_v7(),
            entry_id: Uuid::now_v7(),
            merchant_id: checked.merchant.clone(),
            kind: checked.kind,
            amount_minor: checked.amount.minor(),
            currency: checked.currency,
            business_date: checked.business_date,
            recorded_at,
            reverses_entry_id: None,
        };
        let payload = serde_json::to_string(&event)?;
        let entry = Entry {
            id: event.entry_id,
            merchant_id: checked.merchant.as_str().to_string(),
            kind: checked.kind.as_str().to_string(),
            amount: cashflow_contracts::money::format_minor(checked.amount.minor()),
            currency: checked.currency.code().to_string(),
            business_date: business_date::format(checked.business_date),
            description: checked.description.clone(),
            category: checked.category.clone(),
            reverses_entry_id: None,
            recorded_at: cashflow_contracts::format_timestamp(recorded_at),
        };
        let answer = serde_json::to_string(&entry)?;
        Ok(Self {
            entry,
            checked,
            event_id: event.event_id,
            recorded_at,
            payload,
            traceparent,
            answer,
        })
    }

    /// The entry as the 201 answers it (JSON).
    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// The merchant-day whose digest row the insert updates: batches write in this order, so
    /// that two concurrent batches take those row locks in the same order and never deadlock.
    pub fn lock_order(&self) -> (Date, &str) {
        (self.checked.business_date, self.checked.merchant.as_str())
    }
}

/// An `Idempotency-Key` a batch claims, with the answer its request gets if the claim succeeds:
/// the claim and the answer are one row version, written by the statement that does the work.
#[derive(Debug)]
pub struct KeyClaim<'a> {
    /// The key's merchant.
    pub merchant: &'a str,
    /// The key.
    pub key: &'a str,
    /// The fingerprint of the request (method, path, body).
    pub request_hash: &'a str,
    /// The answer's status.
    pub status: i16,
    /// The answer's body (JSON).
    pub body: &'a str,
}

/// The rows of a batch, `WITH ORDINALITY` (`n`): the twelve columns of an entry and its
/// event, then those given (a trailing type and column for the key, or none).
macro_rules! batch_rows {
    ($types:literal, $columns:literal) => {
        concat!(
            "batch AS ( \
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], \
                 $6::date[], $7::text[], $8::text[], $9::uuid[], $10::text[], $11::text[], \
                 $12::timestamptz[]",
            $types,
            ") WITH ORDINALITY AS b(id, merchant_id, kind, amount_minor, currency, \
                 business_date, description, category, event_id, payload, traceparent, \
                 recorded_at",
            $columns,
            ", n))"
        )
    };
}

/// The entries and their outbox events, from the rows of `$rows` in their order; `$event_type`
/// is the parameter holding the event's type.
macro_rules! entries_and_events {
    ($rows:literal, $event_type:literal) => {
        concat!(
            "entry AS ( \
               INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date, \
                 description, category, recorded_at, event_id) \
               SELECT id, merchant_id, kind, amount_minor, currency, business_date, description, \
                 category, recorded_at, event_id FROM ",
            $rows,
            " ORDER BY n), \
             event AS ( \
               INSERT INTO outbox (event_id, event_type, payload, traceparent) \
               SELECT event_id, ",
            $event_type,
            ", payload::jsonb, traceparent FROM ",
            $rows,
            " ORDER BY n)"
        )
    };
}

/// The statement that claims a batch's `Idempotency-Key`s, records the entries whose key it
/// claimed (and those without a key) with their events, and stores each claimed key's answer:
/// one statement in autocommit, so that a key's claim, its answer, its entry and its outbox row
/// commit together or not at all, in one round trip whatever the batch's size.
///
/// - A key is claimed as one request claims it ([`crate::idempotency`]): inserted, or taken
///   over once expired (`ON CONFLICT ... DO UPDATE ... WHERE` expired), and a key another
///   transaction holds makes the statement wait for that transaction's outcome. Keys are
///   claimed in array order, which the caller makes (merchant, key) order, so two batches
///   claiming overlapping keys cannot deadlock.
/// - An entry with a key is written only if its key was claimed (`kept` reads the claim's
///   `RETURNING`); the statement returns the keys it claimed, the caller looks up the others.
/// - Rows go in in array order (`WITH ORDINALITY`), which the caller makes the digest rows'
///   lock order.
const INSERT_BATCH: &str = concat!(
    "WITH ",
    batch_rows!(", $13::text[]", ", idempotency_key"),
    ", \
     claimed AS ( \
       INSERT INTO idempotency_keys AS k (merchant_id, idempotency_key, request_hash, \
         response_status, response_body) \
       SELECT m, key, hash, status, body::jsonb \
       FROM unnest($15::text[], $16::text[], $17::text[], $18::int2[], $19::text[]) \
         WITH ORDINALITY AS c(m, key, hash, status, body, n) ORDER BY n \
       ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET \
         request_hash = EXCLUDED.request_hash, response_status = EXCLUDED.response_status, \
         response_body = EXCLUDED.response_body, created_at = now() \
       WHERE k.created_at < now() - make_interval(secs => $20) \
       RETURNING merchant_id, idempotency_key), \
     kept AS ( \
       SELECT * FROM batch b WHERE b.idempotency_key IS NULL OR EXISTS ( \
         SELECT 1 FROM claimed c \
         WHERE c.merchant_id = b.merchant_id AND c.idempotency_key = b.idempotency_key)), ",
    entries_and_events!("kept", "$14"),
    " SELECT merchant_id, idempotency_key FROM claimed"
);

/// [`INSERT_BATCH`] for a batch without keys: the same rows, without the claim's CTEs, which
/// cost PostgreSQL even when they claim nothing (pgbench, one-entry batches: about a fifth
/// more transactions per second than with them). Returns no rows.
const INSERT_BATCH_WITHOUT_KEYS: &str = concat!(
    "WITH ",
    batch_rows!("", ""),
    ", ",
    entries_and_events!("batch", "$13"),
    " SELECT NULL::text, NULL::text WHERE false"
);

/// Writes `entries` (in this order; the i-th with the key `keys_of[i]`, if any) with their
/// events, claiming `claims` (in this order; one per key of `keys_of`) and storing their answers,
/// atomically, in autocommit. An entry whose key is not claimed (seen before and not expired) is
/// not written. Returns the claimed keys as (merchant, key); the database's error as it is: the
/// caller decides whether one row caused it. `window` is the keys' retention.
pub async fn insert_batch<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    entries: &[&PreparedEntry],
    keys_of: &[Option<&str>],
    claims: &[KeyClaim<'_>],
    window: std::time::Duration,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    debug_assert_eq!(entries.len(), keys_of.len());
    let column = |f: fn(&PreparedEntry) -> &str| entries.iter().map(|e| f(e)).collect::<Vec<_>>();
    let optional =
        |f: fn(&PreparedEntry) -> Option<&str>| entries.iter().map(|e| f(e)).collect::<Vec<_>>();
    let without_keys = claims.is_empty() && keys_of.iter().all(Option::is_none);
    let rows = sqlx::query_as(if without_keys {
        INSERT_BATCH_WITHOUT_KEYS
    } else {
        INSERT_BATCH
    })
    .bind(entries.iter().map(|e| e.entry.id).collect::<Vec<_>>())
    .bind(column(|e| e.checked.merchant.as_str()))
    .bind(column(|e| e.checked.kind.as_str()))
    .bind(
        entries
            .iter()
            .map(|e| e.checked.amount.minor())
            .collect::<Vec<_>>(),
    )
    .bind(column(|e| e.checked.currency.code()))
    .bind(
        entries
            .iter()
            .map(|e| e.checked.business_date)
            .collect::<Vec<_>>(),
    )
    .bind(optional(|e| e.checked.description.as_deref()))
    .bind(optional(|e| e.checked.category.as_deref()))
    .bind(entries.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(column(|e| e.payload.as_str()))
    .bind(column(|e| e.traceparent.as_str()))
    .bind(entries.iter().map(|e| e.recorded_at).collect::<Vec<_>>());
    if without_keys {
        return rows.bind(ENTRY_RECORDED).fetch_all(executor).await;
    }
    rows.bind(keys_of)
        .bind(ENTRY_RECORDED)
        .bind(claims.iter().map(|c| c.merchant).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.key).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.request_hash).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.status).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.body).collect::<Vec<_>>())
        .bind(window.as_secs_f64())
        .fetch_all(executor)
        .await
}

/// Reverses an entry: a new entry of the opposite kind and the same amount, booked today.
/// An entry is reversed at most once, and a reversal cannot itself be reversed.
pub async fn reverse(
    tx: &mut Transaction<'_, Postgres>,
    merchant: &MerchantId,
    id: Uuid,
    today: Date,
    description: Option<String>,
    traceparent: &str,
) -> Result<Entry, ApiError> {
    // FOR UPDATE: two concurrent reversals of one entry queue here instead of racing to the
    // unique constraint.
    let original: Option<EntryRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM entries WHERE merchant_id = $1 AND id = $2 FOR UPDATE"
    ))
    .bind(merchant.as_str())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let original = original.ok_or_else(|| ApiError::NotFound(format!("no entry {id}")))?;
    if original.reverses_entry_id.is_some() {
        return Err(ApiError::Unprocessable(format!(
            "entry {id} is a reversal and cannot be reversed"
        )));
    }
    let already: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM entries WHERE reverses_entry_id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(reversal) = already {
        return Err(ApiError::Conflict(format!(
            "entry {id} was already reversed by {reversal}"
        )));
    }
    let kind: EntryKind = original
        .kind
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    let reversal = NewEntry {
        merchant: merchant.clone(),
        kind: kind.opposite(),
        amount: Amount::from_minor(original.amount_minor)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored amount: {e}")))?,
        currency: original
            .currency
            .parse()
            .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?,
        business_date: today,
        description: description.or_else(|| Some(format!("reversal of {id}"))),
        category: original.category,
    };
    insert(&mut **tx, &reversal, Some(id), traceparent).await
}

/// One entry of a merchant.
pub async fn find(
    pool: &PgPool,
    merchant: &MerchantId,
    id: Uuid,
) -> Result<Option<Entry>, ApiError> {
    let row: Option<EntryRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM entries WHERE merchant_id = $1 AND id = $2"
    ))
    .bind(merchant.as_str())
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Entry::from))
}

/// A page of a merchant's entries for one day, in recording order, after `after_seq`. Returns
/// the entries and the position to continue from when there are more.
pub async fn list(
    pool: &PgPool,
    merchant: &MerchantId,
    date: Date,
    after_seq: i64,
    limit: u16,
) -> Result<(Vec<Entry>, Option<i64>), ApiError> {
    let mut rows: Vec<EntryRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM entries WHERE merchant_id = $1 AND business_date = $2 AND seq > $3 \
         ORDER BY seq LIMIT $4"
    ))
    .bind(merchant.as_str())
    .bind(date)
    .bind(after_seq)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let next = if rows.len() > usize::from(limit) {
        rows.truncate(usize::from(limit));
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    Ok((rows.into_iter().map(Entry::from).collect(), next))
}
