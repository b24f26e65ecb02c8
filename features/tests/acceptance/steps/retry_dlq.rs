//! Step definitions of `retry_dlq.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[given(
    expr = "the consolidation's database fails every write for merchant {string} as a transient error"
)]
pub(crate) async fn database_fails(w: &mut Platform, merchant: String) {
    let pool = w
        .system()
        .consolidation_scope
        .pg_pool()
        .await
        .expect("pool");
    sqlx::query(&format!(
        "CREATE FUNCTION fail_writes() RETURNS trigger AS $$ BEGIN \
           IF NEW.merchant_id = '{merchant}' THEN \
             RAISE EXCEPTION 'simulated outage' USING ERRCODE = '40001'; \
           END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
    ))
    .execute(&pool)
    .await
    .expect("function");
    sqlx::query("CREATE TRIGGER fail_writes BEFORE INSERT ON processed_events FOR EACH ROW EXECUTE FUNCTION fail_writes()")
        .execute(&pool)
        .await
        .expect("trigger");
}

#[when("the consolidation's database recovers")]
pub(crate) async fn database_recovers(w: &mut Platform) {
    let pool = w
        .system()
        .consolidation_scope
        .pg_pool()
        .await
        .expect("pool");
    sqlx::query("DROP TRIGGER fail_writes ON processed_events")
        .execute(&pool)
        .await
        .expect("drop");
}

#[then("the consolidation retries it with a growing backoff")]
pub(crate) async fn retries_growing(w: &mut Platform) {
    let seen = w
        .system()
        .consolidation_retries(2, Duration::from_secs(30))
        .await
        .expect("two retries within 30 s");
    assert_eq!(
        (seen[0].receive_count, seen[1].receive_count),
        (1, 2),
        "{seen:?}"
    );
    assert!(seen[1].delay >= seen[0].delay, "{seen:?}");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(900),
        "waited the backoff: {seen:?}"
    );
}

pub(crate) async fn dlq_listing(w: &Platform) -> Value {
    let system = w.system();
    let admin = system.token("ops", &["admin"]).expect("token");
    system
        .http()
        .get(format!("{}/v1/admin/dlq", system.consolidation_url()))
        .bearer_auth(admin)
        .send()
        .await
        .expect("GET dlq")
        .json()
        .await
        .expect("json")
}

#[then(regex = r#"^the DLQ holds 1 message with reason "([^"]*)"$"#)]
pub(crate) async fn dlq_holds(w: &mut Platform, reason: String) {
    let listing = harness::eventually(Duration::from_secs(60), "a message in the DLQ", || async {
        let listing = dlq_listing(w).await;
        (listing["messages"]
            .as_array()
            .is_some_and(|m| !m.is_empty()))
        .then_some(listing)
    })
    .await;
    let messages = listing["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{listing}");
    assert_eq!(messages[0]["reason"], json!(reason), "{listing}");
}

#[when("an operator redrives the DLQ")]
pub(crate) async fn redrive(w: &mut Platform) {
    let system = w.system();
    let admin = system.token("ops", &["admin"]).expect("token");
    let result: Value = system
        .http()
        .post(format!(
            "{}/v1/admin/dlq/redrive",
            system.consolidation_url()
        ))
        .bearer_auth(admin)
        .send()
        .await
        .expect("POST redrive")
        .json()
        .await
        .expect("json");
    assert_eq!(result["redriven"], 1, "{result}");
}

pub(crate) async fn send_to_queue(w: &Platform, body: &str, event_type: Option<&str>) {
    let scope = &w.system().ledger_scope;
    let mut send = scope
        .sqs()
        .send_message()
        .queue_url(&scope.queues.url)
        .message_body(body);
    if let Some(event_type) = event_type {
        send = send.message_attributes(
            "event_type",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(event_type)
                .build()
                .expect("attribute"),
        );
    }
    send.send().await.expect("send");
}

#[when("a malformed message arrives on the queue")]
pub(crate) async fn malformed(w: &mut Platform) {
    send_to_queue(w, "{not json", None).await;
}

#[when("that entry's event is delivered again")]
pub(crate) async fn deliver_again(w: &mut Platform) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let payload: String =
        sqlx::query_scalar("SELECT payload::text FROM outbox ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("payload");
    send_to_queue(w, &payload, Some("entry.recorded.v1")).await;
}

#[then(expr = "the consolidation counted {int} duplicate")]
pub(crate) async fn duplicates(w: &mut Platform, count: u64) {
    let metrics = w.system().consolidation_metrics.clone().expect("metrics");
    // At least: on a busy machine SQS may deliver a message again after its visibility timeout
    // (at least once), which is one more duplicate. What proves nothing was counted twice is
    // the balance check that follows each use of this step.
    harness::eventually(Duration::from_secs(30), "the duplicates", || {
        let metrics = metrics.clone();
        async move { (metrics.consumer.duplicates.get() >= count).then_some(()) }
    })
    .await;
}
