//! The consumer is supervised: after a panic it is restarted and events keep being applied.

use std::time::Duration;

use cashflow_contracts::EntryKind::Credit;
use consolidation::startup::CONSUMER_TASK;

use harness::ScopeOptions;

use crate::helpers::{TestApp, date, event};

#[tokio::test]
async fn a_panicking_consumer_is_restarted_and_events_keep_being_applied() {
    // A long poll cut short by the panic may still take a message at LocalStack: it comes back
    // after the visibility timeout, kept short here.
    let app = TestApp::spawn_with(
        ScopeOptions::default().with_visibility_timeout_secs(3),
        |_| {},
    )
    .await;
    app.send(&event("m1", Credit, 1_000, date(0))).await;
    app.wait_applied(1, Duration::from_secs(30)).await;

    assert!(
        app.supervisor.inject_panic(CONSUMER_TASK),
        "the consumer is supervised"
    );
    harness::eventually(Duration::from_secs(5), "the consumer restarted", || async {
        (app.supervisor.restarts(CONSUMER_TASK) >= 1).then_some(())
    })
    .await;
    app.send(&event("m1", Credit, 2_000, date(0))).await;
    app.wait_applied(2, Duration::from_secs(30)).await;
    assert_eq!(app.balance("m1", date(0)).await["closing_balance"], "30.00");
}
