//! Recording, reading and listing entries; health, metrics and the OpenAPI document.

use serde_json::{Value, json};

use crate::helpers::{TestApp, credit};
use testkit::probe::Served;

#[tokio::test]
async fn a_credit_is_recorded_with_its_event_and_reads_back() {
    let app = TestApp::spawn().await;
    let response = app
        .post_entry(
            "m1",
            &json!({"kind": "credit", "amount": "100.10", "currency": "BRL",
            "description": "card sale", "category": "sales"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let entry: Value = response.json().await.expect("json");
    assert_eq!(entry["merchant_id"], "m1");
    assert_eq!(entry["kind"], "credit");
    assert_eq!(entry["amount"], "100.10");
    assert_eq!(entry["currency"], "BRL");
    assert_eq!(entry["category"], "sales");
    assert_eq!(entry["reverses_entry_id"], Value::Null);
    let today = ledger::entries::today(&ledger::config::EntryRules::default()).expect("today");
    assert_eq!(
        entry["business_date"],
        cashflow_contracts::business_date::format(today)
    );
    assert_eq!(
        location,
        format!(
            "/v1/merchants/m1/entries/{}",
            entry["id"].as_str().expect("id")
        )
    );

    let read: Value = app
        .http
        .get(format!("{}{location}", app.address))
        .bearer_auth(app.token("m1"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(read, entry);

    let (event,): (Value,) = sqlx::query_as("SELECT payload FROM outbox")
        .fetch_one(&app.pool)
        .await
        .expect("event");
    assert_eq!(event["entry_id"], entry["id"]);
    assert_eq!(event["amount_minor"], 10010);
    assert_eq!(event["kind"], "credit");
    assert_eq!(event["merchant_id"], "m1");
}

#[tokio::test]
async fn a_debit_on_a_backdated_day_lands_on_that_day() {
    let app = TestApp::spawn().await;
    let today = ledger::entries::today(&ledger::config::EntryRules::default()).expect("today");
    let day = cashflow_contracts::business_date::format(today - time::Duration::days(3));
    let response = app
        .post_entry(
            "m1",
            &json!({"kind": "debit", "amount": "30.05", "currency": "BRL", "business_date": day}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let entry: Value = response.json().await.expect("json");
    assert_eq!(entry["business_date"], day);
    assert_eq!(entry["kind"], "debit");
}

#[tokio::test]
async fn listing_a_day_pages_through_every_entry_once_in_order() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for amount in ["1.00", "2.00", "3.00", "4.00", "5.00"] {
        let entry: Value = app
            .post_entry("m1", &credit(amount))
            .await
            .json()
            .await
            .expect("json");
        ids.push(entry["id"].as_str().expect("id").to_string());
    }
    app.post_entry("m2", &credit("9.00")).await;
    let today = cashflow_contracts::business_date::format(
        ledger::entries::today(&ledger::config::EntryRules::default()).expect("today"),
    );
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut url = format!(
            "{}/v1/merchants/m1/entries?date={today}&limit=2",
            app.address
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .http
            .get(url)
            .bearer_auth(app.token("m1"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        for item in page["items"].as_array().expect("items") {
            listed.push(item["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, ids, "every entry of m1, once, in recording order");

    let bad = app
        .http
        .get(format!(
            "{}/v1/merchants/m1/entries?date=yesterday",
            app.address
        ))
        .bearer_auth(app.token("m1"))
        .send()
        .await
        .expect("list");
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn another_merchants_entry_is_not_found_through_ones_own_path() {
    let app = TestApp::spawn().await;
    let entry: Value = app
        .post_entry("m2", &credit("1.00"))
        .await
        .json()
        .await
        .expect("json");
    let response = app
        .http
        .get(format!(
            "{}/v1/merchants/m1/entries/{}",
            app.address,
            entry["id"].as_str().expect("id")
        ))
        .bearer_auth(app.token("m1"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let app = TestApp::spawn().await;
    for path in ["/health/live", "/health/ready"] {
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200, "{path}");
    }
    app.post_entry("m1", &credit("1.00")).await;
    let metrics = app.scrape().await;
    assert!(
        metrics.contains(r#"ledger_http_requests_total{method="POST",route="/v1/merchants/{merchant}/entries",status="201"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("ledger_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("ledger_outbox_backlog"));
    assert!(metrics.contains("ledger_outbox_oldest_age_seconds"));

    let doc: Value = app.openapi().await;
    assert!(doc["paths"]["/v1/merchants/{merchant}/entries"]["post"].is_object());
    assert!(doc["paths"]["/v1/merchants/{merchant}/entries/{id}/reversal"]["post"].is_object());
    assert!(doc["components"]["schemas"]["Entry"].is_object());
}
