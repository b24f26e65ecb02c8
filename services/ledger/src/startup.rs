//! Building and running the ledger: `Application::build` connects, migrates and binds;
//! `run_until_stopped` serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::supervise::Supervisor;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::group_commit::{GroupCommit, Writer};
use crate::metrics::Metrics;
use crate::outbox::{self, Relay};
use crate::routes::{self, AppState};

/// A built ledger, bound to its port, not yet serving.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    internal_listener: TcpListener,
    internal_router: axum::Router,
    pool: PgPool,
    relay: Option<Relay>,
    writer: Writer,
    metrics: Metrics,
    drain_deadline: Duration,
    supervisor: Supervisor,
    retention: crate::config::RetentionConfig,
}

/// The supervised task publishing the outbox.
pub const RELAY_TASK: &str = "outbox-relay";
/// The supervised task sampling the outbox backlog.
pub const BACKLOG_TASK: &str = "outbox-backlog";
/// The supervised pruning of expired idempotency keys and published outbox rows.
pub const RETENTION_TASK: &str = "retention";
/// The supervised task writing new entries in batches (group commit).
pub const WRITER_TASK: &str = "entry-writer";

/// What expires in the ledger's database, and after how long.
pub fn retention_rules(
    retention: &crate::config::RetentionConfig,
) -> Vec<cashflow_platform::retention::Rule> {
    use cashflow_platform::retention::Rule;
    vec![
        Rule {
            table: "idempotency_keys",
            expired: "created_at < now() - make_interval(secs => $1)",
            window: retention.idempotency_keys,
        },
        // Only rows SQS has accepted; a replay writes rows back with the same event id.
        Rule {
            table: "outbox",
            expired: "published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)",
            window: retention.outbox,
        },
    ]
}

impl Application {
    /// Connects to PostgreSQL, applies the migrations, sets up SQS and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = cashflow_platform::http::connect_and_migrate(
            &config.database_url,
            config.database_max_connections,
            &config.deadlines,
            &crate::MIGRATOR,
        )
        .await?;
        crate::config::check_retention(&config.retention, config.deadlines.request)?;
        config.write_batch.check(config.database_max_connections)?;
        let metrics = Metrics::new();
        let relay_wake = Arc::new(Notify::new());
        let relay = if config.relay.enabled {
            let sqs = config
                .sqs
                .client(config.deadlines.sqs_connect, config.deadlines.sqs_attempt)
                .await;
            Some(Relay::new(
                pool.clone(),
                sqs,
                config.queue_url.clone(),
                config.relay.clone(),
                Arc::clone(&relay_wake),
                metrics.outbox.clone(),
            ))
        } else {
            None
        };
        let (group_commit, writer) = GroupCommit::new(
            config.write_batch,
            pool.clone(),
            config.retention.idempotency_keys,
            Arc::clone(&relay_wake),
            metrics.writes.clone(),
        );
        let state = AppState {
            pool: pool.clone(),
            verifier: Arc::new(JwtVerifier::new(config.auth.clone())),
            rules: Arc::new(config.entries.clone()),
            relay_wake,
            max_body_bytes: config.max_body_bytes,
            replay: Arc::new(routes::ReplaySettings {
                pacer: crate::reconcile::Pacer::new(config.replay.events_per_second),
                max_days: config.replay.max_days,
            }),
            idempotency_window: config.retention.idempotency_keys,
            writer: group_commit,
        };
        let supervisor = Supervisor::default().with_metrics(metrics.tasks.clone());
        let router = routes::router(
            state.clone(),
            &metrics,
            config.deadlines.request,
            supervisor.clone(),
        );
        let internal_router = routes::internal_router(state, &metrics, supervisor.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let internal_listener = TcpListener::bind(config.internal_listen)
            .await
            .with_context(|| {
                format!("binding {} (INTERNAL_LISTEN_ADDR)", config.internal_listen)
            })?;
        Ok(Self {
            listener,
            router,
            internal_listener,
            internal_router,
            pool,
            relay,
            writer,
            metrics,
            drain_deadline: config.deadlines.shutdown_drain,
            supervisor,
            retention: config.retention,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The supervisor of this instance's background tasks ([`RELAY_TASK`], [`BACKLOG_TASK`]).
    pub fn supervisor(&self) -> Supervisor {
        self.supervisor.clone()
    }

    /// The bound address of the internal routes (digests, replays).
    pub fn internal_addr(&self) -> SocketAddr {
        self.internal_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The metrics of this instance.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` is cancelled: stops accepting, finishes in-flight requests, lets
    /// the relay finish its batch, then returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(relay) = self.relay {
            let stop = background.clone();
            self.supervisor
                .spawn(&mut tasks, RELAY_TASK, background.clone(), move || {
                    let (relay, stop) = (relay.clone(), stop.clone());
                    async move {
                        relay.run(stop).await;
                        Ok(())
                    }
                });
        }
        // The writer stops with the background tasks, after the HTTP server has drained: a
        // request in flight is waiting for its batch, and queued batches are written first.
        let (writer, stop) = (self.writer.clone(), background.clone());
        self.supervisor
            .spawn(&mut tasks, WRITER_TASK, background.clone(), move || {
                let (writer, stop) = (writer.clone(), stop.clone());
                async move { writer.run(stop).await }
            });
        let (pool, metrics, stop) = (
            self.pool.clone(),
            self.metrics.outbox.clone(),
            background.clone(),
        );
        self.supervisor
            .spawn(&mut tasks, BACKLOG_TASK, background.clone(), move || {
                let sampled = outbox::sample_backlog(pool.clone(), metrics.clone(), stop.clone());
                async move {
                    sampled.await;
                    Ok(())
                }
            });
        let (pool, metrics, stop) = (
            self.pool.clone(),
            self.metrics.retention.clone(),
            background.clone(),
        );
        let (rules, idle) = (retention_rules(&self.retention), self.retention.interval);
        self.supervisor
            .spawn(&mut tasks, RETENTION_TASK, background.clone(), move || {
                let pruned = cashflow_platform::retention::run(
                    pool.clone(),
                    rules.clone(),
                    idle,
                    metrics.clone(),
                    stop.clone(),
                );
                async move {
                    pruned.await;
                    Ok(())
                }
            });
        // One drain for both listeners: its deadline starts at the first cancellation.
        let drain = cashflow_platform::shutdown::Drain::new(self.drain_deadline);
        let (public, internal) = tokio::join!(
            cashflow_platform::shutdown::serve_with_drain_deadline(
                self.listener,
                self.router,
                shutdown.clone(),
                &drain,
            ),
            cashflow_platform::shutdown::serve_with_drain_deadline(
                self.internal_listener,
                self.internal_router,
                shutdown,
                &drain,
            )
        );
        let served = public
            .context("serving HTTP")
            .and(internal.context("serving the internal routes"));
        // Requests have drained; whatever they committed is still published by the next relay.
        background.cancel();
        cashflow_platform::shutdown::join_within(&mut tasks, &drain).await;
        cashflow_platform::shutdown::close_pool_within(&self.pool, &drain).await;
        tracing::info!("ledger stopped");
        served
    }
}
