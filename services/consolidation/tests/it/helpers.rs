//! A consolidation running in-process on its own scope, events to feed it, and a client.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageAttributeValue;
use cashflow_contracts::{Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1};
use cashflow_platform::auth::AuthConfig;
use cashflow_platform::sqs::SqsSettings;
use consolidation::config::ConsumerConfig;
use consolidation::consumer::RetryNotice;
use consolidation::metrics::Metrics;
use consolidation::{Application, Config};
use harness::{Scope, ScopeOptions, Stack};
use serde_json::Value;
use time::Date;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A running consolidation and what it runs on.
pub struct TestApp {
    pub address: String,
    pub scope: Scope,
    pub stack: &'static Stack,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    pub retries: broadcast::Receiver<RetryNotice>,
    pub supervisor: cashflow_platform::supervise::Supervisor,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The configuration a test consolidation gets for `scope`: short long-polls and retries of
/// 1 s doubling to at most 4 s.
pub fn config_for(stack: &Stack, scope: &Scope) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        redis_url: scope.redis_url.clone(),
        redis_prefix: scope.redis_prefix.clone(),
        cache_ttl: Duration::from_secs(600),
        cache_stale_if_error: Duration::from_secs(600),
        redis: Default::default(),
        queue_url: scope.queues.url.clone(),
        dlq_url: scope.queues.dlq_url.clone(),
        sqs: SqsSettings {
            endpoint_url: Some(scope.sqs_endpoint.clone()),
            region: scope.aws_region.clone(),
        },
        auth: AuthConfig {
            issuer: stack.identity().issuer().to_string(),
            audience: stack.identity().audience().to_string(),
            jwks_uri: Some(stack.identity().jwks_uri()),
            leeway: Duration::from_secs(30),
            keys: Default::default(),
        },
        consumer: ConsumerConfig {
            concurrency: 2,
            wait_seconds: 1,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(4),
            ..ConsumerConfig::default()
        },
        report_max_days: 366,
        default_currency: Currency::BRL,
        deadlines: Default::default(),
        reconcile: consolidation::config::ReconcileConfig::default(),
        processed_events_retention: consolidation::config::DEFAULT_PROCESSED_EVENTS_RETENTION,
        opening_read: Default::default(),
        retention: Default::default(),
    }
}

impl TestApp {
    /// On a fresh scope of the shared stack.
    pub async fn spawn() -> Self {
        Self::spawn_with(ScopeOptions::default(), |_| {}).await
    }

    /// On a fresh scope of the shared stack, with scope options and configuration adjusted.
    pub async fn spawn_with(options: ScopeOptions, adjust: impl FnOnce(&mut Config)) -> Self {
        let stack = harness::shared().await.expect("harness stack");
        Self::spawn_on(stack, options, adjust).await
    }

    /// On a fresh scope of `stack`.
    pub async fn spawn_on(
        stack: &'static Stack,
        options: ScopeOptions,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let scope = stack
            .scope_with(options.with_migrations(&consolidation::MIGRATOR))
            .await
            .expect("scope");
        Self::start(stack, scope, adjust).await
    }

    /// Another instance on the same scope (database, queues, Redis prefix): a replica.
    pub async fn replica(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start(self.stack, self.scope.clone(), adjust).await
    }

    async fn start(stack: &'static Stack, scope: Scope, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = config_for(stack, &scope);
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("consolidation builds");
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics().clone();
        let retries = app.retries();
        let supervisor = app.supervisor();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            address,
            scope,
            stack,
            http: reqwest::Client::new(),
            metrics,
            retries,
            supervisor,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops it and waits for the drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("consolidation ran");
        }
    }

    /// A token for `merchant` with `balances:read`.
    pub fn token(&self, merchant: &str) -> String {
        self.stack
            .identity()
            .token()
            .merchant(merchant)
            .scope("balances:read")
            .mint()
            .expect("token")
    }

    /// A token with the admin scope.
    pub fn admin_token(&self) -> String {
        self.stack
            .identity()
            .token()
            .merchant("ops")
            .scope("admin")
            .mint()
            .expect("token")
    }

    /// GET a path with `merchant`'s token; status and body.
    pub async fn get(&self, merchant: &str, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .bearer_auth(self.token(merchant))
            .send()
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    }

    /// A day's balance as JSON.
    pub async fn balance(&self, merchant: &str, date: Date) -> Value {
        let (status, body) = self
            .get(
                merchant,
                &format!("/v1/merchants/{merchant}/balances/{}", day(date)),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    }

    /// Sends an event to the scope's queue as the ledger's relay would.
    pub async fn send(&self, event: &EntryRecordedV1) {
        self.send_raw(
            &serde_json::to_string(event).expect("json"),
            Some(ENTRY_RECORDED),
        )
        .await;
    }

    /// Sends any body, with an optional `event_type` attribute.
    pub async fn send_raw(&self, body: &str, event_type: Option<&str>) {
        let mut send = self
            .scope
            .sqs()
            .send_message()
            .queue_url(&self.scope.queues.url)
            .message_body(body);
        if let Some(event_type) = event_type {
            send = send.message_attributes(
                "event_type",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(event_type)
                    .build()
                    .expect("attribute"),
            );
        }
        send.send().await.expect("send");
    }

    /// Waits until the consumer applied at least `n` events (the cache is invalidated by then).
    pub async fn wait_applied(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.metrics.consumer.applied.get() < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} events applied after {timeout:?}",
                self.metrics.consumer.applied.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// An `entry.recorded.v1` event.
pub fn event(merchant: &str, kind: EntryKind, amount_minor: i64, date: Date) -> EntryRecordedV1 {
    EntryRecordedV1 {
        event_type: ENTRY_RECORDED.into(),
        event_id: Uuid::now_v7(),
        entry_id: Uuid::now_v7(),
        merchant_id: merchant.parse().expect("merchant"),
        kind,
        amount_minor,
        currency: Currency::BRL,
        business_date: date,
        recorded_at: time::OffsetDateTime::now_utc(),
        reverses_entry_id: None,
    }
}

/// `YYYY-MM-DD`.
pub fn day(date: Date) -> String {
    cashflow_contracts::business_date::format(date)
}

/// A fixed past date plus `offset` days.
pub fn date(offset: i64) -> Date {
    time::macros::date!(2026 - 11 - 01) + time::Duration::days(offset)
}
