//! Retry with backoff, the DLQ, and redrive.

use std::collections::HashMap;
use std::time::Duration;

use cashflow_contracts::EntryKind::Credit;
use harness::{Dependency, Fault, ScopeOptions, Stack, StackOptions};
use serde_json::Value;

use harness::eventually;

use crate::helpers::{TestApp, date, event};

async fn dlq(app: &TestApp) -> Value {
    app.http
        .get(format!("{}/v1/admin/dlq", app.address))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .expect("dlq")
        .json()
        .await
        .expect("json")
}

async fn redrive(app: &TestApp, body: Value) -> Value {
    app.http
        .post(format!("{}/v1/admin/dlq/redrive", app.address))
        .bearer_auth(app.admin_token())
        .json(&body)
        .send()
        .await
        .expect("redrive")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn with_postgres_down_messages_are_retried_with_growing_backoff_and_nothing_is_lost() {
    // Its own stack: PostgreSQL goes down.
    let stack: &'static Stack = Box::leak(Box::new(
        Stack::start(StackOptions::default()).await.expect("stack"),
    ));
    // What is measured is the retry's backoff, not the heartbeat (tested with the SQS faults): a
    // long visibility keeps a slow first attempt (PostgreSQL down, on a loaded machine) from being
    // handed to the other poll loop before its retry sets the backoff.
    let app = TestApp::spawn_on(
        stack,
        ScopeOptions::default().with_max_receive_count(20),
        |config| config.consumer.visibility = Duration::from_secs(60),
    )
    .await;
    stack
        .inject(Dependency::Postgres, Fault::Stop)
        .await
        .expect("stop PostgreSQL");
    for amount in [1_000, 2_000, 3_000] {
        app.send(&event("m1", Credit, amount, date(0))).await;
    }
    // Watch one message fail three times: receive counts 1, 2, 3 with growing delays.
    let mut by_message: HashMap<String, Vec<(u32, Duration, std::time::Instant)>> = HashMap::new();
    let watched = eventually(
        Duration::from_secs(60),
        "three retries of one message",
        || {
            by_message.clear();
            for notice in app.retries() {
                by_message
                    .entry(notice.message_id.clone())
                    .or_default()
                    .push((notice.receive_count, notice.delay, notice.at));
            }
            let found = by_message.values().find(|seen| seen.len() >= 3).cloned();
            async move { found.map(|seen| seen[..3].to_vec()) }
        },
    )
    .await;
    let counts: Vec<u32> = watched.iter().map(|(c, _, _)| *c).collect();
    assert_eq!(
        counts,
        [1, 2, 3],
        "ApproximateReceiveCount grows by one per delivery"
    );
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&watched[0].1),
        "first backoff is the base, jittered up to twice it: {watched:?}"
    );
    assert!(
        watched[2].1 >= Duration::from_secs(2),
        "third backoff grew: {watched:?}"
    );
    let first_gap = watched[1].2 - watched[0].2;
    let second_gap = watched[2].2 - watched[1].2;
    assert!(
        first_gap >= Duration::from_millis(900),
        "redelivered only after the backoff: {first_gap:?}"
    );
    assert!(second_gap >= Duration::from_millis(900), "{second_gap:?}");

    stack
        .inject(Dependency::Postgres, Fault::Restart)
        .await
        .expect("restart PostgreSQL");
    app.wait_applied(3, Duration::from_secs(60)).await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], "60.00");
    assert_eq!(balance["entry_count"], 3);
    assert!(app.metrics.consumer.retried.get() >= 3);
    assert_eq!(app.metrics.consumer.dead_lettered.get(), 0);
    app.stop().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn a_message_that_always_fails_reaches_the_dlq_after_max_receive_count_and_redrives_after_the_fix()
 {
    let app = TestApp::spawn_with(ScopeOptions::default().with_max_receive_count(3), |_| {}).await;
    let pool = app.scope.pg_pool().await.expect("pool");
    // A transient-looking failure (serialization failure) every time for this merchant.
    sqlx::query(
        "CREATE FUNCTION fail_always() RETURNS trigger AS $$ BEGIN \
           IF NEW.merchant_id = 'always-fails' THEN \
             RAISE EXCEPTION 'simulated failure' USING ERRCODE = '40001'; \
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    )
    .execute(&pool)
    .await
    .expect("function");
    sqlx::query("CREATE TRIGGER fail_always BEFORE INSERT ON processed_events FOR EACH ROW EXECUTE FUNCTION fail_always()")
        .execute(&pool)
        .await
        .expect("trigger");

    app.send(&event("always-fails", Credit, 7_700, date(0)))
        .await;
    let listing = eventually(
        Duration::from_secs(60),
        "the message in the DLQ",
        || async {
            let listing = dlq(&app).await;
            (listing["messages"].as_array().is_some_and(|m| m.len() == 1)).then_some(listing)
        },
    )
    .await;
    assert_eq!(
        listing["messages"][0]["reason"],
        "max-receive-count-exceeded"
    );
    let counts: Vec<u32> = app.retries().iter().map(|r| r.receive_count).collect();
    assert_eq!(
        counts,
        [1, 2, 3],
        "exactly maxReceiveCount receives, each retried"
    );

    // Fix the cause, then redrive: the balance is right, counted once.
    sqlx::query("DROP TRIGGER fail_always ON processed_events")
        .execute(&pool)
        .await
        .expect("drop");
    assert_eq!(redrive(&app, serde_json::json!({})).await["redriven"], 1);
    app.wait_applied(1, Duration::from_secs(30)).await;
    let balance = app.balance("always-fails", date(0)).await;
    assert_eq!(balance["credits"], "77.00");
    assert_eq!(balance["entry_count"], 1);
    assert_eq!(
        dlq(&app).await["messages"].as_array().map(Vec::len),
        Some(0)
    );
}

#[tokio::test]
async fn malformed_and_unknown_messages_go_to_the_dlq_at_once_with_their_reason() {
    let app = TestApp::spawn_with(ScopeOptions::default().with_max_receive_count(5), |_| {}).await;
    app.send_raw("this is not json", None).await;
    let mut v2 = serde_json::to_value(event("m1", Credit, 100, date(0))).expect("json");
    v2["event_type"] = "entry.recorded.v2".into();
    app.send_raw(&v2.to_string(), Some("entry.recorded.v2"))
        .await;
    let mut invalid = serde_json::to_value(event("m1", Credit, 100, date(0))).expect("json");
    invalid["amount_minor"] = (-5).into();
    app.send_raw(&invalid.to_string(), Some("entry.recorded.v1"))
        .await;
    let good = event("m1", Credit, 1_234, date(0));
    app.send(&good).await;

    let listing = eventually(
        Duration::from_secs(30),
        "three messages in the DLQ",
        || async {
            let listing = dlq(&app).await;
            (listing["messages"].as_array().is_some_and(|m| m.len() == 3)).then_some(listing)
        },
    )
    .await;
    let mut reasons: Vec<String> = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["reason"].as_str().expect("reason").to_string())
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        ["invalid-event", "malformed-json", "unknown-event-type"]
    );
    for message in listing["messages"].as_array().expect("messages") {
        assert_eq!(
            message["receive_count"], 1,
            "dead-lettered on the first receive: {message}"
        );
        assert!(message["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(app.metrics.consumer.retried.get(), 0, "nothing retried");
    app.wait_applied(1, Duration::from_secs(30)).await;
    assert_eq!(app.balance("m1", date(0)).await["credits"], "12.34");

    // The CLI lists the same, and redrives one chosen message.
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_consolidation"))
            .args(args)
            .env("ENTRIES_QUEUE_URL", &app.scope.queues.url)
            .env("ENTRIES_DLQ_URL", &app.scope.queues.dlq_url)
            .env("AWS_ENDPOINT_URL", &app.scope.sqs_endpoint)
            .env("AWS_REGION", &app.scope.aws_region)
            .env("RUST_LOG", "warn")
            .output()
            .expect("consolidation dlq")
    };
    let listed = cli(&["dlq", "list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("3 message(s)") && text.contains("reason=malformed-json"),
        "{text}"
    );
    let malformed = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["reason"] == "malformed-json")
        .and_then(|m| m["message_id"].as_str())
        .expect("id")
        .to_string();
    let redriven = cli(&["dlq", "redrive", "--id", &malformed]);
    assert!(String::from_utf8_lossy(&redriven.stdout).contains("redriven 1 message(s)"));
    // Still malformed: back in the DLQ at once; the other two never left.
    eventually(
        Duration::from_secs(30),
        "the redriven message back in the DLQ",
        || async { (app.metrics.consumer.dead_lettered.get() == 4).then_some(()) },
    )
    .await;
}
