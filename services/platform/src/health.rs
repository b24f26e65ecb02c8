//! `/health/live` (the process answers) and `/health/ready` (PostgreSQL answers; nothing else,
//! so that SQS or Redis being down never takes a service out of its load balancer).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;

/// The two health routes, with their own state.
pub fn routes<S>(pool: PgPool) -> Router<S> {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state(pool)
}

async fn ready(State(pool): State<PgPool>) -> (StatusCode, &'static str) {
    let check = sqlx::query("SELECT 1").execute(&pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: PostgreSQL failed");
            (StatusCode::SERVICE_UNAVAILABLE, "postgres unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "postgres timed out"),
    }
}
