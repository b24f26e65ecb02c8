//! Tokens: missing or bad → 401, another merchant or a missing scope → 403; nothing written.

use harness::TokenFlaw;

use crate::helpers::{TestApp, credit};

#[tokio::test]
async fn no_token_and_every_bad_token_get_401() {
    let app = TestApp::spawn().await;
    let url = format!("{}/v1/merchants/m1/entries", app.address);
    let response = app
        .http
        .post(&url)
        .json(&credit("1.00"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    let garbage = app
        .http
        .post(&url)
        .bearer_auth("not-a-jwt")
        .json(&credit("1.00"))
        .send()
        .await
        .expect("send");
    assert_eq!(garbage.status(), 401);

    for flaw in TokenFlaw::ALL {
        let token = app
            .stack
            .identity()
            .token()
            .merchant("m1")
            .scopes(["entries:write", "entries:read"])
            .flaw(flaw)
            .mint()
            .expect("token");
        let response = app
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&credit("1.00"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401, "{flaw:?}");
    }
    assert_eq!(app.entry_count().await, 0);
}

#[tokio::test]
async fn another_merchant_or_a_missing_scope_gets_403() {
    let app = TestApp::spawn().await;
    let other = app.token("m2");
    let response = app
        .http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(other)
        .json(&credit("1.00"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);

    let read_only = app
        .stack
        .identity()
        .token()
        .merchant("m1")
        .scope("entries:read")
        .mint()
        .expect("token");
    let response = app
        .http
        .post(format!("{}/v1/merchants/m1/entries", app.address))
        .bearer_auth(&read_only)
        .json(&credit("1.00"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);

    let today = cashflow_contracts::business_date::format(
        ledger::entries::today(&Default::default()).expect("today"),
    );
    let write_only = app
        .stack
        .identity()
        .token()
        .merchant("m1")
        .scope("entries:write")
        .mint()
        .expect("token");
    let response = app
        .http
        .get(format!(
            "{}/v1/merchants/m1/entries?date={today}",
            app.address
        ))
        .bearer_auth(&write_only)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403);
    assert_eq!(app.entry_count().await, 0);
}
