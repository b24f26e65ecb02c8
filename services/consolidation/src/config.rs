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
    /// How long the last answer of a changed day or range is kept to answer, marked stale,
    /// while PostgreSQL is unavailable (`CACHE_STALE_IF_ERROR_SECONDS`, default 3600; 0 keeps
    /// none and such reads are 503).
    pub cache_stale_if_error: Duration,
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
    /// Reconciliation with the ledger.
    pub reconcile: ReconcileConfig,
    /// How long dedup records (`processed_events`) are kept
    /// (`PROCESSED_EVENTS_RETENTION_SECONDS`, default 3888000: 45 days). Must outlive the replay
    /// window and every copy of an event SQS may still deliver ([`check_retention`]).
    pub processed_events_retention: Duration,
    /// How long SQS may keep a message, and how often the pruner looks.
    pub retention: RetentionConfig,
}

/// What the dedup window is checked against, and the pruner's pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// How long SQS may keep a message: the entries queue's and the DLQ's
    /// `MessageRetentionPeriod`, as configured on them (a consumer cannot ask SQS how old a
    /// message may get).
    pub sqs: SqsRetention,
    /// Pause between pruning passes once nothing is left to prune
    /// (`RETENTION_INTERVAL_SECONDS`, default 60).
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            sqs: SqsRetention::default(),
            interval: Duration::from_secs(60),
        }
    }
}

/// The retention of the queues (`SQS_MESSAGE_RETENTION_SECONDS` and
/// `SQS_DLQ_RETENTION_SECONDS`, both default 1209600: the SQS maximum of 14 days, so the
/// defaults hold for any queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqsRetention {
    /// The entries queue's `MessageRetentionPeriod`.
    pub queue: Duration,
    /// The DLQ's `MessageRetentionPeriod`.
    pub dlq: Duration,
}

impl Default for SqsRetention {
    fn default() -> Self {
        Self {
            queue: Duration::from_secs(1_209_600),
            dlq: Duration::from_secs(1_209_600),
        }
    }
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

/// The reconciler: compares the consolidation's merchant-days with the ledger's digests and asks
/// the ledger to replay those that differ.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// Run the periodic reconciler in this process (`RECONCILE_ENABLED`, default true).
    pub enabled: bool,
    /// The ledger's base URL (`LEDGER_URL`; required when enabled).
    pub ledger_url: String,
    /// Time between periodic passes (`RECONCILE_INTERVAL_SECONDS`, default 300).
    pub interval: Duration,
    /// Days before today a periodic pass covers, which is also the widest replay
    /// (`RECONCILE_WINDOW_DAYS`, default 31: the ledger's 30-day backdating window plus today).
    pub window_days: u16,
    /// How long a difference may be consumer lag before it counts as a divergence
    /// (`RECONCILE_GRACE_SECONDS`, default 15).
    pub grace: Duration,
    /// How long after a replay the re-check waits for the merchant-day to agree
    /// (`RECONCILE_RECHECK_SECONDS`, default 60).
    pub recheck_timeout: Duration,
    /// Deadline of each call to the ledger or the identity provider.
    pub request_timeout: Duration,
    /// Backoff while the ledger is unavailable: first delay, doubling (with jitter) up to
    /// `retry_max_delay`, at most `retry_times` retries per call; then the pass fails and the
    /// next interval tries again.
    pub retry_min_delay: Duration,
    /// Longest delay between two retries.
    pub retry_max_delay: Duration,
    /// Retries per call.
    pub retry_times: usize,
    /// The consolidation's own OAuth2 client.
    pub client: OAuthClientConfig,
}

/// Client-credentials settings: the consolidation calls the ledger as itself.
#[derive(Debug, Clone, Default)]
pub struct OAuthClientConfig {
    /// Token endpoint (`OAUTH_TOKEN_URL`; default: `token_endpoint` of the issuer's discovery
    /// document).
    pub token_url: Option<String>,
    /// The issuer whose discovery document names the token endpoint (`AUTH_ISSUER`).
    pub issuer: String,
    /// `OAUTH_CLIENT_ID` (required when reconciling).
    pub client_id: String,
    /// `OAUTH_CLIENT_SECRET` (required when reconciling; from a secret store, never in code).
    pub client_secret: String,
    /// Scope asked for (`OAUTH_SCOPE`, default `ledger:reconcile`).
    pub scope: String,
}

impl Default for ReconcileConfig {
    /// Disabled; the other fields are the environment's defaults.
    fn default() -> Self {
        Self {
            enabled: false,
            ledger_url: String::new(),
            interval: Duration::from_secs(300),
            window_days: 31,
            grace: Duration::from_secs(15),
            recheck_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            retry_min_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(30),
            retry_times: 6,
            client: OAuthClientConfig {
                scope: "ledger:reconcile".into(),
                ..OAuthClientConfig::default()
            },
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

/// Default of `PROCESSED_EVENTS_RETENTION_SECONDS`: 45 days.
pub const DEFAULT_PROCESSED_EVENTS_RETENTION: Duration = Duration::from_secs(45 * 86_400);

/// What [`check_retention`] allows for the difference between the clocks that age a message
/// (SQS's) and a dedup record (PostgreSQL's `now()`). NTP keeps two servers' clocks within
/// milliseconds of each other; a minute is three orders of magnitude more.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60);

impl ReconcileConfig {
    /// Whether this process may ask the ledger for replays: periodically when enabled, on
    /// demand (`POST /v1/admin/reconcile`, `consolidation reconcile`) whenever the ledger's URL
    /// is configured.
    pub fn replays_possible(&self) -> bool {
        self.enabled || !self.ledger_url.is_empty()
    }
}

/// Refuses settings under which an event could be counted twice.
///
/// Replays: a replay re-delivers every event of a day up to `replay_window_days` old (`None`
/// when this deployment never asks for one: no reconciler and no ledger URL), and the consumer
/// only recognises it as a duplicate while its dedup record exists. A record is written when the
/// event is processed, which is no earlier than its business date, so records kept more than
/// `replay_window_days + 1` days (the extra day absorbs time zones) outlive every replay.
///
/// Redelivery by SQS is the other way an event comes back: a message processed but not deleted
/// (the delete failed) is received again, possibly after a trip through the DLQ and a redrive,
/// which re-sends it as a new message. Every copy was sent no later than the first processing;
/// a copy in the DLQ expires by its original enqueue time plus the DLQ's retention (standard
/// queues keep the enqueue time across the move), and a redriven copy by its redrive time plus
/// the queue's retention. So records kept longer than both retentions together outlive every
/// copy; [`CLOCK_SKEW_MARGIN`] covers the two clocks involved.
pub fn check_retention(
    retention: Duration,
    replay_window_days: Option<u16>,
    sqs: SqsRetention,
) -> anyhow::Result<()> {
    if let Some(window_days) = replay_window_days {
        let replayed = Duration::from_secs((u64::from(window_days) + 1) * 86_400);
        anyhow::ensure!(
            retention > replayed,
            "PROCESSED_EVENTS_RETENTION_SECONDS ({}) must exceed RECONCILE_WINDOW_DAYS \
             ({window_days}) plus a day ({} s): dedup records that expire before a replayed day \
             leaves the replay window would let the replay count its events twice (a deployment \
             that never replays sets RECONCILE_ENABLED=false and no LEDGER_URL)",
            retention.as_secs(),
            replayed.as_secs()
        );
    }
    let longest_copy = sqs.queue + sqs.dlq + CLOCK_SKEW_MARGIN;
    anyhow::ensure!(
        retention > longest_copy,
        "PROCESSED_EVENTS_RETENTION_SECONDS ({}) must be longer than \
         SQS_MESSAGE_RETENTION_SECONDS ({}) plus SQS_DLQ_RETENTION_SECONDS ({}) plus {} s of clock \
         margin: a message SQS redelivers after its dedup record expired would be counted twice",
        retention.as_secs(),
        sqs.queue.as_secs(),
        sqs.dlq.as_secs(),
        CLOCK_SKEW_MARGIN.as_secs()
    );
    Ok(())
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
    /// How long a received message stays hidden from other consumers while this one holds it
    /// (`CONSUMER_VISIBILITY_SECONDS`, default 5, at least 2): asked for on every receive and
    /// extended by a heartbeat while the message is held ([`crate::inflight`]), so a slow batch
    /// is never handed to another consumer while a consumer that dies costs its messages about
    /// this much delay. The queue's own `VisibilityTimeout` is deployed with the same value.
    pub visibility: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            concurrency: 4,
            wait_seconds: 20,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(300),
            visibility: DEFAULT_VISIBILITY,
        }
    }
}

/// Default of `CONSUMER_VISIBILITY_SECONDS` (and the queue's `VisibilityTimeout` in terraform,
/// the LocalStack init hook and the harness).
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(5);

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
        let visibility: u64 =
            or_default("CONSUMER_VISIBILITY_SECONDS", DEFAULT_VISIBILITY.as_secs())?;
        // The heartbeat needs a few seconds to extend in time; SQS allows up to 12 hours.
        anyhow::ensure!(
            (2..=43_200).contains(&visibility),
            "CONSUMER_VISIBILITY_SECONDS must be 2 to 43200"
        );
        let auth = AuthConfig::from_env()?;
        let defaults = ReconcileConfig::default();
        let enabled: bool = or_default("RECONCILE_ENABLED", true)?;
        let reconcile = ReconcileConfig {
            enabled,
            ledger_url: if enabled {
                required("LEDGER_URL")?
            } else {
                cashflow_platform::config::optional("LEDGER_URL").unwrap_or_default()
            },
            interval: Duration::from_secs(or_default("RECONCILE_INTERVAL_SECONDS", 300)?),
            window_days: or_default("RECONCILE_WINDOW_DAYS", defaults.window_days)?,
            grace: Duration::from_secs(or_default("RECONCILE_GRACE_SECONDS", 15)?),
            recheck_timeout: Duration::from_secs(or_default("RECONCILE_RECHECK_SECONDS", 60)?),
            request_timeout: defaults.request_timeout,
            retry_min_delay: defaults.retry_min_delay,
            retry_max_delay: defaults.retry_max_delay,
            retry_times: defaults.retry_times,
            client: OAuthClientConfig {
                token_url: cashflow_platform::config::optional("OAUTH_TOKEN_URL"),
                issuer: auth.issuer.clone(),
                client_id: if enabled {
                    required("OAUTH_CLIENT_ID")?
                } else {
                    String::new()
                },
                client_secret: if enabled {
                    required("OAUTH_CLIENT_SECRET")?
                } else {
                    String::new()
                },
                scope: or_default("OAUTH_SCOPE", defaults.client.scope.clone())?,
            },
        };
        anyhow::ensure!(
            !reconcile.interval.is_zero(),
            "RECONCILE_INTERVAL_SECONDS must be at least 1"
        );
        // A pass covers window_days + 2 dates; the ledger refuses ranges over its
        // REPLAY_MAX_DAYS (62 by default).
        anyhow::ensure!(
            (1..=60).contains(&reconcile.window_days),
            "RECONCILE_WINDOW_DAYS must be 1 to 60 (a pass covers it plus today and tomorrow, \
             within the ledger's REPLAY_MAX_DAYS of 62)"
        );
        // Renamed when windows shorter than a day became useful (the soak test): a value left
        // under the old name must not be silently ignored.
        anyhow::ensure!(
            cashflow_platform::config::optional("PROCESSED_EVENTS_RETENTION_DAYS").is_none(),
            "PROCESSED_EVENTS_RETENTION_DAYS was replaced by PROCESSED_EVENTS_RETENTION_SECONDS \
             (days × 86400)"
        );
        let processed_events_retention = Duration::from_secs(or_default(
            "PROCESSED_EVENTS_RETENTION_SECONDS",
            DEFAULT_PROCESSED_EVENTS_RETENTION.as_secs(),
        )?);
        let d = SqsRetention::default();
        let sqs_retention = SqsRetention {
            queue: Duration::from_secs(or_default(
                "SQS_MESSAGE_RETENTION_SECONDS",
                d.queue.as_secs(),
            )?),
            dlq: Duration::from_secs(or_default("SQS_DLQ_RETENTION_SECONDS", d.dlq.as_secs())?),
        };
        check_retention(
            processed_events_retention,
            reconcile
                .replays_possible()
                .then_some(reconcile.window_days),
            sqs_retention,
        )?;
        let retention_interval: u64 = or_default("RETENTION_INTERVAL_SECONDS", 60)?;
        anyhow::ensure!(
            retention_interval >= 1,
            "RETENTION_INTERVAL_SECONDS must be at least 1"
        );
        Ok(Self {
            listen: or_default("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8082)))?,
            database_url: required("DATABASE_URL")?,
            database_max_connections: or_default("DATABASE_MAX_CONNECTIONS", 20)?,
            redis_url: required("REDIS_URL")?,
            redis_prefix: or_default("REDIS_KEY_PREFIX", "cashflow:consolidation:".to_string())?,
            cache_ttl: Duration::from_secs(or_default("CACHE_TTL_SECONDS", 3600)?),
            cache_stale_if_error: Duration::from_secs(or_default(
                "CACHE_STALE_IF_ERROR_SECONDS",
                3600,
            )?),
            redis: RedisConfig::from_env()?,
            queue_url: required("ENTRIES_QUEUE_URL")?,
            dlq_url: required("ENTRIES_DLQ_URL")?,
            sqs: SqsSettings::from_env(),
            auth,
            consumer: ConsumerConfig {
                enabled: or_default("CONSUMER_ENABLED", true)?,
                concurrency,
                wait_seconds,
                retry_base: Duration::from_secs(or_default("RETRY_BASE_SECONDS", 1)?),
                retry_cap: Duration::from_secs(or_default("RETRY_MAX_SECONDS", 300)?),
                visibility: Duration::from_secs(visibility),
            },
            report_max_days: or_default("REPORT_MAX_DAYS", 366)?,
            default_currency: or_default("MERCHANT_CURRENCY", Currency::BRL)?,
            deadlines: Deadlines::from_env()?,
            reconcile,
            processed_events_retention,
            retention: RetentionConfig {
                sqs: sqs_retention,
                interval: Duration::from_secs(retention_interval),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_shorter_than_the_replay_window_is_refused_naming_both_settings() {
        let days = |d: u64| Duration::from_secs(d * 86_400);
        let sqs = SqsRetention {
            queue: days(4),
            dlq: days(14),
        };
        let error = check_retention(days(31), Some(31), sqs)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("PROCESSED_EVENTS_RETENTION_SECONDS"),
            "{error}"
        );
        assert!(error.contains("RECONCILE_WINDOW_DAYS"), "{error}");
        assert!(check_retention(days(32), Some(31), sqs).is_err());
        assert!(check_retention(days(32) + Duration::from_secs(1), Some(31), sqs).is_ok());
        assert!(check_retention(days(45), Some(31), SqsRetention::default()).is_ok());
    }

    #[test]
    fn retention_shorter_than_sqs_can_keep_a_message_is_refused_naming_both_settings() {
        // 14 + 14 days of SQS retention and the clock margin.
        let limit = Duration::from_secs(28 * 86_400) + CLOCK_SKEW_MARGIN;
        let error = check_retention(limit, Some(7), SqsRetention::default())
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("PROCESSED_EVENTS_RETENTION_SECONDS"),
            "{error}"
        );
        assert!(error.contains("SQS_MESSAGE_RETENTION_SECONDS"), "{error}");
        assert!(
            check_retention(
                limit + Duration::from_secs(1),
                Some(7),
                SqsRetention::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn without_replays_only_sqs_bounds_the_dedup_window() {
        // The soak's settings: one-minute queues, no reconciler.
        let sqs = SqsRetention {
            queue: Duration::from_secs(60),
            dlq: Duration::from_secs(60),
        };
        let three_minutes = Duration::from_secs(181);
        assert!(check_retention(three_minutes, None, sqs).is_ok());
        let error = check_retention(three_minutes, Some(1), sqs)
            .expect_err("a replay could reach past three minutes")
            .to_string();
        assert!(error.contains("RECONCILE_WINDOW_DAYS"), "{error}");
        assert!(check_retention(Duration::from_secs(180), None, sqs).is_err());
    }
}
