//! The consolidation under network faults, each through a fault proxy of the test's own: with
//! Redis hanging, the circuit breaker opens and reads go to PostgreSQL at its own latency; with
//! PostgreSQL or SQS unreachable, the consumer retries with backoff and, once healed, every
//! event is counted exactly once.

use std::time::{Duration, Instant};

use cashflow_contracts::EntryKind::{Credit, Debit};
use cashflow_platform::deadline::Deadlines;
use consolidation::breaker::BreakerState;
use consolidation::config::RedisConfig;
use harness::{FaultProxy, NetFault, ScopeOptions};

use crate::helpers::{TestApp, date, event};

fn short_deadlines() -> Deadlines {
    Deadlines {
        request: Duration::from_millis(2_000),
        database_acquire: Duration::from_millis(500),
        database_statement: Duration::from_millis(1_000),
        sqs_connect: Duration::from_millis(500),
        sqs_attempt: Duration::from_millis(1_000),
        shutdown_drain: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn with_redis_blackholed_the_breaker_opens_and_reads_cost_only_postgres() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().redis_url)
        .await
        .expect("proxy");
    let redis = RedisConfig {
        command_timeout: Duration::from_millis(250),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(3),
        ..RedisConfig::default()
    };
    let app = TestApp::spawn_on(stack, ScopeOptions::default(), |config| {
        config.redis_url = proxy.url(&config.redis_url);
        config.redis = redis;
        config.deadlines = short_deadlines();
    })
    .await;
    app.send(&event("m1", Credit, 4_200, date(0))).await;
    app.wait_applied(1, Duration::from_secs(30)).await;
    for _ in 0..2 {
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
    }
    assert!(app.metrics.cache.hits.get() >= 1, "Redis was in use");
    assert_eq!(app.metrics.cache.breaker_state.get(), 0, "closed");

    proxy.inject(NetFault::Blackhole);
    harness::eventually(Duration::from_secs(10), "the breaker open", || async {
        // Reads keep succeeding while Redis times out.
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
        (app.metrics.cache.breaker_state.get() == BreakerState::Open.gauge_value()).then_some(())
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest balance read with the breaker open: {slowest:?}");
    assert!(
        slowest < redis.command_timeout,
        "reads do not wait for Redis once the breaker is open ({slowest:?})"
    );

    proxy.inject(NetFault::Heal);
    harness::eventually(
        Duration::from_secs(15),
        "the breaker closed and reads through Redis again",
        || async {
            let hits = app.metrics.cache.hits.get();
            assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
            (app.metrics.cache.breaker_state.get() == 0 && app.metrics.cache.hits.get() > hits)
                .then_some(())
        },
    )
    .await;
}

/// Sends `n` credits of 1.00 and `n` debits of 0.10 for m1 on day 0; returns them.
async fn send_pairs(app: &TestApp, n: usize) {
    for _ in 0..n {
        app.send(&event("m1", Credit, 100, date(0))).await;
        app.send(&event("m1", Debit, 10, date(0))).await;
    }
}

async fn processed(app: &TestApp) -> i64 {
    let pool = app.scope.pg_pool().await.expect("pool");
    let count = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    count
}

#[tokio::test]
async fn with_postgres_partitioned_the_consumer_retries_and_nothing_is_lost_or_doubled() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().postgres_url)
        .await
        .expect("proxy");
    let app = TestApp::spawn_on(
        stack,
        ScopeOptions::default().with_visibility_timeout_secs(5),
        |config| {
            config.database_url = proxy.url(&config.database_url);
            config.deadlines = short_deadlines();
        },
    )
    .await;
    send_pairs(&app, 5).await;
    app.wait_applied(10, Duration::from_secs(30)).await;

    proxy.inject(NetFault::Blackhole);
    send_pairs(&app, 5).await;
    harness::eventually(Duration::from_secs(20), "retries with backoff", || async {
        (app.metrics.consumer.retried.get() >= 1).then_some(())
    })
    .await;
    let (status, _) = app
        .get(
            "m1",
            &format!("/v1/merchants/m1/balances/{}", crate::helpers::day(date(0))),
        )
        .await;
    assert!(status == 503 || status == 200, "never a 500 ({status})");
    proxy.inject(NetFault::Heal);

    app.wait_applied(20, Duration::from_secs(60)).await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], "10.00");
    assert_eq!(balance["debits"], "1.00");
    assert_eq!(balance["entry_count"], 20);
    assert_eq!(processed(&app).await, 20, "each event recorded once");
    assert_eq!(
        app.metrics.consumer.applied.get(),
        20,
        "nothing counted twice"
    );
}

#[tokio::test]
async fn with_sqs_partitioned_the_consumer_waits_and_drains_everything_once_healed() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().sqs_endpoint)
        .await
        .expect("proxy");
    // Receives abandoned during the blackhole reach LocalStack when healed and hide their
    // messages for a visibility timeout: keep it short.
    let options = ScopeOptions::default().with_visibility_timeout_secs(5);
    let app = TestApp::spawn_on(stack, options, |config| {
        let endpoint = config.sqs.endpoint_url.clone().expect("endpoint");
        config.sqs.endpoint_url = Some(proxy.url(&endpoint));
        config.deadlines = short_deadlines();
    })
    .await;
    send_pairs(&app, 3).await;
    app.wait_applied(6, Duration::from_secs(30)).await;

    proxy.inject(NetFault::Blackhole);
    // The test's own client goes to SQS directly: the events wait in the queue.
    send_pairs(&app, 3).await;
    // Reads do not depend on SQS.
    assert_eq!(app.balance("m1", date(0)).await["entry_count"], 6);
    proxy.inject(NetFault::Heal);

    app.wait_applied(12, Duration::from_secs(60)).await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], "6.00");
    assert_eq!(balance["debits"], "0.60");
    assert_eq!(processed(&app).await, 12);
    assert_eq!(app.metrics.consumer.applied.get(), 12);
}
