//! Step definitions for the Gherkin scenarios in `tests/features`, run by `cargo test` (a
//! `harness = false` target). Scenarios share one harness stack and run concurrently; those
//! tagged `@own-stack` or `@chaos` start stacks of their own because they kill things, and
//! `@serial` ones run alone. A JUnit report is written to `target/acceptance/junit.xml`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acceptance::{Placement, System};
use aws_sdk_sqs::types::MessageAttributeValue;
use cucumber::{World, WriterExt, given, then, when, writer};
use harness::{Dependency, Fault, Stack, StackOptions, TokenFlaw};
use serde_json::{Value, json};
use time::Date;

/// One scenario's state.
#[derive(Debug, Default, World)]
pub struct Platform {
    system: Option<System>,
    /// Stacks this scenario started, shut down after it.
    own_stacks: Vec<&'static Stack>,
    merchant: String,
    last: Option<(u16, Value)>,
    answers: Vec<(u16, Value)>,
    entry_id: Option<String>,
    csv: Option<String>,
    load: Option<Load>,
    /// Every merchant this scenario wrote for.
    merchants: Vec<String>,
}

/// Entries sent at a steady rate in the background.
#[derive(Debug)]
struct Load {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Platform {
    fn system(&self) -> &System {
        self.system
            .as_ref()
            .expect("the platform is running (a Given step starts it)")
    }

    fn system_mut(&mut self) -> &mut System {
        self.system
            .as_mut()
            .expect("the platform is running (a Given step starts it)")
    }

    fn token(&self) -> String {
        self.system().full_token(&self.merchant).expect("token")
    }

    async fn start(&mut self, placement: Placement, max_receive_count: u32) {
        self.system = Some(
            System::start(placement, max_receive_count)
                .await
                .expect("platform starts"),
        );
    }

    async fn own_stack(&mut self) -> &'static Stack {
        let stack: &'static Stack = Box::leak(Box::new(
            Stack::start(StackOptions::default()).await.expect("stack"),
        ));
        self.own_stacks.push(stack);
        stack
    }

    async fn cleanup(&mut self) {
        if let Some(mut load) = self.load.take() {
            load.stop.cancel();
            if let Some(task) = load.task.take() {
                let _ = task.await;
            }
        }
        if let Some(system) = self.system.as_mut() {
            let _ = system.stop().await;
        }
        for stack in self.own_stacks.drain(..) {
            stack.shutdown().await;
        }
    }

    async fn record(&mut self, body: Value, idempotency_key: Option<&str>) {
        let system = self.system();
        let mut request = system
            .http()
            .post(format!(
                "{}/v1/merchants/{}/entries",
                system.ledger_url(),
                self.merchant
            ))
            .bearer_auth(self.token())
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 201 {
            self.entry_id = body["id"].as_str().map(str::to_string);
        }
        self.last = Some((status, body.clone()));
        self.answers.push((status, body));
    }

    async fn consistent(&self) {
        let merchants = if self.merchants.is_empty() {
            vec![self.merchant.clone()]
        } else {
            self.merchants.clone()
        };
        self.system()
            .wait_consistent(&merchants, Duration::from_secs(90))
            .await
            .expect("consistent");
    }

    async fn inject(&self, side: Side, dependency: Dependency, fault: Fault) {
        let placement = self.system().placement();
        let stack = match side {
            Side::Ledger => placement.ledger,
            Side::Consolidation => placement.consolidation,
        };
        stack
            .inject(dependency, fault)
            .await
            .expect("fault injected");
    }
}

#[derive(Clone, Copy)]
enum Side {
    Ledger,
    Consolidation,
}

fn today() -> Date {
    ledger::entries::today(&ledger::config::EntryRules::default())
}

fn day(days_ago: Option<i64>) -> Date {
    today() - time::Duration::days(days_ago.unwrap_or(0))
}

fn format(date: Date) -> String {
    cashflow_contracts::business_date::format(date)
}

/// "today" or "N days ago".
fn parse_day(text: &str) -> Date {
    if text == "today" {
        return today();
    }
    let days: i64 = text
        .trim_end_matches(" days ago")
        .parse()
        .expect("N days ago");
    day(Some(days))
}

// ---------------------------------------------------------------- platform

#[given("the platform is running")]
async fn platform_running(w: &mut Platform) {
    let shared = harness::shared().await.expect("shared stack");
    w.start(
        Placement {
            ledger: shared,
            consolidation: shared,
        },
        5,
    )
    .await;
}

#[given(expr = "the platform is running with maxReceiveCount {int}")]
async fn platform_running_with(w: &mut Platform, max_receive_count: u32) {
    let shared = harness::shared().await.expect("shared stack");
    w.start(
        Placement {
            ledger: shared,
            consolidation: shared,
        },
        max_receive_count,
    )
    .await;
}

#[given("the platform is running on a stack of its own")]
async fn platform_own_stack(w: &mut Platform) {
    let stack = w.own_stack().await;
    w.start(
        Placement {
            ledger: stack,
            consolidation: stack,
        },
        5,
    )
    .await;
}

#[given("the platform is running on stacks of its own, the ledger's database apart")]
async fn platform_two_stacks(w: &mut Platform) {
    let ledger = w.own_stack().await;
    let consolidation = w.own_stack().await;
    w.start(
        Placement {
            ledger,
            consolidation,
        },
        10,
    )
    .await;
}

#[given(expr = "I am merchant {string}")]
async fn i_am(w: &mut Platform, merchant: String) {
    w.merchant = merchant;
}

// ---------------------------------------------------------------- recording

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" described as "([^"]*)"$"#)]
async fn record_described(w: &mut Platform, kind: String, amount: String, description: String) {
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL", "description": description}),
        None,
    )
    .await;
}

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" with Idempotency-Key "([^"]*)"$"#)]
async fn record_with_key(w: &mut Platform, kind: String, amount: String, key: String) {
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL"}),
        Some(&key),
    )
    .await;
}

#[when(regex = r#"^I record a (credit|debit) of "([^"]*)" dated (.+)$"#)]
async fn record_dated(w: &mut Platform, kind: String, amount: String, when: String) {
    let date = format(parse_day(&when));
    w.record(
        json!({"kind": kind, "amount": amount, "currency": "BRL", "business_date": date}),
        None,
    )
    .await;
    assert_eq!(w.last.as_ref().map(|l| l.0), Some(201), "{:?}", w.last);
}

#[given(regex = r#"^I recorded a (credit|debit) of "([^"]*)" (today|\d+ days ago)$"#)]
async fn recorded(w: &mut Platform, kind: String, amount: String, when: String) {
    record_dated(w, kind, amount, when).await;
}

#[when(regex = r"^I record the entry (.+)$")]
async fn record_raw(w: &mut Platform, body: String) {
    let body: Value = serde_json::from_str(&body).expect("the table holds JSON");
    w.record(body, None).await;
}

#[when(regex = r#"^I record (\d+) credits of "([^"]*)"$"#)]
async fn record_many(w: &mut Platform, count: usize, amount: String) {
    for _ in 0..count {
        w.record(
            json!({"kind": "credit", "amount": amount, "currency": "BRL"}),
            None,
        )
        .await;
    }
}

#[then(expr = "the answer is {int}")]
async fn answer_is(w: &mut Platform, status: u16) {
    let (got, body) = w.last.as_ref().expect("a request was made");
    assert_eq!(*got, status, "{body}");
}

#[then("every answer was 201")]
async fn every_answer_201(w: &mut Platform) {
    assert!(!w.answers.is_empty());
    for (status, body) in &w.answers {
        assert_eq!(*status, 201, "{body}");
    }
}

#[then(expr = "the problem names the field {string}")]
async fn problem_names(w: &mut Platform, field: String) {
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
async fn ledger_holds(w: &mut Platform, count: i64) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM entries")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, count);
}

#[then(regex = r#"^the entry reads back with amount "([^"]*)" and kind "([^"]*)"$"#)]
async fn reads_back(w: &mut Platform, amount: String, kind: String) {
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
async fn same_entry(w: &mut Platform) {
    assert_eq!(w.answers.len(), 2);
    assert_eq!(w.answers[0], w.answers[1]);
    assert_eq!(w.answers[0].0, 201);
}

#[when(regex = r"^I reverse that entry( again)?$")]
async fn reverse(w: &mut Platform, _again: String) {
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
async fn reversal_is(w: &mut Platform, amount: String) {
    let (_, body) = w.last.as_ref().expect("reversed");
    assert_eq!(
        (body["kind"].as_str(), body["amount"].as_str()),
        (Some("debit"), Some(amount.as_str()))
    );
    assert!(body["reverses_entry_id"].is_string());
}

// ---------------------------------------------------------------- balances

#[given("the consolidation has caught up")]
#[when("the consolidation has caught up")]
async fn caught_up(w: &mut Platform) {
    w.consistent().await;
}

#[then("every balance equals the ledger's sums")]
async fn every_balance(w: &mut Platform) {
    w.consistent().await;
}

async fn balance(w: &Platform, when: &str) -> Value {
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
async fn balance_full(
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
async fn balance_open_close(w: &mut Platform, when: String, opening: String, closing: String) {
    let b = balance(w, &when).await;
    assert_eq!(
        [&b["opening_balance"], &b["closing_balance"]],
        [&json!(opening), &json!(closing)],
        "{b}"
    );
}

#[given(regex = r#"^the balance of (today|\d+ days ago) has closing "([^"]*)"$"#)]
#[then(regex = r#"^the balance of (today|\d+ days ago) has closing "([^"]*)"$"#)]
async fn balance_close(w: &mut Platform, when: String, closing: String) {
    let b = balance(w, &when).await;
    assert_eq!(b["closing_balance"], json!(closing), "{b}");
}

#[when(regex = r"^I ask for the report from (\d+ days ago|today) to (today) as CSV$")]
async fn report_csv(w: &mut Platform, from: String, to: String) {
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
async fn csv_days(w: &mut Platform, days: usize) {
    let csv = w.csv.as_ref().expect("a report");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with("date,currency,credits,debits,net,opening_balance,closing_balance")
    );
    assert_eq!(lines.len(), days + 1, "{csv}");
}

#[then(expr = "the CSV line for today ends with closing {string}")]
async fn csv_today(w: &mut Platform, closing: String) {
    let csv = w.csv.as_ref().expect("a report");
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format(today())))
        .expect("today's line");
    assert_eq!(line.split(',').nth(6), Some(closing.as_str()), "{line}");
}

// ---------------------------------------------------------------- security

#[when(regex = r#"^merchant "([^"]*)" records a credit with (.+)$"#)]
async fn record_with_credentials(w: &mut Platform, merchant: String, credentials: String) {
    let system = w.system();
    let identity = system.placement().ledger.identity();
    let good = || identity.token().merchant(merchant.clone());
    let token = match credentials.as_str() {
        "no token" => None,
        "an expired token" => Some(
            good()
                .scope("entries:write")
                .flaw(TokenFlaw::Expired)
                .mint(),
        ),
        "a token for another audience" => Some(
            good()
                .scope("entries:write")
                .flaw(TokenFlaw::WrongAudience)
                .mint(),
        ),
        "a token for merchant \"m2\"" => Some(
            identity
                .token()
                .merchant("m2")
                .scope("entries:write")
                .mint(),
        ),
        "a token without entries:write" => Some(good().scope("entries:read").mint()),
        other => panic!("unknown credentials: {other}"),
    };
    let mut request = system
        .http()
        .post(format!(
            "{}/v1/merchants/{merchant}/entries",
            system.ledger_url()
        ))
        .json(&json!({"kind": "credit", "amount": "1.00", "currency": "BRL"}));
    if let Some(token) = token {
        request = request.bearer_auth(token.expect("token"));
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    w.last = Some((status, response.json().await.unwrap_or(Value::Null)));
}

#[when(regex = r#"^merchant "([^"]*)" reads the balance of merchant "([^"]*)"$"#)]
async fn read_other(w: &mut Platform, reader: String, owner: String) {
    let system = w.system();
    let token = system.token(&reader, &["balances:read"]).expect("token");
    let (status, body) = system
        .balance(&owner, &token, &format(today()))
        .await
        .expect("GET");
    w.last = Some((status, body));
}

// ---------------------------------------------------------------- resilience

#[when("the consolidation service stops")]
async fn consolidation_stops(w: &mut Platform) {
    w.system_mut().stop_consolidation().await.expect("stopped");
}

#[when("the consolidation service starts again")]
async fn consolidation_starts(w: &mut Platform) {
    w.system_mut().start_consolidation().await.expect("started");
}

#[when("LocalStack is paused")]
async fn localstack_paused(w: &mut Platform) {
    w.inject(Side::Ledger, Dependency::LocalStack, Fault::Pause)
        .await;
}

#[when("LocalStack resumes")]
async fn localstack_resumes(w: &mut Platform) {
    w.inject(Side::Ledger, Dependency::LocalStack, Fault::Resume)
        .await;
}

#[then(expr = "the ledger's outbox holds {int} events")]
async fn outbox_holds(w: &mut Platform, count: i64) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(n, count);
}

#[when("Redis is killed")]
async fn redis_killed(w: &mut Platform) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Kill)
        .await;
}

#[when("Redis restarts")]
async fn redis_restarts(w: &mut Platform) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Restart)
        .await;
}

// ---------------------------------------------------------------- retry and DLQ

#[given(
    expr = "the consolidation's database fails every write for merchant {string} as a transient error"
)]
async fn database_fails(w: &mut Platform, merchant: String) {
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
async fn database_recovers(w: &mut Platform) {
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
async fn retries_growing(w: &mut Platform) {
    let retries = w
        .system_mut()
        .consolidation_retries
        .as_mut()
        .expect("retries");
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < 2 {
            let notice = retries.recv().await.expect("notice");
            seen.push(notice);
        }
    })
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

async fn dlq_listing(w: &Platform) -> Value {
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
async fn dlq_holds(w: &mut Platform, reason: String) {
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
async fn redrive(w: &mut Platform) {
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

async fn send_to_queue(w: &Platform, body: &str, event_type: Option<&str>) {
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
async fn malformed(w: &mut Platform) {
    send_to_queue(w, "{not json", None).await;
}

#[when("that entry's event is delivered again")]
async fn deliver_again(w: &mut Platform) {
    let pool = w.system().ledger_scope.pg_pool().await.expect("pool");
    let payload: String =
        sqlx::query_scalar("SELECT payload::text FROM outbox ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("payload");
    send_to_queue(w, &payload, Some("entry.recorded.v1")).await;
}

#[then(expr = "the consolidation counted {int} duplicate")]
async fn duplicates(w: &mut Platform, count: u64) {
    let metrics = w.system().consolidation_metrics.clone().expect("metrics");
    harness::eventually(Duration::from_secs(30), "the duplicate", || {
        let metrics = metrics.clone();
        async move { (metrics.consumer.duplicates.get() == count).then_some(()) }
    })
    .await;
}

// ---------------------------------------------------------------- reconciliation

#[given(expr = "the platform is running with the reconciler every {int} seconds")]
async fn platform_with_reconciler(w: &mut Platform, seconds: u64) {
    platform_running(w).await;
    let system = w.system_mut();
    system.reconcile_interval = Some(Duration::from_secs(seconds));
    // Restarted so that the new setting takes effect.
    system.stop_consolidation().await.expect("stopped");
    system.start_consolidation().await.expect("started");
}

#[when("every event is waiting in SQS")]
async fn all_in_sqs(w: &mut Platform) {
    let system = w.system();
    harness::eventually(Duration::from_secs(30), "the outbox to drain", || async {
        let pool = system.ledger_scope.pg_pool().await.ok()?;
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&pool)
                .await
                .ok()?;
        pool.close().await;
        let depth = system.queue_depth().await.ok()?;
        (backlog == 0 && depth > 0).then_some(())
    })
    .await;
}

#[when("the broker loses every message of the entries queue")]
async fn broker_loses(w: &mut Platform) {
    let system = w.system();
    system.purge_queue().await.expect("purged");
    harness::eventually(Duration::from_secs(10), "an empty queue", || async {
        (system.queue_depth().await.ok()? == 0).then_some(())
    })
    .await;
}

#[then(regex = r"^within (\d+) seconds every balance equals the ledger's sums$")]
async fn consistent_within(w: &mut Platform, seconds: u64) {
    let merchants = vec![w.merchant.clone()];
    w.system()
        .wait_consistent(&merchants, Duration::from_secs(seconds))
        .await
        .expect("consistent in time");
}

#[then(regex = r"^the reconciler found and repaired at least (\d+) merchant-days?$")]
async fn reconciler_repaired(w: &mut Platform, count: u64) {
    let metrics = w.system().consolidation_metrics.clone().expect("metrics");
    // The balances can agree a moment before the pass's re-check sees it and counts.
    harness::eventually(Duration::from_secs(30), "the repair in the metrics", || {
        let metrics = metrics.clone();
        async move {
            (metrics.reconcile.found.get() >= count && metrics.reconcile.repaired.get() >= count)
                .then_some(())
        }
    })
    .await;
}

#[when(regex = r#"^the ledger replays today's events of "([^"]*)" twice$"#)]
async fn replay_twice(w: &mut Platform, merchant: String) {
    let system = w.system();
    let token = system
        .placement()
        .ledger
        .identity()
        .token()
        .client("acceptance-operator")
        .scope("ledger:reconcile")
        .mint()
        .expect("token");
    let day = format(today());
    for _ in 0..2 {
        let response = system
            .http()
            .post(format!(
                "{}/internal/v1/replays",
                system.ledger_internal_url()
            ))
            .bearer_auth(&token)
            .json(&json!({"merchant_id": merchant, "from": day}))
            .send()
            .await
            .expect("replay");
        assert_eq!(response.status().as_u16(), 200);
    }
}

// ---------------------------------------------------------------- chaos

#[given(regex = r"^(\d+) merchants send (\d+) entries per second in total$")]
async fn start_load(w: &mut Platform, merchants: usize, rate: u64) {
    w.merchants = (0..merchants).map(|i| format!("chaos-{i}")).collect();
    let system = w.system();
    let tokens: Vec<String> = w
        .merchants
        .iter()
        .map(|m| system.full_token(m).expect("token"))
        .collect();
    let (http, url) = (system.http().clone(), system.ledger_url().to_string());
    let merchants_list = w.merchants.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (sent2, failed2, stop2) = (Arc::clone(&sent), Arc::clone(&failed), stop.clone());
    let task = tokio::spawn(async move {
        // Pacing, not waiting: one request every 1/rate s, each on its own task.
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut i: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop2.cancelled() => break,
            }
            let n = usize::try_from(i).unwrap_or_default() % merchants_list.len();
            let body = json!({
                "kind": if i.is_multiple_of(4) { "debit" } else { "credit" },
                "amount": format!("{}.{:02}", 1 + i % 97, i % 100),
                "currency": "BRL",
                "business_date": format(day(Some(i64::try_from(i % 3).unwrap_or_default()))),
            });
            let (http, url, token) = (
                http.clone(),
                format!("{url}/v1/merchants/{}/entries", merchants_list[n]),
                tokens[n].clone(),
            );
            let (sent, failed) = (Arc::clone(&sent2), Arc::clone(&failed2));
            in_flight.spawn(async move {
                sent.fetch_add(1, Ordering::Relaxed);
                match http.post(url).bearer_auth(token).json(&body).send().await {
                    Ok(r) if r.status() == 201 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            i += 1;
        }
        while in_flight.join_next().await.is_some() {}
    });
    w.load = Some(Load {
        stop,
        task: Some(task),
        sent,
        failed,
    });
}

async fn hold(seconds: u64) {
    // Keeps the fault in place while the load runs: the duration is the scenario, not a wait.
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[when(regex = r"^the consolidation's PostgreSQL is killed for (\d+) seconds and restarted$")]
async fn kill_postgres(w: &mut Platform, seconds: u64) {
    w.inject(Side::Consolidation, Dependency::Postgres, Fault::Kill)
        .await;
    hold(seconds).await;
    w.inject(Side::Consolidation, Dependency::Postgres, Fault::Restart)
        .await;
}

#[when(regex = r"^Redis is killed for (\d+) seconds and restarted$")]
async fn kill_redis(w: &mut Platform, seconds: u64) {
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Kill)
        .await;
    hold(seconds).await;
    w.inject(Side::Consolidation, Dependency::Redis, Fault::Restart)
        .await;
}

#[when(regex = r"^LocalStack is paused for (\d+) seconds and resumed$")]
async fn pause_localstack(w: &mut Platform, seconds: u64) {
    w.inject(Side::Ledger, Dependency::LocalStack, Fault::Pause)
        .await;
    hold(seconds).await;
    w.inject(Side::Ledger, Dependency::LocalStack, Fault::Resume)
        .await;
}

#[when(regex = r"^the consolidation service is killed for (\d+) seconds and restarted$")]
async fn kill_consolidation(w: &mut Platform, seconds: u64) {
    w.system_mut().kill_consolidation();
    hold(seconds).await;
    w.system_mut()
        .start_consolidation()
        .await
        .expect("restarted");
}

#[when("the load stops")]
async fn load_stops(w: &mut Platform) {
    let load = w.load.as_mut().expect("load");
    load.stop.cancel();
    if let Some(task) = load.task.take() {
        task.await.expect("load task");
    }
}

#[then("the ledger answered every request with 201")]
async fn ledger_answered(w: &mut Platform) {
    let load = w.load.as_ref().expect("load");
    let (sent, failed) = (
        load.sent.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
    );
    println!("chaos: {sent} entries sent, {failed} not answered 201");
    assert!(sent > 0);
    assert_eq!(failed, 0);
}

#[then("for every merchant and day the consolidated totals equal the ledger's sums")]
async fn chaos_consistent(w: &mut Platform) {
    let system = w.system();
    let result = system
        .wait_consistent(&w.merchants, Duration::from_secs(120))
        .await;
    // Lost and double-counted entries, counted per merchant and day, for the report.
    let (mut entries, mut lost, mut double) = (0i64, 0i64, 0i64);
    for merchant in &w.merchants {
        let ledger = system.ledger_net_by_day(merchant).await.expect("ledger");
        let consolidated = system
            .consolidated_by_day(merchant)
            .await
            .expect("consolidated");
        for (date, (_, _, count)) in &ledger {
            entries += count;
            let counted = consolidated.get(date).map_or(0, |c| c.2);
            lost += (count - counted).max(0);
            double += (counted - count).max(0);
        }
    }
    println!("chaos: {entries} entries in the ledger, {lost} lost, {double} double-counted");
    result.expect("consistent");
}

#[tokio::main]
async fn main() {
    let features = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/features");
    let report_dir = harness::paths::target_dir().join("acceptance");
    std::fs::create_dir_all(&report_dir).expect("report folder");
    let junit = std::fs::File::create(report_dir.join("junit.xml")).expect("junit file");
    Platform::cucumber()
        .max_concurrent_scenarios(4)
        .after(|_feature, _rule, _scenario, _finished, world| {
            Box::pin(async move {
                if let Some(world) = world {
                    world.cleanup().await;
                }
            })
        })
        .with_writer(
            writer::Basic::raw(std::io::stdout(), writer::Coloring::Never, 0)
                .summarized()
                .tee::<Platform, _>(writer::JUnit::for_tee(junit, 0))
                .normalized(),
        )
        .fail_on_skipped()
        .run_and_exit(features)
        .await;
}
