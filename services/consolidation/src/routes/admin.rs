//! Admin endpoints (scope `admin`): DLQ listing and redrive, and an on-demand reconcile pass.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use cashflow_platform::auth::{Authenticated, Principal};
use cashflow_platform::edge::{self, ApiError};
use cashflow_platform::problem::Problem;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::dlq::{self, DeadLetter};

/// Scope needed for the admin endpoints.
pub const ADMIN: &str = "admin";
/// Largest admin request body (a redrive names message ids; a reconcile request a range).
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.has_scope(ADMIN) {
        Ok(())
    } else {
        Err(
            Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed")
                .with_detail("the token lacks the admin scope")
                .into(),
        )
    }
}

/// The DLQ's content.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DlqListing {
    /// Approximate number of messages in the DLQ.
    pub depth: i64,
    /// The messages listed (up to `limit`).
    pub messages: Vec<DeadLetter>,
}

/// Which messages to redrive.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// DLQ message ids; absent or empty: all.
    #[serde(default)]
    pub message_ids: Vec<String>,
}

/// What a redrive did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RedriveResult {
    /// Messages moved back to the main queue.
    pub redriven: usize,
}

/// List DLQ messages with their failure reason and receive count.
#[utoipa::path(
    get,
    path = "/v1/admin/dlq",
    params(("limit" = Option<usize>, Query, description = "At most this many (default 100, max 1000)")),
    responses((status = 200, body = DlqListing), (status = 403, body = cashflow_platform::problem::Problem)),
    security(("bearer" = ["admin"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DlqListing>, ApiError> {
    require_admin(&principal)?;
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::parameter("limit", "must be 1 to 1000"))?,
    };
    let depth = dlq::depth(&state.sqs, &state.dlq_url)
        .await
        .map_err(|e| ApiError::unavailable("SQS", e))?;
    let messages = dlq::list(&state.sqs, &state.dlq_url, limit)
        .await
        .map_err(|e| ApiError::unavailable("SQS", e))?;
    Ok(Json(DlqListing { depth, messages }))
}

/// Move DLQ messages back to the main queue: all, or the ids given.
#[utoipa::path(
    post,
    path = "/v1/admin/dlq/redrive",
    request_body(content = Option<RedriveRequest>),
    responses((status = 200, body = RedriveResult), (status = 403, body = cashflow_platform::problem::Problem)),
    security(("bearer" = ["admin"]))
)]
pub async fn redrive(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RedriveResult>, ApiError> {
    require_admin(&principal)?;
    // No body, an empty one or `null`: redrive everything.
    let body = edge::json_body(&headers, body, ADMIN_BODY_LIMIT)?;
    let request: RedriveRequest = edge::optional_json_object(&body)?;
    let only: Option<HashSet<String>> =
        (!request.message_ids.is_empty()).then(|| request.message_ids.into_iter().collect());
    let redriven = dlq::redrive(&state.sqs, &state.dlq_url, &state.queue_url, only.as_ref())
        .await
        .map_err(|e| ApiError::unavailable("SQS", e))?;
    tracing::info!(redriven, subject = %principal.subject, "DLQ redrive");
    Ok(Json(RedriveResult { redriven }))
}

/// Which merchant-days to reconcile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// One merchant; absent: every merchant.
    pub merchant_id: Option<String>,
    /// First business date, `YYYY-MM-DD`.
    pub from: String,
    /// Last business date (inclusive).
    pub to: String,
}

/// Compare merchant-days with the ledger's digests now, replay those behind it, re-check, and
/// report. Synchronous: answers when the pass is over.
#[utoipa::path(
    post,
    path = "/v1/admin/reconcile",
    request_body = ReconcileRequest,
    responses(
        (status = 200, body = crate::reconcile::ReconcileReport),
        (status = 403, body = cashflow_platform::problem::Problem),
        (status = 409, body = cashflow_platform::problem::Problem, description = "Another pass is running, or reconciliation is not configured"),
        (status = 422, body = cashflow_platform::problem::Problem),
        (status = 503, body = cashflow_platform::problem::Problem, description = "The ledger or the database is unavailable"),
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn reconcile(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<crate::reconcile::ReconcileReport>, ApiError> {
    use crate::reconcile::ReconcileError;
    require_admin(&principal)?;
    let body = edge::json_body(&headers, body, ADMIN_BODY_LIMIT)?;
    let request: ReconcileRequest = edge::json_object(&body)?;
    let parse = |field: &str, value: &str| {
        cashflow_contracts::business_date::parse(value).map_err(|e| ApiError::parameter(field, e))
    };
    let from = parse("from", &request.from)?;
    let to = parse("to", &request.to)?;
    let Some(reconciler) = &state.reconciler else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "reconcile-disabled",
            "Reconciliation is not configured",
        )
        .with_detail("set RECONCILE_ENABLED, LEDGER_URL and the OAuth client to reconcile")
        .into());
    };
    check_range(from, to, reconciler.window(), reconciler.window_days())?;
    if let Some(merchant) = &request.merchant_id {
        merchant
            .parse::<cashflow_contracts::MerchantId>()
            .map_err(|e| ApiError::parameter("merchant_id", e.to_string()))?;
    }
    match reconciler
        .reconcile(from, to, request.merchant_id.as_deref())
        .await
    {
        Ok(report) => {
            tracing::info!(subject = %principal.subject, divergent = report.divergent.len(), repaired = report.repaired, "on-demand reconcile");
            Ok(Json(report))
        }
        Err(ReconcileError::Busy) => Err(Problem::new(
            StatusCode::CONFLICT,
            "reconcile-busy",
            "A reconcile pass is running",
        )
        .with_detail("another replica or request is reconciling; try again when it is done")
        .into()),
        Err(e @ (ReconcileError::Ledger(_) | ReconcileError::Database(_))) => {
            let what = match e {
                ReconcileError::Ledger(_) => "the ledger",
                _ => "the consolidation database",
            };
            Err(ApiError::unavailable(what, e))
        }
    }
}

/// A range within the replay window: older days may have lost their dedup records, and a
/// replay of them could count events twice.
pub fn check_range(
    from: time::Date,
    to: time::Date,
    window: (time::Date, time::Date),
    window_days: u16,
) -> Result<(), ApiError> {
    if to < from {
        return Err(ApiError::parameter("to", "must not be before from"));
    }
    if from < window.0 || to > window.1 {
        return Err(ApiError::parameter(
            "from",
            format!(
                "the range must lie within the replay window ({} to {}, RECONCILE_WINDOW_DAYS={window_days}): older days may have lost their dedup records",
                cashflow_contracts::business_date::format(window.0),
                cashflow_contracts::business_date::format(window.1)
            ),
        ));
    }
    Ok(())
}
