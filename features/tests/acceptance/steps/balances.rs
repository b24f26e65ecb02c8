//! Step definitions of `balances.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[given("the consolidation has caught up")]
#[when("the consolidation has caught up")]
pub(crate) async fn caught_up(w: &mut Platform) {
    w.consistent().await;
}

#[then("every balance equals the ledger's sums")]
pub(crate) async fn every_balance(w: &mut Platform) {
    w.consistent().await;
}

pub(crate) async fn balance(w: &Platform, when: &str) -> Value {
    let (status, body) = w
        .system()
        .balance(&w.merchant, &w.token(), &format(parse_day(when)))
        .await
        .expect("GET balance");
    assert_eq!(status, 200, "{body}");
    body
}

#[then(
    regex = r#"^the balance of (today|\d+ days ago) has opening "([^"]*)", credits "([^"]*)", debits "([^"]*)" and closing "([^"]*)"$"#
)]
pub(crate) async fn balance_full(
    w: &mut Platform,
    when: String,
    opening: String,
    credits: String,
    debits: String,
    closing: String,
) {
    let b = balance(w, &when).await;
    assert_eq!(
        [
            &b["opening_balance"],
            &b["credits"],
            &b["debits"],
            &b["closing_balance"]
        ],
        [
            &json!(opening),
            &json!(credits),
            &json!(debits),
            &json!(closing)
        ],
        "{b}"
    );
}

#[then(
    regex = r#"^the balance of (today|\d+ days ago) has opening "([^"]*)" and closing "([^"]*)"$"#
)]
pub(crate) async fn balance_open_close(
    w: &mut Platform,
    when: String,
    opening: String,
    closing: String,
) {
    let b = balance(w, &when).await;
    assert_eq!(
        [&b["opening_balance"], &b["closing_balance"]],
        [&json!(opening), &json!(closing)],
        "{b}"
    );
}

#[given(regex = r#"^the balance of (today|\d+ days ago) has closing "([^"]*)"$"#)]
#[then(regex = r#"^the balance of (today|\d+ days ago) has closing "([^"]*)"$"#)]
pub(crate) async fn balance_close(w: &mut Platform, when: String, closing: String) {
    let b = balance(w, &when).await;
    assert_eq!(b["closing_balance"], json!(closing), "{b}");
}

#[when(regex = r"^I ask for the report from (\d+ days ago|today) to (today) as CSV$")]
pub(crate) async fn report_csv(w: &mut Platform, from: String, to: String) {
    let system = w.system();
    let response = system
        .http()
        .get(format!(
            "{}/v1/merchants/{}/balances?from={}&to={}",
            system.consolidation_url(),
            w.merchant,
            format(parse_day(&from)),
            format(parse_day(&to))
        ))
        .bearer_auth(w.token())
        .header("accept", "text/csv")
        .send()
        .await
        .expect("GET report");
    assert_eq!(response.status(), 200);
    w.csv = Some(response.text().await.expect("csv"));
}

#[then(expr = "the CSV has a header and {int} days")]
pub(crate) async fn csv_days(w: &mut Platform, days: usize) {
    let csv = w.csv.as_ref().expect("a report");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("date,currency,credits,debits,net,opening_balance,closing_balance")
    );
    assert_eq!(lines.len(), days + 1, "{csv}");
}

#[then(expr = "the CSV line for today ends with closing {string}")]
pub(crate) async fn csv_today(w: &mut Platform, closing: String) {
    let csv = w.csv.as_ref().expect("a report");
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format(today())))
        .expect("today's line");
    assert_eq!(line.split(',').nth(6), Some(closing.as_str()), "{line}");
}
