//! The HTTP API: routes, shared state and the middleware every request passes through.

pub mod admin;
pub mod balances;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use cashflow_contracts::Currency;
use cashflow_platform::auth::JwtVerifier;
use sqlx::PgPool;

use crate::cache::Cache;
use crate::metrics::Metrics;

/// What handlers share, behind one `Arc`: axum clones the state for every request, and cloning
/// the fields themselves (two `String`s among them) was an allocation per request.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state of the handlers.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The handlers' state's fields.
#[derive(Debug)]
pub struct Shared {
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
    /// The reconciler, when configured.
    pub reconciler: Option<Arc<crate::reconcile::Reconciler>>,
    /// How long a read may keep retrying PostgreSQL after it dropped or refused the read (the
    /// pool-acquire deadline), before the answer is the stale copy or a 503.
    pub read_retry_budget: std::time::Duration,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

/// The whole application router.
pub fn router(
    state: AppState,
    metrics: &Metrics,
    request_deadline: Duration,
    supervisor: cashflow_platform::supervise::Supervisor,
) -> Router {
    let api = Router::new()
        .route(
            "/v1/merchants/{merchant}/balances/{date}",
            get(balances::day),
        )
        .route("/v1/merchants/{merchant}/balances", get(balances::range))
        .route("/v1/admin/dlq", get(admin::list))
        .route("/v1/admin/dlq/redrive", post(admin::redrive))
        .route("/v1/admin/reconcile", post(admin::reconcile))
        .layer(DefaultBodyLimit::max(admin::ADMIN_BODY_LIMIT))
        .with_state(state.clone());
    cashflow_platform::http::service_router(
        api,
        state.pool.clone(),
        Arc::clone(&metrics.registry),
        metrics.http.clone(),
        cashflow_platform::openapi::openapi_route(|| Ok(crate::openapi::document())),
        request_deadline,
        supervisor,
    )
}
