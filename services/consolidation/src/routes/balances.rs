//! Balance and report reads, cache-aside.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use cashflow_contracts::{MerchantId, business_date};
use cashflow_platform::auth::Authenticated;
use cashflow_platform::edge::{ApiError, merchant_id};
use time::Date;

use super::AppState;
use crate::balances::{self, DayBalance, Report};
use crate::cache::{Cache, Lookup};
use cashflow_platform::backoff::Backoff;
use std::time::{Duration, Instant};

/// Scope needed to read balances.
pub const READ: &str = "balances:read";

fn date(field: &str, value: &str) -> Result<Date, ApiError> {
    business_date::parse(value).map_err(|e| ApiError::parameter(field, e))
}

const JSON: &str = "application/json";

/// What `Cache-Status` (RFC 9211) says of an answer served stale while PostgreSQL is unavailable.
pub const STALE_CACHE_STATUS: &str = "consolidation; hit; detail=stale-if-error";

/// An answer, and whether it is the last invalidated one served because PostgreSQL is
/// unavailable.
struct Answer {
    body: String,
    stale: bool,
}

impl Answer {
    /// The HTTP response: the body as `content_type`, marked stale when it is.
    fn respond(self, content_type: &'static str) -> Response {
        let mut response = self.body.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self.stale {
            headers.insert(
                HeaderName::from_static("cache-status"),
                HeaderValue::from_static(STALE_CACHE_STATUS),
            );
        }
        response
    }
}

/// Reads through the cache: a hit answers from Redis, a miss reads PostgreSQL and stores the
/// answer, and Redis failing reads PostgreSQL only. PostgreSQL unavailable answers the last
/// invalidated answer, if the cache kept one (stale-if-error), else 503.
async fn cached(
    state: &AppState,
    merchant: &MerchantId,
    field: &str,
    from: Date,
    to: Date,
) -> Result<Answer, ApiError> {
    let lookup = state.cache.get(merchant.as_str(), field).await;
    if let Lookup::Hit(body) = lookup {
        return Ok(Answer { body, stale: false });
    }
    let report = match read_retrying(state, merchant, from, to).await {
        Ok(report) => report,
        Err(error) => {
            if matches!(error, ApiError::Unavailable { .. })
                && let Some(body) = state.cache.stale(merchant.as_str(), field).await
            {
                tracing::debug!(%error, "answered stale while the database is unavailable");
                return Ok(Answer { body, stale: true });
            }
            return Err(error);
        }
    };
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
    Ok(Answer { body, stale: false })
}

/// The first delay before a read is tried again; each later one doubles, with jitter.
const READ_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));

/// The report from PostgreSQL, tried again while PostgreSQL drops or refuses it and
/// `state.read_retry_budget` is not spent. A read is idempotent, so a retry is always safe; it
/// rides out a restart or a failover, whose in-flight statements fail at once (57P01, a reset
/// connection) although the server answers again within a second. A read that failed by
/// waiting out a deadline has spent the budget and is not retried.
async fn read_retrying(
    state: &AppState,
    merchant: &MerchantId,
    from: Date,
    to: Date,
) -> Result<Report, ApiError> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        let read = balances::report(&state.pool, merchant, from, to, state.default_currency).await;
        let error = match read {
            Ok(report) => return Ok(report),
            Err(e) => ApiError::from(e),
        };
        attempt += 1;
        let delay = READ_RETRY.delay(attempt);
        if !matches!(error, ApiError::Unavailable { .. })
            || started.elapsed() + delay >= state.read_retry_budget
        {
            return Err(error);
        }
        tracing::debug!(%error, attempt, ?delay, "retrying a read the database dropped");
        state.cache.metrics().reads_retried.inc();
        tokio::time::sleep(delay).await;
    }
}

/// A day's balance: credits, debits, net, opening and closing balance. A day without entries is
/// zeros (with the opening balance carried), not 404.
#[utoipa::path(
    get,
    path = "/v1/merchants/{merchant}/balances/{date}",
    params(("merchant" = String, Path), ("date" = String, Path, description = "YYYY-MM-DD")),
    responses(
        (status = 200, body = DayBalance, headers(
            ("Cache-Status" = String, description = "Present only on an answer served stale because the database is unavailable: `consolidation; hit; detail=stale-if-error`; its `as_of` says how old it is")
        )),
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
    let answer = cached(&state, &merchant, &Cache::day_field(day), day, day).await?;
    Ok(answer.respond(JSON))
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
        (status = 200, body = Report, content_type = "application/json", headers(
            ("Cache-Status" = String, description = "Present only on an answer served stale because the database is unavailable: `consolidation; hit; detail=stale-if-error`")
        )),
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
    let answer = if from == to {
        // One day: build the report shape around the cached day.
        let answer = cached(&state, &merchant, &Cache::day_field(from), from, to).await?;
        let day: DayBalance = serde_json::from_str(&answer.body).map_err(anyhow::Error::from)?;
        let body = serde_json::to_string(&Report {
            merchant_id: day.merchant_id.clone(),
            from: day.date.clone(),
            to: day.date.clone(),
            currency: day.currency.clone(),
            days: vec![day],
        })
        .map_err(anyhow::Error::from)?;
        Answer { body, ..answer }
    } else {
        cached(&state, &merchant, &Cache::report_field(from, to), from, to).await?
    };
    if !csv {
        return Ok(answer.respond(JSON));
    }
    let report: Report = serde_json::from_str(&answer.body).map_err(anyhow::Error::from)?;
    let csv = Answer {
        body: report.to_csv(),
        ..answer
    };
    Ok(csv.respond("text/csv; charset=utf-8"))
}
