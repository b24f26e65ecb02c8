//! The parts of a service's HTTP stack both services share: health, metrics and OpenAPI routes,
//! and the middleware every request passes through (request id, tracing span, metrics).

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::routing::MethodRouter;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{OnResponse, TraceLayer};
use utoipa::Modify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::telemetry::{HttpMetrics, metrics_route};

/// The request id header: taken from the caller when present, else a new UUID; echoed back.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds `/health/*`, `/metrics` and `/openapi.json` to `api`, and wraps everything in the
/// request id, tracing and metrics middleware, and the request deadline (innermost, so a
/// request that runs out of time is still traced and counted, as the 503 it answers).
pub fn service_router(
    api: Router,
    pool: PgPool,
    registry: Arc<Registry>,
    http_metrics: HttpMetrics,
    openapi: MethodRouter,
    request_deadline: std::time::Duration,
    supervisor: crate::supervise::Supervisor,
) -> Router {
    Router::new()
        .merge(api)
        .merge(crate::health::routes(pool, supervisor))
        .merge(metrics_route(registry))
        .route("/openapi.json", openapi)
        .layer(axum::middleware::from_fn_with_state(
            request_deadline,
            crate::deadline::request_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            HttpMetrics::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id
                    )
                })
                .on_response(ResponseLog),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// A response slower than this is logged at WARN, whatever its status.
pub const SLOW_RESPONSE: std::time::Duration = std::time::Duration::from_secs(1);

/// The line a response leaves in the log. A fast success is logged at DEBUG only
/// (`RUST_LOG=cashflow_platform::http=debug` shows every one): the gateway keeps the access log
/// (one JSON line per request, with its `X-Request-Id`) and `http_requests` counts them, and
/// formatting and writing a line per request was about a sixth of a cached read's CPU. A
/// client's error (4xx) is logged at INFO, a slow response at WARN; a 5xx is logged at ERROR
/// by the trace layer's failure hook and with its cause by the edge.
#[derive(Debug, Clone, Copy)]
struct ResponseLog;

impl<B> OnResponse<B> for ResponseLog {
    fn on_response(
        self,
        response: &axum::http::Response<B>,
        latency: std::time::Duration,
        _span: &tracing::Span,
    ) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_secs_f64() * 1e3;
        if latency >= SLOW_RESPONSE {
            tracing::warn!(status, latency_ms, "slow response");
        } else if status >= 400 {
            tracing::info!(status, latency_ms, "response");
        } else {
            tracing::debug!(status, latency_ms, "response");
        }
    }
}

/// Declares the `bearer` (JWT) security scheme the operations refer to.
#[derive(Debug)]
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// How long a service's start waits for PostgreSQL to accept its first connection.
pub const STARTUP_CONNECT: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects a pool to `url`, with every acquire and statement under `deadlines`, and applies
/// `migrator`.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    deadlines: &crate::deadline::Deadlines,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    use anyhow::Context;
    let pool = crate::deadline::pool_options(max_connections, deadlines)
        .connect_lazy_with(crate::deadline::connect_options(url, deadlines)?);
    // A PostgreSQL slow to accept at startup (a loaded machine, a failover) is waited for up to
    // STARTUP_CONNECT, past the request path's acquire deadline, which a first connection can
    // outlast; one that refuses or fails otherwise stops the start at once.
    let until = std::time::Instant::now() + STARTUP_CONNECT;
    loop {
        match pool.acquire().await {
            Ok(_) => break,
            Err(sqlx::Error::PoolTimedOut) if std::time::Instant::now() < until => {
                tracing::warn!("PostgreSQL is slow to accept a connection; trying again");
            }
            Err(e) => return Err(e).context("connecting to PostgreSQL"),
        }
    }
    // The migrations on a one-connection pool of their own, under the startup deadline: the
    // service's pool acquires under the request path's deadline, which a loaded machine can
    // miss while the migrator waits for it (seen in CI: "applying the migrations: pool timed
    // out").
    let migrations = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(STARTUP_CONNECT)
        .connect_lazy_with(crate::deadline::connect_options(url, deadlines)?);
    let migrated = migrator
        .run(&migrations)
        .await
        .context("applying the migrations");
    migrations.close().await;
    migrated?;
    Ok(pool)
}
