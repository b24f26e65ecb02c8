//! Consuming events: idempotent, right across days whatever the order.

use std::time::Duration;

use cashflow_contracts::EntryKind::{Credit, Debit};

use crate::helpers::{TestApp, date, event};

#[tokio::test]
async fn the_same_event_delivered_three_times_is_counted_once() {
    let app = TestApp::spawn().await;
    let credit = event("m1", Credit, 10_000, date(0));
    for _ in 0..3 {
        app.send(&credit).await;
    }
    let other = event("m1", Debit, 2_500, date(0));
    app.send(&other).await;
    app.wait_applied(2, Duration::from_secs(30)).await;
    harness::eventually(Duration::from_secs(10), "the duplicates", || async {
        (app.metrics.consumer.duplicates.get() == 2).then_some(())
    })
    .await;
    let balance = app.balance("m1", date(0)).await;
    assert_eq!(balance["credits"], "100.00");
    assert_eq!(balance["debits"], "25.00");
    assert_eq!(balance["net"], "75.00");
    assert_eq!(balance["entry_count"], 2);
    assert_eq!(app.metrics.consumer.applied.get(), 2);
}

#[tokio::test]
async fn opening_and_closing_balances_are_right_whatever_the_arrival_order() {
    let app = TestApp::spawn().await;
    // Later days first, then an earlier one.
    app.send(&event("m1", Credit, 5_000, date(2))).await;
    app.send(&event("m1", Debit, 1_000, date(1))).await;
    app.send(&event("m1", Credit, 20_000, date(0))).await;
    app.send(&event("m2", Credit, 99_900, date(1))).await;
    app.wait_applied(4, Duration::from_secs(30)).await;

    let day0 = app.balance("m1", date(0)).await;
    assert_eq!(
        (
            day0["opening_balance"].as_str(),
            day0["closing_balance"].as_str()
        ),
        (Some("0.00"), Some("200.00"))
    );
    let day1 = app.balance("m1", date(1)).await;
    assert_eq!(
        (
            day1["opening_balance"].as_str(),
            day1["closing_balance"].as_str()
        ),
        (Some("200.00"), Some("190.00"))
    );
    let day2 = app.balance("m1", date(2)).await;
    assert_eq!(
        (
            day2["opening_balance"].as_str(),
            day2["closing_balance"].as_str()
        ),
        (Some("190.00"), Some("240.00"))
    );
    // A day without entries carries the balance.
    let day5 = app.balance("m1", date(5)).await;
    assert_eq!(day5["entry_count"], 0);
    assert_eq!(day5["credits"], "0.00");
    assert_eq!(
        (
            day5["opening_balance"].as_str(),
            day5["closing_balance"].as_str()
        ),
        (Some("240.00"), Some("240.00"))
    );
    assert!(day5["as_of"].is_string());
    // m2 is its own book.
    let m2 = app.balance("m2", date(2)).await;
    assert_eq!(m2["closing_balance"], "999.00");
}
