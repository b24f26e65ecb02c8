//! Group commit (ADR 0012): concurrent requests written in one statement and one commit keep
//! every guarantee of a request written alone. Each test forms a batch for certain: the writer
//! runs one batch at a time, a first request's batch is held on a row lock the test takes, and
//! the requests sent meanwhile queue (the `ledger_write_queued` gauge says when) and are then
//! written together as one batch.

use std::time::{Duration, Instant};

use ledger::config::WriteBatchConfig;
use serde_json::Value;
use sqlx::{Postgres, Transaction};

use crate::helpers::{TestApp, credit};
use testkit::probe::Served;

/// A ledger writing one batch at a time.
async fn one_batch_at_a_time(adjust: impl FnOnce(&mut ledger::Config)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.write_batch = WriteBatchConfig {
            max_in_flight: 1,
            ..WriteBatchConfig::default()
        };
        adjust(config);
    })
    .await
}

/// The value of an unlabelled metric.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.scrape().await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

async fn post(app: &TestApp, merchant: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let mut request = app
        .http
        .post(format!("{}/v1/merchants/{merchant}/entries", app.address))
        .bearer_auth(app.token(merchant))
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Holds the writer: locks the digest row of merchant `blocker` (recording one entry for it
/// first), then sends a request for `blocker`, whose batch waits on the lock. Returns the
/// lock's transaction (commit it to release the writer) and the held request.
async fn hold_the_writer(
    app: &TestApp,
) -> (
    Transaction<'static, Postgres>,
    tokio::task::JoinHandle<(u16, Value)>,
) {
    assert_eq!(post(app, "blocker", &credit("1.00"), None).await.0, 201);
    let mut lock = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM day_digests WHERE merchant_id = 'blocker' FOR UPDATE")
        .execute(&mut *lock)
        .await
        .expect("lock the digest row");
    let held = {
        let (http, address, token) = (app.http.clone(), app.address.clone(), app.token("blocker"));
        tokio::spawn(async move {
            let response = http
                .post(format!("{address}/v1/merchants/blocker/entries"))
                .bearer_auth(token)
                .json(&credit("2.00"))
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    };
    harness::eventually(
        Duration::from_secs(10),
        "the first batch waiting on the lock",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&app.pool)
            .await
            .expect("activity");
            (waiting >= 1).then_some(())
        },
    )
    .await;
    (lock, held)
}

/// Waits until `n` requests are queued behind the held batch.
async fn queued(app: &TestApp, n: usize) {
    harness::eventually(Duration::from_secs(10), "requests queued", || async {
        (metric(app, "ledger_write_queued").await >= n as f64).then_some(())
    })
    .await;
}

fn sends(
    app: &TestApp,
    requests: Vec<(String, Value, Option<String>)>,
) -> Vec<tokio::task::JoinHandle<(u16, Value)>> {
    requests
        .into_iter()
        .map(|(merchant, body, key)| {
            let (http, address, token) =
                (app.http.clone(), app.address.clone(), app.token(&merchant));
            tokio::spawn(async move {
                let mut request = http
                    .post(format!("{address}/v1/merchants/{merchant}/entries"))
                    .bearer_auth(token)
                    .json(&body);
                if let Some(key) = key {
                    request = request.header("Idempotency-Key", key);
                }
                let response = request.send().await.expect("send");
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            })
        })
        .collect()
}

async fn answers(handles: Vec<tokio::task::JoinHandle<(u16, Value)>>) -> Vec<(u16, Value)> {
    let mut answers = Vec::new();
    for handle in handles {
        answers.push(handle.await.expect("request task"));
    }
    answers
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

/// Asserts that every merchant-day's digest row equals its entries (the trigger maintaining
/// them runs once per statement, so once per batch).
async fn digests_match_the_entries(app: &TestApp) {
    let differing = count(
        app,
        "SELECT count(*) FROM ( \
           SELECT business_date, merchant_id, count(*) AS n, \
             COALESCE(sum(amount_minor) FILTER (WHERE kind = 'credit'), 0) AS credits, \
             COALESCE(sum(amount_minor) FILTER (WHERE kind = 'debit'), 0) AS debits, \
             bit_xor(entry_id_hash(id)) AS checksum \
           FROM entries GROUP BY business_date, merchant_id) e \
         FULL JOIN day_digests d USING (business_date, merchant_id) \
         WHERE e.n IS DISTINCT FROM d.entry_count OR e.credits IS DISTINCT FROM d.credits_minor \
           OR e.debits IS DISTINCT FROM d.debits_minor OR e.checksum IS DISTINCT FROM d.checksum",
    )
    .await;
    assert_eq!(
        differing, 0,
        "merchant-days whose digest differs from their entries"
    );
}

#[tokio::test]
async fn a_batch_the_database_refuses_fails_only_the_guilty_request_and_no_entry_lacks_its_event() {
    let app = one_batch_at_a_time(|_| {}).await;
    // One row the database refuses, on the outbox side: its entry must not stay behind.
    sqlx::query(
        "ALTER TABLE outbox ADD CONSTRAINT test_refuses_1313 \
         CHECK (payload ->> 'amount_minor' <> '1313')",
    )
    .execute(&app.pool)
    .await
    .expect("constraint");
    let (lock, held) = hold_the_writer(&app).await;
    let mut requests: Vec<_> = (1..=15)
        .map(|i| ("m1".to_string(), credit(&format!("{i}.00")), None))
        .collect();
    requests.insert(7, ("m2".to_string(), credit("13.13"), None));
    let handles = sends(&app, requests);
    queued(&app, 16).await;
    lock.commit().await.expect("release the writer");

    assert_eq!(held.await.expect("held").0, 201);
    let answers = answers(handles).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        if i == 7 {
            assert_eq!(*status, 500, "the guilty request gets its error: {body}");
        } else {
            assert_eq!(*status, 201, "an innocent request of the batch: {body}");
        }
    }
    assert_eq!(
        metric(&app, "ledger_write_batches_retried_alone_total").await,
        1.0,
        "the 16 were one batch, refused once"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries WHERE merchant_id = 'm2'"
        )
        .await,
        0,
        "the refused event took its entry with it"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries WHERE merchant_id = 'm1'"
        )
        .await,
        15
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries e JOIN outbox o ON o.event_id = e.event_id \
             WHERE e.merchant_id = 'm1'"
        )
        .await,
        15,
        "each entry with its event"
    );
    digests_match_the_entries(&app).await;
}

#[tokio::test]
async fn no_201_before_the_commit_even_when_the_commit_itself_fails() {
    let app = one_batch_at_a_time(|_| {}).await;
    // Refused at COMMIT, not by the statement: an answer sent before the commit would be a
    // 201 for an entry that does not exist.
    sqlx::raw_sql(
        "CREATE FUNCTION test_refuse_1313() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.amount_minor = 1313 THEN RAISE EXCEPTION 'refused at commit'; END IF; \
         RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER test_refuse_1313 AFTER INSERT ON entries \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_1313();",
    )
    .execute(&app.pool)
    .await
    .expect("trigger");
    let (lock, held) = hold_the_writer(&app).await;
    // With keys: their claims must not outlive the refused commit either.
    let requests: Vec<_> = (1..=8)
        .map(|i| {
            let amount = if i == 5 {
                "13.13".to_string()
            } else {
                format!("{i}.00")
            };
            ("m1".to_string(), credit(&amount), Some(format!("key-{i}")))
        })
        .collect();
    let handles = sends(&app, requests);
    queued(&app, 8).await;
    lock.commit().await.expect("release the writer");
    assert_eq!(held.await.expect("held").0, 201);
    let answers = answers(handles).await;
    for (i, (status, body)) in answers.iter().enumerate() {
        if i == 4 {
            assert_ne!(*status, 201, "refused at commit, so no 201: {body}");
            continue;
        }
        assert_eq!(*status, 201, "{body}");
        let id = body["id"].as_str().expect("id");
        let read = app
            .http
            .get(format!("{}/v1/merchants/m1/entries/{id}", app.address))
            .bearer_auth(app.token("m1"))
            .send()
            .await
            .expect("get");
        assert_eq!(read.status(), 200, "every 201 is committed");
    }
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries WHERE amount_minor = 1313"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM idempotency_keys WHERE idempotency_key = 'key-5'"
        )
        .await,
        0,
        "the refused request's key is free"
    );
}

#[tokio::test]
async fn keys_repeated_within_one_batch_are_written_once_and_replayed() {
    let app = one_batch_at_a_time(|_| {}).await;
    assert_eq!(
        post(&app, "m1", &credit("7.00"), Some("earlier")).await.0,
        201,
        "a key from an earlier batch"
    );
    let (lock, held) = hold_the_writer(&app).await;
    let same = credit("1.00");
    let handles = sends(
        &app,
        vec![
            ("m1".into(), same.clone(), Some("k".into())),
            ("m1".into(), same.clone(), Some("k".into())),
            ("m1".into(), credit("2.00"), Some("k".into())),
            ("m2".into(), same.clone(), Some("k".into())),
            ("m1".into(), credit("7.00"), Some("earlier".into())),
            ("m1".into(), credit("8.00"), Some("earlier".into())),
            ("m1".into(), same.clone(), None),
        ],
    );
    queued(&app, 7).await;
    lock.commit().await.expect("release the writer");
    assert_eq!(held.await.expect("held").0, 201);
    let answers = answers(handles).await;
    assert_eq!(answers[0].0, 201);
    assert_eq!(
        answers[1], answers[0],
        "same key and body: the first answer"
    );
    assert_eq!(answers[2].0, 422, "same key, another body");
    assert_eq!(
        answers[2].1["type"],
        "https://cashflow.dev/problems/idempotency-key-reused"
    );
    assert_eq!(
        answers[3].0, 201,
        "the same key of another merchant is another key"
    );
    assert_ne!(answers[3].1["id"], answers[0].1["id"]);
    assert_eq!(answers[4].0, 201, "the earlier batch's answer replayed");
    assert_eq!(answers[5].0, 422);
    assert_eq!(answers[6].0, 201, "no key: a new entry");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries WHERE merchant_id IN ('m1', 'm2')"
        )
        .await,
        4,
        "earlier, k for m1, k for m2, the unkeyed one"
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM outbox").await,
        count(&app, "SELECT count(*) FROM entries").await
    );
    assert_eq!(
        metric(&app, "ledger_write_batches_retried_alone_total").await,
        0.0,
        "the repeated key never reached the database twice in one statement"
    );
    digests_match_the_entries(&app).await;
}

#[tokio::test]
async fn a_request_waiting_for_its_batch_past_the_request_deadline_gets_503_and_is_not_written() {
    let deadline = Duration::from_millis(1_500);
    let app = one_batch_at_a_time(|config| {
        config.deadlines.request = deadline;
    })
    .await;
    let (lock, held) = hold_the_writer(&app).await;
    let started = Instant::now();
    let waiting = sends(&app, vec![("m1".into(), credit("3.00"), None)]);
    queued(&app, 1).await;
    let answers = answers(waiting).await;
    let took = started.elapsed();
    assert_eq!(answers[0].0, 503, "{:?}", answers[0].1);
    assert!(
        took < deadline * 2,
        "answered at the request deadline ({took:?})"
    );
    assert_eq!(
        held.await.expect("held").0,
        503,
        "the held batch's caller too"
    );
    lock.commit().await.expect("release the writer");
    // Batches go in queue order, one at a time: once a later request is answered, the
    // abandoned one's turn has passed.
    assert_eq!(post(&app, "m2", &credit("4.00"), None).await.0, 201);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM entries WHERE merchant_id = 'm1'"
        )
        .await,
        0,
        "the caller left before its batch started: nothing written"
    );
    assert_eq!(
        metric(&app, "ledger_write_requests_abandoned_total").await,
        1.0
    );
}

#[tokio::test]
async fn shutdown_writes_the_requests_queued_for_a_batch_before_it_returns() {
    let app = one_batch_at_a_time(|_| {}).await;
    let (lock, held) = hold_the_writer(&app).await;
    let handles = sends(
        &app,
        (1..=10)
            .map(|i| ("m1".to_string(), credit(&format!("{i}.00")), None))
            .collect(),
    );
    queued(&app, 10).await;
    let pool = app.pool.clone();
    // Polled once, `stop` has cancelled the shutdown token: the shutdown has begun while the
    // requests wait for their batch.
    let mut stopping = Box::pin(app.stop());
    assert!(futures::poll!(&mut stopping).is_pending(), "draining");
    let stopping = tokio::spawn(stopping);
    lock.commit().await.expect("release the writer");
    stopping.await.expect("stopped");
    assert_eq!(held.await.expect("held").0, 201);
    for (status, body) in answers(handles).await {
        assert_eq!(status, 201, "{body}");
    }
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM entries WHERE merchant_id = 'm1'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(written, 10);
}

#[tokio::test]
async fn a_lone_request_does_not_wait_for_a_batch_to_fill() {
    let app = TestApp::spawn_with(|config| {
        config.write_batch = WriteBatchConfig {
            max_wait: Duration::from_secs(1),
            ..WriteBatchConfig::default()
        };
    })
    .await;
    assert_eq!(post(&app, "m1", &credit("1.00"), None).await.0, 201);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(post(&app, "m1", &credit("1.00"), None).await.0, 201);
        let took = started.elapsed();
        // Waiting for a batch would take the whole second.
        assert!(
            took < Duration::from_secs(1),
            "written at once, not after WRITE_BATCH_MAX_WAIT_MS ({took:?})"
        );
    }
}

#[tokio::test]
async fn a_panicking_writer_is_restarted_and_recording_resumes() {
    let app = TestApp::spawn().await;
    assert_eq!(post(&app, "m1", &credit("1.00"), None).await.0, 201);
    assert!(app.supervisor.inject_panic(ledger::startup::WRITER_TASK));
    harness::eventually(Duration::from_secs(5), "the writer restarted", || async {
        (app.supervisor.restarts(ledger::startup::WRITER_TASK) >= 1).then_some(())
    })
    .await;
    assert_eq!(post(&app, "m1", &credit("2.00"), None).await.0, 201);
    assert_eq!(app.entry_count().await, 2);
}
