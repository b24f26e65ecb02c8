//! Reversals: once, never of a reversal, 404 for unknown entries.

use serde_json::Value;

use crate::helpers::{TestApp, credit};

async fn reverse(app: &TestApp, id: &str) -> (u16, Value) {
    let response = app
        .http
        .post(format!(
            "{}/v1/merchants/m1/entries/{id}/reversal",
            app.address
        ))
        .bearer_auth(app.token("m1"))
        .send()
        .await
        .expect("send");
    (
        response.status().as_u16(),
        response.json().await.expect("json"),
    )
}

#[tokio::test]
async fn an_entry_is_reversed_once_and_a_reversal_cannot_be_reversed() {
    let app = TestApp::spawn().await;
    let entry: Value = app
        .post_entry("m1", &credit("80.00"))
        .await
        .json()
        .await
        .expect("json");
    let id = entry["id"].as_str().expect("id");

    let (status, reversal) = reverse(&app, id).await;
    assert_eq!(status, 201, "{reversal}");
    assert_eq!(reversal["kind"], "debit");
    assert_eq!(reversal["amount"], "80.00");
    assert_eq!(reversal["reverses_entry_id"], id);

    let (status, problem) = reverse(&app, id).await;
    assert_eq!(status, 409, "{problem}");
    let (status, problem) = reverse(&app, reversal["id"].as_str().expect("id")).await;
    assert_eq!(status, 422, "{problem}");
    let (status, _) = reverse(&app, "00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, 404);
    let (status, _) = reverse(&app, "not-an-id").await;
    assert_eq!(status, 404);

    assert_eq!(app.entry_count().await, 2);
    let events: Vec<Value> = sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["reverses_entry_id"], id);
    assert_eq!(events[1]["kind"], "debit");
}

#[tokio::test]
async fn concurrent_reversals_of_one_entry_make_one_reversal() {
    let app = TestApp::spawn().await;
    let entry: Value = app
        .post_entry("m1", &credit("5.00"))
        .await
        .json()
        .await
        .expect("json");
    let id = entry["id"].as_str().expect("id");
    let answers = futures::future::join_all((0..10).map(|_| reverse(&app, id))).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let conflicts = answers.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!((created, conflicts), (1, 9), "{answers:?}");
    assert_eq!(app.entry_count().await, 2);
}
