//! The consolidation's fault matrix: each link (→ PostgreSQL, → Redis, → SQS) under each network
//! fault (200 ms of latency, blackhole, reset, refuse), through a fault proxy of the test's own.
//! Each cell is a test stating its expected outcome:
//!
//! | link       | latency 200 ms | blackhole, reset, refuse |
//! |------------|----------------|--------------------------|
//! | PostgreSQL | reads 200; events applied | a read is retried within the acquire deadline (riding out a restart); then a day whose answer an event invalidated is answered with that last answer, marked stale; other uncached days 503 + Retry-After, never 500; the consumer retries with backoff; once healed every event counted once |
//! | Redis      | reads 200 | the breaker opens; reads 200 at PostgreSQL latency, never waiting for Redis; it closes once healed |
//! | SQS        | events applied | reads unaffected; once healed every event counted once |
//!
//! And the managed stores' failovers (issue 30), which no network fault reproduces:
//!
//! | failover | expected outcome |
//! |----------|------------------|
//! | PostgreSQL in recovery (57P03 at connect; `NetFault::PgRecovering`) | as blackhole, reset, refuse above |
//! | PostgreSQL writer demoted (sessions terminated, new ones read-only: 25006 on writes) | reads 200; the consumer retries with backoff, dead-letters nothing; once writable every event counted once |
//! | Redis demoted to a replica (`READONLY` on writes) | reads 200; no event applied (nothing can be fenced, ADR 0004): handed back, the consumer waits; once promoted every event counted once |

use std::time::{Duration, Instant};

use cashflow_contracts::EntryKind::{Credit, Debit};
use cashflow_platform::deadline::Deadlines;
use consolidation::breaker::BreakerState;
use consolidation::config::RedisConfig;
use consolidation::routes::balances::STALE_CACHE_STATUS;
use harness::{FaultProxy, NetFault, ScopeOptions, Stack, StackOptions, fault_cell};

use crate::helpers::{TestApp, date, day, event};

fn short_deadlines() -> Deadlines {
    testkit::config::short_deadlines(Duration::from_millis(2_000))
}

// The matrix: one test per cell (harness::fault_cell!).
fault_cell!(
    postgres_latency_200ms_reads_and_applies,
    postgres_slow,
    NetFault::latency_ms(200)
);
fault_cell!(
    postgres_blackhole_stale_or_503_then_nothing_lost_or_doubled,
    postgres_unreachable,
    NetFault::Blackhole
);
fault_cell!(
    postgres_reset_stale_or_503_then_nothing_lost_or_doubled,
    postgres_unreachable,
    NetFault::Reset
);
fault_cell!(
    postgres_refuse_stale_or_503_then_nothing_lost_or_doubled,
    postgres_unreachable,
    NetFault::Refuse
);
fault_cell!(
    postgres_recovering_57p03_stale_or_503_then_nothing_lost_or_doubled,
    postgres_unreachable,
    NetFault::PgRecovering
);
fault_cell!(
    redis_latency_200ms_reads_answer,
    redis_slow,
    NetFault::latency_ms(200)
);
fault_cell!(
    redis_blackhole_breaker_opens_reads_cost_only_postgres,
    redis_unreachable,
    NetFault::Blackhole
);
fault_cell!(
    redis_reset_breaker_opens_reads_cost_only_postgres,
    redis_unreachable,
    NetFault::Reset
);
fault_cell!(
    redis_refuse_breaker_opens_reads_cost_only_postgres,
    redis_unreachable,
    NetFault::Refuse
);
fault_cell!(
    sqs_latency_200ms_events_applied,
    sqs_faulty,
    NetFault::latency_ms(200)
);
fault_cell!(
    sqs_blackhole_drains_everything_once_healed,
    sqs_faulty,
    NetFault::Blackhole
);
fault_cell!(
    sqs_reset_drains_everything_once_healed,
    sqs_faulty,
    NetFault::Reset
);
fault_cell!(
    sqs_refuse_drains_everything_once_healed,
    sqs_faulty,
    NetFault::Refuse
);

/// The breaker settings of the Redis cells: it opens after 3 failures of 250 ms each.
fn redis_config() -> RedisConfig {
    RedisConfig {
        command_timeout: Duration::from_millis(250),
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(3),
        ..RedisConfig::default()
    }
}

async fn redis_proxied() -> (FaultProxy, TestApp) {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().redis_url)
        .await
        .expect("proxy");
    let app = TestApp::spawn_on(stack, ScopeOptions::default(), |config| {
        config.redis_url = proxy.url(&config.redis_url);
        config.redis = redis_config();
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
    (proxy, app)
}

/// Slow Redis: reads answer 200, right, within the request deadline (through Redis, or past it
/// once the breaker opens on commands slower than their timeout).
async fn redis_slow(fault: NetFault) {
    let (proxy, app) = redis_proxied().await;
    proxy.inject(fault);
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest balance read with Redis {fault:?}: {slowest:?}");
    assert!(slowest < short_deadlines().request, "{slowest:?}");
    proxy.inject(NetFault::Heal);
}

/// Unreachable Redis: the breaker opens, reads keep answering from PostgreSQL without waiting
/// for Redis, and once healed the breaker closes and reads go through Redis again.
async fn redis_unreachable(fault: NetFault) {
    let (proxy, app) = redis_proxied().await;
    proxy.inject(fault);
    harness::eventually(Duration::from_secs(10), "the breaker open", || async {
        // Reads keep succeeding while Redis fails.
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
        (app.metrics.cache.breaker_state.get() == BreakerState::Open.gauge_value()).then_some(())
    })
    .await;
    let failures = app.metrics.cache.redis_failures.get();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest balance read with Redis {fault:?} and the breaker open: {slowest:?}");
    // The mechanism, not a timing: with the breaker open no read waits for Redis in vain.
    assert_eq!(
        app.metrics.cache.redis_failures.get(),
        failures,
        "reads do not call Redis once the breaker is open (slowest {slowest:?})"
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

/// Sends `n` credits of 1.00 and `n` debits of 0.10 for m1 on day 0.
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

/// Every event sent so far (`pairs` pairs) counted exactly once, through the API and in the
/// dedup table.
async fn counted_once(app: &TestApp, pairs: usize) {
    let events = u64::try_from(2 * pairs).expect("small");
    app.wait_applied(events, Duration::from_secs(60)).await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], format!("{pairs}.00"));
    assert_eq!(balance["debits"], format!("{}.{}0", pairs / 10, pairs % 10));
    assert_eq!(balance["entry_count"], 2 * pairs);
    assert_eq!(
        processed(app).await,
        i64::try_from(2 * pairs).expect("small"),
        "each event recorded once"
    );
    assert_eq!(
        app.metrics.consumer.applied.get(),
        events,
        "nothing counted twice"
    );
}

async fn postgres_proxied(deadlines: Deadlines) -> (FaultProxy, TestApp) {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().postgres_url)
        .await
        .expect("proxy");
    let app = TestApp::spawn_on(
        stack,
        ScopeOptions::default().with_visibility_timeout_secs(5),
        |config| {
            config.database_url = proxy.url(&config.database_url);
            config.deadlines = deadlines;
        },
    )
    .await;
    send_pairs(&app, 5).await;
    app.wait_applied(10, Duration::from_secs(30)).await;
    (proxy, app)
}

/// Slow PostgreSQL: reads answer 200 and events keep being applied, with the deadlines a
/// deployment runs with (an uncached read makes several round trips, each 200 ms longer).
async fn postgres_slow(fault: NetFault) {
    let (proxy, app) = postgres_proxied(Deadlines::default()).await;
    proxy.inject(fault);
    send_pairs(&app, 5).await;
    let started = Instant::now();
    let (status, _) = app
        .get("m1", &format!("/v1/merchants/m1/balances/{}", day(date(1))))
        .await;
    eprintln!(
        "uncached balance read with PostgreSQL {fault:?}: {status} in {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200);
    counted_once(&app, 10).await;
    proxy.inject(NetFault::Heal);
}

/// Unreachable PostgreSQL: a day whose cached answer an event invalidated is answered with that
/// last answer, marked stale (stale-if-error); other reads that need PostgreSQL are 503 with
/// Retry-After, never 500; the consumer retries with backoff; once healed every event is
/// counted exactly once and reads are fresh again.
async fn postgres_unreachable(fault: NetFault) {
    let (proxy, app) = postgres_proxied(short_deadlines()).await;
    // Day 0 read (and cached) with five pairs, then changed by a sixth: its answer is retired.
    assert_eq!(app.balance("m1", date(0)).await["credits"], "5.00");
    send_pairs(&app, 1).await;
    app.wait_applied(12, Duration::from_secs(30)).await;

    proxy.inject(fault);
    send_pairs(&app, 5).await;
    harness::eventually(Duration::from_secs(20), "retries with backoff", || async {
        (app.metrics.consumer.retried.get() >= 1).then_some(())
    })
    .await;
    let app = &app;
    let read = |date| async move {
        let started = Instant::now();
        let response = app
            .http
            .get(format!(
                "{}/v1/merchants/m1/balances/{}",
                app.address,
                day(date)
            ))
            .bearer_auth(app.token("m1"))
            .send()
            .await
            .expect("request");
        let took = started.elapsed();
        eprintln!(
            "balance read of {date} with PostgreSQL {fault:?}: {} in {took:?}",
            response.status()
        );
        assert!(took <= short_deadlines().request * 2, "{took:?}");
        response
    };
    let stale = read(date(0)).await;
    assert_eq!(stale.status(), 200, "the retired answer is served");
    assert_eq!(stale.headers()["cache-status"], STALE_CACHE_STATUS);
    let body: serde_json::Value = stale.json().await.expect("json");
    assert_eq!(body["credits"], "5.00", "the last answer, as it was");
    assert_eq!(app.metrics.cache.stale_served.get(), 1);
    // A day no read has cached: only PostgreSQL can answer it.
    let unavailable = read(date(1)).await;
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.headers()["retry-after"], "1");

    proxy.inject(NetFault::Heal);
    counted_once(app, 11).await;
    let fresh = read(date(0)).await;
    assert_eq!(fresh.status(), 200);
    assert!(fresh.headers().get("cache-status").is_none(), "fresh again");
}

/// PostgreSQL dropping reads for a moment (a restart or a failover kills in-flight statements
/// and resets connections, then answers again): a read no cache can answer is retried within
/// its budget and answers 200, fresh, once the database is back, instead of a 503.
#[tokio::test]
async fn postgres_dropping_reads_for_a_moment_is_ridden_out_by_retrying_the_read() {
    let (proxy, app) = postgres_proxied(Deadlines::default()).await;
    proxy.inject(NetFault::Reset);
    let path = format!("/v1/merchants/m1/balances/{}", day(date(1)));
    let (read, ()) = tokio::join!(app.get("m1", &path), async {
        harness::eventually(Duration::from_secs(5), "the read is retried", || async {
            (app.metrics.cache.reads_retried.get() >= 1).then_some(())
        })
        .await;
        proxy.inject(NetFault::Heal);
    });
    let (status, body) = read;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.metrics.cache.stale_served.get(), 0, "fresh, not stale");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["credits"], "0.00", "day 1 has no entries");
}

/// SQS slow or unreachable: reads never depend on it; the events wait in the queue (or arrive
/// slowly) and, once healed, every one is counted exactly once.
async fn sqs_faulty(fault: NetFault) {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().sqs_endpoint)
        .await
        .expect("proxy");
    // Receives abandoned during a blackhole reach the emulator when healed and hide their
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

    proxy.inject(fault);
    // The test's own client goes to SQS directly: the events wait in the queue.
    send_pairs(&app, 3).await;
    // Reads do not depend on SQS.
    let started = Instant::now();
    let entries = app.balance("m1", date(0)).await["entry_count"].clone();
    assert!(
        entries == 6 || matches!(fault, NetFault::Latency { .. }),
        "{entries}"
    );
    // A read that waited for SQS would be a 503 at the request deadline (`balance` wants 200).
    eprintln!("balance read with SQS {fault:?}: {:?}", started.elapsed());
    if !matches!(fault, NetFault::Latency { .. }) {
        proxy.inject(NetFault::Heal);
    }
    counted_once(&app, 6).await;
    proxy.inject(NetFault::Heal);
}

/// An Aurora failover seen from the writer's clients: the old writer's sessions are
/// terminated and new ones are read-only, so the consumer's writes fail with 25006. Reads keep
/// answering 200 (a read-only session reads); the consumer retries with backoff and
/// dead-letters nothing; once the database is writable again every event is counted once.
#[tokio::test]
async fn postgres_read_only_failover_reads_answer_events_retried_then_counted_once() {
    let stack = harness::shared().await.expect("stack");
    let app = TestApp::spawn_on(
        stack,
        ScopeOptions::default().with_visibility_timeout_secs(5),
        |config| config.deadlines = short_deadlines(),
    )
    .await;
    send_pairs(&app, 5).await;
    app.wait_applied(10, Duration::from_secs(30)).await;

    harness::failover::postgres_read_only(&app.scope.database_url, true)
        .await
        .expect("read-only");
    send_pairs(&app, 5).await;
    harness::eventually(Duration::from_secs(20), "retries with backoff", || async {
        (app.metrics.consumer.retried.get() >= 1).then_some(())
    })
    .await;
    // A day no read has cached: PostgreSQL answers it, read-only. The failover terminated the
    // pool's sessions; a read that meets the reconnection on a loaded machine may be a 503 (the
    // dependency is briefly unavailable), but reads answer 200 while the database stays
    // read-only.
    let path = format!("/v1/merchants/m1/balances/{}", day(date(1)));
    harness::eventually(Duration::from_secs(10), "a 200 while read-only", || async {
        (app.get("m1", &path).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(app.metrics.consumer.dead_lettered.get(), 0, "nothing lost");

    harness::failover::postgres_read_only(&app.scope.database_url, false)
        .await
        .expect("writable");
    counted_once(&app, 10).await;
    assert_eq!(app.metrics.consumer.dead_lettered.get(), 0, "nothing lost");
}

/// An ElastiCache failover: the primary demoted answers writes with `READONLY`. No fence can be
/// placed, so no event is applied (ADR 0004): the batch is handed back and the consumer waits
/// for Redis to take writes, while reads keep answering 200. Once Redis is promoted, every
/// event is counted exactly once. Its own stack: the failover is the whole server's.
#[tokio::test]
async fn redis_read_only_failover_reads_answer_events_wait_then_counted_once() {
    let stack: &'static Stack = Box::leak(Box::new(
        Stack::start(StackOptions::default()).await.expect("stack"),
    ));
    let app = TestApp::spawn_on(stack, ScopeOptions::default(), |config| {
        config.redis = redis_config();
        config.deadlines = short_deadlines();
    })
    .await;
    send_pairs(&app, 2).await;
    app.wait_applied(4, Duration::from_secs(30)).await;
    assert_eq!(app.balance("m1", date(0)).await["entry_count"], 4);

    harness::failover::redis_read_only(&stack.endpoints().redis_url, true)
        .await
        .expect("demote Redis");
    send_pairs(&app, 3).await;
    harness::eventually(
        Duration::from_secs(20),
        "the batch handed back and the consumer waiting for Redis",
        || async {
            (app.metrics.consumer.handed_back.get() >= 1
                && app.metrics.consumer.waiting_for_cache.get() == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(app.balance("m1", date(0)).await["entry_count"], 4);
    let (status, body) = app
        .get("m1", &format!("/v1/merchants/m1/balances/{}", day(date(1))))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.metrics.consumer.applied.get(),
        4,
        "nothing applied unfenced"
    );

    harness::failover::redis_read_only(&stack.endpoints().redis_url, false)
        .await
        .expect("promote Redis");
    counted_once(&app, 5).await;
    app.stop().await;
    stack.shutdown().await;
}
