//! Building and running the ledger: `Application::build` connects, migrates and binds;
//! `run_until_stopped` serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
use cashflow_platform::run::{Runner, Stops};
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
    /// the relay publish what they committed, then returns (all within the drain deadline).
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut run = Runner::new("ledger", shutdown, self.supervisor, self.drain_deadline);
        run.serve("HTTP", self.listener, self.router);
        run.serve(
            "the internal routes",
            self.internal_listener,
            self.internal_router,
        );
        if let Some(relay) = self.relay {
            // After the requests: whatever they committed is published before exit.
            run.task(RELAY_TASK, Stops::AfterRequests, move |stop| {
                let relay = relay.clone();
                async move {
                    relay.run(stop).await;
                    Ok(())
                }
            });
        }
        // After the requests, like the relay: a request in flight is waiting for its batch, and
        // the writer writes what is queued before it returns.
        let writer = self.writer.clone();
        run.task(WRITER_TASK, Stops::AfterRequests, move |stop| {
            let writer = writer.clone();
            async move { writer.run(stop).await }
        });
        let (pool, metrics) = (self.pool.clone(), self.metrics.outbox.clone());
        run.task(BACKLOG_TASK, Stops::AfterRequests, move |stop| {
            let sampled = outbox::sample_backlog(pool.clone(), metrics.clone(), stop);
            async move {
                sampled.await;
                Ok(())
            }
        });
        run.prune(
            RETENTION_TASK,
            &self.pool,
            retention_rules(&self.retention),
            self.retention.interval,
            self.metrics.retention.clone(),
        );
        run.run(&self.pool).await
    }
}
