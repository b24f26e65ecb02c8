//! The consolidation's metrics, in a registry of its own.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cashflow_platform::telemetry::{HttpMetrics, latency_buckets};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::cache::CacheMetrics;

/// Consumer figures.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    /// Messages received from the queue.
    pub received: Counter,
    /// Events that changed a balance.
    pub applied: Counter,
    /// Redelivered events that changed nothing.
    pub duplicates: Counter,
    /// Messages put back with a backoff after a transient failure.
    pub retried: Counter,
    /// Messages sent to the DLQ by the consumer (malformed, unknown type, invalid).
    pub dead_lettered: Counter,
    /// Time to apply a batch in PostgreSQL.
    pub apply_seconds: Histogram,
    /// Now minus the event's recorded_at, when applied.
    pub lag_seconds: Histogram,
    /// Messages in the DLQ (sampled).
    pub dlq_depth: Gauge,
    /// Held messages whose visibility the heartbeat extended (a slow batch).
    pub visibility_extended: Counter,
    /// Deletes SQS failed that were sent again.
    pub delete_retries: Counter,
    /// Messages handed back to the queue unapplied because this instance could not fence the
    /// cache (Redis unreachable from it, or read-only).
    pub handed_back: Counter,
    /// 1 while this instance's poll loops wait for Redis to take writes before receiving.
    pub waiting_for_cache: Gauge,
}

impl Default for ConsumerMetrics {
    fn default() -> Self {
        Self {
            received: Counter::default(),
            applied: Counter::default(),
            duplicates: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            apply_seconds: Histogram::new(latency_buckets()),
            lag_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            dlq_depth: Gauge::default(),
            visibility_extended: Counter::default(),
            delete_retries: Counter::default(),
            handed_back: Counter::default(),
            waiting_for_cache: Gauge::default(),
        }
    }
}

/// Reconciler figures.
#[derive(Debug, Clone, Default)]
pub struct ReconcileMetrics {
    /// Passes completed.
    pub passes: Counter,
    /// Passes that failed (ledger unavailable, database error, panic).
    pub failures: Counter,
    /// Merchant-days found behind the ledger (and replayed).
    pub found: Counter,
    /// Of those, merchant-days that agreed with the ledger after the replay.
    pub repaired: Counter,
    /// Of those, merchant-days still divergent at the re-check deadline.
    pub still_divergent: Counter,
    /// Merchant-days currently known to differ (still divergent, or ahead of the ledger).
    pub unrepaired: Gauge,
    /// Merchant-days where the consolidation holds more than the ledger (flagged, not repaired).
    pub ahead: Gauge,
    /// Age of the oldest divergence not repaired yet, seconds (0 when none).
    pub oldest_divergence_age_seconds: Gauge<f64, AtomicU64>,
}

/// Every metric of one consolidation instance.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Arc<Registry>,
    /// Requests by route and status.
    pub http: HttpMetrics,
    /// Restarts of supervised background tasks.
    pub tasks: cashflow_platform::supervise::TaskMetrics,
    /// The consumer.
    pub consumer: ConsumerMetrics,
    /// The cache.
    pub cache: CacheMetrics,
    /// The reconciler.
    pub reconcile: ReconcileMetrics,
    /// Rows pruned and table sizes.
    pub retention: cashflow_platform::retention::RetentionMetrics,
}

impl Metrics {
    /// Registers everything in a new registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("consolidation");
        let http = HttpMetrics::register(&mut registry);
        let tasks = cashflow_platform::supervise::TaskMetrics::register(&mut registry);
        let consumer = ConsumerMetrics::default();
        let cache = CacheMetrics::default();
        let reconcile = ReconcileMetrics::default();
        let retention = cashflow_platform::retention::RetentionMetrics::register(&mut registry);
        registry.register(
            "reconcile_passes",
            "Reconcile passes completed",
            reconcile.passes.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconcile passes that failed",
            reconcile.failures.clone(),
        );
        registry.register(
            "reconcile_divergent_found",
            "Merchant-days found behind the ledger and replayed",
            reconcile.found.clone(),
        );
        registry.register(
            "reconcile_repaired",
            "Merchant-days that agreed with the ledger after a replay",
            reconcile.repaired.clone(),
        );
        registry.register(
            "reconcile_still_divergent",
            "Merchant-days still divergent at the re-check deadline after a replay",
            reconcile.still_divergent.clone(),
        );
        registry.register(
            "reconcile_unrepaired",
            "Merchant-days currently known to differ from the ledger",
            reconcile.unrepaired.clone(),
        );
        registry.register(
            "reconcile_ahead",
            "Merchant-days where the consolidation holds more than the ledger",
            reconcile.ahead.clone(),
        );
        registry.register(
            "reconcile_oldest_divergence_age_seconds",
            "Age of the oldest divergence not repaired yet",
            reconcile.oldest_divergence_age_seconds.clone(),
        );
        registry.register(
            "events_received",
            "Messages received from SQS",
            consumer.received.clone(),
        );
        registry.register(
            "events_applied",
            "Events applied to balances",
            consumer.applied.clone(),
        );
        registry.register(
            "events_duplicate",
            "Redelivered events ignored",
            consumer.duplicates.clone(),
        );
        registry.register(
            "events_retried",
            "Messages retried with backoff",
            consumer.retried.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Messages sent to the DLQ by the consumer",
            consumer.dead_lettered.clone(),
        );
        registry.register(
            "apply_seconds",
            "Time to apply a batch",
            consumer.apply_seconds.clone(),
        );
        registry.register(
            "lag_seconds",
            "Time from the ledger recording an entry to its balance being updated",
            consumer.lag_seconds.clone(),
        );
        registry.register(
            "dlq_depth",
            "Messages in the dead-letter queue",
            consumer.dlq_depth.clone(),
        );
        registry.register(
            "visibility_extended",
            "Held messages whose visibility the heartbeat extended",
            consumer.visibility_extended.clone(),
        );
        registry.register(
            "handed_back",
            "Messages handed back unapplied because this instance could not fence the cache",
            consumer.handed_back.clone(),
        );
        registry.register(
            "waiting_for_cache",
            "1 while the poll loops wait for Redis to take writes before receiving",
            consumer.waiting_for_cache.clone(),
        );
        registry.register(
            "delete_retries",
            "Deletes SQS failed that were sent again",
            consumer.delete_retries.clone(),
        );
        registry.register("cache_hits", "Reads served from Redis", cache.hits.clone());
        registry.register(
            "cache_misses",
            "Reads Redis did not have",
            cache.misses.clone(),
        );
        registry.register(
            "cache_fallbacks",
            "Reads served from PostgreSQL because Redis failed",
            cache.fallbacks.clone(),
        );
        registry.register(
            "cache_redis_failures",
            "Redis connects and calls that failed or passed their deadline",
            cache.redis_failures.clone(),
        );
        registry.register(
            "cache_stale_served",
            "Reads answered with the last invalidated answer because PostgreSQL was unavailable",
            cache.stale_served.clone(),
        );
        registry.register(
            "cache_fenced",
            "Reads served from PostgreSQL because a writer had fenced the merchant's answers",
            cache.fenced.clone(),
        );
        registry.register(
            "reads_retried",
            "Balance reads that PostgreSQL dropped or refused and that were tried again",
            cache.reads_retried.clone(),
        );
        registry.register(
            "cache_breaker_state",
            "The Redis circuit breaker: 0 closed, 1 open, 2 half-open",
            cache.breaker_state.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http,
            tasks,
            consumer,
            cache,
            reconcile,
            retention,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
