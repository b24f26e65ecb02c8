//! The outbox relay under SendMessageBatch faults.

use std::time::{Duration, Instant};

use harness::sqs_faults::protocol::{INTERNAL_FAILURE, REQUEST_THROTTLED, SERVICE_UNAVAILABLE};
use harness::sqs_faults::{Action, Operation, Rule};

use crate::Cell;

/// Highest SendMessageBatch rate a throttled relay may keep up (requests/s, its SDK retries
/// included). Backing off, the test's relay (three batches a cycle, the SDK's three attempts
/// from 1 s, then its own backoff up to 1 s) stays near 3/s; a loop that ignored the refusals
/// would send hundreds.
const THROTTLED_SEND_RATE: f64 = 6.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_partial_batch_failure_sends_the_failed_events_again_none_lost_none_twice() {
    let mut cell = Cell::start("partial", 5).await;
    let rule = cell
        .faults
        .add(
            Rule::on(
                Operation::SendMessageBatch,
                Action::FailEntries {
                    share: 0.3,
                    error: INTERNAL_FAILURE,
                },
            )
            .next(4),
        )
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    assert_eq!(
        cell.faults.fired(rule),
        4,
        "four batches had entries failed"
    );
    assert_eq!(
        cell.consumer().duplicates.get(),
        0,
        "a failed entry was not sent, so sending it again duplicates nothing"
    );
    cell.report("SendMessageBatch, 30% of entries failed (4 batches)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_lost_answer_after_a_send_the_duplicate_on_the_queue_counts_once() {
    let mut cell = Cell::start("lost", 5).await;
    let rule = cell
        .faults
        .add(Rule::on(Operation::SendMessageBatch, Action::DropAnswer).next(1))
        .expect("rule");
    cell.record(12).await;
    cell.consistent().await;
    assert_eq!(cell.faults.fired(rule), 1);
    // The lost batch was applied and sent again: its events reached the consumer twice.
    harness::eventually(
        Duration::from_secs(30),
        "the duplicates counted",
        || async { (cell.consumer().duplicates.get() >= 1).then_some(()) },
    )
    .await;
    cell.drained().await;
    cell.consistent_after_more_entries().await;
    cell.report("SendMessageBatch answer lost (1)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_throttled_backs_off_without_a_hot_loop_then_the_backlog_drains() {
    let mut cell = Cell::start("sthrottle", 5).await;
    let since = Instant::now();
    let rule = cell
        .faults
        .add(Rule::on(
            Operation::SendMessageBatch,
            Action::Error(REQUEST_THROTTLED),
        ))
        .expect("rule");
    cell.record(12).await;
    let rate = cell
        .refusal_rate(Operation::SendMessageBatch, 24, since)
        .await;
    eprintln!("sqs-faults: throttled relay: {rate:.2} SendMessageBatch/s");
    assert!(
        rate <= THROTTLED_SEND_RATE,
        "the relay backs off while throttled: {rate:.2} requests/s"
    );
    cell.faults.remove(rule);
    cell.consistent().await;
    cell.report("SendMessageBatch throttled, then healed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_internal_failure_and_service_unavailable_are_sent_again() {
    let mut cell = Cell::start("s5xx", 5).await;
    let failures = [INTERNAL_FAILURE, SERVICE_UNAVAILABLE].map(|error| {
        cell.faults
            .add(Rule::on(Operation::SendMessageBatch, Action::Error(error)).next(2))
            .expect("rule")
    });
    cell.record(12).await;
    cell.consistent().await;
    for rule in failures {
        assert_eq!(cell.faults.fired(rule), 2);
    }
    cell.report("SendMessageBatch InternalFailure x2, ServiceUnavailable x2");
}
