//! The ledger's configuration, read once from the environment and validated at start.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use cashflow_contracts::Currency;
use cashflow_platform::auth::AuthConfig;
use cashflow_platform::config::{or_default, required};
use cashflow_platform::deadline::Deadlines;
use cashflow_platform::sqs::SqsSettings;

/// Everything the ledger needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP API listens (`LISTEN_ADDR`, default `0.0.0.0:8081`; port 0 in tests).
    pub listen: SocketAddr,
    /// Where the internal (service-to-service) routes listen (`INTERNAL_LISTEN_ADDR`, default
    /// `0.0.0.0:9081`; port 0 in tests): digests and replays, for the consolidation only.
    pub internal_listen: SocketAddr,
    /// The ledger database (`DATABASE_URL`).
    pub database_url: String,
    /// Pool size (`DATABASE_MAX_CONNECTIONS`, default 20).
    pub database_max_connections: u32,
    /// Queue the outbox relay publishes to (`ENTRIES_QUEUE_URL`).
    pub queue_url: String,
    /// SQS endpoint and region (`AWS_ENDPOINT_URL`, `AWS_REGION`).
    pub sqs: SqsSettings,
    /// Token verification (`AUTH_ISSUER`, `AUTH_AUDIENCE`, `AUTH_JWKS_URI`).
    pub auth: AuthConfig,
    /// Rules for new entries.
    pub entries: EntryRules,
    /// Largest request body in bytes (`MAX_BODY_BYTES`, default 16 KiB).
    pub max_body_bytes: usize,
    /// The outbox relay.
    pub relay: RelayConfig,
    /// Request, PostgreSQL, SQS and shutdown deadlines (`HTTP_REQUEST_TIMEOUT_MS`, ...).
    pub deadlines: Deadlines,
    /// Replays asked for by the consolidation's reconciler.
    pub replay: ReplayConfig,
}

/// How replays are bounded.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Replayed events released to the outbox per second, process-wide
    /// (`REPLAY_EVENTS_PER_SECOND`, default 500), so replays never starve live events.
    pub events_per_second: u32,
    /// Longest range of business dates a digest or replay request may cover
    /// (`REPLAY_MAX_DAYS`, default 62).
    pub max_days: u16,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            events_per_second: 500,
            max_days: 62,
        }
    }
}

/// Rules a new entry is checked against.
#[derive(Debug, Clone)]
pub struct EntryRules {
    /// The one currency merchants keep their books in (`MERCHANT_CURRENCY`, default BRL).
    pub currency: Currency,
    /// Merchants' time zone: "today" and the default business date (`MERCHANT_TIMEZONE`,
    /// default America/Sao_Paulo).
    pub timezone: jiff::tz::TimeZone,
    /// How many days back a business date may be (`BACKDATE_WINDOW_DAYS`, default 30).
    pub backdate_window_days: u16,
}

impl Default for EntryRules {
    fn default() -> Self {
        Self {
            currency: Currency::BRL,
            timezone: jiff::tz::TimeZone::get("America/Sao_Paulo")
                .unwrap_or(jiff::tz::TimeZone::UTC),
            backdate_window_days: 30,
        }
    }
}

/// The outbox relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Run the relay in this process (`OUTBOX_RELAY_ENABLED`, default true).
    pub enabled: bool,
    /// Events per SendMessageBatch, at most 10 (`OUTBOX_BATCH_SIZE`, default 10).
    pub batch_size: u16,
    /// How often an idle relay looks for rows written by other replicas.
    pub idle_poll: Duration,
    /// Longest wait between attempts while SQS fails.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 10,
            idle_poll: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let timezone_name: String = or_default("MERCHANT_TIMEZONE", "America/Sao_Paulo".into())?;
        let timezone = jiff::tz::TimeZone::get(&timezone_name)
            .with_context(|| format!("MERCHANT_TIMEZONE={timezone_name:?} is not a time zone"))?;
        let batch_size: u16 = or_default("OUTBOX_BATCH_SIZE", 10)?;
        anyhow::ensure!(
            (1..=10).contains(&batch_size),
            "OUTBOX_BATCH_SIZE must be 1 to 10 (SQS's limit)"
        );
        Ok(Self {
            listen: or_default("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            internal_listen: or_default(
                "INTERNAL_LISTEN_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 9081)),
            )?,
            database_url: required("DATABASE_URL")?,
            database_max_connections: or_default("DATABASE_MAX_CONNECTIONS", 20)?,
            queue_url: required("ENTRIES_QUEUE_URL")?,
            sqs: SqsSettings::from_env(),
            auth: AuthConfig::from_env()?,
            entries: EntryRules {
                currency: or_default("MERCHANT_CURRENCY", cashflow_contracts::Currency::BRL)?,
                timezone,
                backdate_window_days: or_default("BACKDATE_WINDOW_DAYS", 30)?,
            },
            max_body_bytes: or_default("MAX_BODY_BYTES", 16 * 1024)?,
            relay: RelayConfig {
                enabled: or_default("OUTBOX_RELAY_ENABLED", true)?,
                batch_size,
                ..RelayConfig::default()
            },
            deadlines: Deadlines::from_env()?,
            replay: {
                let events_per_second: u32 = or_default("REPLAY_EVENTS_PER_SECOND", 500)?;
                anyhow::ensure!(
                    events_per_second >= 1,
                    "REPLAY_EVENTS_PER_SECOND must be at least 1"
                );
                let max_days: u16 = or_default("REPLAY_MAX_DAYS", 62)?;
                anyhow::ensure!(max_days >= 1, "REPLAY_MAX_DAYS must be at least 1");
                ReplayConfig {
                    events_per_second,
                    max_days,
                }
            },
        })
    }
}
