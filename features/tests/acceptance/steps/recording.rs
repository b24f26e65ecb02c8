//! Step definitions of `recording.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" described as "([^"]*)"$"#)]
pub(crate) async fn record_described(
    w: &mut Platform,
    kind: String,
    amount: String,
    description: String,
) {
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL", "description": description}),
        None,
    )
    .await;
}

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" with Idempotency-Key "([^"]*)"$"#)]
pub(crate) async fn record_with_key(w: &mut Platform, kind: String, amount: String, key: String) {
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL"}),
        Some(&key),
    )
    .await;
}

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" dated (.+)$"#)]
pub(crate) async fn record_dated(w: &mut Platform, kind: String, amount: String, when: String) {
    let date = format(parse_day(&when));
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL", "business_date": date}),
        None,
    )
    .await;
    assert_eq!(w.last.as_ref().map(|l| l.0), Some(201), "{:?}", w.last);
}

#[given(regex = r#"^I recorded a (credit|debit) of "([^"]*)" (today|\d+ days ago)$"#)]
pub(crate) async fn recorded(w: &mut Platform, kind: String, amount: String, when: String) {
    record_dated(w, kind, amount, when).await;
}

#[when(regex = r"^I record the entry (.+)$")]
pub(crate) async fn record_raw(w: &mut Platform, body: String) {
    let body: Value = serde_json::from_str(&body).expect("the table holds JSON");
    w.record(body, None).await;
}

#[when(regex = r#"^I record (\d+) credits of "([^"]*)"$"#)]
pub(crate) async fn record_many(w: &mut Platform, count: usize, amount: String) {
    for _ in 0..count {
        w.record(
            json!({"kind": "credit", "amount": amount, "currency": "BRL"}),
            None,
        )
        .await;
    }
}

#[then(expr = "the answer is {int}")]
pub(crate) async fn answer_is(w: &mut Platform, status: u16) {
    let (got, body) = w.last.as_ref().expect("a request was made");
    assert_eq!(*got, status, "{body}");
}

#[then("every answer was 201")]
pub(crate) async fn every_answer_201(w: &mut Platform) {
    assert!(!w.answers.is_empty());
    for (status, body) in &w.answers {
        assert_eq!(*status, 201, "{body}");
    }
}

#[then(expr = "the problem names the field {string}")]
pub(crate) async fn problem_names(w: &mut Platform, field: String) {
    let (_, problem) = w.last.as_ref().expect("a request was made");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&field.as_str()), "{problem}");
}

#[then(expr = "the ledger holds {int} entries")]
pub(crate) async fn ledger_holds(w: &mut Platform, count: i64) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, count);
}

#[then(regex = r#"^the entry reads back with amount "([^"]*)" and kind "([^"]*)"$"#)]
pub(crate) async fn reads_back(w: &mut Platform, amount: String, kind: String) {
    let system = w.system();
    let id = w.entry_id.clone().expect("an entry was recorded");
    let entry: Value = system
        .http()
        .get(format!(
            "{}/v1/merchants/{}/entries/{id}",
            system.ledger_url(),
            w.merchant
        ))
        .bearer_auth(w.token())
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (entry["amount"].as_str(), entry["kind"].as_str()),
        (Some(amount.as_str()), Some(kind.as_str()))
    );
}

#[then("both answers are the same entry")]
pub(crate) async fn same_entry(w: &mut Platform) {
    assert_eq!(w.answers.len(), 2);
    assert_eq!(w.answers[0], w.answers[1]);
    assert_eq!(w.answers[0].0, 201);
}

#[when(regex = r"^I reverse that entry( again)?$")]
pub(crate) async fn reverse(w: &mut Platform, _again: String) {
    let system = w.system();
    let id = w
        .answers
        .iter()
        .find(|(s, b)| *s == 201 && b["reverses_entry_id"].is_null())
        .map(|(_, b)| b["id"].clone());
    let id = id
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("an entry to reverse");
    let response = system
        .http()
        .post(format!(
            "{}/v1/merchants/{}/entries/{id}/reversal",
            system.ledger_url(),
            w.merchant
        ))
        .bearer_auth(w.token())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    w.last = Some((status, response.json().await.unwrap_or(Value::Null)));
}

#[then(expr = "the reversal is a debit of {string}")]
pub(crate) async fn reversal_is(w: &mut Platform, amount: String) {
    let (_, body) = w.last.as_ref().expect("reversed");
    assert_eq!(
        (body["kind"].as_str(), body["amount"].as_str()),
        (Some("debit"), Some(amount.as_str()))
    );
    assert!(body["reverses_entry_id"].is_string());
}
