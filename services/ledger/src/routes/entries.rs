//! Entry handlers: record, reverse, read, list.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cashflow_contracts::business_date;
use cashflow_platform::auth::Authenticated;
use cashflow_platform::edge::{self, ApiError};
use cashflow_platform::problem::FieldError;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

use super::AppState;
use crate::entries::{self, Entry};
use crate::entry_request::RecordEntryRequest;
use crate::idempotency::{Claim, Idempotency};

/// Scope needed to record and reverse.
pub const WRITE: &str = "entries:write";
/// Scope needed to read.
pub const READ: &str = "entries:read";
/// Default and largest page size.
const DEFAULT_LIMIT: u16 = 50;
const MAX_LIMIT: u16 = 200;

/// Optional body of `POST .../entries/{id}/reversal`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReversalRequest {
    /// Up to 200 characters; default "reversal of {id}".
    description: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntryPage {
    /// Entries in recording order.
    pub items: Vec<Entry>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The W3C trace context of the request, or a new one.
fn traceparent(headers: &HeaderMap) -> String {
    let incoming = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            let parts: Vec<&str> = v.split('-').collect();
            parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16
        });
    match incoming {
        Some(value) => value.to_string(),
        None => {
            let trace = Uuid::new_v4().simple().to_string();
            let span = &Uuid::new_v4().simple().to_string()[..16];
            format!("00-{trace}-{span}-01")
        }
    }
}

/// A creating request's answer: `status` with `body` (JSON text) and, when the entry's `id` is
/// known, its `Location`.
fn created(body: String, id: Option<&str>, status: StatusCode, merchant: &str) -> Response {
    let json = HeaderValue::from_static("application/json");
    let mut response = (status, [(header::CONTENT_TYPE, json)], body).into_response();
    if let Some(value) = id.and_then(|id| {
        HeaderValue::from_str(&format!("/v1/merchants/{merchant}/entries/{id}")).ok()
    }) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// [`created`] for a JSON value (the reversal's path).
fn created_value(body: &serde_json::Value, status: StatusCode, merchant: &str) -> Response {
    let id = body.get("id").and_then(|id| id.as_str());
    created(body.to_string(), id, status, merchant)
}

/// How a creating request's transaction starts.
enum Begun {
    /// Do the work in this transaction.
    Fresh(Transaction<'static, Postgres>),
    /// The Idempotency-Key was seen with this request: its first answer.
    Replay(Response),
}

/// Opens the transaction of a creating request and claims its Idempotency-Key, if any.
async fn begin(
    state: &AppState,
    merchant: &str,
    idempotency: Option<&Idempotency>,
) -> Result<Begun, ApiError> {
    let mut tx = state.pool.begin().await?;
    if let Some(key) = idempotency
        && let Claim::Replay(status, body) = key
            .claim(&mut tx, merchant, state.idempotency_window)
            .await?
    {
        return Ok(Begun::Replay(created_value(&body, status, merchant)));
    }
    Ok(Begun::Fresh(tx))
}

/// Stores the answer with the key, commits, wakes the relay and answers 201.
async fn commit_created(
    state: &AppState,
    mut tx: Transaction<'static, Postgres>,
    merchant: &str,
    idempotency: Option<&Idempotency>,
    entry: &Entry,
) -> Result<Response, ApiError> {
    let body = serde_json::to_value(entry).map_err(anyhow::Error::from)?;
    if let Some(key) = idempotency {
        key.complete(&mut tx, merchant, StatusCode::CREATED, &body)
            .await?;
    }
    tx.commit().await?;
    state.relay_wake.notify_one();
    Ok(created_value(&body, StatusCode::CREATED, merchant))
}

/// Record a credit or a debit.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/entries",
    params(
        ("merchant" = String, Path, description = "Merchant id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer")
    ),
    request_body = RecordEntryRequest,
    responses(
        (status = 201, description = "Recorded", body = Entry),
        (status = 400, description = "Malformed JSON", body = cashflow_platform::problem::Problem),
        (status = 401, description = "Missing or invalid token", body = cashflow_platform::problem::Problem),
        (status = 403, description = "Scope or merchant not granted", body = cashflow_platform::problem::Problem),
        (status = 413, description = "Body too large", body = cashflow_platform::problem::Problem),
        (status = 415, description = "Not JSON", body = cashflow_platform::problem::Problem),
        (status = 422, description = "Invalid fields, or Idempotency-Key reused for another body", body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["entries:write"]))
)]
pub async fn record(
    State(state): State<AppState>,
    Path(merchant): Path<String>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.authorize(&merchant, WRITE)?;
    let merchant_id = edge::merchant_id(&merchant)?;
    let body = edge::json_body(&headers, body, state.max_body_bytes)?;
    // Not JSON is a 400; JSON other than an object a 422 naming `body` (the edge's rules).
    let new_entry = edge::json_object::<RecordEntryRequest>(&body)?.check(
        merchant_id,
        &state.rules,
        entries::today(&state.rules)?,
    )?;
    let path = format!("/v1/merchants/{merchant}/entries");
    let idempotency = Idempotency::from_request(&headers, "POST", &path, &body)?;

    // Written with concurrent requests in one statement and one commit; answered after it.
    let answer = state
        .writer
        .record(new_entry, idempotency, traceparent(&headers))
        .await?;
    Ok(created(
        answer.body,
        answer.id.as_deref(),
        answer.status,
        &merchant,
    ))
}

/// Reverse an entry (once; a reversal cannot be reversed). The reversal is a new entry of the
/// opposite kind and the same amount, booked today.
#[utoipa::path(
    post,
    path = "/v1/merchants/{merchant}/entries/{id}/reversal",
    params(
        ("merchant" = String, Path, description = "Merchant id"),
        ("id" = Uuid, Path, description = "Entry to reverse"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key get the first answer")
    ),
    request_body(content = Option<ReversalRequest>, description = "Optional"),
    responses(
        (status = 201, description = "The reversal entry", body = Entry),
        (status = 404, description = "No such entry", body = cashflow_platform::problem::Problem),
        (status = 409, description = "Already reversed", body = cashflow_platform::problem::Problem),
        (status = 422, description = "The entry is itself a reversal", body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["entries:write"]))
)]
pub async fn reverse(
    State(state): State<AppState>,
    Path((merchant, id)): Path<(String, String)>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    principal.authorize(&merchant, WRITE)?;
    let merchant_id = edge::merchant_id(&merchant)?;
    let id: Uuid = id
        .parse()
        .map_err(|_| ApiError::NotFound(format!("no entry {id}")))?;
    let body = edge::json_body(&headers, body, state.max_body_bytes)?;
    let request: ReversalRequest = edge::optional_json_object(&body)?;
    let description = match &request.description {
        None => None,
        Some(text) => entries::check_text("description", text, entries::MAX_DESCRIPTION)
            .map_err(|e| ApiError::Validation(vec![e]))?,
    };
    let path = format!("/v1/merchants/{merchant}/entries/{id}/reversal");
    let idempotency = Idempotency::from_request(&headers, "POST", &path, &body)?;

    let mut tx = match begin(&state, &merchant, idempotency.as_ref()).await? {
        Begun::Fresh(tx) => tx,
        Begun::Replay(response) => return Ok(response),
    };
    let today = entries::today(&state.rules)?;
    let entry = entries::reverse(
        &mut tx,
        &merchant_id,
        id,
        today,
        description,
        &traceparent(&headers),
    )
    .await?;
    commit_created(&state, tx, &merchant, idempotency.as_ref(), &entry).await
}

/// Read one entry.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/entries/{id}",
    params(("merchant" = String, Path), ("id" = Uuid, Path)),
    responses(
        (status = 200, body = Entry),
        (status = 404, body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["entries:read"]))
)]
pub async fn get_one(
    State(state): State<AppState>,
    Path((merchant, id)): Path<(String, String)>,
    Authenticated(principal): Authenticated,
) -> Result<Json<Entry>, ApiError> {
    principal.authorize(&merchant, READ)?;
    let merchant_id = edge::merchant_id(&merchant)?;
    let not_found = || ApiError::NotFound(format!("no entry {id} for merchant {merchant}"));
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    entries::find(&state.pool, &merchant_id, uuid)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// List a day's entries, in recording order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/entries",
    params(
        ("merchant" = String, Path),
        ("date" = String, Query, description = "Business date, YYYY-MM-DD"),
        ("limit" = Option<u16>, Query, description = "Page size, 1 to 200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = EntryPage),
        (status = 400, description = "A cursor this API did not issue", body = cashflow_platform::problem::Problem),
        (status = 422, body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["entries:read"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Path(merchant): Path<String>,
    Authenticated(principal): Authenticated,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EntryPage>, ApiError> {
    principal.authorize(&merchant, READ)?;
    let merchant_id = edge::merchant_id(&merchant)?;
    let bad = |field: &str, message: String| ApiError::parameter(field, message);
    let date = query
        .get("date")
        .ok_or_else(|| bad("date", "is required (YYYY-MM-DD)".into()))
        .and_then(|d| business_date::parse(d).map_err(|e| bad("date", e)))?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u16>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| bad("limit", format!("must be 1 to {MAX_LIMIT}")))?,
    };
    let after = match query.get("cursor") {
        None => 0,
        Some(c) => cursor::decode(c, &merchant_id, date).ok_or_else(|| {
            ApiError::InvalidCursor(FieldError {
                field: "cursor".into(),
                message: "is not a cursor this API returned for this merchant and date; pass \
                          next_cursor of the previous page unchanged"
                    .into(),
            })
        })?,
    };
    let (items, next) = entries::list(&state.pool, &merchant_id, date, after, limit).await?;
    Ok(Json(EntryPage {
        items,
        next_cursor: next.map(|seq| cursor::encode(&merchant_id, date, seq)),
    }))
}

mod cursor {
    //! Page cursors. A cursor is the position (`seq`) of the last entry of a page plus a tag
    //! binding it to the merchant and date it was issued for, base64url-encoded. Decoding
    //! checks the length, the tag and that the position is positive, so a cursor the API never
    //! issued (`LTU`, base64 of "-5"), or one issued for another merchant or day, is refused
    //! instead of silently listing from an arbitrary place.
    //!
    //! The tag is a checksum, not a secret MAC: the position is not confidential and every
    //! query is authorised on the merchant anyway; the tag's job is to reject made-up input.

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use cashflow_contracts::{MerchantId, business_date};
    use sha2::{Digest, Sha256};
    use time::Date;

    const TAG_LEN: usize = 8;

    fn tag(merchant: &MerchantId, date: Date, seq: i64) -> [u8; TAG_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(b"ledger-entries-cursor-v1\0");
        hasher.update(merchant.as_str().as_bytes());
        hasher.update(b"\0");
        hasher.update(business_date::format(date).as_bytes());
        hasher.update(seq.to_be_bytes());
        let digest = hasher.finalize();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }

    /// The cursor continuing after `seq`.
    pub fn encode(merchant: &MerchantId, date: Date, seq: i64) -> String {
        let mut bytes = seq.to_be_bytes().to_vec();
        bytes.extend_from_slice(&tag(merchant, date, seq));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position in a cursor this API issued for `merchant` and `date`, else `None`.
    pub fn decode(cursor: &str, merchant: &MerchantId, date: Date) -> Option<i64> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if bytes.len() != 8 + TAG_LEN {
            return None;
        }
        let (seq, given) = bytes.split_at(8);
        let seq = i64::from_be_bytes(seq.try_into().ok()?);
        (seq > 0 && given == tag(merchant, date, seq)).then_some(seq)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_issued_cursors_decode() {
            let m1: MerchantId = "m1".parse().expect("merchant");
            let m2: MerchantId = "m2".parse().expect("merchant");
            let day = time::macros::date!(2026 - 11 - 24);
            let cursor = encode(&m1, day, 42);
            assert_eq!(decode(&cursor, &m1, day), Some(42));
            assert_eq!(decode(&cursor, &m2, day), None, "another merchant");
            assert_eq!(decode(&cursor, &m1, day.next_day().expect("day")), None);
            assert_eq!(decode("LTU", &m1, day), None, "base64 of -5");
            assert_eq!(decode(&URL_SAFE_NO_PAD.encode("42"), &m1, day), None);
            assert_eq!(decode("not base64!", &m1, day), None);
            let mut forged = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
            forged[7] ^= 1;
            assert_eq!(decode(&URL_SAFE_NO_PAD.encode(forged), &m1, day), None);
        }
    }
}
