//! A ledger running in-process on its own scope, and a client for it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use harness::{Scope, ScopeOptions, Stack};
use ledger::{Application, Config};
use serde_json::Value;

/// A running ledger and what it runs on.
pub struct TestApp {
    pub address: String,
    /// The internal listener (digests, replays).
    pub internal_address: String,
    pub scope: Scope,
    pub stack: &'static Stack,
    pub http: reqwest::Client,
    pub pool: sqlx::PgPool,
    pub supervisor: cashflow_platform::supervise::Supervisor,
    run: testkit::Running,
}

impl TestApp {
    /// A ledger on a fresh scope of the shared stack.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Same, with the configuration adjusted.
    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let stack = harness::shared().await.expect("harness stack");
        Self::spawn_on(stack, adjust).await
    }

    /// A ledger on a fresh scope of `stack`.
    pub async fn spawn_on(stack: &'static Stack, adjust: impl FnOnce(&mut Config)) -> Self {
        let scope = stack
            .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
            .await
            .expect("scope");
        let mut config = testkit::ledger_config(&scope, stack.identity().auth_config());
        adjust(&mut config);
        Self::start(stack, scope, config).await
    }

    /// A ledger with exactly this configuration on `scope`.
    pub async fn start(stack: &'static Stack, scope: Scope, config: Config) -> Self {
        let app = Application::build(config).await.expect("ledger builds");
        let address = format!("http://{}", app.local_addr());
        let supervisor = app.supervisor();
        let internal_address = format!("http://{}", app.internal_addr());
        let run = testkit::Running::spawn(|shutdown| app.run_until_stopped(shutdown));
        let pool = scope.pg_pool().await.expect("pool");
        Self {
            address,
            internal_address,
            scope,
            stack,
            http: reqwest::Client::new(),
            pool,
            supervisor,
            run,
        }
    }

    /// Stops the ledger and waits for it to drain.
    pub async fn stop(self) {
        self.run.stop().await.expect("ledger ran");
    }

    /// A token for `merchant` with both entry scopes.
    pub fn token(&self, merchant: &str) -> String {
        self.stack
            .identity()
            .token()
            .merchant(merchant)
            .scopes(["entries:write", "entries:read"])
            .mint()
            .expect("token")
    }

    /// POSTs an entry as `merchant` with a good token.
    pub async fn post_entry(&self, merchant: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/merchants/{merchant}/entries", self.address))
            .bearer_auth(self.token(merchant))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Number of entries in the database.
    pub async fn entry_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM entries")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Number of unpublished outbox rows.
    pub async fn outbox_backlog(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .expect("backlog")
    }
}

/// A valid entry body.
pub fn credit(amount: &str) -> Value {
    serde_json::json!({"kind": "credit", "amount": amount, "currency": "BRL", "description": "card sale"})
}

/// Drains the scope's queue until `expected` messages arrived and two more polls come back
/// empty; returns how many times each event id was seen.
pub async fn drain_events(
    scope: &Scope,
    expected: usize,
    timeout: Duration,
) -> HashMap<String, usize> {
    let sqs = scope.sqs();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + timeout;
    let mut empty_after_expected = 0;
    while empty_after_expected < 2 {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events arrived within {timeout:?}",
            seen.values().sum::<usize>()
        );
        let got = sqs
            .receive_message()
            .queue_url(&scope.queues.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        if got.is_empty() && seen.values().sum::<usize>() >= expected {
            empty_after_expected += 1;
        }
        for message in got {
            let body: Value =
                serde_json::from_str(message.body().unwrap_or_default()).expect("json body");
            let event_type = message
                .message_attributes()
                .and_then(|a| a.get("event_type"))
                .and_then(|v| v.string_value())
                .map(str::to_string);
            assert_eq!(
                event_type.as_deref(),
                Some("entry.recorded.v1"),
                "event_type attribute"
            );
            *seen
                .entry(body["event_id"].as_str().expect("event id").to_string())
                .or_default() += 1;
            sqs.delete_message()
                .queue_url(&scope.queues.url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
    seen
}
