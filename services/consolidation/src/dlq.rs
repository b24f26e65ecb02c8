//! The dead-letter queue: depth, listing with the failure reason, and redrive to the main
//! queue. Used by the admin endpoints and by `consolidation dlq` on the command line.

use std::collections::HashSet;

use anyhow::Context;
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use serde::Serialize;

use crate::consumer::{FAILURE_DETAIL, FAILURE_REASON, FAILURE_RECEIVE_COUNT};

/// How long listed messages stay hidden while a listing walks through the DLQ.
const PEEK_VISIBILITY_SECS: i32 = 5;

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
    let output = sqs
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
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
    Ok(sqs
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .wait_time_seconds(0)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
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
            let attributes: std::collections::HashMap<String, MessageAttributeValue> = message
                .message_attributes()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| !name.starts_with("failure_"))
                .collect();
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(message.body().unwrap_or(" "))
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .send()
                .await
                .context("sending a redriven message to the main queue")?;
            if let Some(receipt) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(dlq_url)
                    .receipt_handle(receipt)
                    .send()
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
