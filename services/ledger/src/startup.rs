//! Building and running the ledger: `Application::build` connects, migrates and binds;
//! `run_until_stopped` serves until the shutdown token is cancelled, then drains.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::JwtVerifier;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
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
    metrics: Metrics,
}

impl Application {
    /// Connects to PostgreSQL, applies the migrations, sets up SQS and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = cashflow_platform::http::connect_and_migrate(
            &config.database_url,
            config.database_max_connections,
            &crate::MIGRATOR,
        )
        .await?;
        let metrics = Metrics::new();
        let relay_wake = Arc::new(Notify::new());
        let relay = if config.relay.enabled {
            let sqs = config.sqs.client(Duration::from_secs(5)).await;
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
        };
        let router = routes::router(state.clone(), &metrics);
        let internal_router = routes::internal_router(state, &metrics);
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
            metrics,
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
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
            tasks.spawn(relay.run(background.clone()));
        }
        tasks.spawn(outbox::sample_backlog(
            self.pool.clone(),
            self.metrics.outbox.clone(),
            background.clone(),
        ));
        let public = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let internal = axum::serve(self.internal_listener, self.internal_router)
            .with_graceful_shutdown(shutdown.cancelled_owned());
        let (public, internal) = tokio::join!(public, internal);
        let served = public
            .context("serving HTTP")
            .and(internal.context("serving the internal routes"));
        // Requests have drained; whatever they committed is still published by the next relay.
        background.cancel();
        while tasks.join_next().await.is_some() {}
        self.pool.close().await;
        tracing::info!("ledger stopped");
        served
    }
}
