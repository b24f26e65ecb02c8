//! The Redis cache: never stale after a backdated entry; Redis down still serves reads.

use std::time::Duration;

use cashflow_contracts::EntryKind::Credit;
use harness::{Dependency, Fault, ScopeOptions, Stack, StackOptions};

use crate::helpers::{TestApp, date, day, event};

#[tokio::test]
async fn a_backdated_entry_moves_later_closing_balances_and_the_cache_follows() {
    let app = TestApp::spawn().await;
    app.send(&event("m1", Credit, 10_000, date(0))).await;
    app.send(&event("m1", Credit, 5_000, date(2))).await;
    app.wait_applied(2, Duration::from_secs(30)).await;
    // Warm the cache: each read twice (the second is a hit).
    let range = format!(
        "/v1/merchants/m1/balances?from={}&to={}",
        day(date(0)),
        day(date(3))
    );
    for _ in 0..2 {
        assert_eq!(
            app.balance("m1", date(2)).await["closing_balance"],
            "150.00"
        );
        assert_eq!(
            app.balance("m1", date(3)).await["closing_balance"],
            "150.00"
        );
        assert_eq!(app.get("m1", &range).await.0, 200);
    }
    assert!(
        app.metrics.cache.hits.get() >= 3,
        "reads were served from Redis"
    );

    // A backdated entry for day 1.
    app.send(&event("m1", Credit, 3_000, date(1))).await;
    app.wait_applied(3, Duration::from_secs(30)).await;
    assert_eq!(
        app.balance("m1", date(0)).await["closing_balance"],
        "100.00",
        "earlier day unchanged"
    );
    assert_eq!(
        app.balance("m1", date(1)).await["closing_balance"],
        "130.00"
    );
    assert_eq!(
        app.balance("m1", date(2)).await["opening_balance"],
        "130.00"
    );
    assert_eq!(
        app.balance("m1", date(2)).await["closing_balance"],
        "180.00"
    );
    assert_eq!(
        app.balance("m1", date(3)).await["closing_balance"],
        "180.00"
    );
    let (_, body) = app.get("m1", &range).await;
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(report["days"][3]["closing_balance"], "180.00");
}

#[tokio::test]
async fn with_redis_killed_reads_still_succeed_from_postgres() {
    // Its own stack: Redis goes down.
    let stack: &'static Stack = Box::leak(Box::new(
        Stack::start(StackOptions::default()).await.expect("stack"),
    ));
    let app = TestApp::spawn_on(stack, ScopeOptions::default(), |_| {}).await;
    app.send(&event("m1", Credit, 4_200, date(0))).await;
    app.wait_applied(1, Duration::from_secs(30)).await;
    assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");

    stack
        .inject(Dependency::Redis, Fault::Kill)
        .await
        .expect("kill Redis");
    for _ in 0..5 {
        assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
    }
    // Events still apply, and reads see them, with Redis down.
    app.send(&event("m1", Credit, 800, date(0))).await;
    app.wait_applied(2, Duration::from_secs(30)).await;
    assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "50.00");
    assert!(app.metrics.cache.fallbacks.get() >= 5, "fallbacks counted");

    stack
        .inject(Dependency::Redis, Fault::Restart)
        .await
        .expect("restart Redis");
    harness::eventually(
        Duration::from_secs(10),
        "reads through Redis again",
        || async {
            let hits = app.metrics.cache.hits.get();
            assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "50.00");
            (app.metrics.cache.hits.get() > hits).then_some(())
        },
    )
    .await;
    app.stop().await;
    stack.shutdown().await;
}

/// The race the version check exists for: a reader misses, reads PostgreSQL (the old balance),
/// and is held there while an event changes the day and its invalidation runs; then the reader
/// stores what it read. The compare-and-set must refuse that store, or the cache would serve
/// the old balance until its TTL.
#[tokio::test]
async fn a_reader_held_across_an_invalidation_cannot_put_back_a_stale_balance() {
    use consolidation::cache::{Cache, CacheMetrics, Lookup};
    use consolidation::config::RedisConfig;
    use std::sync::Arc;

    let stack = harness::shared().await.expect("stack");
    let scope = stack.scope().await.expect("scope");
    let cache = Arc::new(
        Cache::new(
            &scope.redis_url,
            &scope.redis_prefix,
            Duration::from_secs(600),
            RedisConfig::default(),
            CacheMetrics::default(),
        )
        .expect("cache"),
    );
    let field = Cache::day_field(date(3));

    // Control: with nothing in between, the reader's store lands and is served.
    let Lookup::Miss(version) = cache.get("m1", &field).await else {
        panic!("a cold cache misses")
    };
    cache.put("m1", &field, "control", version).await;
    assert!(matches!(cache.get("m1", &field).await, Lookup::Hit(v) if v == "control"));
    cache.invalidate_from("m1", date(0)).await;

    let (version_seen, seen) = tokio::sync::oneshot::channel();
    let (invalidated, resume) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn({
        let cache = Arc::clone(&cache);
        let field = field.clone();
        async move {
            let Lookup::Miss(version) = cache.get("m1", &field).await else {
                panic!("the invalidated day misses")
            };
            // "Reads PostgreSQL": the balance before the new event.
            let stale = r#"{"closing_balance":"100.00"}"#;
            version_seen.send(()).expect("signal");
            resume.await.expect("resume");
            cache.put("m1", &field, stale, version).await;
        }
    });
    seen.await.expect("the reader read the version");
    // The event for day 1 commits and invalidates day 1 onwards, while the reader is held.
    cache.invalidate_from("m1", date(1)).await;
    invalidated.send(()).expect("resume the reader");
    reader.await.expect("reader");

    match cache.get("m1", &field).await {
        Lookup::Miss(_) => {}
        Lookup::Hit(value) => panic!("the stale balance was cached: {value}"),
        Lookup::Bypass => panic!("Redis was unavailable"),
    }
}
