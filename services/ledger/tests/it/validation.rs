//! Every bad input gets a clear problem+json 4xx and writes nothing.

use serde_json::{Value, json};

use crate::helpers::TestApp;

#[tokio::test]
async fn bad_bodies_are_refused_with_the_field_named_and_nothing_written() {
    let app = TestApp::spawn().await;
    let rules = ledger::config::EntryRules::default();
    let today = ledger::entries::today(&rules).expect("today");
    let format = cashflow_contracts::business_date::format;
    let tomorrow = format(today + time::Duration::days(1));
    let too_old = format(today - time::Duration::days(i64::from(rules.backdate_window_days) + 1));
    let base = json!({"kind": "credit", "amount": "10.00", "currency": "BRL"});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("unknown field", with("colour", json!("red")), "colour"),
        ("amount as a number", with("amount", json!(10)), "amount"),
        ("zero amount", with("amount", json!("0.00")), "amount"),
        ("negative amount", with("amount", json!("-5.00")), "amount"),
        ("three decimals", with("amount", json!("1.234")), "amount"),
        (
            "overflowing amount",
            with("amount", json!("99999999999999999999.00")),
            "amount",
        ),
        ("exponent amount", with("amount", json!("1e3")), "amount"),
        ("unknown kind", with("kind", json!("transfer")), "kind"),
        (
            "kind missing",
            json!({"amount": "1.00", "currency": "BRL"}),
            "kind",
        ),
        (
            "unknown currency",
            with("currency", json!("XYZ")),
            "currency",
        ),
        (
            "another currency",
            with("currency", json!("USD")),
            "currency",
        ),
        (
            "future date",
            with("business_date", json!(tomorrow)),
            "business_date",
        ),
        (
            "date beyond the window",
            with("business_date", json!(too_old)),
            "business_date",
        ),
        (
            "not a date",
            with("business_date", json!("24/11/2026")),
            "business_date",
        ),
        (
            "long description",
            with("description", json!("x".repeat(201))),
            "description",
        ),
        (
            "description as a number",
            with("description", json!(5)),
            "description",
        ),
        ("an array", json!([1, 2]), "body"),
    ];
    for (name, body, field) in cases {
        let response = app.post_entry("m1", &body).await;
        assert_eq!(response.status(), 422, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem: Value = response.json().await.expect("json");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, [field], "{name}: {problem}");
    }
    assert_eq!(app.entry_count().await, 0);
    assert_eq!(app.outbox_backlog().await, 0);
}

#[tokio::test]
async fn malformed_oversize_and_non_json_bodies_are_refused() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/merchants/m1/entries", app.address);
    let token = app.token("m1");
    let send = |body: String, content_type: &'static str| {
        app.http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let malformed = send(
        r#"{"kind": "credit", "amount": "#.into(),
        "application/json",
    )
    .await
    .expect("send");
    assert_eq!(malformed.status(), 400);
    let oversize = send(
        format!(
            r#"{{"kind": "credit", "description": "{}"}}"#,
            "x".repeat(20_000)
        ),
        "application/json",
    )
    .await
    .expect("send");
    assert_eq!(oversize.status(), 413);
    let problem: Value = oversize.json().await.expect("json");
    assert_eq!(problem["status"], 413);
    let text = send(
        r#"{"kind": "credit", "amount": "1.00", "currency": "BRL"}"#.into(),
        "text/plain",
    )
    .await
    .expect("send");
    assert_eq!(text.status(), 415);
    assert_eq!(app.entry_count().await, 0);
}

#[tokio::test]
async fn error_bodies_keep_their_shape() {
    let app = TestApp::spawn().await;
    let response = app
        .post_entry(
            "m1",
            &json!({"kind": "transfer", "amount": "0", "currency": "BRL", "extra": true}),
        )
        .await;
    let problem: Value = response.json().await.expect("json");
    insta::assert_json_snapshot!("validation_problem", problem);
    let response = app
        .http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(app.token("m1"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("send");
    let problem: Value = response.json().await.expect("json");
    insta::assert_json_snapshot!("malformed_json_problem", problem);
}

/// The field names of a problem's `errors`.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn control_characters_in_text_are_refused_on_record_and_reversal_paths() {
    let app = TestApp::spawn().await;
    let base = json!({"kind": "credit", "amount": "10.00", "currency": "BRL"});
    for (field, text) in [
        ("description", "a\u{0000}b"),
        ("description", "bell\u{0007}"),
        ("category", "esc\u{001b}[31m"),
        ("category", "del\u{007f}"),
        ("description", "c1\u{0085}"),
    ] {
        let mut body = base.clone();
        body[field] = json!(text);
        let response = app.post_entry("m1", &body).await;
        assert_eq!(response.status(), 422, "{field}={text:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(error_fields(&problem), [field], "{problem}");
    }
    // Ordinary whitespace is text.
    let mut body = base.clone();
    body["description"] = json!("line one\n\tline two\r\n");
    let response = app.post_entry("m1", &body).await;
    assert_eq!(response.status(), 201);
    let entry: Value = response.json().await.expect("json");
    assert_eq!(entry["description"], "line one\n\tline two");

    // The reversal path uses the same rule.
    let id = entry["id"].as_str().expect("id");
    let response = app
        .http
        .post(format!(
            "{}/v1/merchants/m1/entries/{id}/reversal",
            app.address
        ))
        .bearer_auth(app.token("m1"))
        .json(&json!({"description": "undo\u{0000}"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(error_fields(&problem), ["description"], "{problem}");
    assert_eq!(app.entry_count().await, 1, "only the valid entry");
}

#[tokio::test]
async fn a_cursor_the_api_never_issued_is_refused_with_400() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(
            app.post_entry("m1", &crate::helpers::credit("1.00"))
                .await
                .status(),
            201
        );
    }
    let today = cashflow_contracts::business_date::format(
        ledger::entries::today(&ledger::config::EntryRules::default()).expect("today"),
    );
    let list = |merchant: &'static str, cursor: String| {
        let url = format!(
            "{}/v1/merchants/{merchant}/entries?date={today}&limit=1&cursor={cursor}",
            app.address
        );
        let token = app.token(merchant);
        let http = app.http.clone();
        async move { http.get(url).bearer_auth(token).send().await.expect("send") }
    };
    let first: Value = app
        .http
        .get(format!(
            "{}/v1/merchants/m1/entries?date={today}&limit=1",
            app.address
        ))
        .bearer_auth(app.token("m1"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let issued = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    assert_eq!(list("m1", issued.clone()).await.status(), 200);

    // "LTU" is base64 of "-5"; "NDI" of "42"; then garbage, and a real cursor for another
    // merchant.
    for (cursor, merchant) in [
        ("LTU".to_string(), "m1"),
        ("NDI".to_string(), "m1"),
        ("%00".to_string(), "m1"),
        (format!("{issued}A"), "m1"),
        (issued.clone(), "m2"),
    ] {
        let response = list(merchant, cursor.clone()).await;
        assert_eq!(response.status(), 400, "cursor {cursor:?} for {merchant}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("json");
        assert_eq!(error_fields(&problem), ["cursor"], "{problem}");
    }
}
