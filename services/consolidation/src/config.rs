//! The consolidation's configuration, read once from the environment and validated at start.

use std::net::SocketAddr;
use std::time::Duration;

use cashflow_contracts::Currency;
use cashflow_platform::auth::AuthConfig;
use cashflow_platform::config::{or_default, required};
use cashflow_platform::deadline::{Deadlines, millis_or_default};
use cashflow_platform::sqs::SqsSettings;

/// Everything the consolidation needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP API listens (`LISTEN_ADDR`, default `0.0.0.0:8082`).
    pub listen: SocketAddr,
    /// The consolidation database (`DATABASE_URL`).
    pub database_url: String,
    /// Pool size (`DATABASE_MAX_CONNECTIONS`, default 20).
    pub database_max_connections: u32,
    /// Redis (`REDIS_URL`).
    pub redis_url: String,
    /// Prefix of every Redis key (`REDIS_KEY_PREFIX`, default `cashflow:consolidation:`).
    pub redis_prefix: String,
    /// How long a cached balance lives (`CACHE_TTL_SECONDS`, default 3600).
    pub cache_ttl: Duration,
    /// Redis deadlines and circuit breaker (`REDIS_CONNECT_TIMEOUT_MS`, ...).
    pub redis: RedisConfig,
    /// The entries queue (`ENTRIES_QUEUE_URL`).
    pub queue_url: String,
    /// Its dead-letter queue (`ENTRIES_DLQ_URL`).
    pub dlq_url: String,
    /// SQS endpoint and region (`AWS_ENDPOINT_URL`, `AWS_REGION`).
    pub sqs: SqsSettings,
    /// Token verification (`AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_JWKS_URI`).
    pub auth: AuthConfig,
    /// The consumer.
    pub consumer: ConsumerConfig,
    /// Longest report range in days (`REPORT_MAX_DAYS`, default 366).
    pub report_max_days: u16,
    /// Currency of merchants without entries yet (`MERCHANT_CURRENCY`, default BRL).
    pub default_currency: Currency,
    /// Request, PostgreSQL, SQS and shutdown deadlines (`HTTP_REQUEST_TIMEOUT_MS`, ...).
    pub deadlines: Deadlines,
}

/// How the cache talks to Redis. Redis is only a cache: every bound here is short, because
/// the fallback (PostgreSQL) is always there and a slow cache is worse than none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisConfig {
    /// Opening a connection (`REDIS_CONNECT_TIMEOUT_MS`, default 500).
    pub connect_timeout: Duration,
    /// One command or pipeline (`REDIS_COMMAND_TIMEOUT_MS`, default 250).
    pub command_timeout: Duration,
    /// Consecutive failures that open the circuit breaker (`REDIS_BREAKER_FAILURES`, default 3).
    pub breaker_failures: u32,
    /// How long an open breaker leaves Redis alone before one probe
    /// (`REDIS_BREAKER_COOLDOWN_MS`, default 5000).
    pub breaker_cooldown: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

impl RedisConfig {
    /// From the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let failures: u32 = or_default("REDIS_BREAKER_FAILURES", d.breaker_failures)?;
        anyhow::ensure!(failures >= 1, "REDIS_BREAKER_FAILURES must be at least 1");
        Ok(Self {
            connect_timeout: millis_or_default("REDIS_CONNECT_TIMEOUT_MS", d.connect_timeout)?,
            command_timeout: millis_or_default("REDIS_COMMAND_TIMEOUT_MS", d.command_timeout)?,
            breaker_failures: failures,
            breaker_cooldown: millis_or_default("REDIS_BREAKER_COOLDOWN_MS", d.breaker_cooldown)?,
        })
    }
}

/// How events are consumed and retried.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Run the consumer in this process (`CONSUMER_ENABLED`, default true).
    pub enabled: bool,
    /// Concurrent long-poll loops (`CONSUMER_CONCURRENCY`, default 4).
    pub concurrency: u16,
    /// Long-poll wait, 0 to 20 s (`CONSUMER_WAIT_SECONDS`, default 20).
    pub wait_seconds: i32,
    /// First retry delay (`RETRY_BASE_SECONDS`, default 1).
    pub retry_base: Duration,
    /// Longest retry delay (`RETRY_MAX_SECONDS`, default 300; SQS allows up to 12 h).
    pub retry_cap: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 4,
            wait_seconds: 20,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
        }
    }
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let wait_seconds: i32 = or_default("CONSUMER_WAIT_SECONDS", 20)?;
        anyhow::ensure!(
            (0..=20).contains(&wait_seconds),
            "CONSUMER_WAIT_SECONDS must be 0 to 20"
        );
        let concurrency: u16 = or_default("CONSUMER_CONCURRENCY", 4)?;
        anyhow::ensure!(concurrency >= 1, "CONSUMER_CONCURRENCY must be at least 1");
        Ok(Self {
            listen: or_default("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082)))?,
            database_url: required("DATABASE_URL")?,
            database_max_connections: or_default("DATABASE_MAX_CONNECTIONS", 20)?,
            redis_url: required("REDIS_URL")?,
            redis_prefix: or_default("REDIS_KEY_PREFIX", "cashflow:consolidation:".to_string())?,
            cache_ttl: Duration::from_secs(or_default("CACHE_TTL_SECONDS", 3600)?),
            redis: RedisConfig::from_env()?,
            queue_url: required("ENTRIES_QUEUE_URL")?,
            dlq_url: required("ENTRIES_DLQ_URL")?,
            sqs: SqsSettings::from_env(),
            auth: AuthConfig::from_env()?,
            consumer: ConsumerConfig {
                enabled: or_default("CONSUMER_ENABLED", true)?,
                concurrency,
                wait_seconds,
                retry_base: Duration::from_secs(or_default("RETRY_BASE_SECONDS", 1)?),
                retry_cap: Duration::from_secs(or_default("RETRY_MAX_SECONDS", 300)?),
            },
            report_max_days: or_default("REPORT_MAX_DAYS", 366)?,
            default_currency: or_default("MERCHANT_CURRENCY", Currency::BRL)?,
            deadlines: Deadlines::from_env()?,
        })
    }
}
