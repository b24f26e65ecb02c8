//! Background tasks are supervised: a relay that panics is logged, restarted, and publishing
//! resumes; readiness is back once it runs.

use std::time::Duration;

use ledger::startup::RELAY_TASK;

use crate::helpers::{TestApp, credit, drain_events};
use testkit::probe::Served;

#[tokio::test]
async fn a_panicking_outbox_relay_is_restarted_and_publishing_resumes() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post_entry("m1", &credit("1.00")).await.status(), 201);
    harness::eventually(
        Duration::from_secs(10),
        "the first event published",
        || async { (app.outbox_backlog().await == 0).then_some(()) },
    )
    .await;

    assert!(
        app.supervisor.inject_panic(RELAY_TASK),
        "the relay is supervised"
    );
    harness::eventually(Duration::from_secs(5), "the relay restarted", || async {
        (app.supervisor.restarts(RELAY_TASK) >= 1).then_some(())
    })
    .await;
    assert_eq!(app.post_entry("m1", &credit("2.00")).await.status(), 201);
    harness::eventually(
        Duration::from_secs(10),
        "publishing resumed after the panic",
        || async { (app.outbox_backlog().await == 0).then_some(()) },
    )
    .await;
    let ready = app
        .http
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 200);
    let metrics = app.scrape().await;
    assert!(
        metrics.contains(r#"ledger_background_task_restarts_total{task="outbox-relay"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        drain_events(&app.scope, 2, Duration::from_secs(30))
            .await
            .len(),
        2
    );
}
