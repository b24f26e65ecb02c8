//! Idempotency-Key: replay, mismatch, and 50 concurrent identical requests.

use serde_json::Value;

use crate::helpers::{TestApp, credit};

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(app.token("m1"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    (
        response.status().as_u16(),
        response.json().await.expect("json"),
    )
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_gets_the_first_answer() {
    let app = TestApp::spawn().await;
    let first = post_with_key(&app, "key-1", &credit("12.34")).await;
    let second = post_with_key(&app, "key-1", &credit("12.34")).await;
    assert_eq!(first.0, 201);
    assert_eq!(second, first);
    assert_eq!(app.entry_count().await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_writes_nothing() {
    let app = TestApp::spawn().await;
    assert_eq!(post_with_key(&app, "key-2", &credit("1.00")).await.0, 201);
    let (status, problem) = post_with_key(&app, "key-2", &credit("2.00")).await;
    assert_eq!(status, 422);
    assert_eq!(
        problem["type"],
        "https://cashflow.dev/problems/idempotency-key-reused"
    );
    assert_eq!(app.entry_count().await, 1);
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_make_exactly_one_entry() {
    let app = TestApp::spawn().await;
    let body = credit("50.00");
    let answers =
        futures::future::join_all((0..50).map(|_| post_with_key(&app, "concurrent", &body))).await;
    let first = &answers[0];
    assert_eq!(first.0, 201);
    for answer in &answers {
        assert_eq!(answer, first, "every caller gets the same answer");
    }
    assert_eq!(app.entry_count().await, 1);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(events, 1);
}
