//! The ledger's metrics, in a registry of its own.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cashflow_platform::telemetry::HttpMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Outbox figures.
#[derive(Debug, Clone, Default)]
pub struct OutboxMetrics {
    /// Unpublished events.
    pub backlog: Gauge,
    /// Age in seconds of the oldest unpublished event (0 when none).
    pub oldest_age_seconds: Gauge<f64, AtomicU64>,
    /// Events SQS accepted.
    pub published: Counter,
    /// SendMessageBatch calls SQS answered (events per call: `published` divided by this).
    pub batches_sent: Counter,
    /// Failed publish attempts (a whole batch or single entries).
    pub publish_failures: Counter,
}

/// Group commit of new entries.
#[derive(Debug, Clone)]
pub struct WriteMetrics {
    /// Entries per write (a batch; 1 for a request written alone).
    pub batch_size: Histogram,
    /// Batches the database refused, whose requests were then written one by one.
    pub retried_alone: Counter,
    /// Requests not written because their caller had left (deadline passed, client gone)
    /// before their batch started.
    pub abandoned: Counter,
    /// Requests waiting for a batch.
    pub queued: Gauge,
}

impl Default for WriteMetrics {
    fn default() -> Self {
        Self {
            // 1, 2, 4, ... 1024.
            batch_size: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1.0, 2.0, 11,
            )),
            retried_alone: Counter::default(),
            abandoned: Counter::default(),
            queued: Gauge::default(),
        }
    }
}

/// Every metric of one ledger instance.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Arc<Registry>,
    /// Requests by route and status.
    pub http: HttpMetrics,
    /// Restarts of supervised background tasks.
    pub tasks: cashflow_platform::supervise::TaskMetrics,
    /// The outbox.
    pub outbox: OutboxMetrics,
    /// Group commit.
    pub writes: WriteMetrics,
    /// Rows pruned and table sizes.
    pub retention: cashflow_platform::retention::RetentionMetrics,
}

impl Metrics {
    /// Registers everything in a new registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ledger");
        let http = HttpMetrics::register(&mut registry);
        let tasks = cashflow_platform::supervise::TaskMetrics::register(&mut registry);
        let outbox = OutboxMetrics::default();
        let retention = cashflow_platform::retention::RetentionMetrics::register(&mut registry);
        registry.register(
            "outbox_backlog",
            "Unpublished outbox events",
            outbox.backlog.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event",
            outbox.oldest_age_seconds.clone(),
        );
        registry.register(
            "outbox_published",
            "Events published to SQS",
            outbox.published.clone(),
        );
        registry.register(
            "outbox_batches_sent",
            "SendMessageBatch calls SQS answered",
            outbox.batches_sent.clone(),
        );
        registry.register(
            "outbox_publish_failures",
            "Failed attempts to publish outbox events",
            outbox.publish_failures.clone(),
        );
        let writes = WriteMetrics::default();
        registry.register(
            "write_batch_size",
            "Entries written per statement and commit (group commit)",
            writes.batch_size.clone(),
        );
        registry.register(
            "write_batches_retried_alone",
            "Batches of entries the database refused, then written one request at a time",
            writes.retried_alone.clone(),
        );
        registry.register(
            "write_requests_abandoned",
            "Entries not written because their caller left before their batch started",
            writes.abandoned.clone(),
        );
        registry.register(
            "write_queued",
            "Requests waiting for a batch of entries to take them",
            writes.queued.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http,
            tasks,
            outbox,
            writes,
            retention,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
