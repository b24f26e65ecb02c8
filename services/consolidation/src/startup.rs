//! Building and running the consolidation: `Application::build` connects, migrates and binds;
//! `run_until_stopped` consumes and serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
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
    reconcile_periodically: bool,
    retention_days: u16,
}

impl Application {
    /// Connects to PostgreSQL, applies the migrations, sets up SQS and Redis, binds the listener.
    /// Redis may be down: it is a cache, connected on first use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = cashflow_platform::http::connect_and_migrate(
            &config.database_url,
            config.database_max_connections,
            &crate::MIGRATOR,
        )
        .await?;
        let metrics = Metrics::new();
        let cache = Arc::new(Cache::new(
            &config.redis_url,
            &config.redis_prefix,
            config.cache_ttl,
            metrics.cache.clone(),
        )?);
        // Attempts outlive a long poll.
        let attempt_timeout =
            Duration::from_secs(u64::try_from(config.consumer.wait_seconds).unwrap_or(20) + 10);
        let sqs = config.sqs.client(attempt_timeout).await;
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
            config.processed_events_retention_days,
            config.reconcile.window_days,
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
        };
        let router = routes::router(state.clone(), &metrics);
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
            reconcile_periodically: config.reconcile.enabled,
            retention_days: config.processed_events_retention_days,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
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
            tasks.spawn(consumer.run(shutdown.clone()));
        }
        tasks.spawn(consumer::sample_dlq_depth(
            self.state.sqs.clone(),
            self.state.dlq_url.clone(),
            self.metrics.consumer.clone(),
            shutdown.clone(),
        ));
        if let (true, Some(reconciler)) = (self.reconcile_periodically, &self.state.reconciler) {
            tasks.spawn(Arc::clone(reconciler).run(shutdown.clone()));
        }
        tasks.spawn(crate::retention::run(
            self.state.pool.clone(),
            self.retention_days,
            shutdown.clone(),
        ));
        let cache = Arc::clone(&self.state.cache);
        let flush_stop = shutdown.clone();
        tasks.spawn(async move {
            while !flush_stop.is_cancelled() {
                cache.flush_pending().await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = flush_stop.cancelled() => {}
                }
            }
        });
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("serving HTTP");
        while tasks.join_next().await.is_some() {}
        self.state.pool.close().await;
        tracing::info!("consolidation stopped");
        served
    }
}
