//! Retention: an expired Idempotency-Key is a new request, the pruner removes only expired keys
//! and published outbox rows, and a window a request could outlive is refused at start.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, credit};

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(app.token("m1"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    (
        response.status().as_u16(),
        response.json().await.expect("json"),
    )
}

/// Moves a key's creation `hours` into the past.
async fn age_key(app: &TestApp, key: &str, hours: i32) {
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - make_interval(hours => $2) \
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .bind(hours)
    .execute(&app.pool)
    .await
    .expect("age the key");
}

#[tokio::test]
async fn an_expired_idempotency_key_is_a_new_request() {
    let app = TestApp::spawn().await;
    let (status, first) = post_with_key(&app, "expiring", &credit("1.00")).await;
    assert_eq!(status, 201);
    // Inside the 24 h window the key still replays the first answer...
    age_key(&app, "expiring", 23).await;
    assert_eq!(
        post_with_key(&app, "expiring", &credit("1.00")).await,
        (201, first.clone())
    );
    // ...and past it, the same key (even with another body) records a new entry.
    age_key(&app, "expiring", 25).await;
    let (status, second) = post_with_key(&app, "expiring", &credit("2.00")).await;
    assert_eq!(status, 201, "{second}");
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["amount"], "2.00");
    assert_eq!(app.entry_count().await, 2);
    // The key now belongs to the new request: its retry replays the new answer.
    assert_eq!(
        post_with_key(&app, "expiring", &credit("2.00")).await,
        (201, second)
    );
    assert_eq!(app.entry_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn the_pruner_removes_only_expired_keys_and_published_outbox_rows() {
    let app = TestApp::spawn_with(|config| {
        config.relay.enabled = false;
        config.retention.interval = Duration::from_secs(1);
    })
    .await;
    for key in ["old", "fresh"] {
        assert_eq!(post_with_key(&app, key, &credit("1.00")).await.0, 201);
    }
    age_key(&app, "old", 25).await;
    // Three outbox rows (the relay is off): published long ago, published recently, and
    // unpublished for as long (never pruned: it has not reached SQS yet).
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '8 days' \
         WHERE id = (SELECT min(id) FROM outbox)",
    )
    .execute(&app.pool)
    .await
    .expect("publish one long ago");
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '1 day', \
           created_at = now() - interval '30 days' \
         WHERE id = (SELECT max(id) FROM outbox)",
    )
    .execute(&app.pool)
    .await
    .expect("publish one recently");
    let unpublished: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, event_type, payload, created_at) \
         VALUES (gen_random_uuid(), 'entry.recorded.v1', '{}', now() - interval '30 days') \
         RETURNING id",
    )
    .fetch_one(&app.pool)
    .await
    .expect("an old unpublished row");

    harness::eventually(Duration::from_secs(20), "the expired rows pruned", || {
        let pool = app.pool.clone();
        async move {
            let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
                .fetch_one(&pool)
                .await
                .ok()?;
            let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
                .fetch_one(&pool)
                .await
                .ok()?;
            (keys == 1 && outbox == 2).then_some(())
        }
    })
    .await;
    let key: String = sqlx::query_scalar("SELECT idempotency_key FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .expect("key");
    assert_eq!(key, "fresh");
    let left: Vec<(i64, bool)> =
        sqlx::query_as("SELECT id, published_at IS NULL FROM outbox ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("outbox");
    assert_eq!(left.len(), 2);
    assert!(left.contains(&(unpublished, true)), "{left:?}");
    assert!(left.iter().any(|(_, unpublished)| !unpublished), "{left:?}");
    // The entries themselves are the books: never pruned.
    assert_eq!(app.entry_count().await, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_window_a_request_could_outlive_is_refused_at_start() {
    let stack = harness::shared().await.expect("stack");
    let scope = stack
        .scope_with(harness::ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
        .await
        .expect("scope");
    let mut config = testkit::ledger_config(&scope, stack.identity().auth_config());
    config.deadlines.request = Duration::from_secs(30);
    config.retention.idempotency_keys = Duration::from_secs(45);
    let error = ledger::Application::build(config)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("IDEMPOTENCY_KEY_RETENTION_SECONDS"),
        "{error}"
    );
    assert!(error.contains("HTTP_REQUEST_TIMEOUT_MS"), "{error}");
}
