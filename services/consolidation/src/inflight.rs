//! The messages the consumer holds — received, and not yet deleted, put back for a retry or
//! dead-lettered — and the heartbeat that keeps them hidden while it does.
//!
//! The consumer asks SQS to hide what it receives for `visibility` (a few seconds, on the
//! receive itself). While a message is held, the heartbeat extends that with
//! ChangeMessageVisibilityBatch once less than half of it is left, so a slow batch is never
//! handed to another consumer; a consumer that dies stops extending, and what it held comes
//! back after at most `visibility` instead of a long queue-wide timeout. A message stops being
//! held as soon as its fate is decided: a retry sets its own visibility (the backoff), and a
//! heartbeat that outlived that decision would keep it hidden for ever.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, Message};

use crate::metrics::ConsumerMetrics;

/// Held messages, by receipt handle, with when SQS shows them again at the latest.
#[derive(Debug)]
pub struct InFlight {
    visibility: Duration,
    held: Mutex<HashMap<String, Instant>>,
}

impl InFlight {
    /// Nothing held yet; messages are hidden for `visibility` at a time.
    pub fn new(visibility: Duration) -> Self {
        Self {
            visibility,
            held: Mutex::default(),
        }
    }

    /// The visibility timeout to ask for, in SQS's unit.
    pub fn visibility_seconds(&self) -> i32 {
        i32::try_from(self.visibility.as_secs()).unwrap_or(i32::MAX)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the messages a receive sent at `sent` returned: SQS hid them at some point after
    /// `sent`, so they are hidden until `sent + visibility` at least.
    pub fn hold(&self, messages: &[Message], sent: Instant) {
        let mut held = self.held();
        for receipt in messages.iter().filter_map(Message::receipt_handle) {
            held.insert(receipt.to_string(), sent + self.visibility);
        }
    }

    /// No longer held: deleted, put back for a retry, dead-lettered, or given up on.
    pub fn release<'a>(&self, receipts: impl IntoIterator<Item = &'a str>) {
        let mut held = self.held();
        for receipt in receipts {
            held.remove(receipt);
        }
    }

    /// How many messages are held.
    pub fn len(&self) -> usize {
        self.held().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Held messages with less than half their visibility left at `now`.
    fn due(&self, now: Instant) -> Vec<String> {
        let half = self.visibility / 2;
        self.held()
            .iter()
            .filter(|(_, hidden_until)| hidden_until.saturating_duration_since(now) < half)
            .map(|(receipt, _)| receipt.clone())
            .collect()
    }

    /// Extends the visibility of held messages before it runs out, until dropped (the consumer
    /// runs it beside its poll loops). A failed extension is tried again at the next beat while
    /// the message is still held; should SQS show it meanwhile, another consumer may apply it
    /// too, which the dedup absorbs.
    pub async fn heartbeat(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        metrics: &ConsumerMetrics,
    ) {
        let beat = (self.visibility / 5).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(beat).await;
            let due = self.due(Instant::now());
            for batch in due.chunks(10) {
                self.extend(sqs, queue_url, batch, metrics).await;
            }
        }
    }

    async fn extend(
        &self,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        receipts: &[String],
        metrics: &ConsumerMetrics,
    ) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(self.visibility_seconds())
                    .build()
                    .ok()
            })
            .collect();
        let sent = Instant::now();
        let changed = sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let output = match changed {
            Ok(output) => output,
            Err(e) => {
                tracing::warn!(error = ?e, messages = receipts.len(), "extending the visibility of held messages failed");
                return;
            }
        };
        for failed in &output.failed {
            tracing::warn!(code = %failed.code, "extending the visibility of a held message failed");
        }
        let mut held = self.held();
        for ok in &output.successful {
            let Some(receipt) = ok.id.parse::<usize>().ok().and_then(|i| receipts.get(i)) else {
                continue;
            };
            // Only if still held: a message released meanwhile stays released.
            if let Some(hidden_until) = held.get_mut(receipt) {
                *hidden_until = sent + self.visibility;
                metrics.visibility_extended.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(receipt: &str) -> Message {
        Message::builder().receipt_handle(receipt).build()
    }

    #[test]
    fn messages_are_due_once_half_their_visibility_is_gone_and_until_released() {
        let in_flight = InFlight::new(Duration::from_secs(4));
        let sent = Instant::now();
        in_flight.hold(&[message("a"), message("b")], sent);
        assert!(in_flight.due(sent + Duration::from_secs(1)).is_empty());
        let mut due = in_flight.due(sent + Duration::from_millis(2_500));
        due.sort();
        assert_eq!(due, ["a", "b"]);
        in_flight.release(["a"]);
        assert_eq!(in_flight.due(sent + Duration::from_secs(10)), ["b"]);
        in_flight.release(["b"]);
        assert!(in_flight.is_empty());
    }
}
