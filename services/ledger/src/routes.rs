//! The HTTP API: routes, shared state and the middleware every request passes through.

pub mod entries_api {
    //! Entry handlers (re-exported for the OpenAPI document).
    pub use super::entries::*;
}
mod entries;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::telemetry::{HttpMetrics, metrics_route};
use sqlx::PgPool;
use tokio::sync::Notify;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use self::entries::{EntryPage, RecordEntryRequest, ReversalRequest};
use crate::config::EntryRules;
use crate::metrics::Metrics;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The ledger database.
    pub pool: PgPool,
    /// Token verification.
    pub verifier: Arc<JwtVerifier>,
    /// Rules for new entries.
    pub rules: Arc<EntryRules>,
    /// Wakes the outbox relay after a commit.
    pub relay_wake: Arc<Notify>,
    /// Largest request body.
    pub max_body_bytes: usize,
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
            "/v1/merchants/{merchant}/entries",
            post(entries::record).get(entries::list),
        )
        .route(
            "/v1/merchants/{merchant}/entries/{id}",
            get(entries::get_one),
        )
        .route(
            "/v1/merchants/{merchant}/entries/{id}/reversal",
            post(entries::reverse),
        )
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
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
