//! Step definitions of `reconcile.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[given(expr = "the platform is running with the reconciler every {int} seconds")]
pub(crate) async fn platform_with_reconciler(w: &mut Platform, seconds: u64) {
    platform_running(w).await;
    let system = w.system_mut();
    system.reconcile_interval = Some(Duration::from_secs(seconds));
    // Restarted so that the new setting takes effect.
    system.stop_consolidation().await.expect("stopped");
    system.start_consolidation().await.expect("started");
}

#[given(
    expr = "the platform is running on a stack of its own with the reconciler every {int} seconds"
)]
pub(crate) async fn own_platform_with_reconciler(w: &mut Platform, seconds: u64) {
    let stack = w.own_stack().await;
    w.start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await;
    let system = w.system_mut();
    system.reconcile_interval = Some(Duration::from_secs(seconds));
    system.stop_consolidation().await.expect("stopped");
    system.start_consolidation().await.expect("started");
}

#[when("the broker is killed and starts again empty")]
pub(crate) async fn broker_killed_and_restarted(w: &mut Platform) {
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Kill).await;
    w.inject(Side::Ledger, Dependency::Sqs, Fault::Restart)
        .await;
    let depth = w.system().queue_depth().await.expect("depth");
    assert_eq!(depth, 0, "LocalStack kept messages across a restart");
}

#[when("every event is waiting in SQS")]
pub(crate) async fn all_in_sqs(w: &mut Platform) {
    let system = w.system();
    // What each poll saw, printed when it changes: if this times out, the output says whether
    // the outbox never drained, the queue stayed empty, or a query kept failing.
    let seen = std::sync::Mutex::new(String::new());
    harness::eventually(Duration::from_secs(30), "the outbox to drain", || async {
        let backlog = async {
            let pool = system.ledger_scope.pg_pool().await?;
            let backlog: i64 =
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    .fetch_one(&pool)
                    .await?;
            pool.close().await;
            anyhow::Ok(backlog)
        }
        .await;
        let depth = system.queue_depth().await;
        let now = format!("outbox backlog {backlog:?}, queue depth {depth:?}");
        if *seen.lock().expect("lock") != now {
            eprintln!("every event is waiting in SQS? {now}");
            now.clone_into(&mut seen.lock().expect("lock"));
        }
        (backlog.ok()? == 0 && depth.ok()? > 0).then_some(())
    })
    .await;
}

#[when("the broker loses every message of the entries queue")]
pub(crate) async fn broker_loses(w: &mut Platform) {
    let system = w.system();
    system.purge_queue().await.expect("purged");
    harness::eventually(Duration::from_secs(10), "an empty queue", || async {
        (system.queue_depth().await.ok()? == 0).then_some(())
    })
    .await;
}

#[then(regex = r"^within (\d+) seconds every balance equals the ledger's sums$")]
pub(crate) async fn consistent_within(w: &mut Platform, seconds: u64) {
    let merchants = vec![w.merchant.clone()];
    w.system()
        .wait_consistent(&merchants, Duration::from_secs(seconds))
        .await
        .expect("consistent in time");
}

#[then(regex = r"^the reconciler found and repaired at least (\d+) merchant-days?$")]
pub(crate) async fn reconciler_repaired(w: &mut Platform, count: u64) {
    let metrics = w.system().consolidation_metrics.clone().expect("metrics");
    // The balances can agree a moment before the pass's re-check sees it and counts.
    harness::eventually(Duration::from_secs(30), "the repair in the metrics", || {
        let metrics = metrics.clone();
        async move {
            (metrics.reconcile.found.get() >= count && metrics.reconcile.repaired.get() >= count)
                .then_some(())
        }
    })
    .await;
}

#[when(regex = r#"^the ledger replays today's events of "([^"]*)" twice$"#)]
pub(crate) async fn replay_twice(w: &mut Platform, merchant: String) {
    let system = w.system();
    let token = system
        .placement()
        .ledger
        .identity()
        .token()
        .client("acceptance-operator")
        .scope("ledger:reconcile")
        .mint()
        .expect("token");
    let day = format(today());
    let metrics = system
        .consolidation_metrics
        .clone()
        .expect("the consolidation runs");
    // Each replay is delivered before the next: a replay of events still waiting in the outbox
    // adds nothing to it (they leave once), which is not what this step is about.
    for _ in 0..2 {
        let duplicates_before = metrics.consumer.duplicates.get();
        let response = system
            .http()
            .post(format!(
                "{}/internal/v1/replays",
                system.ledger_internal_url()
            ))
            .bearer_auth(&token)
            .json(&json!({"merchant_id": merchant, "from": day}))
            .send()
            .await
            .expect("replay");
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        let replayed = body["replayed"].as_u64().expect("replayed");
        harness::eventually(Duration::from_secs(30), "the replay delivered", || async {
            (metrics.consumer.duplicates.get() >= duplicates_before + replayed).then_some(())
        })
        .await;
    }
}
