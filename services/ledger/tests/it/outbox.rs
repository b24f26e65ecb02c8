//! The outbox relay: every event reaches SQS exactly once, also while SQS is down and with two
//! relays at once.

use std::sync::Arc;
use std::time::Duration;

use harness::{Dependency, Fault, Stack, StackOptions};
use ledger::config::RelayConfig;
use ledger::metrics::OutboxMetrics;
use ledger::outbox::Relay;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, credit, drain_events};
use testkit::probe::Served;

/// A relay of its own on `app`'s outbox and queue (beside the app's, when enabled), polling
/// often.
async fn relay_of(app: &TestApp) -> Relay {
    Relay::new(
        app.scope.pg_pool().await.expect("pool"),
        app.scope.sqs(),
        app.scope.queues.url.clone(),
        RelayConfig {
            idle_poll: Duration::from_millis(20),
            ..RelayConfig::default()
        },
        Arc::default(),
        OutboxMetrics::default(),
    )
}

#[tokio::test]
async fn each_recorded_entry_is_published_once() {
    let app = TestApp::spawn().await;
    for amount in ["1.00", "2.00", "3.00"] {
        assert_eq!(app.post_entry("m1", &credit(amount)).await.status(), 201);
    }
    let seen = drain_events(&app.scope, 3, Duration::from_secs(30)).await;
    assert_eq!(seen.len(), 3);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert_eq!(app.outbox_backlog().await, 0);
}

#[tokio::test]
async fn while_sqs_is_down_entries_are_accepted_and_published_once_it_is_back() {
    // Its own stack: LocalStack goes down.
    let stack: &'static Stack = Box::leak(Box::new(
        Stack::start(StackOptions::default()).await.expect("stack"),
    ));
    let app = TestApp::spawn_on(stack, |_| {}).await;
    stack
        .inject(Dependency::Sqs, Fault::Stop)
        .await
        .expect("stop LocalStack");

    for i in 0..20 {
        let response = app
            .post_entry("m1", &credit(&format!("{}.00", i + 1)))
            .await;
        assert_eq!(response.status(), 201, "POST {i} while SQS is down");
    }
    assert_eq!(
        app.outbox_backlog().await,
        20,
        "the outbox holds every event"
    );
    harness::eventually(Duration::from_secs(10), "the backlog metric", || async {
        let metrics = app.scrape().await;
        metrics
            .lines()
            .any(|l| l == "ledger_outbox_backlog 20")
            .then_some(())
    })
    .await;
    let ready = app
        .http
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200, "readiness does not depend on SQS");

    stack
        .inject(Dependency::Sqs, Fault::Restart)
        .await
        .expect("restart LocalStack");
    let seen = drain_events(&app.scope, 20, Duration::from_secs(60)).await;
    assert_eq!(seen.len(), 20, "every event arrived");
    assert!(
        seen.values().all(|&n| n == 1),
        "each exactly once: {seen:?}"
    );
    assert_eq!(app.outbox_backlog().await, 0);
    app.stop().await;
    stack.shutdown().await;
}

#[tokio::test]
async fn two_relays_at_once_publish_each_event_once() {
    let app = TestApp::spawn_with(|config| config.relay.enabled = false).await;
    for i in 0..200 {
        assert_eq!(
            app.post_entry("m1", &credit(&format!("{}.00", i + 1)))
                .await
                .status(),
            201
        );
    }
    assert_eq!(app.outbox_backlog().await, 200);

    let stop = CancellationToken::new();
    let mut relays = Vec::new();
    for _ in 0..2 {
        let relay = relay_of(&app).await;
        relays.push(tokio::spawn(relay.run(stop.clone())));
    }
    let seen = drain_events(&app.scope, 200, Duration::from_secs(60)).await;
    stop.cancel();
    for relay in relays {
        relay.await.expect("relay");
    }
    assert_eq!(seen.len(), 200);
    assert!(seen.values().all(|&n| n == 1), "each exactly once");
    assert_eq!(app.outbox_backlog().await, 0);
}

/// A relay that claimed rows and died never published them: once its lease has passed another
/// relay publishes them, and not before (its rows are not taken from a live claim).
#[tokio::test]
async fn rows_claimed_by_a_relay_that_died_are_published_after_its_lease() {
    const LEASE: Duration = Duration::from_secs(3);
    let app = TestApp::spawn_with(|config| config.relay.enabled = false).await;
    for i in 0..5 {
        let amount = format!("{}.00", i + 1);
        assert_eq!(app.post_entry("m1", &credit(&amount)).await.status(), 201);
    }
    let pool = app.scope.pg_pool().await.expect("pool");
    // What a relay's claim leaves behind when its process dies before the mark.
    let claimed = sqlx::query(
        "UPDATE outbox SET claimed_until = now() + make_interval(secs => $1) \
         WHERE published_at IS NULL",
    )
    .bind(LEASE.as_secs_f64())
    .execute(&pool)
    .await
    .expect("claim")
    .rows_affected();
    assert_eq!(claimed, 5);
    let claimed_at = std::time::Instant::now();

    let stop = CancellationToken::new();
    let relay = relay_of(&app).await;
    let running = tokio::spawn(relay.run(stop.clone()));
    harness::eventually(Duration::from_secs(30), "the backlog drained", || async {
        (app.outbox_backlog().await == 0).then_some(())
    })
    .await;
    let published_after = claimed_at.elapsed();
    assert!(
        published_after >= LEASE,
        "published {published_after:?} after the claim, inside its {LEASE:?} lease"
    );
    let seen = drain_events(&app.scope, 5, Duration::from_secs(30)).await;
    stop.cancel();
    running.await.expect("relay");
    assert_eq!(
        seen.len(),
        5,
        "every claimed row published once the lease passed"
    );
    assert!(seen.values().all(|&n| n == 1), "each once: {seen:?}");
    assert_eq!(app.outbox_backlog().await, 0);
}

/// A replay that re-arms an event while the relay is sending it is not swallowed by that send's
/// mark: the event leaves twice (once per publish; the consumer counts it once).
#[tokio::test]
async fn a_replay_during_the_send_of_its_event_publishes_it_again() {
    let stack = harness::shared().await.expect("stack");
    let proxy = harness::FaultProxy::for_url(&stack.endpoints().sqs_endpoint)
        .await
        .expect("proxy");
    // Each send takes over a second: long enough to replay while it is in flight.
    proxy.inject(harness::NetFault::latency_ms(1_000));
    let app = TestApp::spawn_on(stack, |config| {
        let endpoint = config.sqs.endpoint_url.clone().expect("endpoint");
        config.sqs.endpoint_url = Some(proxy.url(&endpoint));
    })
    .await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    let pool = app.scope.pg_pool().await.expect("pool");
    harness::eventually(
        Duration::from_secs(10),
        "the relay claimed the event",
        || async {
            let claimed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE claimed_until IS NOT NULL AND published_at IS NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
            (claimed == 1).then_some(())
        },
    )
    .await;
    let rules = ledger::config::EntryRules::default();
    let today = ledger::entries::today(&rules).expect("today");
    let outcome = ledger::reconcile::replay(
        &pool,
        "m1",
        today,
        today,
        &ledger::reconcile::Pacer::new(1_000),
    )
    .await
    .expect("replay");
    assert_eq!(outcome.replayed, 1);
    let seen = drain_events(&app.scope, 2, Duration::from_secs(30)).await;
    assert_eq!(
        seen.values().copied().collect::<Vec<_>>(),
        vec![2],
        "published by the send in flight, then again for the replay"
    );
    assert_eq!(app.outbox_backlog().await, 0);
}
