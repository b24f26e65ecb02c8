//! The ledger's metrics, in a registry of its own.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cashflow_platform::telemetry::HttpMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
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
    /// Failed publish attempts (a whole batch or single entries).
    pub publish_failures: Counter,
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
            "outbox_publish_failures",
            "Failed attempts to publish outbox events",
            outbox.publish_failures.clone(),
        );
        Self {
            registry: Arc::new(registry),
            http,
            tasks,
            outbox,
            retention,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
