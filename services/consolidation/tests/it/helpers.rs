//! A consolidation running in-process on its own scope, events to feed it, and a client.

use std::time::{Duration, Instant};

use cashflow_contracts::{Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1};
use consolidation::metrics::Metrics;
use consolidation::{Application, Config};
use harness::{Scope, ScopeOptions, Stack};
use serde_json::Value;
use time::Date;
use uuid::Uuid;

/// A running consolidation and what it runs on.
pub struct TestApp {
    pub address: String,
    pub scope: Scope,
    pub stack: &'static Stack,
    pub http: reqwest::Client,
    pub metrics: Metrics,
    pub supervisor: cashflow_platform::supervise::Supervisor,
    run: testkit::Running,
}

impl testkit::probe::Served for TestApp {
    fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn base_url(&self) -> &str {
        &self.address
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
        // Before it starts: the tests observe its retries through its log lines.
        testkit::logs::capture();
        let mut config =
            testkit::consolidation_config(&scope, &scope, stack.identity().auth_config());
        adjust(&mut config);
        let app = Application::build(config)
            .await
            .expect("consolidation builds");
        let address = format!("http://{}", app.local_addr());
        let metrics = app.metrics().clone();
        let supervisor = app.supervisor();
        let run = testkit::Running::spawn(|shutdown| app.run_until_stopped(shutdown));
        Self {
            address,
            scope,
            stack,
            http: reqwest::Client::new(),
            metrics,
            supervisor,
            run,
        }
    }

    /// Every retry its consumer logged so far, oldest first.
    pub fn retries(&self) -> Vec<testkit::logs::Retry> {
        testkit::logs::retries_on(&self.scope.queues.url)
    }

    /// Stops it and waits for the drain.
    pub async fn stop(self) {
        self.run.stop().await.expect("consolidation ran");
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
        testkit::queue::send_event(&self.scope, event)
            .await
            .expect("send");
    }

    /// Sends any body, with an optional `event_type` attribute.
    pub async fn send_raw(&self, body: &str, event_type: Option<&str>) {
        testkit::queue::send_raw(&self.scope, body, event_type)
            .await
            .expect("send");
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
