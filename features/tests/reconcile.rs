//! Self-healing consolidation, end to end through both services' HTTP APIs: whatever the broker
//! loses (a purged queue, a purged DLQ, a broker killed and restarted) or the consolidation's database forgets (rows deleted, as
//! after a restore from an older backup), the reconciler finds the merchant-days that differ
//! from the ledger, has the ledger replay them, and every balance read over HTTP (Redis-cached
//! path included) equals the ledger's sums within the reconcile interval plus a margin. Replays
//! are idempotent: two in a row count nothing twice.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{Placement, System};

/// The reconcile interval the tests configure.
const INTERVAL: Duration = Duration::from_secs(2);
/// Margin over the interval: grace (0.5 s), the replay through the outbox, SQS and the consumer.
const MARGIN: Duration = Duration::from_secs(25);

async fn system() -> System {
    let stack = harness::shared().await.expect("harness stack");
    let mut system = System::start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await
    .expect("system");
    system.reconcile_interval = Some(INTERVAL);
    system.stop_consolidation().await.expect("stop");
    system
}

fn merchants(tag: &str) -> Vec<String> {
    let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
    (0..3).map(|i| format!("rc-{tag}-{run}-{i}")).collect()
}

/// The two business dates the entries go to, `(recent, older)`: yesterday and the day before in
/// UTC, both explicit. The ledger's default date is today in the merchants' zone
/// (America/Sao_Paulo), which between 00:00 and 03:00 UTC is UTC's yesterday: a test leaning on
/// it would put every entry on one day.
fn days() -> (time::Date, time::Date) {
    let recent = time::OffsetDateTime::now_utc().date() - time::Duration::days(1);
    (recent, recent - time::Duration::days(1))
}

/// Records `per_merchant` entries for each merchant, over the two [`days`], every answer 201.
async fn record(system: &System, merchants: &[String], per_merchant: usize) {
    let (recent, older) = days();
    for merchant in merchants {
        let token = system.full_token(merchant).expect("token");
        for i in 0..per_merchant {
            let mut body = json!({
                "kind": if i % 3 == 2 { "debit" } else { "credit" },
                "amount": format!("{}.{:02}", 1 + i, i % 100),
                "currency": "BRL",
            });
            let day = if i % 2 == 1 { older } else { recent };
            body["business_date"] = json!(cashflow_contracts::business_date::format(day));
            let (status, answer) = system.record(merchant, &token, &body).await.expect("post");
            assert_eq!(status, 201, "{answer}");
        }
    }
}

async fn outbox_backlog(system: &System) -> i64 {
    let pool = system.ledger_scope.pg_pool().await.expect("pool");
    let n = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// Waits until everything recorded left the outbox and sits in the queue.
async fn all_in_queue(system: &System, expected: i64) {
    harness::eventually(Duration::from_secs(30), "the events in SQS", || async {
        let backlog = outbox_backlog(system).await;
        let depth = system.queue_depth().await.ok()?;
        (backlog == 0 && depth >= expected).then_some(())
    })
    .await;
}

fn found_and_repaired(system: &System) -> (u64, u64) {
    let metrics = system
        .consolidation_metrics
        .as_ref()
        .expect("consolidation metrics");
    (
        metrics.reconcile.found.get(),
        metrics.reconcile.repaired.get(),
    )
}

/// The balances can agree a moment before the pass's re-check sees it and counts the repair.
async fn metrics_show(system: &System, at_least: u64) {
    harness::eventually(
        Duration::from_secs(30),
        "found and repaired in the metrics",
        || async {
            let (found, repaired) = found_and_repaired(system);
            (found >= at_least && repaired >= at_least).then_some(())
        },
    )
    .await;
}

async fn consistent_within(system: &System, merchants: &[String]) -> Duration {
    let started = Instant::now();
    system
        .wait_consistent(merchants, INTERVAL + MARGIN)
        .await
        .expect("every merchant-day's balance equals the ledger's sums");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purged_queue_is_repaired_by_the_reconciler() {
    let mut system = system().await;
    let merchants = merchants("purge");
    // The consumer is down while entries flow; the messages pile up in SQS ...
    record(&system, &merchants, 6).await;
    all_in_queue(&system, 18).await;
    // ... and the broker loses them.
    system.purge_queue().await.expect("purge");
    harness::eventually(Duration::from_secs(10), "an empty queue", || async {
        (system.queue_depth().await.ok()? == 0).then_some(())
    })
    .await;
    let lost = Instant::now();
    system.start_consolidation().await.expect("start");
    consistent_within(&system, &merchants).await;
    let repaired_after = lost.elapsed();
    // 3 merchants x 2 days, all lost.
    metrics_show(&system, 6).await;
    println!(
        "RECONCILE_FIGURE purge loss_to_repaired_ms={}",
        repaired_after.as_millis()
    );
    system.stop().await.expect("stop");
}

/// LocalStack's community edition keeps no messages across a restart: what piled up while the
/// consumer was down is gone when the broker is killed and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_killed_and_restarted_loses_nothing_for_good() {
    // Its own stack: LocalStack is killed.
    let stack: &'static harness::Stack = Box::leak(Box::new(
        harness::Stack::start(harness::StackOptions::default())
            .await
            .expect("stack"),
    ));
    let mut system = System::start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await
    .expect("system");
    system.reconcile_interval = Some(INTERVAL);
    system.stop_consolidation().await.expect("stop");
    let merchants = merchants("broker");
    record(&system, &merchants, 6).await;
    all_in_queue(&system, 18).await;
    // The broker dies with 18 messages in it and comes back empty (the harness makes the queues
    // again, as a deployment's infrastructure would).
    stack
        .inject(harness::Dependency::Sqs, harness::Fault::Kill)
        .await
        .expect("kill LocalStack");
    stack
        .inject(harness::Dependency::Sqs, harness::Fault::Restart)
        .await
        .expect("restart LocalStack");
    assert_eq!(
        system.queue_depth().await.expect("depth"),
        0,
        "the broker kept messages"
    );
    let lost = Instant::now();
    system.start_consolidation().await.expect("start");
    consistent_within(&system, &merchants).await;
    let repaired_after = lost.elapsed();
    metrics_show(&system, 6).await;
    println!(
        "RECONCILE_FIGURE broker-restart loss_to_repaired_ms={}",
        repaired_after.as_millis()
    );
    system.stop().await.expect("stop");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purged_dlq_is_repaired_by_the_reconciler() {
    let mut system = system().await;
    let merchants = merchants("dlq");
    record(&system, &merchants, 4).await;
    all_in_queue(&system, 12).await;
    // Every message exhausted its receives and sits in the DLQ (moved as the redrive policy
    // would), then the DLQ is purged while it holds them.
    let sqs = system.ledger_scope.sqs();
    let queues = system.ledger_scope.queues.clone();
    let mut moved = 0;
    while moved < 12 {
        let got = sqs
            .receive_message()
            .queue_url(&queues.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        for m in got {
            sqs.send_message()
                .queue_url(&queues.dlq_url)
                .message_body(m.body().unwrap_or_default())
                .send()
                .await
                .expect("to the DLQ");
            sqs.delete_message()
                .queue_url(&queues.url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
            moved += 1;
        }
    }
    sqs.purge_queue()
        .queue_url(&queues.dlq_url)
        .send()
        .await
        .expect("purge the DLQ");
    system.start_consolidation().await.expect("start");
    consistent_within(&system, &merchants).await;
    metrics_show(&system, 6).await;
    system.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_lost_from_the_consolidations_database_are_repaired() {
    let mut system = system().await;
    let merchants = merchants("restore");
    system.start_consolidation().await.expect("start");
    record(&system, &merchants, 4).await;
    consistent_within(&system, &merchants).await;
    // Warm the cache, so that the repair must also invalidate it.
    system
        .wait_consistent(&merchants, Duration::from_secs(5))
        .await
        .expect("consistent");
    // Earlier passes may have replayed days the consumer had not caught up with yet (harmless):
    // count from here.
    let (found_before, repaired_before) = found_and_repaired(&system);
    // A restore from an older backup: the first merchant's rows and dedup records are gone.
    let pool = system.consolidation_scope.pg_pool().await.expect("pool");
    for table in ["daily_balances", "processed_events"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE merchant_id = $1"))
            .bind(&merchants[0])
            .execute(&pool)
            .await
            .expect("delete");
    }
    pool.close().await;
    let lost = Instant::now();
    harness::eventually(INTERVAL + MARGIN, "the reconciler to repair", || async {
        let (found, repaired) = found_and_repaired(&system);
        (found >= found_before + 2 && repaired >= repaired_before + 2).then_some(())
    })
    .await;
    consistent_within(&system, &merchants).await;
    println!(
        "RECONCILE_FIGURE restore loss_to_repaired_ms={}",
        lost.elapsed().as_millis()
    );
    system.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replays_in_a_row_count_nothing_twice_and_ahead_days_are_flagged() {
    let mut system = system().await;
    system.reconcile_interval = None;
    let merchants = merchants("twice");
    system.start_consolidation().await.expect("start");
    record(&system, &merchants, 5).await;
    consistent_within(&system, &merchants).await;
    let metrics = system.consolidation_metrics.clone().expect("metrics");
    let duplicates_before = metrics.consumer.duplicates.get();

    let token = system
        .placement()
        .ledger
        .identity()
        .token()
        .client("operator-test")
        .scope("ledger:reconcile")
        .mint()
        .expect("token");
    let (recent, older) = days();
    let from = cashflow_contracts::business_date::format(older);
    let to = cashflow_contracts::business_date::format(recent);
    // Each replay is delivered before the next (a replay of events still waiting in the outbox
    // adds nothing to it: they leave once).
    for round in 1..=2 {
        let response = system
            .http()
            .post(format!(
                "{}/internal/v1/replays",
                system.ledger_internal_url()
            ))
            .bearer_auth(&token)
            .json(&json!({"merchant_id": merchants[0], "from": from, "to": to}))
            .send()
            .await
            .expect("replay");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["replayed"], 5, "{body}");
        harness::eventually(
            Duration::from_secs(30),
            &format!("{} duplicates", 5 * round),
            || async {
                (metrics.consumer.duplicates.get() >= duplicates_before + 5 * round).then_some(())
            },
        )
        .await;
    }
    system
        .wait_consistent(&merchants, Duration::from_secs(5))
        .await
        .expect("nothing counted twice");

    // A merchant-day where the consolidation holds more than the ledger is flagged, not touched.
    let pool = system.consolidation_scope.pg_pool().await.expect("pool");
    sqlx::query(
        "UPDATE daily_balances SET credits_minor = credits_minor + 100, entry_count = entry_count + 1 \
         WHERE merchant_id = $1 AND business_date = $2",
    )
    .bind(&merchants[1])
    .bind(recent)
    .execute(&pool)
    .await
    .expect("update");
    let admin = system
        .placement()
        .ledger
        .identity()
        .token()
        .merchant("ops")
        .scope("admin")
        .mint()
        .expect("token");
    let response = system
        .http()
        .post(format!("{}/v1/admin/reconcile", system.consolidation_url()))
        .bearer_auth(&admin)
        .json(&json!({"merchant_id": merchants[1], "from": from, "to": to}))
        .send()
        .await
        .expect("reconcile");
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("json");
    assert_eq!(
        report["ahead"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(
        report["divergent"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let after: (i64,) = sqlx::query_as(
        "SELECT entry_count FROM daily_balances WHERE merchant_id = $1 AND business_date = $2",
    )
    .bind(&merchants[1])
    .bind(recent)
    .fetch_one(&pool)
    .await
    .expect("row");
    pool.close().await;
    assert!(after.0 >= 1, "never repaired by subtracting");
    assert_eq!(metrics.reconcile.ahead.get(), 1);
    system.stop().await.expect("stop");
}

/// The cost of one reconcile pass over 1,000 merchants × 30 days (3 entries each: 90,000
/// entries), everything in agreement but 1 % of the merchant-days. Prints the figures; run by
/// hand: `cargo test -p acceptance --test reconcile pass_cost -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement, not a check: run by hand"]
async fn pass_cost_over_1000_merchants_and_30_days() {
    let mut system = system().await;
    let today = time::OffsetDateTime::now_utc().date();
    let ledger = system.ledger_scope.pg_pool().await.expect("pool");
    let seeded = Instant::now();
    sqlx::query(
        "INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date, event_id) \
         SELECT gen_random_uuid(), 'cost-' || m, CASE WHEN e = 3 THEN 'debit' ELSE 'credit' END, \
                100 * e + m, 'BRL', $1::date - d, gen_random_uuid() \
         FROM generate_series(1, 1000) m, generate_series(0, 29) d, generate_series(1, 3) e",
    )
    .bind(today)
    .execute(&ledger)
    .await
    .expect("seed the ledger");
    // The consolidation holds the same totals, except for every 100th merchant-day.
    let rows: Vec<(String, time::Date, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT merchant_id, business_date, entry_count, credits_minor, debits_minor, checksum \
         FROM day_digests",
    )
    .fetch_all(&ledger)
    .await
    .expect("digests");
    let consolidation = system.consolidation_scope.pg_pool().await.expect("pool");
    let kept: Vec<_> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 100 != 0)
        .map(|(_, r)| r.clone())
        .collect();
    sqlx::query(
        "INSERT INTO daily_balances (merchant_id, business_date, currency, credits_minor, \
           debits_minor, entry_count, last_event_recorded_at, entry_checksum) \
         SELECT m, d, 'BRL', c, db, n, now(), x FROM unnest($1::text[], $2::date[], $3::int8[], \
           $4::int8[], $5::int8[], $6::int8[]) AS t(m, d, n, c, db, x)",
    )
    .bind(kept.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
    .bind(kept.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(kept.iter().map(|r| r.2).collect::<Vec<_>>())
    .bind(kept.iter().map(|r| r.3).collect::<Vec<_>>())
    .bind(kept.iter().map(|r| r.4).collect::<Vec<_>>())
    .bind(kept.iter().map(|r| r.5).collect::<Vec<_>>())
    .execute(&consolidation)
    .await
    .expect("seed the consolidation");
    println!(
        "seeded {} merchant-days ({} divergent) in {:?}",
        rows.len(),
        rows.len() - kept.len(),
        seeded.elapsed()
    );
    // Bytes of the digests of the whole window, as the reconciler fetches them (5 000 a page).
    let token = system
        .placement()
        .ledger
        .identity()
        .token()
        .client("cost")
        .scope("ledger:reconcile")
        .mint()
        .expect("token");
    let (from, to) = (
        today - time::Duration::days(31),
        today.next_day().expect("day"),
    );
    let fmt = cashflow_contracts::business_date::format;
    let (mut bytes, mut pages, mut cursor) = (0_usize, 0, None::<String>);
    let fetch_started = Instant::now();
    loop {
        let url = format!(
            "{}/internal/v1/digests?from={}&to={}&limit=5000{}",
            system.ledger_internal_url(),
            fmt(from),
            fmt(to),
            cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        );
        let body = system
            .http()
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("digests")
            .bytes()
            .await
            .expect("body");
        bytes += body.len();
        pages += 1;
        let page: cashflow_contracts::digest::DigestPage =
            serde_json::from_slice(&body).expect("page");
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    println!(
        "digests of the window: {pages} pages, {bytes} bytes, fetched in {:?}",
        fetch_started.elapsed()
    );
    system.reconcile_interval = None;
    system.start_consolidation().await.expect("start");
    let admin = system
        .placement()
        .ledger
        .identity()
        .token()
        .merchant("ops")
        .scope("admin")
        .mint()
        .expect("token");
    let started = Instant::now();
    let response = system
        .http()
        .post(format!("{}/v1/admin/reconcile", system.consolidation_url()))
        .bearer_auth(&admin)
        .json(&json!({"from": fmt(from), "to": fmt(to)}))
        .send()
        .await
        .expect("reconcile");
    let report: Value = response.json().await.expect("report");
    println!(
        "RECONCILE_FIGURE pass: compared {} merchant-days, divergent {}, repaired {}, replayed {} events, {} ms (server) / {:?} (client)",
        report["compared"],
        report["divergent"].as_array().map_or(0, Vec::len),
        report["repaired"],
        report["replayed_events"],
        report["duration_ms"],
        started.elapsed()
    );
    // And a pass with nothing to repair: the steady-state cost.
    let started = Instant::now();
    let response = system
        .http()
        .post(format!("{}/v1/admin/reconcile", system.consolidation_url()))
        .bearer_auth(&admin)
        .json(&json!({"from": fmt(from), "to": fmt(to)}))
        .send()
        .await
        .expect("reconcile");
    let report: Value = response.json().await.expect("report");
    println!(
        "RECONCILE_FIGURE steady pass: compared {}, divergent {}, {} ms (server) / {:?} (client)",
        report["compared"],
        report["divergent"].as_array().map_or(0, Vec::len),
        report["duration_ms"],
        started.elapsed()
    );
    ledger.close().await;
    consolidation.close().await;
    system.stop().await.expect("stop");
}
