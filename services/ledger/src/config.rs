//! The ledger's configuration, read once from the environment and validated at start.

use std::net::SocketAddr;
use std::time::Duration;

use cashflow_contracts::Currency;
use cashflow_platform::auth::AuthConfig;
use cashflow_platform::config::{or_default, required};
use cashflow_platform::deadline::Deadlines;
use cashflow_platform::sqs::SqsSettings;

use crate::zone::MerchantZone;

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
    /// How long idempotency keys and published outbox rows are kept.
    pub retention: RetentionConfig,
    /// Group commit of new entries.
    pub write_batch: WriteBatchConfig,
}

/// Group commit of new entries ([`crate::group_commit`], ADR 0012): concurrent requests are
/// written in one statement and one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBatchConfig {
    /// Most entries written together (`WRITE_BATCH_MAX_SIZE`, default 128; 1 turns group commit
    /// off: each request is written alone).
    pub max_size: usize,
    /// How long a batch waits for more requests while another batch is being written
    /// (`WRITE_BATCH_MAX_WAIT_MS`, default 0: a batch takes what is queued and goes). A lone
    /// request never waits: with no batch in flight, it is written at once.
    pub max_wait: Duration,
    /// Batches being written at once, each on its own connection (`WRITE_BATCH_MAX_IN_FLIGHT`,
    /// default 2). Requests arriving meanwhile queue and form the next batch. At most
    /// `DATABASE_MAX_CONNECTIONS`.
    pub max_in_flight: usize,
}

impl Default for WriteBatchConfig {
    fn default() -> Self {
        Self {
            max_size: 128,
            max_wait: Duration::ZERO,
            max_in_flight: 2,
        }
    }
}

impl WriteBatchConfig {
    /// From the environment.
    pub fn from_env(database_max_connections: u32) -> anyhow::Result<Self> {
        let d = Self::default();
        let config = Self {
            max_size: or_default("WRITE_BATCH_MAX_SIZE", d.max_size)?,
            max_wait: Duration::from_millis(or_default(
                "WRITE_BATCH_MAX_WAIT_MS",
                u64::try_from(d.max_wait.as_millis()).unwrap_or(0),
            )?),
            max_in_flight: or_default("WRITE_BATCH_MAX_IN_FLIGHT", d.max_in_flight)?,
        };
        config.check(database_max_connections)?;
        Ok(config)
    }

    /// Refuses a size or concurrency of 0, more batches in flight than connections, and a
    /// batch so large its statement's parameters could not be encoded comfortably.
    pub fn check(&self, database_max_connections: u32) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.max_size),
            "WRITE_BATCH_MAX_SIZE must be 1 to 10000"
        );
        anyhow::ensure!(
            self.max_in_flight >= 1
                && u32::try_from(self.max_in_flight).is_ok_and(|n| n <= database_max_connections),
            "WRITE_BATCH_MAX_IN_FLIGHT must be 1 to DATABASE_MAX_CONNECTIONS ({database_max_connections})"
        );
        anyhow::ensure!(
            self.max_wait <= Duration::from_secs(1),
            "WRITE_BATCH_MAX_WAIT_MS must be at most 1000"
        );
        Ok(())
    }
}

/// Retention windows of the ledger's bookkeeping tables (the entries themselves are kept
/// forever: they are the books).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long an `Idempotency-Key` is remembered (`IDEMPOTENCY_KEY_RETENTION_SECONDS`,
    /// default 86400: 24 hours, like Stripe). A request with an expired key is a new request.
    pub idempotency_keys: Duration,
    /// How long a published outbox row is kept (`OUTBOX_RETENTION_SECONDS`, default 604800:
    /// 7 days). Only an audit of what was sent: a replay rebuilds its events from `entries`
    /// (which keep their event ids), never from the outbox. Unpublished rows are never pruned.
    pub outbox: Duration,
    /// Pause between pruning passes once nothing is left to prune
    /// (`RETENTION_INTERVAL_SECONDS`, default 60).
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            idempotency_keys: Duration::from_secs(24 * 3600),
            outbox: Duration::from_secs(7 * 24 * 3600),
            interval: Duration::from_secs(60),
        }
    }
}

/// Refuses an idempotency window that could let one request be recorded twice. A key is
/// written when its first request's transaction starts; a retry that arrives while that request
/// still runs waits for it on the key's row, and then finds the key expired if the window is
/// shorter than the request may last: it would be taken as new and record the entry a second
/// time. Every request is bounded by `HTTP_REQUEST_TIMEOUT_MS`, so a window longer than twice that
/// (the first request's and the waiting retry's) cannot expire under a request.
pub fn check_retention(
    retention: &RetentionConfig,
    request_timeout: Duration,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        retention.idempotency_keys > request_timeout.saturating_mul(2),
        "IDEMPOTENCY_KEY_RETENTION_SECONDS ({}) must be longer than twice HTTP_REQUEST_TIMEOUT_MS \
         ({} ms): a key that expires while its first request may still be running would let a \
         retry record the entry twice",
        retention.idempotency_keys.as_secs(),
        request_timeout.as_millis()
    );
    anyhow::ensure!(
        !retention.outbox.is_zero() && !retention.interval.is_zero(),
        "OUTBOX_RETENTION_SECONDS and RETENTION_INTERVAL_SECONDS must be at least 1"
    );
    Ok(())
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
    pub timezone: MerchantZone,
    /// How many days back a business date may be (`BACKDATE_WINDOW_DAYS`, default 30).
    pub backdate_window_days: u16,
}

impl Default for EntryRules {
    fn default() -> Self {
        Self {
            currency: Currency::BRL,
            timezone: MerchantZone::default(),
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
    /// Batches a publish cycle claims and sends at once (`OUTBOX_RELAY_CONCURRENCY`, default 4,
    /// at least 1): one batch per SQS round trip caps publishing at ten events per round trip;
    /// with 4 a cycle carries up to forty. Sends hold no database connection, so this need not
    /// be sized with the pool.
    pub concurrency: u16,
    /// How long a claim keeps other loops off its rows (`OUTBOX_CLAIM_LEASE_SECONDS`, default
    /// 30). The send is given up after half of it; a loop that dies holding a claim delays its
    /// rows by at most this much.
    pub claim_lease: Duration,
    /// How long a relay that drained the outbox waits after a commit's poke before its next
    /// cycle, so that batches leave full (`OUTBOX_LINGER_MS`, default 50; 0 sends at once).
    /// Every event waits at most this long more.
    pub linger: Duration,
    /// How often an idle relay looks for rows written by other replicas.
    pub idle_poll: Duration,
    /// Longest wait between attempts while SQS fails.
    pub max_backoff: Duration,
}

impl RelayConfig {
    /// Waits between attempts while SQS fails: from 100 ms, doubling, jittered, at most
    /// `max_backoff` (the platform's one schedule).
    pub fn backoff(&self) -> cashflow_platform::backoff::Backoff {
        cashflow_platform::backoff::Backoff::new(Duration::from_millis(100), self.max_backoff)
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            batch_size: 10,
            concurrency: 4,
            claim_lease: Duration::from_secs(30),
            linger: Duration::from_millis(50),
            idle_poll: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Reads and validates the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let batch_size: u16 = or_default("OUTBOX_BATCH_SIZE", 10)?;
        anyhow::ensure!(
            (1..=10).contains(&batch_size),
            "OUTBOX_BATCH_SIZE must be 1 to 10 (SQS's limit)"
        );
        let deadlines = Deadlines::from_env()?;
        let d = RetentionConfig::default();
        let retention = RetentionConfig {
            idempotency_keys: Duration::from_secs(or_default(
                "IDEMPOTENCY_KEY_RETENTION_SECONDS",
                d.idempotency_keys.as_secs(),
            )?),
            outbox: Duration::from_secs(or_default(
                "OUTBOX_RETENTION_SECONDS",
                d.outbox.as_secs(),
            )?),
            interval: Duration::from_secs(or_default(
                "RETENTION_INTERVAL_SECONDS",
                d.interval.as_secs(),
            )?),
        };
        check_retention(&retention, deadlines.request)?;
        let database_max_connections = or_default("DATABASE_MAX_CONNECTIONS", 20)?;
        Ok(Self {
            listen: or_default("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            internal_listen: or_default(
                "INTERNAL_LISTEN_ADDR",
                SocketAddr::from(([0, 0, 0, 0], 9081)),
            )?,
            database_url: required("DATABASE_URL")?,
            database_max_connections,
            queue_url: required("ENTRIES_QUEUE_URL")?,
            sqs: SqsSettings::from_env(),
            auth: AuthConfig::from_env()?,
            entries: EntryRules {
                currency: or_default("MERCHANT_CURRENCY", cashflow_contracts::Currency::BRL)?,
                timezone: or_default("MERCHANT_TIMEZONE", MerchantZone::default())?,
                backdate_window_days: or_default("BACKDATE_WINDOW_DAYS", 30)?,
            },
            max_body_bytes: or_default("MAX_BODY_BYTES", 16 * 1024)?,
            relay: RelayConfig {
                enabled: or_default("OUTBOX_RELAY_ENABLED", true)?,
                batch_size,
                concurrency: {
                    let concurrency: u16 = or_default("OUTBOX_RELAY_CONCURRENCY", 4)?;
                    anyhow::ensure!(
                        concurrency >= 1,
                        "OUTBOX_RELAY_CONCURRENCY must be at least 1"
                    );
                    concurrency
                },
                claim_lease: {
                    let seconds: u64 = or_default("OUTBOX_CLAIM_LEASE_SECONDS", 30)?;
                    anyhow::ensure!(
                        seconds >= 2,
                        "OUTBOX_CLAIM_LEASE_SECONDS must be at least 2"
                    );
                    Duration::from_secs(seconds)
                },
                linger: Duration::from_millis(or_default("OUTBOX_LINGER_MS", 50)?),
                ..RelayConfig::default()
            },
            deadlines,
            retention,
            write_batch: WriteBatchConfig::from_env(database_max_connections)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotency_window_a_request_can_outlive_is_refused_naming_both_settings() {
        let timeout = Duration::from_secs(10);
        let short = RetentionConfig {
            idempotency_keys: Duration::from_secs(20),
            ..RetentionConfig::default()
        };
        let error = check_retention(&short, timeout)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("IDEMPOTENCY_KEY_RETENTION_SECONDS"),
            "{error}"
        );
        assert!(error.contains("HTTP_REQUEST_TIMEOUT_MS"), "{error}");
        let enough = RetentionConfig {
            idempotency_keys: Duration::from_secs(21),
            ..RetentionConfig::default()
        };
        assert!(check_retention(&enough, timeout).is_ok());
        assert!(check_retention(&RetentionConfig::default(), timeout).is_ok());
    }
}
