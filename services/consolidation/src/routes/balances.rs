//! Balance and report reads, cache-aside.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cashflow_contracts::{MerchantId, business_date};
use cashflow_platform::auth::Authenticated;
use cashflow_platform::edge::{ApiError, merchant_id};
use time::Date;

use super::AppState;
use crate::balances::{self, DayBalance, Report};
use crate::cache::{Cache, Lookup};

/// Scope needed to read balances.
pub const READ: &str = "balances:read";

fn date(field: &str, value: &str) -> Result<Date, ApiError> {
    business_date::parse(value).map_err(|e| ApiError::parameter(field, e))
}

fn json(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads through the cache: a hit answers from Redis, a miss reads PostgreSQL and stores the
/// answer, and Redis failing reads PostgreSQL only.
async fn cached(
    state: &AppState,
    merchant: &MerchantId,
    field: &str,
    from: Date,
    to: Date,
) -> Result<String, ApiError> {
    let lookup = state.cache.get(merchant.as_str(), field).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(body);
    }
    let report = balances::report_with(
        &state.pool,
        merchant,
        from,
        to,
        state.default_currency,
        state.opening_read,
    )
    .await?;
    let body = if from == to {
        serde_json::to_string(&report.days[0])
    } else {
        serde_json::to_string(&report)
    }
    .map_err(anyhow::Error::from)?;
    if let Lookup::Miss(version) = lookup {
        state
            .cache
            .put(merchant.as_str(), field, &body, version)
            .await;
    }
    Ok(body)
}

/// A day's balance: credits, debits, net, opening and closing balance. A day without entries is
/// zeros (with the opening balance carried), not 404.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/balances/{date}",
    params(("merchant" = String, Path), ("date" = String, Path, description = "YYYY-MM-DD")),
    responses(
        (status = 200, body = DayBalance),
        (status = 401, body = cashflow_platform::problem::Problem),
        (status = 403, body = cashflow_platform::problem::Problem),
        (status = 422, description = "Not a date", body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["balances:read"]))
)]
pub async fn day(
    State(state): State<AppState>,
    Path((merchant, day)): Path<(String, String)>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    principal.authorize(&merchant, READ)?;
    let merchant = merchant_id(&merchant)?;
    let day = date("date", &day)?;
    let body = cached(&state, &merchant, &Cache::day_field(day), day, day).await?;
    Ok(json(body))
}

/// The daily report over a range (every day, entries or not), as JSON or, with
/// `Accept: text/csv` or `format=csv`, as CSV.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/balances",
    params(
        ("merchant" = String, Path),
        ("from" = String, Query, description = "First day, YYYY-MM-DD"),
        ("to" = String, Query, description = "Last day, YYYY-MM-DD; at most REPORT_MAX_DAYS after from"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
    ),
    responses(
        (status = 200, body = Report, content_type = "application/json"),
        (status = 200, description = "CSV, one line per day", body = String, content_type = "text/csv"),
        (status = 422, body = cashflow_platform::problem::Problem),
    ),
    security(("bearer" = ["balances:read"]))
)]
pub async fn range(
    State(state): State<AppState>,
    Path(merchant): Path<String>,
    Authenticated(principal): Authenticated,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    principal.authorize(&merchant, READ)?;
    let merchant = merchant_id(&merchant)?;
    let required = |name: &str| {
        query
            .get(name)
            .ok_or_else(|| ApiError::parameter(name, "is required (YYYY-MM-DD)"))
    };
    let from = date("from", required("from")?)?;
    let to = date("to", required("to")?)?;
    if to < from {
        return Err(ApiError::parameter("to", "must not be before from"));
    }
    let days = (to - from).whole_days() + 1;
    if days > i64::from(state.report_max_days) {
        return Err(ApiError::parameter(
            "to",
            format!(
                "the range is {days} days; at most {} are allowed",
                state.report_max_days
            ),
        ));
    }
    let csv = match query.get("format").map(String::as_str) {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => {
            return Err(ApiError::parameter(
                "format",
                format!("{other:?} is not json or csv"),
            ));
        }
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let body = if from == to {
        // One day: build the report shape around the cached day.
        let day = cached(&state, &merchant, &Cache::day_field(from), from, to).await?;
        let day: DayBalance = serde_json::from_str(&day).map_err(anyhow::Error::from)?;
        serde_json::to_string(&Report {
            merchant_id: day.merchant_id.clone(),
            from: day.date.clone(),
            to: day.date.clone(),
            currency: day.currency.clone(),
            days: vec![day],
        })
        .map_err(anyhow::Error::from)?
    } else {
        cached(&state, &merchant, &Cache::report_field(from, to), from, to).await?
    };
    if !csv {
        return Ok(json(body));
    }
    let report: Report = serde_json::from_str(&body).map_err(anyhow::Error::from)?;
    let mut response = report.to_csv().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    Ok(response)
}
