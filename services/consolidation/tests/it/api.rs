//! The balance API: dates, ranges, CSV, auth and merchant isolation.

use std::time::Duration;

use cashflow_contracts::EntryKind::{Credit, Debit};
use harness::TokenFlaw;
use serde_json::Value;

use crate::helpers::{TestApp, date, day, event};
use testkit::probe::Served;

#[tokio::test]
async fn a_day_without_entries_is_zeros_and_a_bad_date_is_422() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .get("m1", &format!("/v1/merchants/m1/balances/{}", day(date(3))))
        .await;
    assert_eq!(status, 200);
    let balance: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(balance["merchant_id"], "m1");
    assert_eq!(balance["currency"], "BRL");
    for field in [
        "credits",
        "debits",
        "net",
        "opening_balance",
        "closing_balance",
    ] {
        assert_eq!(balance[field], "0.00", "{field}");
    }
    assert_eq!(balance["entry_count"], 0);
    assert_eq!(balance["as_of"], Value::Null);
    for bad in ["2026-13-01", "yesterday", "2026-02-30"] {
        let (status, body) = app
            .get("m1", &format!("/v1/merchants/m1/balances/{bad}"))
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_report_lists_every_day_as_json_and_csv_within_bounds() {
    let app = TestApp::spawn().await;
    app.send(&event("m1", Credit, 10_000, date(0))).await;
    app.send(&event("m1", Debit, 3_005, date(2))).await;
    app.wait_applied(2, Duration::from_secs(30)).await;
    let path = format!(
        "/v1/merchants/m1/balances?from={}&to={}",
        day(date(0)),
        day(date(3))
    );
    let (status, body) = app.get("m1", &path).await;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&body).expect("json");
    let closings: Vec<&str> = report["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["closing_balance"].as_str().expect("s"))
        .collect();
    assert_eq!(closings, ["100.00", "100.00", "69.95", "69.95"]);

    let csv = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(app.token("m1"))
        .header("accept", "text/csv")
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let text = csv.text().await.expect("text");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "date,currency,credits,debits,net,opening_balance,closing_balance,entry_count,as_of"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[3].starts_with(&format!(
            "{},BRL,0.00,30.05,-30.05,100.00,69.95,1,",
            day(date(2))
        )),
        "{}",
        lines[3]
    );
    let (status, via_format) = app.get("m1", &format!("{path}&format=csv")).await;
    assert_eq!((status, via_format.as_str()), (200, text.as_str()));

    for (query, field) in [
        (format!("from={}", day(date(0))), "to"),
        (format!("from={}&to={}", day(date(3)), day(date(0))), "to"),
        (format!("from={}&to={}", day(date(0)), day(date(400))), "to"),
        (format!("from=nope&to={}", day(date(0))), "from"),
        (
            format!("from={}&to={}&format=xml", day(date(0)), day(date(1))),
            "format",
        ),
    ] {
        let (status, body) = app
            .get("m1", &format!("/v1/merchants/m1/balances?{query}"))
            .await;
        assert_eq!(status, 422, "{query}");
        let problem: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn merchants_are_isolated_and_bad_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/merchants/m1/balances/{}", app.address, day(date(0)));
    let status = |response: reqwest::Response| response.status().as_u16();
    let other = app.token("m2");
    assert_eq!(
        status(
            app.http
                .get(&url)
                .bearer_auth(other)
                .send()
                .await
                .expect("get")
        ),
        403
    );
    let wrong_scope = app
        .stack
        .identity()
        .token()
        .merchant("m1")
        .scope("entries:read")
        .mint()
        .expect("token");
    assert_eq!(
        status(
            app.http
                .get(&url)
                .bearer_auth(wrong_scope)
                .send()
                .await
                .expect("get")
        ),
        403
    );
    assert_eq!(status(app.http.get(&url).send().await.expect("get")), 401);
    for flaw in TokenFlaw::ALL {
        let token = app
            .stack
            .identity()
            .token()
            .merchant("m1")
            .scope("balances:read")
            .flaw(flaw)
            .mint()
            .expect("token");
        assert_eq!(
            status(
                app.http
                    .get(&url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("get")
            ),
            401,
            "{flaw:?}"
        );
    }
    // The admin endpoints want the admin scope.
    let dlq = format!("{}/v1/admin/dlq", app.address);
    assert_eq!(
        status(
            app.http
                .get(&dlq)
                .bearer_auth(app.token("m1"))
                .send()
                .await
                .expect("get")
        ),
        403
    );
    assert_eq!(
        status(
            app.http
                .get(&dlq)
                .bearer_auth(app.admin_token())
                .send()
                .await
                .expect("get")
        ),
        200
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
    let metrics = app.scrape().await;
    for name in [
        "consolidation_events_received_total",
        "consolidation_events_applied_total",
        "consolidation_events_duplicate_total",
        "consolidation_events_retried_total",
        "consolidation_events_dead_lettered_total",
        "consolidation_apply_seconds_bucket",
        "consolidation_lag_seconds_bucket",
        "consolidation_dlq_depth",
        "consolidation_cache_hits_total",
        "consolidation_cache_fallbacks_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let doc: Value = app.openapi().await;
    assert!(doc["paths"]["/v1/merchants/{merchant}/balances/{date}"]["get"].is_object());
    assert!(doc["paths"]["/v1/admin/dlq/redrive"]["post"].is_object());
}
