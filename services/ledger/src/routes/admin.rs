//! Service-to-service routes for the consolidation's reconciler: digests of merchant-days and
//! replays of their events. Under `/internal/`, which the API Gateway and the local gateway do not
//! route, and which the Kubernetes NetworkPolicy opens to the consolidation only. The caller must
//! present a client-credentials token (no merchants: a service, not a merchant) with the
//! `ledger:reconcile` scope; anything else is 403.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cashflow_contracts::business_date;
use cashflow_contracts::digest::DigestPage;
use cashflow_platform::auth::{Authenticated, Principal};
use cashflow_platform::edge::{self, ApiError};
use cashflow_platform::problem::Problem;
use serde::Deserialize;
use time::Date;

use super::AppState;
use crate::reconcile::{self, DayRange, ReplayOutcome};

/// Scope of the reconciliation routes.
pub const RECONCILE: &str = "ledger:reconcile";
/// Default and largest digest page.
const DEFAULT_LIMIT: u16 = 1000;
const MAX_LIMIT: u16 = 5000;

fn require_reconciler(principal: &Principal) -> Result<(), ApiError> {
    let refused = if !principal.has_scope(RECONCILE) {
        format!("the token lacks the {RECONCILE} scope")
    } else if !principal.merchants.is_empty() {
        "a merchant's token cannot reconcile: use the service's client-credentials token".into()
    } else {
        return Ok(());
    };
    Err(
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
            .with_detail(refused)
            .into(),
    )
}

fn parse_date(field: &str, value: Option<&String>) -> Result<Date, ApiError> {
    let value = value.ok_or_else(|| ApiError::parameter(field, "is required (YYYY-MM-DD)"))?;
    business_date::parse(value).map_err(|e| ApiError::parameter(field, e))
}

fn check_range(from: Date, to: Date, max_days: u16) -> Result<(), ApiError> {
    if to < from {
        return Err(ApiError::parameter("to", "must not be before from"));
    }
    if (to - from).whole_days() >= i64::from(max_days) {
        return Err(ApiError::parameter(
            "to",
            format!("the range is longer than {max_days} days"),
        ));
    }
    Ok(())
}

/// The digest of each merchant-day with entries in a range of business dates.
#[utoipa::path(
    get,
    path = "/internal/v1/digests",
    params(
        ("from" = String, Query, description = "First business date, YYYY-MM-DD"),
        ("to" = String, Query, description = "Last business date (inclusive)"),
        ("merchant" = Option<String>, Query, description = "One merchant; default every merchant with entries"),
        ("limit" = Option<u16>, Query, description = "Page size, 1 to 5000 (default 1000)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = DigestPageDoc, description = "Merchant-days in (business_date, merchant_id) order"),
        (status = 403, body = cashflow_platform::problem::Problem, description = "Not a service token with ledger:reconcile"),
        (status = 422, body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["ledger:reconcile"]))
)]
pub async fn digests(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DigestPage>, ApiError> {
    require_reconciler(&principal)?;
    let from = parse_date("from", query.get("from"))?;
    let to = parse_date("to", query.get("to"))?;
    check_range(from, to, state.replay.max_days)?;
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<u16>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| ApiError::parameter("limit", format!("must be 1 to {MAX_LIMIT}")))?,
    };
    let after =
        match query.get("cursor") {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::parameter("cursor", "is not a cursor this API returned")
            })?),
        };
    let range = DayRange {
        from,
        to,
        merchant: query.get("merchant").cloned(),
    };
    let (items, next) = reconcile::digests(&state.pool, &range, after, limit).await?;
    Ok(Json(DigestPage {
        items,
        next_cursor: next
            .map(|(d, m)| URL_SAFE_NO_PAD.encode(format!("{}|{m}", business_date::format(d)))),
    }))
}

fn decode_cursor(cursor: &str) -> Option<(Date, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (date, merchant) = text.split_once('|')?;
    Some((business_date::parse(date).ok()?, merchant.to_string()))
}

/// Body of `POST /internal/v1/replays`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The merchant whose events to re-publish.
    pub merchant_id: String,
    /// First business date, `YYYY-MM-DD`.
    pub from: String,
    /// Last business date (inclusive); default `from`.
    pub to: Option<String>,
}

/// Re-publish the `entry.recorded.v1` events of a merchant's days through the outbox, with their
/// original event ids (the consumer's dedup makes this idempotent), rate-limited process-wide.
#[utoipa::path(
    post,
    path = "/internal/v1/replays",
    request_body = ReplayRequest,
    responses(
        (status = 200, body = ReplayOutcomeDoc, description = "Events put back in the outbox"),
        (status = 403, body = cashflow_platform::problem::Problem, description = "Not a service token with ledger:reconcile"),
        (status = 422, body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["ledger:reconcile"]))
)]
pub async fn replay(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ReplayOutcome>, ApiError> {
    require_reconciler(&principal)?;
    let body = edge::json_body(&headers, body, state.max_body_bytes)?;
    let request: ReplayRequest = edge::json_object(&body)?;
    let merchant: cashflow_contracts::MerchantId =
        request
            .merchant_id
            .parse()
            .map_err(|e: cashflow_contracts::InvalidMerchantId| {
                ApiError::parameter("merchant_id", e.to_string())
            })?;
    let from = business_date::parse(&request.from).map_err(|e| ApiError::parameter("from", e))?;
    let to = match &request.to {
        None => from,
        Some(to) => business_date::parse(to).map_err(|e| ApiError::parameter("to", e))?,
    };
    check_range(from, to, state.replay.max_days)?;
    let outcome = reconcile::replay(
        &state.pool,
        merchant.as_str(),
        from,
        to,
        &state.replay.pacer,
    )
    .await?;
    state.relay_wake.notify_one();
    tracing::info!(
        merchant = %merchant,
        from = %request.from,
        replayed = outcome.replayed,
        skipped = outcome.skipped,
        caller = %principal.subject,
        "replayed events"
    );
    Ok(Json(outcome))
}

/// OpenAPI shape of [`DigestPage`] (defined in the contracts crate, which has no utoipa).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DigestPageDoc {
    /// Merchant-days.
    items: Vec<DayDigestDoc>,
    /// Pass as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

/// OpenAPI shape of one merchant-day digest.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DayDigestDoc {
    /// Whose books.
    merchant_id: String,
    /// `YYYY-MM-DD`.
    #[schema(example = "2026-11-24")]
    business_date: String,
    /// Entries recorded for the day.
    entry_count: i64,
    /// Sum of credits in minor units.
    credits_minor: i64,
    /// Sum of debits in minor units.
    debits_minor: i64,
    /// XOR over the day's entries of the first 8 bytes of SHA-256(entry id bytes), 16 hex digits.
    #[schema(example = "7c3ccd10bb7ec37b")]
    checksum: String,
}

/// OpenAPI shape of [`ReplayOutcome`].
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReplayOutcomeDoc {
    /// Events put back in the outbox.
    replayed: u64,
    /// Entries without a stored event id, not replayed.
    skipped: u64,
}
