//! Admin endpoints (scope `admin`): DLQ listing and redrive.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use cashflow_platform::auth::{Authenticated, Principal};
use cashflow_platform::problem::Problem;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::dlq::{self, DeadLetter};
use crate::error::ApiError;

/// Scope needed for the admin endpoints.
pub const ADMIN: &str = "admin";

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
        .map_err(ApiError::sqs)?;
    let messages = dlq::list(&state.sqs, &state.dlq_url, limit)
        .await
        .map_err(ApiError::sqs)?;
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
    body: axum::body::Bytes,
) -> Result<Json<RedriveResult>, ApiError> {
    require_admin(&principal)?;
    // No body, an empty one or `null`: redrive everything.
    let request: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        // An object (or null), not the array form serde would also take for a struct.
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Null) => RedriveRequest::default(),
            Ok(value @ serde_json::Value::Object(_)) => serde_json::from_value(value)
                .map_err(|e| ApiError::parameter("body", e.to_string()))?,
            Ok(_) => return Err(ApiError::parameter("body", "must be a JSON object")),
            Err(e) => return Err(ApiError::parameter("body", e.to_string())),
        }
    };
    let only: Option<HashSet<String>> =
        (!request.message_ids.is_empty()).then(|| request.message_ids.into_iter().collect());
    let redriven = dlq::redrive(&state.sqs, &state.dlq_url, &state.queue_url, only.as_ref())
        .await
        .map_err(ApiError::sqs)?;
    tracing::info!(redriven, subject = %principal.subject, "DLQ redrive");
    Ok(Json(RedriveResult { redriven }))
}
