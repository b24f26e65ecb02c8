//! Poison messages and the DLQ's redrive under SQS faults.

use std::time::Duration;

use harness::sqs_faults::protocol::{INTERNAL_FAILURE, REQUEST_THROTTLED};
use harness::sqs_faults::{Action, Operation, Rule};

use crate::Cell;

/// A message no consumer can ever apply, straight onto the entries queue.
async fn send_poison(cell: &Cell) {
    let scope = &cell.system.ledger_scope;
    scope
        .sqs()
        .send_message()
        .queue_url(&scope.queues.url)
        .message_body("{not json")
        .send()
        .await
        .expect("send");
}

/// The poison ends in the DLQ with its reason, and the entries queue empties.
async fn poison_dead_lettered(cell: &Cell) {
    let reasons = cell.dlq_holds(1).await;
    assert!(reasons.iter().all(|r| r == "malformed-json"), "{reasons:?}");
    cell.drained().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_reaches_the_dlq_while_sqs_throttles() {
    let mut cell = Cell::start("pthrottle", 5).await;
    let dlq = cell.dlq_faults();
    // The consumer's calls are throttled, not the test's own send.
    cell.system
        .stop_consolidation()
        .await
        .expect("stop the consumer");
    send_poison(&cell).await;
    cell.faults
        .add(Rule::on_every_operation(Action::Error(REQUEST_THROTTLED)).rate(0.5))
        .expect("rule");
    dlq.add(Rule::on(Operation::SendMessage, Action::Error(REQUEST_THROTTLED)).next(2))
        .expect("rule");
    cell.system
        .start_consolidation()
        .await
        .expect("consolidation");
    poison_dead_lettered(&cell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_reaches_the_dlq_when_its_delete_fails() {
    let cell = Cell::start("pdelete", 5).await;
    cell.faults
        .add(
            Rule::on(
                Operation::DeleteMessageBatch,
                Action::FailEntries {
                    share: 1.0,
                    error: INTERNAL_FAILURE,
                },
            )
            .next(4),
        )
        .expect("rule");
    send_poison(&cell).await;
    poison_dead_lettered(&cell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_reaches_the_dlq_when_delivered_twice() {
    let cell = Cell::start("pdup", 5).await;
    cell.faults
        .add(Rule::on(Operation::ReceiveMessage, Action::Duplicate).next(3))
        .expect("rule");
    send_poison(&cell).await;
    poison_dead_lettered(&cell).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dlq_redrive_completes_while_sqs_throttles() {
    let mut cell = Cell::start("redrive", 5).await;
    cell.system
        .stop_consolidation()
        .await
        .expect("stop the consumer");
    cell.record(2).await;
    // What the consumer could not apply, moved to the DLQ as the redrive policy would.
    let sqs = cell.system.ledger_scope.sqs();
    let queues = cell.system.ledger_scope.queues.clone();
    let mut moved = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while moved < cell.recorded {
        assert!(std::time::Instant::now() < deadline, "only {moved} moved");
        let got = sqs
            .receive_message()
            .queue_url(&queues.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default();
        for message in got {
            sqs.send_message()
                .queue_url(&queues.dlq_url)
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(message.message_attributes().cloned())
                .send()
                .await
                .expect("to the DLQ");
            sqs.delete_message()
                .queue_url(&queues.url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
            moved += 1;
        }
    }
    cell.system
        .start_consolidation()
        .await
        .expect("consolidation");
    // Throttled as the redrive goes: its first receive and send once each, its first delete
    // more often than the SDK's three attempts cover.
    let dlq = cell.dlq_faults();
    for (operation, times) in [
        (Operation::ReceiveMessage, 1),
        (Operation::DeleteMessage, 3),
    ] {
        dlq.add(Rule::on(operation, Action::Error(REQUEST_THROTTLED)).next(times))
            .expect("rule");
    }
    cell.faults
        .add(Rule::on(Operation::SendMessage, Action::Error(REQUEST_THROTTLED)).next(1))
        .expect("rule");
    let admin = cell.system.token("ops", &["admin"]).expect("token");
    let response = cell
        .system
        .http()
        .post(format!(
            "{}/v1/admin/dlq/redrive",
            cell.system.consolidation_url()
        ))
        .bearer_auth(admin)
        .send()
        .await
        .expect("redrive");
    let status = response.status();
    let redriven: serde_json::Value = response.json().await.expect("json");
    assert_eq!(status, 200, "{redriven}");
    assert_eq!(redriven["redriven"], 4, "{redriven}");
    assert_eq!(
        dlq.requests().values().map(|c| c.faulted).sum::<u64>(),
        4,
        "the redrive met the throttling"
    );
    cell.consistent().await;
}
