//! The reconciliation routes: digests agree with the entries (count, sums, the checksum the
//! consolidation computes), page with a cursor, and replays re-publish the original event ids
//! through the outbox; only a service token with `ledger:reconcile` may call them.

use std::collections::HashMap;
use std::time::Duration;

use cashflow_contracts::digest::{DigestPage, entry_id_hash, format_checksum};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, credit, drain_events};

fn service_token(app: &TestApp) -> String {
    app.stack
        .identity()
        .token()
        .client("consolidation-test")
        .scope("ledger:reconcile")
        .mint()
        .expect("token")
}

fn today() -> String {
    let rules = ledger::config::EntryRules::default();
    cashflow_contracts::business_date::format(ledger::entries::today(&rules).expect("today"))
}

async fn digests(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    let response = app
        .http
        .get(format!(
            "{}/internal/v1/digests?{query}",
            app.internal_address
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn replay(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/internal/v1/replays", app.internal_address))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn digests_match_the_entries_and_page_with_a_cursor() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (merchant, amount) in [("dg-a", "1.00"), ("dg-a", "2.50"), ("dg-b", "7.00")] {
        let response = app.post_entry(merchant, &credit(amount)).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.expect("json");
        ids.push((
            merchant,
            body["id"]
                .as_str()
                .expect("id")
                .parse::<Uuid>()
                .expect("uuid"),
        ));
    }
    let debit = json!({"kind": "debit", "amount": "0.50", "currency": "BRL"});
    let response = app.post_entry("dg-a", &debit).await;
    let body: Value = response.json().await.expect("json");
    ids.push((
        "dg-a",
        body["id"].as_str().expect("id").parse().expect("uuid"),
    ));

    let token = service_token(&app);
    let day = today();
    let (status, body) = digests(&app, &token, &format!("from={day}&to={day}")).await;
    assert_eq!(status, 200, "{body}");
    let page: DigestPage = serde_json::from_value(body).expect("page");
    assert_eq!(page.items.len(), 2);
    let a = &page.items[0];
    assert_eq!((a.merchant_id.as_str(), a.entry_count), ("dg-a", 3));
    assert_eq!((a.credits_minor, a.debits_minor), (350, 50));
    let expected = ids
        .iter()
        .filter(|(m, _)| *m == "dg-a")
        .fold(0, |acc, (_, id)| acc ^ entry_id_hash(id));
    assert_eq!(
        a.checksum,
        format_checksum(expected),
        "the SQL hash equals the Rust one"
    );
    assert_eq!(page.items[1].merchant_id, "dg-b");

    // One per page, then follow the cursor; and one merchant only.
    let (_, first) = digests(&app, &token, &format!("from={day}&to={day}&limit=1")).await;
    let first: DigestPage = serde_json::from_value(first).expect("page");
    assert_eq!(first.items[0].merchant_id, "dg-a");
    let cursor = first.next_cursor.expect("a second page");
    let (_, second) = digests(
        &app,
        &token,
        &format!("from={day}&to={day}&limit=1&cursor={cursor}"),
    )
    .await;
    let second: DigestPage = serde_json::from_value(second).expect("page");
    assert_eq!(second.items[0].merchant_id, "dg-b");
    assert!(second.next_cursor.is_none());
    let (_, only_b) = digests(&app, &token, &format!("from={day}&to={day}&merchant=dg-b")).await;
    let only_b: DigestPage = serde_json::from_value(only_b).expect("page");
    assert_eq!(only_b.items.len(), 1);

    // Documented in the internal listener's OpenAPI document, and only there: the public one
    // (what the gateway exposes) does not name them.
    let document = |base: String| {
        let http = app.http.clone();
        async move {
            let doc: Value = http
                .get(format!("{base}/openapi.json"))
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json");
            doc
        }
    };
    let internal = document(app.internal_address.clone()).await;
    assert!(internal["paths"]["/internal/v1/digests"]["get"].is_object());
    assert!(internal["paths"]["/internal/v1/replays"]["post"].is_object());
    assert!(internal["components"]["schemas"]["DayDigestDoc"].is_object());
    let public = document(app.address.clone()).await;
    assert!(public["paths"]["/internal/v1/digests"].is_null());
    assert!(public["paths"]["/v1/merchants/{merchant}/entries"]["post"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn merchant_tokens_and_tokens_without_the_scope_get_403() {
    let app = TestApp::spawn().await;
    let identity = app.stack.identity();
    let merchant_with_scope = identity
        .token()
        .merchant("m1")
        .scopes(["entries:read", "ledger:reconcile"])
        .mint()
        .expect("token");
    let merchant = app.token("m1");
    let service_without_scope = identity
        .token()
        .client("someone")
        .scope("admin")
        .mint()
        .expect("token");
    let day = today();
    for token in [&merchant_with_scope, &merchant, &service_without_scope] {
        let (status, body) = digests(&app, token, &format!("from={day}&to={day}")).await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = replay(&app, token, &json!({"merchant_id": "m1", "from": day})).await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, _) = digests(&app, "not-a-token", &format!("from={day}&to={day}")).await;
    assert_eq!(status, 401);
    // The public listener does not serve them at all.
    let public = app
        .http
        .get(format!(
            "{}/internal/v1/digests?from={day}&to={day}",
            app.address
        ))
        .bearer_auth(service_token(&app))
        .send()
        .await
        .expect("request");
    assert_eq!(public.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_replay_republishes_the_original_event_ids_through_the_outbox() {
    let app = TestApp::spawn().await;
    for amount in ["1.00", "2.00", "3.00"] {
        assert_eq!(app.post_entry("rp-a", &credit(amount)).await.status(), 201);
    }
    assert_eq!(app.post_entry("rp-b", &credit("9.00")).await.status(), 201);
    let first = drain_events(&app.scope, 4, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 4);

    let token = service_token(&app);
    let day = today();
    let (status, body) = replay(&app, &token, &json!({"merchant_id": "rp-a", "from": day})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], 3);
    let again = drain_events(&app.scope, 3, Duration::from_secs(30)).await;
    let rp_a: Vec<&String> = again.keys().collect();
    assert_eq!(again.len(), 3, "rp-a's three events, not rp-b's: {again:?}");
    for id in rp_a {
        assert!(
            first.contains_key(id),
            "replayed {id} is an original event id"
        );
    }
    // Even once the outbox rows are gone (retention), the entries keep their event ids.
    sqlx::query("DELETE FROM outbox")
        .execute(&app.pool)
        .await
        .expect("prune");
    let (_, body) = replay(
        &app,
        &token,
        &json!({"merchant_id": "rp-a", "from": day, "to": day}),
    )
    .await;
    assert_eq!(body["replayed"], 3);
    let third: HashMap<String, usize> = drain_events(&app.scope, 3, Duration::from_secs(30)).await;
    assert_eq!(
        third.keys().collect::<std::collections::BTreeSet<_>>(),
        again.keys().collect::<std::collections::BTreeSet<_>>()
    );

    let (status, body) = replay(
        &app,
        &token,
        &json!({"merchant_id": "rp-a", "from": day, "to": "2020-01-01"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn replays_are_paced() {
    let pacer = ledger::reconcile::Pacer::new(20);
    let started = std::time::Instant::now();
    // 60 events at 20/s: the first batch goes at once, the next two wait a second each at least.
    for _ in 0..3 {
        pacer.admit(20).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_replay_cli_goes_through_the_outbox_too() {
    let app = TestApp::spawn().await;
    for amount in ["4.00", "5.00"] {
        assert_eq!(app.post_entry("cli-a", &credit(amount)).await.status(), 201);
    }
    let first = drain_events(&app.scope, 2, Duration::from_secs(30)).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "replay",
            "--merchant",
            "cli-a",
            "--from",
            &today(),
            "--rate",
            "100",
        ])
        .env("DATABASE_URL", &app.scope.database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run the CLI");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("replayed 2 event(s)"), "{stdout}");
    // The running ledger's relay publishes them: the same event ids again.
    let again = drain_events(&app.scope, 2, Duration::from_secs(30)).await;
    assert_eq!(
        again.keys().collect::<std::collections::BTreeSet<_>>(),
        first.keys().collect::<std::collections::BTreeSet<_>>()
    );
    app.stop().await;
}
