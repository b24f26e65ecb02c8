//! The HTTP API: routes, shared state and the middleware every request passes through.

pub mod admin;
pub mod balances;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use cashflow_contracts::Currency;
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::telemetry::{HttpMetrics, metrics_route};
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::cache::Cache;
use crate::metrics::Metrics;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The consolidation database.
    pub pool: PgPool,
    /// Token verification.
    pub verifier: Arc<JwtVerifier>,
    /// The read cache.
    pub cache: Arc<Cache>,
    /// SQS, for the DLQ tooling.
    pub sqs: aws_sdk_sqs::Client,
    /// The entries queue.
    pub queue_url: String,
    /// Its DLQ.
    pub dlq_url: String,
    /// Longest report range.
    pub report_max_days: u16,
    /// Currency of merchants without entries.
    pub default_currency: Currency,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole application router.
pub fn router(state: AppState, metrics: &Metrics) -> Router {
    let api = Router::new()
        .route(
            "/v1/merchants/{merchant}/balances/{date}",
            get(balances::day),
        )
        .route("/v1/merchants/{merchant}/balances", get(balances::range))
        .route("/v1/admin/dlq", get(admin::list))
        .route("/v1/admin/dlq/redrive", post(admin::redrive))
        .with_state(state.clone());
    Router::new()
        .merge(api)
        .merge(cashflow_platform::health::routes(state.pool.clone()))
        .merge(metrics_route(Arc::clone(&metrics.registry)))
        .route("/openapi.json", get(crate::openapi::serve))
        .layer(axum::middleware::from_fn_with_state(metrics.http.clone(), HttpMetrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
