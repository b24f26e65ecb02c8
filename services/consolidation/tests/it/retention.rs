//! Retention of the dedup records: a redelivery inside the window is still counted once while
//! the pruner runs, only expired records are pruned, and a configuration under which SQS could
//! outlive the records is refused at start.

use std::time::Duration;

use cashflow_contracts::EntryKind::Credit;
use harness::ScopeOptions;

use crate::helpers::{TestApp, date, event};

#[tokio::test]
async fn a_redelivery_inside_the_dedup_window_is_counted_once_while_expired_records_are_pruned() {
    let app = TestApp::spawn_with(ScopeOptions::default(), |config| {
        config.retention.interval = Duration::from_secs(1);
    })
    .await;
    let pool = app.scope.pg_pool().await.expect("pool");
    // An old record (past PROCESSED_EVENTS_RETENTION_SECONDS) that the running pruner must remove.
    let expired = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO processed_events (event_id, merchant_id, processed_at) \
         VALUES ($1, 'old', now() - interval '46 days')",
    )
    .bind(expired)
    .execute(&pool)
    .await
    .expect("insert");

    let credit = event("m1", Credit, 10_000, date(0));
    app.send(&credit).await;
    app.wait_applied(1, Duration::from_secs(30)).await;
    // This record is 44 days old: inside the window, it must survive pruning.
    sqlx::query(
        "UPDATE processed_events SET processed_at = now() - interval '44 days' \
         WHERE event_id = $1",
    )
    .bind(credit.event_id)
    .execute(&pool)
    .await
    .expect("age the record");
    harness::eventually(Duration::from_secs(20), "the expired record pruned", || {
        let pool = pool.clone();
        async move {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE event_id = $1")
                    .bind(expired)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (left == 0).then_some(())
        }
    })
    .await;

    app.send(&credit).await;
    harness::eventually(Duration::from_secs(20), "the redelivery seen", || async {
        (app.metrics.consumer.duplicates.get() == 1).then_some(())
    })
    .await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], "100.00");
    assert_eq!(balance["entry_count"], 1);
    assert_eq!(app.metrics.consumer.applied.get(), 1);
    let pruned = app
        .metrics
        .retention
        .pruned
        .get_or_create(&cashflow_platform::retention::TableLabel {
            table: "processed_events".into(),
        })
        .get();
    assert!(pruned >= 1, "pruned {pruned}");
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dedup_window_sqs_could_outlive_is_refused_at_start_naming_both_settings() {
    let stack = harness::shared().await.expect("stack");
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await
        .expect("scope");
    let mut config = testkit::consolidation_config(&scope, &scope, stack.identity().auth_config());
    // 14 days in the queue after 14 in the DLQ: 20 days of dedup records would let a
    // redriven copy be counted again.
    config.processed_events_retention = Duration::from_secs(20 * 86_400);
    config.reconcile.window_days = 7;
    let error = consolidation::Application::build(config)
        .await
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("PROCESSED_EVENTS_RETENTION_SECONDS"),
        "{error}"
    );
    assert!(error.contains("SQS_MESSAGE_RETENTION_SECONDS"), "{error}");
}
