//! Building and running the consolidation: `Application::build` connects, migrates and binds;
//! `run_until_stopped` consumes and serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::run::{Runner, Stops};
use cashflow_platform::supervise::Supervisor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::consumer::{self, Consumer};
use crate::metrics::Metrics;
use crate::routes::{self, AppState, Shared};

/// A built consolidation, bound to its port, not yet running.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    consumer: Option<Arc<Consumer>>,
    state: AppState,
    metrics: Metrics,
    drain_deadline: Duration,
    supervisor: Supervisor,
    reconcile_periodically: bool,
    processed_events_retention: Duration,
    retention_interval: Duration,
}

/// The supervised SQS consumer.
pub const CONSUMER_TASK: &str = "consumer";
/// The supervised DLQ depth sampler.
pub const DLQ_SAMPLER_TASK: &str = "dlq-depth";
/// The supervised retry of cache fence lifts that missed Redis.
pub const CACHE_FLUSH_TASK: &str = "cache-flush";
/// Name of the supervised reconciler (periodic passes against the ledger's digests).
pub const RECONCILER_TASK: &str = "reconciler";
/// Name of the supervised pruning of expired dedup records.
pub const RETENTION_TASK: &str = "retention";

impl Application {
    /// Connects to PostgreSQL, applies the migrations, sets up SQS and Redis, binds the listener.
    /// Redis may be down: it is a cache, connected on first use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = cashflow_platform::http::connect_and_migrate(
            &config.database_url,
            config.database_max_connections,
            &config.deadlines,
            &crate::MIGRATOR,
        )
        .await?;
        let metrics = Metrics::new();
        let cache = Arc::new(Cache::new(
            &config.redis_url,
            &config.redis_prefix,
            config.cache_ttl,
            config.cache_stale_if_error,
            (config.deadlines.database_acquire + config.deadlines.database_statement)
                * crate::cache::FENCED_STATEMENTS,
            config.redis,
            metrics.cache.clone(),
        )?);
        // Attempts outlive a long poll.
        let attempt_timeout = config.deadlines.sqs_attempt
            + Duration::from_secs(u64::try_from(config.consumer.wait_seconds).unwrap_or(20));
        let sqs = config
            .sqs
            .client(config.deadlines.sqs_connect, attempt_timeout)
            .await;
        let consumer = config.consumer.enabled.then(|| {
            Arc::new(Consumer::new(
                pool.clone(),
                sqs.clone(),
                config.queue_url.clone(),
                config.dlq_url.clone(),
                config.consumer.clone(),
                Arc::clone(&cache),
                metrics.consumer.clone(),
            ))
        });
        crate::config::check_retention(
            config.processed_events_retention,
            config
                .reconcile
                .replays_possible()
                .then_some(config.reconcile.window_days),
            config.retention.sqs,
        )?;
        // Built whenever the ledger is configured, so the on-demand API works; periodic only
        // when enabled.
        let reconciler = if config.reconcile.enabled || !config.reconcile.ledger_url.is_empty() {
            Some(Arc::new(
                crate::reconcile::Reconciler::new(
                    pool.clone(),
                    config.reconcile.clone(),
                    metrics.reconcile.clone(),
                )
                .context("setting up the reconciler")?,
            ))
        } else {
            None
        };
        let state = AppState::new(Shared {
            reconciler,
            pool,
            verifier: Arc::new(JwtVerifier::new(config.auth.clone())),
            cache,
            sqs,
            queue_url: config.queue_url.clone(),
            dlq_url: config.dlq_url.clone(),
            report_max_days: config.report_max_days,
            default_currency: config.default_currency,
            read_retry_budget: config.deadlines.database_acquire,
        });
        let supervisor = Supervisor::default().with_metrics(metrics.tasks.clone());
        let router = routes::router(
            state.clone(),
            &metrics,
            config.deadlines.request,
            supervisor.clone(),
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Self {
            listener,
            router,
            consumer,
            state,
            metrics,
            drain_deadline: config.deadlines.shutdown_drain,
            supervisor,
            reconcile_periodically: config.reconcile.enabled,
            processed_events_retention: config.processed_events_retention,
            retention_interval: config.retention.interval,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The supervisor of this instance's background tasks ([`CONSUMER_TASK`], ...).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// The metrics of this instance.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Consumes and serves until `shutdown`: polling stops and batches in flight finish, HTTP
    /// stops accepting and finishes its requests, then it returns (within the drain deadline).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut run = Runner::new(
            "consolidation",
            shutdown,
            self.supervisor,
            self.drain_deadline,
        );
        run.serve("HTTP", self.listener, self.router);
        if let Some(consumer) = self.consumer {
            // At shutdown: a stopping replica takes no new messages; it finishes its batch.
            run.task(CONSUMER_TASK, Stops::AtShutdown, move |stop| {
                let consumer = Arc::clone(&consumer);
                async move {
                    consumer.run(stop).await;
                    Ok(())
                }
            });
        }
        let (sqs, dlq_url, metrics) = (
            self.state.sqs.clone(),
            self.state.dlq_url.clone(),
            self.metrics.consumer.clone(),
        );
        run.task(DLQ_SAMPLER_TASK, Stops::AtShutdown, move |stop| {
            let sampled =
                consumer::sample_dlq_depth(sqs.clone(), dlq_url.clone(), metrics.clone(), stop);
            async move {
                sampled.await;
                Ok(())
            }
        });
        if let (true, Some(reconciler)) = (self.reconcile_periodically, &self.state.reconciler) {
            let reconciler = Arc::clone(reconciler);
            run.task(RECONCILER_TASK, Stops::AtShutdown, move |stop| {
                let reconciler = Arc::clone(&reconciler);
                async move {
                    reconciler.run(stop).await;
                    Ok(())
                }
            });
        }
        run.prune(
            RETENTION_TASK,
            &self.state.pool,
            vec![crate::retention::rule(self.processed_events_retention)],
            self.retention_interval,
            self.metrics.retention.clone(),
        );
        let cache = Arc::clone(&self.state.cache);
        // After the requests: lifts that missed Redis are retried to the end.
        run.task(CACHE_FLUSH_TASK, Stops::AfterRequests, move |stop| {
            let cache = Arc::clone(&cache);
            async move {
                while !stop.is_cancelled() {
                    cache.flush_pending().await;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.cancelled() => {}
                    }
                }
                Ok(())
            }
        });
        run.run(&self.state.pool).await
    }
}
