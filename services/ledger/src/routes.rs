//! The HTTP API: routes, shared state and the middleware every request passes through.

pub mod entries_api {
    //! Entry handlers (re-exported for the OpenAPI document).
    pub use super::entries::*;
}
mod entries;

pub mod admin;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use cashflow_platform::auth::JwtVerifier;
use sqlx::PgPool;
use tokio::sync::Notify;

pub use self::entries::{EntryPage, ReversalRequest};
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
    /// Replay pacing and bounds.
    pub replay: Arc<ReplaySettings>,
    /// How long an Idempotency-Key is remembered.
    pub idempotency_window: std::time::Duration,
    /// Writes new entries in batches (group commit).
    pub writer: crate::group_commit::GroupCommit,
}

/// What the reconciliation routes share.
#[derive(Debug)]
pub struct ReplaySettings {
    /// The process-wide replay rate limit.
    pub pacer: crate::reconcile::Pacer,
    /// Longest range of days per request.
    pub max_days: u16,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

/// Deadline of a request on the internal listener: a replay is paced
/// (`REPLAY_EVENTS_PER_SECOND`) and answers when its events are in the outbox, which can take
/// longer than a public request may.
pub const INTERNAL_REQUEST_DEADLINE: Duration = Duration::from_secs(300);

/// The service-to-service router, served on its own listener (`INTERNAL_LISTEN_ADDR`) so that
/// a NetworkPolicy can open it to the consolidation only: digests and replays.
pub fn internal_router(
    state: AppState,
    metrics: &Metrics,
    supervisor: cashflow_platform::supervise::Supervisor,
) -> Router {
    let api = Router::new()
        .route("/internal/v1/digests", get(admin::digests))
        .route("/internal/v1/replays", post(admin::replay))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state.clone());
    cashflow_platform::http::service_router(
        api,
        state.pool.clone(),
        Arc::clone(&metrics.registry),
        metrics.http.clone(),
        {
            let rules = state.rules.clone();
            cashflow_platform::openapi::openapi_route(move || {
                Ok(crate::openapi::internal_document(&rules)?)
            })
        },
        INTERNAL_REQUEST_DEADLINE,
        supervisor,
    )
}

/// The public application router.
pub fn router(
    state: AppState,
    metrics: &Metrics,
    request_deadline: Duration,
    supervisor: cashflow_platform::supervise::Supervisor,
) -> Router {
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
    cashflow_platform::http::service_router(
        api,
        state.pool.clone(),
        Arc::clone(&metrics.registry),
        metrics.http.clone(),
        {
            let rules = state.rules.clone();
            cashflow_platform::openapi::openapi_route(move || {
                Ok(crate::openapi::public_document(&rules)?)
            })
        },
        request_deadline,
        supervisor,
    )
}
