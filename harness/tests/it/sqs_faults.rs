//! The SQS fault layer against the real emulator (LocalStack, or moto with HARNESS_SQS=moto):
//! what the SDK sees of each fault is what AWS documents, and what the emulator holds is what
//! SQS would.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, SendMessageBatchRequestEntry};
use harness::Scope;
use harness::sqs_faults::protocol::{
    INTERNAL_FAILURE, MESSAGE_NOT_INFLIGHT, RECEIPT_HANDLE_IS_INVALID, REQUEST_THROTTLED,
    SERVICE_UNAVAILABLE, THROTTLING_EXCEPTION,
};
use harness::sqs_faults::{Action, Operation, Rule};

/// A client of the scope's endpoint (the layer) with the SDK's retries as given.
fn client(scope: &Scope, retry: RetryConfig) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(scope.aws_region.clone()))
        .endpoint_url(&scope.sqs_endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(retry)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Every answer as it comes: the SDK's retries off.
fn raw(scope: &Scope) -> aws_sdk_sqs::Client {
    client(scope, RetryConfig::disabled())
}

async fn scope() -> (&'static harness::Stack, Scope) {
    let stack = harness::shared().await.expect("stack");
    (stack, stack.scope().await.expect("scope"))
}

async fn send(sqs: &aws_sdk_sqs::Client, scope: &Scope, bodies: &[&str]) {
    for body in bodies {
        sqs.send_message()
            .queue_url(&scope.queues.url)
            .message_body(*body)
            .send()
            .await
            .expect("send");
    }
}

async fn receive(sqs: &aws_sdk_sqs::Client, scope: &Scope, wait: i32) -> Vec<Message> {
    sqs.receive_message()
        .queue_url(&scope.queues.url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait)
        .visibility_timeout(1)
        .send()
        .await
        .expect("receive")
        .messages
        .unwrap_or_default()
}

/// Receives until `count` messages came or the deadline passes.
async fn receive_all(sqs: &aws_sdk_sqs::Client, scope: &Scope, count: usize) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    while all.len() < count && Instant::now() < deadline {
        all.extend(receive(sqs, scope, 1).await);
    }
    all
}

#[tokio::test]
async fn errors_reach_the_sdk_with_the_documented_code_and_status() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    for (error, status) in [
        (REQUEST_THROTTLED, 403),
        (THROTTLING_EXCEPTION, 400),
        (INTERNAL_FAILURE, 500),
        (SERVICE_UNAVAILABLE, 503),
    ] {
        faults
            .add(Rule::on(Operation::SendMessage, Action::Error(error)).next(1))
            .expect("rule");
        let failed = sqs
            .send_message()
            .queue_url(&scope.queues.url)
            .message_body("refused")
            .send()
            .await
            .expect_err("the fault answers");
        let SdkError::ServiceError(service) = &failed else {
            panic!("{error:?}: not a service error: {failed:?}");
        };
        assert_eq!(service.raw().status().as_u16(), status, "{error:?}");
        assert_eq!(failed.code(), Some(error.code), "{error:?}");
        if error == REQUEST_THROTTLED {
            assert!(service.err().is_request_throttled(), "{failed:?}");
        }
    }
    // Nothing of it reached the emulator.
    assert!(receive(&sqs, &scope, 0).await.is_empty());
    assert_eq!(faults.requests_of(Operation::SendMessage), 4);
}

#[tokio::test]
async fn the_sdk_retries_throttling_and_server_errors_on_its_own() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    // The SDK's standard retries (3 attempts), quick backoff for the test.
    let sqs = client(
        &scope,
        RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)),
    );
    for error in [
        REQUEST_THROTTLED,
        THROTTLING_EXCEPTION,
        INTERNAL_FAILURE,
        SERVICE_UNAVAILABLE,
    ] {
        let before = faults.requests_of(Operation::SendMessage);
        faults
            .add(Rule::on(Operation::SendMessage, Action::Error(error)).next(2))
            .expect("rule");
        send(&sqs, &scope, &["third time lucky"]).await;
        assert_eq!(
            faults.requests_of(Operation::SendMessage) - before,
            3,
            "{error:?}: two refused attempts and one that went through"
        );
    }
    assert_eq!(receive_all(&sqs, &scope, 4).await.len(), 4);
}

#[tokio::test]
async fn a_batch_fails_a_share_of_its_entries_and_sends_only_the_others() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    faults
        .add(
            Rule::on(
                Operation::SendMessageBatch,
                Action::FailEntries {
                    share: 0.3,
                    error: INTERNAL_FAILURE,
                },
            )
            .next(1),
        )
        .expect("rule");
    let entries = (0..10)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("e{i}"))
                .message_body(format!("body {i}"))
                .build()
                .expect("entry")
        })
        .collect();
    let sent = sqs
        .send_message_batch()
        .queue_url(&scope.queues.url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("a 200 with some entries failed");
    assert_eq!((sent.successful.len(), sent.failed.len()), (7, 3));
    for failed in &sent.failed {
        assert_eq!(failed.code, "InternalFailure");
        assert!(!failed.sender_fault);
    }
    let expected: HashSet<String> = sent
        .successful
        .iter()
        .map(|ok| format!("body {}", &ok.id[1..]))
        .collect();
    let got: HashSet<String> = receive_all(&sqs, &scope, 7)
        .await
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect();
    assert_eq!(
        got, expected,
        "the queue holds exactly the successful entries"
    );
}

#[tokio::test]
async fn a_dropped_answer_leaves_the_request_applied() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    faults
        .add(Rule::on(Operation::SendMessage, Action::DropAnswer).next(1))
        .expect("rule");
    let failed = sqs
        .send_message()
        .queue_url(&scope.queues.url)
        .message_body("sent, never acknowledged")
        .send()
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            failed,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "the connection closed: {failed:?}"
    );
    let got = receive_all(&sqs, &scope, 1).await;
    assert_eq!(got.len(), 1, "the emulator has the message");
}

#[tokio::test]
async fn receives_deliver_twice_or_out_of_order() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    send(&sqs, &scope, &["a", "b", "c"]).await;

    let duplicate = faults
        .add(Rule::on(Operation::ReceiveMessage, Action::Duplicate).next(1))
        .expect("rule");
    let first = receive(&sqs, &scope, 1).await;
    assert!(!first.is_empty());
    assert_eq!(faults.fired(duplicate), 1);
    let again = receive(&sqs, &scope, 0).await;
    let ids = |messages: &[Message]| -> Vec<String> {
        messages
            .iter()
            .filter_map(|m| m.message_id().map(str::to_string))
            .collect()
    };
    assert_eq!(
        ids(&again),
        ids(&first),
        "the next receive delivers them again"
    );
    assert!(faults.deliveries().values().any(|n| *n == 2));
    // Delete them all, copies included (a copy's receipt handle is the original's).
    for message in first
        .iter()
        .chain(&receive_all(&sqs, &scope, 3 - first.len()).await)
    {
        sqs.delete_message()
            .queue_url(&scope.queues.url)
            .receipt_handle(message.receipt_handle().unwrap_or_default())
            .send()
            .await
            .expect("delete");
    }

    send(&sqs, &scope, &["1", "2", "3"]).await;
    faults
        .add(Rule::on(Operation::ReceiveMessage, Action::Reorder).next(1))
        .expect("rule");
    let reordered = receive(&sqs, &scope, 1).await;
    let later = receive(&sqs, &scope, 0).await;
    assert_eq!(
        later.len(),
        1,
        "the first message comes with the next receive"
    );
    assert!(
        !ids(&reordered).contains(&ids(&later)[0]),
        "and not with its own: {reordered:?} then {later:?}"
    );
}

#[tokio::test]
async fn deletes_and_visibility_changes_fail_as_documented() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    send(&sqs, &scope, &["x", "y"]).await;
    let got = receive_all(&sqs, &scope, 2).await;
    faults
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
    let entries = got
        .iter()
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .expect("entry")
        })
        .collect();
    let deleted = sqs
        .delete_message_batch()
        .queue_url(&scope.queues.url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("a 200 with every entry failed");
    assert!(deleted.successful.is_empty());
    assert_eq!(deleted.failed.len(), 2);
    assert!(
        deleted
            .failed
            .iter()
            .all(|f| f.code == "ReceiptHandleIsInvalid" && f.sender_fault)
    );
    // Not deleted: back after their 1 s visibility.
    let back = receive_all(&sqs, &scope, 2).await;
    assert_eq!(back.len(), 2, "the messages came back");

    faults
        .add(
            Rule::on(
                Operation::ChangeMessageVisibility,
                Action::Error(MESSAGE_NOT_INFLIGHT),
            )
            .next(1),
        )
        .expect("rule");
    let refused = sqs
        .change_message_visibility()
        .queue_url(&scope.queues.url)
        .receipt_handle(back[0].receipt_handle().unwrap_or_default())
        .visibility_timeout(30)
        .send()
        .await
        .expect_err("refused");
    let SdkError::ServiceError(service) = &refused else {
        panic!("{refused:?}");
    };
    assert!(service.err().is_message_not_inflight(), "{refused:?}");
    assert_eq!(service.raw().status().as_u16(), 400);
}

#[tokio::test]
async fn latency_slows_one_operation_only() {
    let (stack, scope) = scope().await;
    let faults = stack.sqs_faults().queue(&scope.queues.name);
    let sqs = raw(&scope);
    faults
        .add(Rule::on(
            Operation::ReceiveMessage,
            Action::Latency(Duration::from_millis(300)),
        ))
        .expect("rule");
    send(&sqs, &scope, &["slow to come"]).await;
    let started = Instant::now();
    let _ = receive(&sqs, &scope, 0).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let requests = faults.requests();
    assert_eq!(requests[&Operation::SendMessage].faulted, 0);
    assert_eq!(requests[&Operation::ReceiveMessage].faulted, 1);
}

#[tokio::test]
async fn a_queues_rules_leave_other_queues_alone_and_end_with_its_handle() {
    let (stack, a) = scope().await;
    let b = stack.scope().await.expect("scope");
    let faults = stack.sqs_faults().queue(&a.queues.name);
    faults
        .add(Rule::on_every_operation(Action::Error(REQUEST_THROTTLED)))
        .expect("rule");
    let (sqs_a, sqs_b) = (raw(&a), raw(&b));
    assert!(
        sqs_a
            .send_message()
            .queue_url(&a.queues.url)
            .message_body("a")
            .send()
            .await
            .is_err()
    );
    send(&sqs_b, &b, &["b"]).await;
    // A rule SQS could not answer with is refused.
    assert!(
        faults
            .add(Rule::on(
                Operation::SendMessage,
                Action::Error(RECEIPT_HANDLE_IS_INVALID)
            ))
            .is_err()
    );
    drop(faults);
    send(&sqs_a, &a, &["a"]).await;
}
