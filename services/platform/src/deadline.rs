//! Deadlines on every network call, and the one answer both services give when a dependency is
//! down or too slow: `503 application/problem+json` with `Retry-After`.
//!
//! Each wait has its own bound, read from the environment once at start ([`Deadlines`]): the
//! whole HTTP request, a pool acquire (which includes connecting), a SQL statement (PostgreSQL's
//! `statement_timeout`, set on every connection), the SQS client's connect and attempt, and the
//! shutdown drain. Redis and JWKS bounds live with their clients. The request deadline is the
//! outermost one: it must be longer than the others so that a slow dependency is reported by
//! its own, more precise error first.

use std::str::FromStr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::problem::Problem;

/// What a client is told to wait before retrying a 503, in seconds. Short: the outages these
/// answers report (a failover, a blip, a saturated pool) are expected to last seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The deadlines both services share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Whole HTTP request (`HTTP_REQUEST_TIMEOUT_MS`, default 10000).
    pub request: Duration,
    /// Waiting for a pooled connection, connecting included (`DATABASE_ACQUIRE_TIMEOUT_MS`,
    /// default 5000).
    pub database_acquire: Duration,
    /// One SQL statement, enforced by PostgreSQL (`DATABASE_STATEMENT_TIMEOUT_MS`, default 5000).
    pub database_statement: Duration,
    /// Opening a connection to SQS (`SQS_CONNECT_TIMEOUT_MS`, default 2000).
    pub sqs_connect: Duration,
    /// One SQS call attempt, a long poll's wait excluded (`SQS_ATTEMPT_TIMEOUT_MS`, default
    /// 5000).
    pub sqs_attempt: Duration,
    /// How long SIGTERM waits for in-flight work before giving up on it
    /// (`SHUTDOWN_DRAIN_TIMEOUT_MS`, default 20000; below Kubernetes' 30 s grace period).
    pub shutdown_drain: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(10),
            database_acquire: Duration::from_secs(5),
            database_statement: Duration::from_secs(5),
            sqs_connect: Duration::from_secs(2),
            sqs_attempt: Duration::from_secs(5),
            shutdown_drain: Duration::from_secs(20),
        }
    }
}

/// A duration in milliseconds from `name`, or `default`; zero is refused (no deadline is not
/// a deadline).
pub fn millis_or_default(name: &str, default: Duration) -> anyhow::Result<Duration> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
    let ms: u64 = crate::config::or_default(name, default_ms)?;
    anyhow::ensure!(ms > 0, "{name} must be more than 0 milliseconds");
    Ok(Duration::from_millis(ms))
}

impl Deadlines {
    /// From the environment, each variable optional.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let deadlines = Self {
            request: millis_or_default("HTTP_REQUEST_TIMEOUT_MS", d.request)?,
            database_acquire: millis_or_default("DATABASE_ACQUIRE_TIMEOUT_MS", d.database_acquire)?,
            database_statement: millis_or_default(
                "DATABASE_STATEMENT_TIMEOUT_MS",
                d.database_statement,
            )?,
            sqs_connect: millis_or_default("SQS_CONNECT_TIMEOUT_MS", d.sqs_connect)?,
            sqs_attempt: millis_or_default("SQS_ATTEMPT_TIMEOUT_MS", d.sqs_attempt)?,
            shutdown_drain: millis_or_default("SHUTDOWN_DRAIN_TIMEOUT_MS", d.shutdown_drain)?,
        };
        anyhow::ensure!(
            deadlines.request > deadlines.database_acquire,
            "HTTP_REQUEST_TIMEOUT_MS must be longer than DATABASE_ACQUIRE_TIMEOUT_MS, so a \
             saturated pool is reported as such"
        );
        Ok(deadlines)
    }
}

/// The 503 for a dependency that is down or too slow. The cause is logged by the caller, once.
pub fn unavailable(detail: impl Into<String>) -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Temporarily unavailable",
    )
    .with_detail(detail)
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    response
}

/// Whether a database error means PostgreSQL is down, unreachable, overloaded or too slow —
/// worth a 503 and a retry — rather than a bug.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 57014 query_canceled (statement_timeout), 57P01..57P03 shutdown / cannot
            // connect now (57P03: a server in recovery, as during a failover), 53xxx
            // insufficient resources, 08xxx connection exceptions, 40001 / 40P01
            // serialization failure / deadlock (retrying succeeds), 25006 a write on a
            // read-only session (a writer demoted by a failover: the next session finds the
            // new one).
            matches!(
                code.as_ref(),
                "57014" | "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006"
            ) || code.starts_with("53")
                || code.starts_with("08")
        }),
        _ => false,
    }
}

/// Middleware bounding a whole request by `limit`: past it, the handler is dropped (its
/// transaction, if any, rolls back) and the caller gets the 503.
pub async fn request_deadline(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, ?limit, "request deadline passed");
            unavailable(format!(
                "the request did not complete within {} ms",
                limit.as_millis()
            ))
        }
    }
}

/// A pool whose every acquire and statement has a deadline.
pub fn pool_options(max_connections: u32, deadlines: &Deadlines) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(deadlines.database_acquire)
}

/// Connection options from `url` with `statement_timeout` set on every connection, so the
/// server itself cancels a runaway statement (SQLSTATE 57014).
pub fn connect_options(url: &str, deadlines: &Deadlines) -> anyhow::Result<PgConnectOptions> {
    use anyhow::Context;
    let options = PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid URL")?;
    Ok(options.options([(
        "statement_timeout",
        deadlines.database_statement.as_millis().to_string(),
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_a_problem_with_retry_after() {
        let response = unavailable("PostgreSQL is too slow");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn pool_timeouts_and_connection_errors_are_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }
}
