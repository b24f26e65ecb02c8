//! The settings of `soak`: how long, how fast, and every retention window it shortens.

use std::time::Duration;

/// `soak`'s settings (`cargo run --release -p load -- soak --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the soak's load runs, in minutes.
    #[arg(long, env = "SOAK_MINUTES", default_value_t = 10.0)]
    pub soak_minutes: f64,
    /// Requests per second in all: 1 in 4 a POST to the ledger, 2 a day's balance, 1 a report.
    #[arg(long, env = "SOAK_RATE", default_value_t = 200)]
    pub soak_rate: usize,
    /// Merchants the load spreads over.
    #[arg(long, env = "SOAK_MERCHANTS", default_value_t = 200)]
    pub soak_merchants: usize,
    /// Seconds between two samples (default: the run's length / 60, 2 to 10 s).
    #[arg(long)]
    pub soak_sample_seconds: Option<u64>,
    /// IDEMPOTENCY_KEY_RETENTION_SECONDS (more than twice the 10 s request deadline).
    #[arg(long, default_value_t = 60)]
    pub idempotency_seconds: u64,
    /// OUTBOX_RETENTION_SECONDS.
    #[arg(long, default_value_t = 60)]
    pub outbox_seconds: u64,
    /// CACHE_TTL_SECONDS.
    #[arg(long, default_value_t = 60)]
    pub cache_ttl_seconds: u64,
    /// CACHE_STALE_IF_ERROR_SECONDS: how long retired answers are kept (ADR 0015).
    #[arg(long, default_value_t = 60)]
    pub stale_if_error_seconds: u64,
    /// The queues' MessageRetentionPeriod (set on them) and SQS_*_RETENTION_SECONDS (60 to
    /// 1209600).
    #[arg(long, default_value_t = 60)]
    pub sqs_retention_seconds: u64,
    /// PROCESSED_EVENTS_RETENTION_SECONDS: must exceed twice the SQS retention plus a minute.
    #[arg(long, default_value_t = 190)]
    pub dedup_seconds: u64,
    /// RETENTION_INTERVAL_SECONDS of both services.
    #[arg(long, default_value_t = 10)]
    pub prune_interval_seconds: u64,
}

impl SoakArgs {
    pub(super) fn run_seconds(&self) -> u64 {
        (self.soak_minutes * 60.0).round().max(10.0) as u64
    }

    pub(super) fn sample_every(&self) -> Duration {
        Duration::from_secs(
            self.soak_sample_seconds
                .unwrap_or_else(|| (self.run_seconds() / 60).clamp(2, 10))
                .max(1),
        )
    }

    /// When the windows have elapsed: the longest one and two pruning passes.
    pub(super) fn warm_up(&self) -> u64 {
        [
            self.idempotency_seconds,
            self.outbox_seconds,
            self.cache_ttl_seconds,
            self.stale_if_error_seconds,
            self.dedup_seconds,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 2 * self.prune_interval_seconds
    }

    pub(super) fn ledger_env(&self) -> Vec<(String, String)> {
        [
            (
                "IDEMPOTENCY_KEY_RETENTION_SECONDS",
                self.idempotency_seconds,
            ),
            ("OUTBOX_RETENTION_SECONDS", self.outbox_seconds),
            ("RETENTION_INTERVAL_SECONDS", self.prune_interval_seconds),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    pub(super) fn consolidation_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("CACHE_TTL_SECONDS", self.cache_ttl_seconds),
            ("CACHE_STALE_IF_ERROR_SECONDS", self.stale_if_error_seconds),
            ("PROCESSED_EVENTS_RETENTION_SECONDS", self.dedup_seconds),
            ("SQS_MESSAGE_RETENTION_SECONDS", self.sqs_retention_seconds),
            ("SQS_DLQ_RETENTION_SECONDS", self.sqs_retention_seconds),
            ("RETENTION_INTERVAL_SECONDS", self.prune_interval_seconds),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec();
        // No replays: see the module's documentation.
        env.push(("RECONCILE_ENABLED".into(), "false".into()));
        env.push(("LEDGER_URL".into(), String::new()));
        env
    }

    pub(super) fn describe_windows(&self) -> String {
        format!(
            "idempotency keys {} s, published outbox rows {} s, cache TTL {} s, stale copies {} s, \
             SQS retention {} s, dedup records {} s, pruning every {} s; judged after {} s",
            self.idempotency_seconds,
            self.outbox_seconds,
            self.cache_ttl_seconds,
            self.stale_if_error_seconds,
            self.sqs_retention_seconds,
            self.dedup_seconds,
            self.prune_interval_seconds,
            self.warm_up()
        )
    }
}
