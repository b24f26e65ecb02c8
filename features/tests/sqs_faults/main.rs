//! The SQS fault matrix: the relay and the consumer, both services running, under each way SQS
//! fails as AWS documents it (the harness's SQS fault layer, ADR 0018). Each cell is a test
//! named by its expected outcome, on a system and a queue pair of its own, so cells run in
//! parallel and on either emulator (LocalStack under `make test`, moto under `make test-other`).
//! Every cell ends with the invariant, read through both services' HTTP APIs: for every merchant
//! and day the consolidated totals equal the ledger's, and the consumer applied each event once.
//!
//! | fault | on | expected outcome (cell) |
//! |---|---|---|
//! | none | — | baseline: every event once ([`no_fault_every_event_counted_once`]) |
//! | some entries of a batch failed | SendMessageBatch | the failed events are sent again ([`relay`]) |
//! | answer lost after the send | SendMessageBatch | the duplicate on the queue counts once ([`relay`]) |
//! | throttling | SendMessageBatch, ReceiveMessage | backoff (no hot loop), the backlog drains ([`relay`], [`consumer`]) |
//! | InternalFailure, ServiceUnavailable | SendMessageBatch, ReceiveMessage | sent or received again ([`relay`], [`consumer`]) |
//! | latency on one operation | ReceiveMessage | everything arrives ([`consumer`]) |
//! | duplicate or reordered delivery | ReceiveMessage | each event counted once ([`consumer`]) |
//! | failed delete (transient) | DeleteMessageBatch | sent again: no redelivery ([`consumer`]) |
//! | invalid receipt handle, lost delete answer | DeleteMessageBatch | redelivered, counted once ([`consumer`]) |
//! | failed ChangeMessageVisibility | ChangeMessageVisibility | the retry still ends in the DLQ after maxReceiveCount, no loop ([`consumer`]) |
//! | a slow batch | (PostgreSQL) | the heartbeat keeps it hidden: delivered once ([`consumer`]) |
//! | a slow batch, heartbeat failing | ChangeMessageVisibilityBatch | delivered again, counted once ([`consumer`]) |
//! | a consumer killed holding messages | — | they come back within seconds ([`consumer`]) |
//! | poison under throttling, failed deletes, duplicates | all | it still reaches the DLQ ([`dlq`]) |
//! | throttling during a redrive | DLQ and queue | the redrive completes ([`dlq`]) |

mod consumer;
mod dlq;
mod relay;

use std::time::{Duration, Instant};

use harness::sqs_faults::{Operation, QueueFaults};
use serde_json::{Value, json};
use testkit::{Placement, System};

/// How long a cell waits for the invariant once its fault is over.
const SETTLE: Duration = Duration::from_secs(60);

/// One cell: both services on fresh scopes, the entries queue's faults, two merchants.
pub(crate) struct Cell {
    pub(crate) stack: &'static harness::Stack,
    pub(crate) system: System,
    /// The entries queue's faults (reset when the cell ends).
    pub(crate) faults: QueueFaults,
    pub(crate) merchants: Vec<String>,
    /// Entries recorded so far.
    pub(crate) recorded: u64,
}

impl Cell {
    pub(crate) async fn start(tag: &str, max_receive_count: u32) -> Self {
        let stack = harness::shared().await.expect("harness stack");
        let system = System::start(
            Placement {
                ledger: stack,
                consolidation: stack,
            },
            max_receive_count,
        )
        .await
        .expect("system");
        let faults = stack.sqs_faults().queue(&system.ledger_scope.queues.name);
        let run = &uuid::Uuid::new_v4().simple().to_string()[..6];
        Self {
            stack,
            system,
            faults,
            merchants: (0..2).map(|i| format!("sf-{tag}-{run}-{i}")).collect(),
            recorded: 0,
        }
    }

    /// The faults of the scope's DLQ.
    pub(crate) fn dlq_faults(&self) -> QueueFaults {
        self.stack
            .sqs_faults()
            .queue(&self.system.ledger_scope.queues.dlq_name)
    }

    /// Records `per_merchant` credits and debits for each merchant; every answer 201 (the
    /// ledger never waits for SQS).
    pub(crate) async fn record(&mut self, per_merchant: usize) {
        for merchant in &self.merchants {
            let token = self.system.full_token(merchant).expect("token");
            for i in 0..per_merchant {
                let body = json!({
                    "kind": if i % 3 == 2 { "debit" } else { "credit" },
                    "amount": format!("{}.{:02}", 1 + i, i % 100),
                    "currency": "BRL",
                });
                let (status, answer) = self
                    .system
                    .record(merchant, &token, &body)
                    .await
                    .expect("post");
                assert_eq!(status, 201, "{answer}");
                self.recorded += 1;
            }
        }
    }

    /// The consumer's counters of the running consolidation.
    pub(crate) fn consumer(&self) -> &consolidation::metrics::ConsumerMetrics {
        &self
            .system
            .consolidation_metrics
            .as_ref()
            .expect("consolidation metrics")
            .consumer
    }

    /// The invariant: every balance equals the ledger's sums (HTTP, cache included), and the
    /// consumer applied exactly as many events as were recorded.
    pub(crate) async fn consistent(&self) {
        self.system
            .wait_consistent(&self.merchants, SETTLE)
            .await
            .expect("every merchant-day's balance equals the ledger's sums");
        assert_eq!(
            self.consumer().applied.get(),
            self.recorded,
            "each recorded event applied exactly once"
        );
    }

    /// The invariant once more entries went through: a duplicate that arrived late changes no
    /// balance a fresh event does not then invalidate in the cache, so a double count could
    /// hide behind a cached answer until the next entry of that merchant.
    pub(crate) async fn consistent_after_more_entries(&mut self) {
        self.record(1).await;
        self.consistent().await;
    }

    /// Waits until the entries queue holds nothing, visible or in flight.
    pub(crate) async fn drained(&self) {
        harness::eventually(SETTLE, "an empty entries queue", || async {
            (self.system.queue_depth().await.ok()? == 0).then_some(())
        })
        .await;
    }

    /// Waits until the layer refused `count` requests of `operation` on the entries queue, and
    /// returns how many it refused per second since `since`.
    pub(crate) async fn refusal_rate(
        &self,
        operation: Operation,
        count: u64,
        since: Instant,
    ) -> f64 {
        let elapsed =
            harness::eventually(Duration::from_secs(90), "the refused requests", || async {
                let refused = self
                    .faults
                    .requests()
                    .get(&operation)
                    .map_or(0, |c| c.faulted);
                (refused >= count).then(|| since.elapsed())
            })
            .await;
        count as f64 / elapsed.as_secs_f64()
    }

    /// Prints the SQS requests each event cost on the entries queue (for the report).
    pub(crate) fn report(&self, cell: &str) {
        let requests = self.faults.requests();
        let events = self.recorded.max(1) as f64;
        let per_event = |op: Operation| requests.get(&op).map_or(0, |c| c.requests) as f64 / events;
        eprintln!(
            "sqs-faults: {cell}: {} events; per event: SendMessageBatch {:.2}, ReceiveMessage \
             {:.2}, DeleteMessageBatch {:.2}, ChangeMessageVisibility(Batch) {:.2}",
            self.recorded,
            per_event(Operation::SendMessageBatch),
            per_event(Operation::ReceiveMessage),
            per_event(Operation::DeleteMessageBatch),
            per_event(Operation::ChangeMessageVisibility)
                + per_event(Operation::ChangeMessageVisibilityBatch),
        );
    }

    /// The DLQ as the admin API lists it.
    pub(crate) async fn dlq_listing(&self) -> Value {
        let admin = self.system.token("ops", &["admin"]).expect("token");
        self.system
            .http()
            .get(format!("{}/v1/admin/dlq", self.system.consolidation_url()))
            .bearer_auth(admin)
            .send()
            .await
            .expect("GET dlq")
            .json()
            .await
            .expect("json")
    }

    /// Waits until the DLQ lists at least `count` messages; returns their reasons.
    pub(crate) async fn dlq_holds(&self, count: usize) -> Vec<String> {
        harness::eventually(SETTLE, "messages in the DLQ", || async {
            let listing = self.dlq_listing().await;
            let messages = listing["messages"].as_array()?;
            (messages.len() >= count).then(|| {
                messages
                    .iter()
                    .map(|m| m["reason"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
        })
        .await
    }

    /// Runs SQL on the consolidation's database (triggers that make writes fail or slow).
    pub(crate) async fn consolidation_sql(&self, statements: &[&str]) {
        let pool = self
            .system
            .consolidation_scope
            .pg_pool()
            .await
            .expect("pool");
        for statement in statements {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        pool.close().await;
    }

    /// Every write of the cell's first merchant fails as a transient error (serialization
    /// failure), until [`Cell::writes_recover`].
    pub(crate) async fn writes_fail_for_first_merchant(&self) {
        let merchant = &self.merchants[0];
        self.consolidation_sql(&[
            &format!(
                "CREATE FUNCTION fail_writes() RETURNS trigger AS $$ BEGIN \
                   IF NEW.merchant_id = '{merchant}' THEN \
                     RAISE EXCEPTION 'simulated outage' USING ERRCODE = '40001'; \
                   END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER fail_writes BEFORE INSERT ON processed_events \
             FOR EACH ROW EXECUTE FUNCTION fail_writes()",
        ])
        .await;
    }

    /// Undoes [`Cell::writes_fail_for_first_merchant`].
    pub(crate) async fn writes_recover(&self) {
        self.consolidation_sql(&["DROP TRIGGER fail_writes ON processed_events"])
            .await;
    }

    /// Every batch the consumer applies takes `seconds` more (one sleep per statement, under
    /// the statement deadline), until [`Cell::batches_fast_again`].
    pub(crate) async fn batches_slow(&self, seconds: u32) {
        self.consolidation_sql(&[
            &format!(
                "CREATE FUNCTION slow_batches() RETURNS trigger AS $$ BEGIN \
                   PERFORM pg_sleep({seconds}); RETURN NULL; END $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER slow_batches BEFORE INSERT ON processed_events \
             FOR EACH STATEMENT EXECUTE FUNCTION slow_batches()",
        ])
        .await;
    }

    /// Undoes [`Cell::batches_slow`].
    pub(crate) async fn batches_fast_again(&self) {
        self.consolidation_sql(&["DROP TRIGGER slow_batches ON processed_events"])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_fault_every_event_counted_once() {
    let mut cell = Cell::start("none", 5).await;
    cell.record(12).await;
    cell.consistent().await;
    cell.drained().await;
    assert_eq!(cell.consumer().duplicates.get(), 0);
    cell.report("no fault");
}
