//! `/health/live` (the process answers) and `/health/ready` (PostgreSQL answers and no
//! supervised background task is down; nothing else, so that SQS or Redis being down never
//! takes a service out of its load balancer).

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;

use crate::supervise::Supervisor;

/// The two health routes, with their own state.
pub fn routes<S>(pool: PgPool, supervisor: Supervisor) -> Router<S> {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state((pool, supervisor))
}

async fn ready(
    State((pool, supervisor)): State<(PgPool, Supervisor)>,
) -> (StatusCode, std::borrow::Cow<'static, str>) {
    let check = sqlx::query("SELECT 1").execute(&pool);
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: PostgreSQL failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "postgres unavailable".into(),
            );
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "postgres timed out".into()),
    }
    match supervisor.check() {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(down) => (StatusCode::SERVICE_UNAVAILABLE, down.into()),
    }
}

/// The container health check (`<service> healthcheck`): asks the service on this machine for
/// `/health/ready` ([`ask_ready`]). The port is the one in `LISTEN_ADDR`, else `default_port`.
pub fn probe(default_port: u16) -> anyhow::Result<()> {
    let port = crate::config::optional("LISTEN_ADDR")
        .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map_or(default_port, |addr| addr.port());
    ask_ready(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
}

/// Asks the service at `address` for `/health/ready` over plain HTTP/1.0 (so the runtime image
/// needs no curl), within `timeout` for the connection and again for the answer; `Ok` on a 200.
/// The one readiness probe: the container health check and the harness's replicas both use it.
pub fn ask_ready(address: std::net::SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    use std::io::{Read, Write};

    use anyhow::{Context, bail};

    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("/health/ready answered {status:?}");
    }
    Ok(())
}
