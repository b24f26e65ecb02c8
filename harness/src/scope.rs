//! A test's own slice of the shared dependencies: a database, a queue pair and a Redis key
//! prefix. Scopes never see each other, so tests run in parallel and never clean up.

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::sqs::{self, QueuePair};

/// What a scope needs. `Default`: no migrations, maxReceiveCount 5, visibility timeout 5 s (as
/// deployed: the consumer extends it while it holds a message).
#[derive(Debug, Clone, Copy)]
pub struct ScopeOptions {
    /// Migrations the scope's database starts with (through a template built once per process).
    pub migrations: Option<&'static Migrator>,
    /// Receives before the redrive policy moves a message to the DLQ.
    pub max_receive_count: u32,
    /// Default visibility timeout of the main queue, in seconds.
    pub visibility_timeout_secs: u32,
}

impl Default for ScopeOptions {
    fn default() -> Self {
        Self {
            migrations: None,
            max_receive_count: 5,
            visibility_timeout_secs: 5,
        }
    }
}

impl ScopeOptions {
    /// The database starts with these migrations applied.
    pub fn with_migrations(mut self, migrator: &'static Migrator) -> Self {
        self.migrations = Some(migrator);
        self
    }

    /// Sets the queue's maxReceiveCount.
    pub fn with_max_receive_count(mut self, count: u32) -> Self {
        self.max_receive_count = count;
        self
    }

    /// Sets the queue's default visibility timeout.
    pub fn with_visibility_timeout_secs(mut self, secs: u32) -> Self {
        self.visibility_timeout_secs = secs;
        self
    }
}

/// One test's isolated resources.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Unique id (12 hex characters), part of every name below.
    pub id: String,
    /// The scope's database name.
    pub database: String,
    /// URL of the scope's database.
    pub database_url: String,
    /// Redis URL (shared server; isolation is by [`Scope::redis_prefix`]).
    pub redis_url: String,
    /// Prefix every Redis key of this scope starts with.
    pub redis_prefix: String,
    /// SQS endpoint.
    pub sqs_endpoint: String,
    /// AWS region.
    pub aws_region: String,
    /// The scope's queue and DLQ.
    pub queues: QueuePair,
}

impl Scope {
    /// A small connection pool to the scope's database, on the caller's runtime.
    pub async fn pg_pool(&self) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(5)
            .connect(&self.database_url)
            .await
            .with_context(|| format!("connecting to {}", self.database))
    }

    /// An SQS client for the scope's endpoint.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs::client(&self.sqs_endpoint, &self.aws_region)
    }

    /// A Redis connection (keys must start with [`Scope::redis_prefix`]; see [`Scope::key`]).
    pub async fn redis(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("connecting to Redis")
    }

    /// A Redis key inside this scope.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.redis_prefix)
    }
}

/// `admin_url` with its database replaced by `database`.
pub fn database_url(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i);
    let server = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://u:p@h:1/postgres", "x"),
            "postgres://u:p@h:1/x"
        );
        assert_eq!(database_url("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(
            database_url("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
