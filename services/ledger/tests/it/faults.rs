//! The ledger under network faults between it and its dependencies, each through a fault proxy
//! of the test's own (so other tests never see the fault): slow PostgreSQL still records,
//! unreachable PostgreSQL is a prompt 503 with Retry-After and recovers on heal, and SQS being
//! unreachable never touches recording.

use std::time::{Duration, Instant};

use cashflow_platform::deadline::Deadlines;
use harness::{FaultProxy, NetFault};

use crate::helpers::{TestApp, credit, drain_events};

/// Short deadlines, so that a fault shows in a test's time.
fn short_deadlines() -> Deadlines {
    Deadlines {
        request: Duration::from_millis(1_500),
        database_acquire: Duration::from_millis(500),
        database_statement: Duration::from_millis(1_000),
        sqs_connect: Duration::from_millis(500),
        sqs_attempt: Duration::from_millis(1_000),
        shutdown_drain: Duration::from_secs(5),
    }
}

async fn postgres_proxy() -> (FaultProxy, TestApp) {
    postgres_proxy_with(short_deadlines()).await
}

/// A ledger whose PostgreSQL is behind a fault proxy, with these deadlines.
async fn postgres_proxy_with(deadlines: Deadlines) -> (FaultProxy, TestApp) {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().postgres_url)
        .await
        .expect("proxy");
    let url = |direct: &str| proxy.url(direct);
    let app = TestApp::spawn_on(stack, |config| {
        config.database_url = url(&config.database_url);
        config.deadlines = deadlines;
    })
    .await;
    (proxy, app)
}

#[tokio::test]
async fn with_postgres_200ms_away_entries_are_still_recorded() {
    // The deadlines a deployment runs with: 200 ms more per round trip must fit in them.
    let (proxy, app) = postgres_proxy_with(Default::default()).await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    proxy.inject(NetFault::Latency {
        latency: Duration::from_millis(200),
        jitter: Duration::from_millis(20),
    });
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.post_entry("m1", &credit("2.00")).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 201);
        assert!(
            took >= Duration::from_millis(180),
            "the latency was injected ({took:?})"
        );
        eprintln!("POST with PostgreSQL +200 ms: {took:?}");
    }
    assert_eq!(app.entry_count().await, 4);
}

#[tokio::test]
async fn with_postgres_blackholed_posts_get_a_prompt_503_and_recover_after_heal() {
    let (proxy, app) = postgres_proxy().await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    proxy.inject(NetFault::Blackhole);
    let deadline = short_deadlines().request;
    for _ in 0..2 {
        let started = Instant::now();
        let response = app.post_entry("m1", &credit("2.00")).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 503, "{:?}", response.text().await);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(
            took <= deadline + Duration::from_millis(300),
            "answered within the request deadline ({took:?})"
        );
        eprintln!("POST with PostgreSQL blackholed: 503 after {took:?}");
    }
    proxy.inject(NetFault::Heal);
    let healed = Instant::now();
    harness::eventually(Duration::from_secs(2), "201 after the heal", || async {
        (app.post_entry("m1", &credit("3.00")).await.status() == 201).then_some(())
    })
    .await;
    eprintln!("201 again {:?} after the heal", healed.elapsed());
}

#[tokio::test]
async fn with_postgres_refusing_or_resetting_connections_posts_get_503_not_500() {
    let (proxy, app) = postgres_proxy().await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    for fault in [NetFault::Reset, NetFault::Refuse] {
        proxy.inject(fault);
        let response = app.post_entry("m1", &credit("2.00")).await;
        assert_eq!(response.status(), 503, "{fault:?}");
        assert_eq!(response.headers()["retry-after"], "1");
        proxy.inject(NetFault::Heal);
        harness::eventually(Duration::from_secs(2), "201 after the heal", || async {
            (app.post_entry("m1", &credit("3.00")).await.status() == 201).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn with_sqs_blackholed_posts_are_unaffected_and_the_backlog_drains_after_heal() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().sqs_endpoint)
        .await
        .expect("proxy");
    proxy.inject(NetFault::Blackhole);
    let app = TestApp::spawn_on(stack, |config| {
        let endpoint = config.sqs.endpoint_url.clone().expect("endpoint");
        config.sqs.endpoint_url = Some(proxy.url(&endpoint));
        config.deadlines = short_deadlines();
        config.relay.max_backoff = Duration::from_millis(500);
    })
    .await;
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "recording does not wait for SQS ({:?})",
            started.elapsed()
        );
    }
    assert_eq!(app.outbox_backlog().await, 5, "the backlog grows");
    proxy.inject(NetFault::Heal);
    harness::eventually(Duration::from_secs(30), "the backlog drained", || async {
        (app.outbox_backlog().await == 0).then_some(())
    })
    .await;
    let seen = drain_events(&app.scope, 5, Duration::from_secs(30)).await;
    assert_eq!(seen.len(), 5, "every event published");
}

#[tokio::test]
async fn a_statement_past_statement_timeout_is_cancelled_by_postgres_and_counts_as_unavailable() {
    let stack = harness::shared().await.expect("stack");
    let deadlines = Deadlines {
        database_statement: Duration::from_millis(200),
        ..short_deadlines()
    };
    let pool = cashflow_platform::deadline::pool_options(1, &deadlines)
        .connect_with(
            cashflow_platform::deadline::connect_options(
                &stack.endpoints().postgres_url,
                &deadlines,
            )
            .expect("options"),
        )
        .await
        .expect("pool");
    let started = Instant::now();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(&pool)
        .await
        .expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "cancelled early"
    );
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("57014"), "{error}");
    assert!(cashflow_platform::deadline::is_unavailable(&error));
}

#[tokio::test]
async fn shutdown_gives_up_on_requests_stuck_on_a_dead_dependency_after_the_drain_deadline() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().postgres_url)
        .await
        .expect("proxy");
    // Requests would wait 20 s for PostgreSQL; the drain only 1 s.
    let deadlines = Deadlines {
        request: Duration::from_secs(30),
        database_acquire: Duration::from_secs(20),
        shutdown_drain: Duration::from_secs(1),
        ..short_deadlines()
    };
    let app = TestApp::spawn_on(stack, |config| {
        config.database_url = proxy.url(&config.database_url);
        config.deadlines = deadlines;
    })
    .await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    proxy.inject(NetFault::Blackhole);
    let url = format!("{}/v1/merchants/m1/entries", app.address);
    let token = app.token("m1");
    let stuck = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&credit("2.00"))
            .send()
            .await
    });
    // Let the request reach the blackholed pool.
    harness::eventually(Duration::from_secs(5), "the request in flight", || async {
        let metrics = app
            .http
            .get(format!("{}/health/live", app.address))
            .send()
            .await;
        metrics.is_ok().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.stop())
        .await
        .expect("the ledger stopped within the drain deadline");
    let took = stopping.elapsed();
    eprintln!("ledger stopped {took:?} after SIGTERM with a request stuck on PostgreSQL");
    assert!(
        took < Duration::from_secs(3),
        "bounded by the drain deadline ({took:?})"
    );
    // In a process the stuck connection ends with it; here the test's runtime lives on.
    stuck.abort();
    proxy.inject(NetFault::Heal);
}
