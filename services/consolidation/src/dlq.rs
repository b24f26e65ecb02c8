//! The dead-letter queue: sending a message there with the reason, depth, listing with the
//! failure reason, and redrive to the main queue. Used by the consumer, the admin endpoints and
//! `consolidation dlq` on the command line.
//!
//! Each SQS call here is tried again on transient failures (throttling, 5xx, a dropped
//! connection) with backoff, so that an operator's redrive completes while SQS throttles
//! instead of stopping at the first refusal (making listed messages visible again is best
//! effort: they reappear after a few seconds anyway).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use cashflow_platform::backoff::Backoff;
use cashflow_platform::sqs::retry_transient;
use serde::Serialize;

/// Message attribute naming why the consumer dead-lettered a message.
pub const FAILURE_REASON: &str = "failure_reason";
/// Message attribute with the details.
pub const FAILURE_DETAIL: &str = "failure_detail";
/// Message attribute with the receive count when it was dead-lettered.
pub const FAILURE_RECEIVE_COUNT: &str = "failure_receive_count";

/// How long listed messages stay hidden while a listing walks through the DLQ.
const PEEK_VISIBILITY_SECS: i32 = 5;

/// Backoff of the DLQ's calls on transient failures: 200 ms doubling to 3 s, 5 more tries
/// (each of them the SDK's attempts), about 10 s in all before an error.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
const RETRIES: usize = 5;

/// Sends `message` to the DLQ with why it can never succeed (`reason`, `detail`) and its
/// receive count as message attributes; its own attributes are kept.
pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    message: &Message,
    reason: &str,
    detail: &str,
    receive_count: u32,
) -> anyhow::Result<()> {
    let mut attributes: HashMap<String, MessageAttributeValue> =
        message.message_attributes().cloned().unwrap_or_default();
    for (name, value) in [
        (FAILURE_REASON, reason.to_string()),
        (FAILURE_DETAIL, detail.chars().take(1000).collect()),
        (FAILURE_RECEIVE_COUNT, receive_count.to_string()),
    ] {
        if let Ok(v) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
        {
            attributes.insert(name.to_string(), v);
        }
    }
    retry_transient(BACKOFF, RETRIES, || {
        sqs.send_message()
            .queue_url(dlq_url)
            .message_body(message.body().unwrap_or(" "))
            .set_message_attributes(Some(attributes.clone()))
            .send()
    })
    .await
    .context("sending to the DLQ")?;
    Ok(())
}

/// A dead-lettered message.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// SQS message id (in the DLQ).
    pub message_id: String,
    /// Why it is there: the consumer's reason, or `max-receive-count-exceeded` when the queue's
    /// redrive policy moved it after repeated failures.
    pub reason: String,
    /// Details of the failure, when the consumer recorded them.
    pub detail: Option<String>,
    /// Receives before it was dead-lettered (as recorded, or SQS's count).
    pub receive_count: Option<u32>,
    /// The message body.
    pub body: String,
}

/// Messages in the DLQ, approximately.
pub async fn depth(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> anyhow::Result<i64> {
    let output = retry_transient(BACKOFF, RETRIES, || {
        sqs.get_queue_attributes()
            .queue_url(dlq_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
    })
    .await
    .context("reading the DLQ's attributes")?;
    Ok(output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

fn describe(message: &Message) -> DeadLetter {
    let attribute = |name: &str| {
        message
            .message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_string)
    };
    let sqs_count = message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse::<u32>().ok());
    let recorded_count = attribute(FAILURE_RECEIVE_COUNT).and_then(|c| c.parse().ok());
    DeadLetter {
        message_id: message.message_id().unwrap_or_default().to_string(),
        reason: attribute(FAILURE_REASON).unwrap_or_else(|| "max-receive-count-exceeded".into()),
        detail: attribute(FAILURE_DETAIL),
        // Listing receives the message too: SQS's count includes our own peeks, so the count
        // recorded at failure time wins when there is one.
        receive_count: recorded_count.or(sqs_count),
        body: message.body().unwrap_or_default().to_string(),
    }
}

async fn receive_batch(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    visibility: i32,
) -> anyhow::Result<Vec<Message>> {
    Ok(retry_transient(BACKOFF, RETRIES, || {
        sqs.receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
    })
    .await
    .context("receiving from the DLQ")?
    .messages
    .unwrap_or_default())
}

async fn make_visible(sqs: &aws_sdk_sqs::Client, dlq_url: &str, messages: &[Message]) {
    for message in messages {
        if let Some(receipt) = message.receipt_handle() {
            let _ = sqs
                .change_message_visibility()
                .queue_url(dlq_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await;
        }
    }
}

/// Up to `limit` messages of the DLQ. They stay in the DLQ.
pub async fn list(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    limit: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut seen: Vec<Message> = Vec::new();
    let mut ids = HashSet::new();
    while seen.len() < limit {
        let batch = receive_batch(sqs, dlq_url, PEEK_VISIBILITY_SECS).await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            if ids.insert(message.message_id().unwrap_or_default().to_string()) {
                seen.push(message);
            }
        }
    }
    make_visible(sqs, dlq_url, &seen).await;
    seen.truncate(limit);
    Ok(seen.iter().map(describe).collect())
}

/// Moves messages from the DLQ back to the main queue: all of them, or those whose ids are in
/// `only`. Each is sent first and deleted from the DLQ after, so a failure in between makes a
/// duplicate (which the consumer ignores), never a loss. Returns how many moved.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    only: Option<&HashSet<String>>,
) -> anyhow::Result<usize> {
    let mut moved = 0;
    let mut skipped: Vec<Message> = Vec::new();
    let mut skipped_ids = HashSet::new();
    loop {
        let batch = receive_batch(sqs, dlq_url, 30).await?;
        if batch.is_empty() {
            break;
        }
        let mut progress = false;
        for message in batch {
            let id = message.message_id().unwrap_or_default().to_string();
            if only.is_some_and(|ids| !ids.contains(&id)) {
                if skipped_ids.insert(id) {
                    skipped.push(message);
                    progress = true;
                }
                continue;
            }
            progress = true;
            // The failure attributes stay behind: a redriven message starts afresh.
            let attributes: HashMap<String, MessageAttributeValue> = message
                .message_attributes()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| !name.starts_with("failure_"))
                .collect();
            retry_transient(BACKOFF, RETRIES, || {
                sqs.send_message()
                    .queue_url(queue_url)
                    .message_body(message.body().unwrap_or(" "))
                    .set_message_attributes((!attributes.is_empty()).then_some(attributes.clone()))
                    .send()
            })
            .await
            .context("sending a redriven message to the main queue")?;
            if let Some(receipt) = message.receipt_handle() {
                retry_transient(BACKOFF, RETRIES, || {
                    sqs.delete_message()
                        .queue_url(dlq_url)
                        .receipt_handle(receipt)
                        .send()
                })
                .await
                .context("deleting a redriven message from the DLQ")?;
            }
            moved += 1;
        }
        if !progress {
            break;
        }
    }
    make_visible(sqs, dlq_url, &skipped).await;
    Ok(moved)
}
