//! The consumer under ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibility faults,
//! slow batches and a crash.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use harness::sqs_faults::protocol::{
    INTERNAL_FAILURE, RECEIPT_HANDLE_IS_INVALID, REQUEST_THROTTLED, SERVICE_UNAVAILABLE,
};
use harness::sqs_faults::{Action, Operation, Rule};

use crate::Cell;

/// Highest ReceiveMessage rate a throttled consumer may keep up (requests/s, its SDK retries
/// included). Its two poll loops back off (0.4 s doubling to 5 s) after the SDK's three
/// attempts: about 2/s over the first refusals; without that backoff, only the SDK's spacing is
/// left (about 4/s), and a loop ignoring refusals would make hundreds.
const THROTTLED_RECEIVE_RATE: f64 = 3.0;

/// Every message of the entries queue was delivered exactly once.
fn delivered_once(cell: &Cell) {
    let deliveries = cell.faults.deliveries();
    let twice: Vec<_> = deliveries.values().filter(|n| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} of {} messages delivered more than once",
        twice.len(),
        deliveries.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_throttled_receives_back_off_without_a_hot_loop_then_drain() {
    let mut cell = Cell::start("rthrottle", 5).await;
    let since = Instant::now();
    let rule = cell
        .faults
        .add(Rule::on(
            Operation::ReceiveMessage,
            Action::Error(REQUEST_THROTTLED),
        ))
        .expect("rule");
    cell.record(12).await;
    let rate = cell
        .refusal_rate(Operation::ReceiveMessage, 30, since)
        .await;
    eprintln!("sqs-faults: throttled consumer: {rate:.2} ReceiveMessage/s");
    assert!(
        rate <= THROTTLED_RECEIVE_RATE,
        "the consumer backs off while throttled: {rate:.2} requests/s"
    );
    cell.faults.remove(rule);
    cell.consistent().await;
    cell.report("ReceiveMessage throttled, then healed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_receive_internal_failure_and_service_unavailable_are_received_again() {
    let mut cell = Cell::start("r5xx", 5).await;
    for error in [INTERNAL_FAILURE, SERVICE_UNAVAILABLE] {
        cell.faults
            .add(Rule::on(Operation::ReceiveMessage, Action::Error(error)).next(3))
            .expect("rule");
    }
    cell.record(12).await;
    cell.consistent().await;
    cell.report("ReceiveMessage InternalFailure x3, ServiceUnavailable x3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_slow_receives_with_fast_sends_everything_arrives() {
    let mut cell = Cell::start("rslow", 5).await;
    cell.faults
        .add(Rule::on(
            Operation::ReceiveMessage,
            Action::Latency(Duration::from_millis(500)),
        ))
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    cell.report("ReceiveMessage 500 ms slower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_duplicate_delivery_counts_each_event_once() {
    let mut cell = Cell::start("dup", 5).await;
    let rule = cell
        .faults
        .add(Rule::on(Operation::ReceiveMessage, Action::Duplicate).next(4))
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    assert_eq!(cell.faults.fired(rule), 4);
    harness::eventually(
        Duration::from_secs(30),
        "the duplicates counted",
        || async { (cell.consumer().duplicates.get() >= 1).then_some(()) },
    )
    .await;
    cell.drained().await;
    cell.consistent_after_more_entries().await;
    cell.report("ReceiveMessage delivered twice (4 receives)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_reordered_delivery_counts_each_event_once_and_balances_are_right() {
    let mut cell = Cell::start("reorder", 5).await;
    let rule = cell
        .faults
        .add(Rule::on(Operation::ReceiveMessage, Action::Reorder).next(6))
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    assert!(cell.faults.fired(rule) >= 1);
    cell.drained().await;
    cell.report("ReceiveMessage reordered (6 receives)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_failed_delete_is_sent_again_so_nothing_is_redelivered() {
    let mut cell = Cell::start("delfail", 5).await;
    let rule = cell
        .faults
        .add(
            Rule::on(
                Operation::DeleteMessageBatch,
                Action::FailEntries {
                    share: 1.0,
                    error: INTERNAL_FAILURE,
                },
            )
            .next(2),
        )
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    cell.drained().await;
    assert_eq!(cell.faults.fired(rule), 2);
    delivered_once(&cell);
    assert!(cell.consumer().delete_retries.get() >= 1);
    cell.report("DeleteMessageBatch entries failed, InternalFailure (2 batches)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_invalid_receipt_handle_the_redelivered_message_counts_once() {
    let mut cell = Cell::start("delinvalid", 5).await;
    cell.faults
        .add(
            Rule::on(
                Operation::DeleteMessageBatch,
                Action::FailEntries {
                    share: 1.0,
                    error: RECEIPT_HANDLE_IS_INVALID,
                },
            )
            .next(1),
        )
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    // Refused for good: the message comes back after its visibility and is a duplicate then.
    harness::eventually(
        Duration::from_secs(30),
        "the duplicates counted",
        || async { (cell.consumer().duplicates.get() >= 1).then_some(()) },
    )
    .await;
    cell.drained().await;
    cell.consistent_after_more_entries().await;
    cell.report("DeleteMessageBatch entries refused, ReceiptHandleIsInvalid (1 batch)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_lost_delete_answer_counts_each_event_once() {
    let mut cell = Cell::start("dellost", 5).await;
    cell.faults
        .add(Rule::on(Operation::DeleteMessageBatch, Action::DropAnswer).next(2))
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    cell.drained().await;
    cell.consistent_after_more_entries().await;
    cell.report("DeleteMessageBatch answer lost (2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_failed_visibility_change_still_ends_in_the_dlq_after_max_receive_count() {
    let mut cell = Cell::start("cmvfail", 3).await;
    // The retry's backoff (ChangeMessageVisibility) fails; the heartbeat's calls
    // (ChangeMessageVisibilityBatch) work, and must not keep the message hidden once its retry
    // was decided.
    cell.faults
        .add(Rule::on(
            Operation::ChangeMessageVisibility,
            Action::Error(REQUEST_THROTTLED),
        ))
        .expect("rule");
    cell.writes_fail_for_first_merchant().await;
    let token = cell.system.full_token(&cell.merchants[0]).expect("token");
    let (status, _) = cell
        .system
        .record(
            &cell.merchants[0],
            &token,
            &serde_json::json!({"kind": "credit", "amount": "7.00", "currency": "BRL"}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201);
    cell.recorded += 1;
    let reasons = cell.dlq_holds(1).await;
    assert_eq!(reasons, ["max-receive-count-exceeded"]);
    // Never a loop: delivered at most maxReceiveCount times, then moved.
    let deliveries = cell.faults.deliveries();
    assert!(
        deliveries.values().all(|n| *n <= 3),
        "delivered at most maxReceiveCount (3) times: {deliveries:?}"
    );
    cell.faults.heal();
    cell.writes_recover().await;
    let admin = cell.system.token("ops", &["admin"]).expect("token");
    let redriven: serde_json::Value = cell
        .system
        .http()
        .post(format!(
            "{}/v1/admin/dlq/redrive",
            cell.system.consolidation_url()
        ))
        .bearer_auth(admin)
        .send()
        .await
        .expect("redrive")
        .json()
        .await
        .expect("json");
    assert_eq!(redriven["redriven"], 1, "{redriven}");
    cell.consistent().await;
    cell.report("ChangeMessageVisibility(Batch) throttled, one event failing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_heartbeat_keeps_a_slow_batch_hidden_so_nothing_is_delivered_twice() {
    let mut cell = Cell::start("slow", 5).await;
    // Each batch takes 3 s more: the batch received while another is applied waits 3 s, then
    // takes 3 s itself, beyond the 5 s it was hidden for when received.
    cell.batches_slow(3).await;
    cell.record(12).await;
    cell.consistent().await;
    cell.drained().await;
    delivered_once(&cell);
    assert!(
        cell.consumer().visibility_extended.get() >= 1,
        "the heartbeat extended a held message"
    );
    cell.batches_fast_again().await;
    cell.report("batches 3 s slower (PostgreSQL)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_failed_heartbeat_a_slow_batch_delivered_again_counts_once() {
    let mut cell = Cell::start("beatfail", 5).await;
    cell.faults
        .add(Rule::on(
            Operation::ChangeMessageVisibilityBatch,
            Action::Error(REQUEST_THROTTLED),
        ))
        .expect("rule");
    cell.batches_slow(3).await;
    cell.record(12).await;
    cell.consistent().await;
    cell.drained().await;
    cell.batches_fast_again().await;
    cell.consistent_after_more_entries().await;
    cell.report("batches 3 s slower, heartbeat throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_killed_holding_messages_they_come_back_within_seconds() {
    let mut cell = Cell::start("kill", 5).await;
    // The queue as it was deployed before: 30 s. The consumer asks for its own few seconds on
    // every receive, so that is what a crash costs.
    let sqs = cell.system.ledger_scope.sqs();
    sqs.set_queue_attributes()
        .queue_url(&cell.system.ledger_scope.queues.url)
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("queue visibility 30 s");
    // A statement whose client died is cancelled (PostgreSQL would otherwise finish, and
    // commit, the batch the dead consumer was applying): what it held must come back from SQS.
    let database = cell.system.consolidation_scope.database.clone();
    cell.consolidation_sql(&[&format!(
        r#"ALTER DATABASE "{database}" SET client_connection_check_interval = '100ms'"#
    )])
    .await;
    cell.system
        .stop_consolidation()
        .await
        .expect("stop the consolidation");
    cell.system
        .start_consolidation()
        .await
        .expect("start it on connections with the setting");
    cell.batches_slow(3).await;
    cell.record(12).await;
    harness::eventually(Duration::from_secs(30), "messages held", || async {
        (cell.consumer().received.get() >= 1).then_some(())
    })
    .await;
    assert_eq!(
        cell.consumer().applied.get(),
        0,
        "killed holding messages it had not applied"
    );
    cell.system.kill_consolidation();
    let killed = Instant::now();
    cell.batches_fast_again().await;
    cell.system
        .start_consolidation()
        .await
        .expect("consolidation");
    // The new instance's counters start at zero: it applies what the dead one had not.
    cell.system
        .wait_consistent(&cell.merchants, Duration::from_secs(60))
        .await
        .expect("consistent after the crash");
    let took = killed.elapsed();
    eprintln!("sqs-faults: consumer killed: consistent {took:?} after the crash");
    assert!(
        took < Duration::from_secs(20),
        "what the dead consumer held came back within seconds, not the queue's 30 s: {took:?}"
    );
    cell.report("consumer killed holding messages");
}
