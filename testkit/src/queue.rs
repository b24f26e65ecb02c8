//! Messages put on a scope's entries queue by hand, as the ledger's relay sends them (a body and
//! its `event_type` attribute), or malformed on purpose: what the consolidation's tests feed it.

use anyhow::Context;
use aws_sdk_sqs::types::MessageAttributeValue;
use cashflow_contracts::{ENTRY_RECORDED, EntryRecordedV1};
use harness::Scope;

/// Sends `event` to `scope`'s entries queue as the relay would.
pub async fn send_event(scope: &Scope, event: &EntryRecordedV1) -> anyhow::Result<()> {
    send_raw(scope, &serde_json::to_string(event)?, Some(ENTRY_RECORDED)).await
}

/// Sends any body to `scope`'s entries queue, with an `event_type` attribute when given.
pub async fn send_raw(scope: &Scope, body: &str, event_type: Option<&str>) -> anyhow::Result<()> {
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
                .build()?,
        );
    }
    send.send().await.context("sending to the entries queue")?;
    Ok(())
}
