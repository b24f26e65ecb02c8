//! Building and running the consolidation: `Application::build` connects, migrates and binds;
//! `run_until_stopped` consumes and serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::supervise::Supervisor;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::consumer::{self, Consumer, RetryNotice};
use crate::metrics::Metrics;
use crate::routes::{self, AppState};

/// A built consolidation, bound to its port, not yet running.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    consumer: Option<Arc<Consumer>>,
    state: AppState,
    metrics: Metrics,
    retries: broadcast::Sender<RetryNotice>,
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
/// The supervised retry of cache invalidations that missed Redis.
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
        let (retries, _) = broadcast::channel(1024);
        let consumer = config.consumer.enabled.then(|| {
            Arc::new(Consumer::new(
                pool.clone(),
                sqs.clone(),
                config.queue_url.clone(),
                config.dlq_url.clone(),
                config.consumer.clone(),
                Arc::clone(&cache),
                metrics.consumer.clone(),
                retries.clone(),
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
        let state = AppState {
            reconciler,
            pool,
            verifier: Arc::new(JwtVerifier::new(config.auth.clone())),
            cache,
            sqs,
            queue_url: config.queue_url.clone(),
            dlq_url: config.dlq_url.clone(),
            report_max_days: config.report_max_days,
            default_currency: config.default_currency,
            opening_read: config.opening_read,
        };
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
            retries,
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

    /// Notices of every retry the consumer schedules.
    pub fn retries(&self) -> broadcast::Receiver<RetryNotice> {
        self.retries.subscribe()
    }

    /// Consumes and serves until `shutdown`: polling stops and batches in flight finish, HTTP
    /// stops accepting and finishes its requests, then it returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(consumer) = self.consumer {
            let stop = shutdown.clone();
            self.supervisor
                .spawn(&mut tasks, CONSUMER_TASK, shutdown.clone(), move || {
                    let (consumer, stop) = (Arc::clone(&consumer), stop.clone());
                    async move {
                        consumer.run(stop).await;
                        Ok(())
                    }
                });
        }
        let (sqs, dlq_url, metrics, stop) = (
            self.state.sqs.clone(),
            self.state.dlq_url.clone(),
            self.metrics.consumer.clone(),
            shutdown.clone(),
        );
        self.supervisor
            .spawn(&mut tasks, DLQ_SAMPLER_TASK, shutdown.clone(), move || {
                let sampled = consumer::sample_dlq_depth(
                    sqs.clone(),
                    dlq_url.clone(),
                    metrics.clone(),
                    stop.clone(),
                );
                async move {
                    sampled.await;
                    Ok(())
                }
            });
        let reconcile_periodically = self.reconcile_periodically;
        if let (true, Some(reconciler)) = (reconcile_periodically, &self.state.reconciler) {
            let reconciler = Arc::clone(reconciler);
            let stop = shutdown.clone();
            self.supervisor
                .spawn(&mut tasks, RECONCILER_TASK, shutdown.clone(), move || {
                    let (reconciler, stop) = (Arc::clone(&reconciler), stop.clone());
                    async move {
                        reconciler.run(stop).await;
                        Ok(())
                    }
                });
        }
        let (pool, dedup_window, idle, stop, metrics) = (
            self.state.pool.clone(),
            self.processed_events_retention,
            self.retention_interval,
            shutdown.clone(),
            self.metrics.retention.clone(),
        );
        self.supervisor
            .spawn(&mut tasks, RETENTION_TASK, shutdown.clone(), move || {
                let (pool, stop) = (pool.clone(), stop.clone());
                let pruned = cashflow_platform::retention::run(
                    pool,
                    vec![crate::retention::rule(dedup_window)],
                    idle,
                    metrics.clone(),
                    stop,
                );
                async move {
                    pruned.await;
                    Ok(())
                }
            });
        let cache = Arc::clone(&self.state.cache);
        let flush_stop = shutdown.clone();
        self.supervisor
            .spawn(&mut tasks, CACHE_FLUSH_TASK, shutdown.clone(), move || {
                let (cache, stop) = (Arc::clone(&cache), flush_stop.clone());
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
        let drain = cashflow_platform::shutdown::Drain::new(self.drain_deadline);
        let served = cashflow_platform::shutdown::serve_with_drain_deadline(
            self.listener,
            self.router,
            shutdown,
            &drain,
        )
        .await;
        cashflow_platform::shutdown::join_within(&mut tasks, &drain).await;
        cashflow_platform::shutdown::close_pool_within(&self.state.pool, &drain).await;
        tracing::info!("consolidation stopped");
        served
    }
}
