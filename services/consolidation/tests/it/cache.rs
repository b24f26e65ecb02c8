//! The Redis cache: never stale after a backdated entry; Redis down still serves reads.

use std::time::Duration;

use cashflow_contracts::EntryKind::Credit;
use consolidation::config::RedisConfig;
use harness::{Dependency, Fault, FaultProxy, NetFault, ScopeOptions, Stack, StackOptions};

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
    assert!(app.metrics.cache.fallbacks.get() >= 5, "fallbacks counted");
    // An event waits in the queue while Redis is down: it cannot be fenced (ADR 0004), so it
    // is not applied, and reads keep answering the books as they are.
    app.send(&event("m1", Credit, 800, date(0))).await;
    harness::eventually(
        Duration::from_secs(30),
        "the consumer waiting for Redis",
        || async { (app.metrics.consumer.waiting_for_cache.get() == 1).then_some(()) },
    )
    .await;
    assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "42.00");
    assert_eq!(
        app.metrics.consumer.applied.get(),
        1,
        "not applied unfenced"
    );

    stack
        .inject(Dependency::Redis, Fault::Restart)
        .await
        .expect("restart Redis");
    // Nothing lost: applied once Redis takes the fence. Generous: the breaker's cool-down, then
    // the connection's reconnect, on a busy machine.
    app.wait_applied(2, Duration::from_secs(60)).await;
    harness::eventually(
        Duration::from_secs(30),
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
    use std::sync::Arc;

    let stack = harness::shared().await.expect("stack");
    let scope = stack.scope().await.expect("scope");
    let cache = Arc::new(
        Cache::new(
            &scope.redis_url,
            &scope.redis_prefix,
            Duration::from_secs(600),
            Duration::from_secs(600),
            Duration::from_secs(60),
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
    let fence = cache.fence([("m1", date(0))]).await.expect("fenced");
    cache.lift(fence, [("m1", date(0))]).await;

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
    let fence = cache.fence([("m1", date(1))]).await.expect("fenced");
    cache.lift(fence, [("m1", date(1))]).await;
    invalidated.send(()).expect("resume the reader");
    reader.await.expect("reader");

    match cache.get("m1", &field).await {
        Lookup::Miss(_) => {}
        Lookup::Hit(value) => panic!("the stale balance was cached: {value}"),
        Lookup::Bypass => panic!("Redis was unavailable"),
    }
}

/// Each answer has its own lifetime: a merchant read all the time (every read storing another
/// answer) must not keep its old answers alive, and the index of its answers only holds live
/// ones. With one hash per merchant whose TTL each store renewed, the first answer never expired.
#[tokio::test]
async fn each_cached_answer_expires_on_its_own_while_the_merchant_keeps_being_read() {
    use consolidation::cache::{Cache, CacheMetrics, Lookup};

    let stack = harness::shared().await.expect("stack");
    let scope = stack.scope().await.expect("scope");
    let cache = Cache::new(
        &scope.redis_url,
        &scope.redis_prefix,
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(60),
        RedisConfig::default(),
        CacheMetrics::default(),
    )
    .expect("cache");
    let first = Cache::day_field(date(1));
    let Lookup::Miss(version) = cache.get("m1", &first).await else {
        panic!("a cold cache misses")
    };
    cache.put("m1", &first, "first", version).await;
    assert!(matches!(cache.get("m1", &first).await, Lookup::Hit(v) if v == "first"));

    let mut n = 0_i64;
    harness::eventually(Duration::from_secs(15), "the first answer expired", || {
        n += 1;
        let (cache, first) = (&cache, first.clone());
        async move {
            // Another answer of the same merchant, stored now.
            let other = Cache::report_field(date(0), date(2 + n % 300));
            if let Lookup::Miss(version) = cache.get("m1", &other).await {
                cache.put("m1", &other, "other", version).await;
            }
            matches!(cache.get("m1", &first).await, Lookup::Miss(_)).then_some(())
        }
    })
    .await;
    // The answer stored last is still there: expiry is per answer, not per merchant.
    let last = Cache::report_field(date(0), date(1000));
    let Lookup::Miss(version) = cache.get("m1", &last).await else {
        panic!("a new field misses")
    };
    cache.put("m1", &last, "last", version).await;
    assert!(matches!(cache.get("m1", &last).await, Lookup::Hit(v) if v == "last"));
    // The index was trimmed of the expired answer when `last` was stored.
    let mut redis = redis::Client::open(scope.redis_url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let index = format!("{}idx:m1", scope.redis_prefix);
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(&index)
        .arg(&first)
        .query_async(&mut redis)
        .await
        .expect("zscore");
    assert_eq!(score, None, "the expired answer left the index");
    // The answer's own key, as the module documents it: `<prefix>bal:<merchant>:<field>`.
    let answer = format!("{}bal:m1:{last}", scope.redis_prefix);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&answer)
        .query_async(&mut redis)
        .await
        .expect("ttl");
    assert!((0..=1).contains(&ttl), "answer TTL {ttl}");
}

/// A client reading a day through several replicas: every answer's `entry_count` must be at
/// least the highest it saw before (monotonic reads; none of these answers is stale-marked).
struct MonotonicClient {
    highest: i64,
    reads: u32,
}

impl MonotonicClient {
    async fn read(&mut self, replica: &TestApp, name: &str) -> i64 {
        let balance = replica.balance("m1", date(0)).await;
        let count = balance["entry_count"].as_i64().expect("entry_count");
        assert!(
            count >= self.highest,
            "a read through replica {name} went back from entry_count {} to {count} \
             (after {} reads)",
            self.highest,
            self.reads
        );
        self.highest = count;
        self.reads += 1;
        count
    }
}

/// Issue 30: Redis cut off from one replica only. Replica A consumes with its Redis behind a
/// proxy; replica B only serves reads and keeps reaching Redis. While A's breaker is open, A
/// must not commit what B's cache would go on hiding: a client reading through both never sees
/// a day's entry_count go back, and once A reaches Redis again every event is counted.
#[tokio::test]
async fn with_redis_cut_off_from_one_replica_reads_never_go_back() {
    let stack = harness::shared().await.expect("stack");
    let proxy = FaultProxy::for_url(&stack.endpoints().redis_url)
        .await
        .expect("proxy");
    let a = TestApp::spawn_on(stack, ScopeOptions::default(), |config| {
        config.redis_url = proxy.url(&config.redis_url);
        config.redis = RedisConfig {
            command_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_secs(2),
            ..RedisConfig::default()
        };
    })
    .await;
    let b = a.replica(|config| config.consumer.enabled = false).await;
    a.send(&event("m1", Credit, 100, date(0))).await;
    a.wait_applied(1, Duration::from_secs(30)).await;
    let mut client = MonotonicClient {
        highest: 0,
        reads: 0,
    };
    for _ in 0..2 {
        assert_eq!(client.read(&b, "B").await, 1);
        assert_eq!(client.read(&a, "A").await, 1);
    }
    assert!(b.metrics.cache.hits.get() >= 1, "B serves from Redis");

    proxy.inject(NetFault::Blackhole);
    // The retrying closures below share the client.
    let client = tokio::sync::Mutex::new(client);
    harness::eventually(Duration::from_secs(10), "A's breaker open", || async {
        client.lock().await.read(&a, "A").await;
        (a.metrics.cache.breaker_state.get() == 1).then_some(())
    })
    .await;
    for _ in 0..5 {
        a.send(&event("m1", Credit, 100, date(0))).await;
    }
    // Several of A's long polls (1 s): time enough for A to apply the credits, were it to.
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let mut client = client.lock().await;
        client.read(&a, "A").await;
        client.read(&b, "B").await;
    }

    proxy.inject(NetFault::Heal);
    harness::eventually(
        Duration::from_secs(60),
        "every credit counted, through both replicas",
        || async {
            let mut client = client.lock().await;
            let through_a = client.read(&a, "A").await;
            let through_b = client.read(&b, "B").await;
            (through_a == 6 && through_b == 6).then_some(())
        },
    )
    .await;
    eprintln!(
        "{} monotonic reads; {} messages handed back by A",
        client.lock().await.reads,
        a.metrics.consumer.handed_back.get()
    );
    b.stop().await;
    a.stop().await;
}

/// A writer that died between fence and lift: its fence keeps every reader off the cache (they
/// read PostgreSQL, and store nothing) until it expires. What the writer could change was retired
/// when it placed the fence, so the cache never serves it again; what it could not change (an
/// earlier day) is served again once the fence has expired.
#[tokio::test]
async fn a_dead_writers_fence_keeps_readers_off_the_cache_until_it_expires() {
    use consolidation::cache::{Cache, CacheMetrics, Lookup};

    let stack = harness::shared().await.expect("stack");
    let scope = stack.scope().await.expect("scope");
    let cache = Cache::new(
        &scope.redis_url,
        &scope.redis_prefix,
        Duration::from_secs(600),
        Duration::from_secs(600),
        Duration::from_secs(1),
        RedisConfig::default(),
        CacheMetrics::default(),
    )
    .expect("cache");
    let (earlier, later) = (Cache::day_field(date(3)), Cache::day_field(date(6)));
    for field in [&earlier, &later] {
        let Lookup::Miss(version) = cache.get("m1", field).await else {
            panic!("a cold cache misses")
        };
        cache.put("m1", field, "before", version).await;
        assert!(matches!(cache.get("m1", field).await, Lookup::Hit(v) if v == "before"));
    }

    let fence = cache.fence([("m1", date(5))]).await.expect("fenced");
    for field in [&earlier, &later] {
        assert!(
            matches!(cache.get("m1", field).await, Lookup::Bypass),
            "a fenced merchant is read from PostgreSQL"
        );
    }
    // The writer dies here: its fence is never lifted.
    drop(fence);
    harness::eventually(Duration::from_secs(10), "the fence expired", || async {
        match cache.get("m1", &later).await {
            Lookup::Bypass => None,
            Lookup::Miss(_) => Some(()),
            Lookup::Hit(value) => panic!("served {value:?}, which the fenced writer may change"),
        }
    })
    .await;
    assert!(matches!(cache.get("m1", &earlier).await, Lookup::Hit(v) if v == "before"));
    assert!(cache.metrics().fenced.get() >= 2);
}
