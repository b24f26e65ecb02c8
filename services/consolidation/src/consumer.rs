//! The SQS consumer: several long-poll loops; each batch is applied in one transaction (one by
//! one only when an event is refused), messages are deleted only after commit.
//!
//! Each receive asks SQS to hide its messages for a few seconds (`visibility`), and a heartbeat
//! extends that while they are held ([`crate::inflight`]): a consumer that dies delays what it
//! held by seconds, a slow batch is never handed to another consumer.
//!
//! Failures:
//! - transient (database down, timeout, deadlock): the message's visibility is set to an
//!   exponential backoff with jitter from its `ApproximateReceiveCount`; after maxReceiveCount
//!   receives the queue's redrive policy moves it to the DLQ;
//! - permanent (malformed JSON, unknown type or version, invalid field, refused by the
//!   database): sent to the DLQ at once with the reason as message attributes, then deleted;
//! - the cache cannot be fenced (Redis unreachable from this instance, its breaker open, or a
//!   read-only replica): the batch is handed back to the queue unapplied, visible at once to the
//!   other instances, and this one stops receiving until Redis takes writes again (ADR 0004:
//!   nothing commits that another instance's cache could hide);
//! - SQS failing a call (throttling, 5xx, a dropped answer): the SDK retries it, then the poll
//!   loop backs off; a delete SQS failed for a transient reason is sent again a few times. A
//!   message whose delete never succeeds comes back and is counted as a duplicate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use cashflow_contracts::{ENTRY_RECORDED, EVENT_TYPE_ATTRIBUTE, EntryRecordedV1};
use cashflow_platform::backoff::Backoff;
use cashflow_platform::sqs::is_transient_code;
use sqlx::PgPool;
use time::Date;
use tokio_util::sync::CancellationToken;

use crate::balances;
use crate::cache::Cache;
use crate::config::ConsumerConfig;
use crate::dlq;
use crate::inflight::InFlight;
use crate::metrics::ConsumerMetrics;

/// Deletes SQS failed for a transient reason are sent again this many times, 100 ms apart and
/// doubling: well within the held messages' visibility, which the heartbeat keeps extending.
const DELETE_RETRIES: u32 = 3;

/// How long a poll loop waits before asking again whether Redis takes writes, while it does not.
const UNWRITABLE_PAUSE: Duration = Duration::from_millis(500);

/// Why a message can never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// Short code: `malformed-json`, `unknown-event-type`, `invalid-event`, `rejected`.
    pub reason: &'static str,
    /// Human detail.
    pub detail: String,
}

/// Decodes a message into an event, or says why it never will be one.
pub fn decode(message: &Message) -> Result<EntryRecordedV1, Poison> {
    let body = message.body().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| Poison {
        reason: "malformed-json",
        detail: e.to_string(),
    })?;
    let attribute = message
        .message_attributes()
        .and_then(|a| a.get(EVENT_TYPE_ATTRIBUTE))
        .and_then(|v| v.string_value());
    let body_type = value.get("event_type").and_then(|t| t.as_str());
    for event_type in [attribute, body_type].into_iter().flatten() {
        if event_type != ENTRY_RECORDED {
            return Err(Poison {
                reason: "unknown-event-type",
                detail: format!(
                    "{event_type:?} is not a type this consumer knows ({ENTRY_RECORDED})"
                ),
            });
        }
    }
    let event: EntryRecordedV1 = serde_json::from_value(value).map_err(|e| Poison {
        reason: "invalid-event",
        detail: e.to_string(),
    })?;
    if event.amount_minor <= 0 {
        return Err(Poison {
            reason: "invalid-event",
            detail: "amount_minor must be > 0".into(),
        });
    }
    Ok(event)
}

/// Visibility timeout after the `receive_count`-th failed delivery: the platform's backoff
/// (from `base`, doubling, jittered, at most `cap`), so that messages that failed together do
/// not come back together. Whole seconds (SQS's unit), at least one.
pub fn backoff(receive_count: u32, base: Duration, cap: Duration) -> Duration {
    let delay = Backoff::new(base, cap).delay(receive_count);
    Duration::from_secs(delay.as_secs_f64().ceil() as u64).max(Duration::from_secs(1))
}

/// Consumes the entries queue.
#[derive(Debug)]
pub struct Consumer {
    pool: PgPool,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    config: ConsumerConfig,
    cache: Arc<Cache>,
    metrics: ConsumerMetrics,
    /// What this consumer holds, kept hidden by the heartbeat.
    in_flight: InFlight,
}

impl Consumer {
    /// A consumer.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        dlq_url: String,
        config: ConsumerConfig,
        cache: Arc<Cache>,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            in_flight: InFlight::new(config.visibility),
            pool,
            sqs,
            queue_url,
            dlq_url,
            config,
            cache,
            metrics,
        }
    }

    /// Runs the poll loops until `shutdown`: polling stops, batches in flight finish.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut loops = tokio::task::JoinSet::new();
        for _ in 0..self.config.concurrency {
            let consumer = Arc::clone(&self);
            let shutdown = shutdown.clone();
            loops.spawn(async move { consumer.poll(shutdown).await });
        }
        let loops = async {
            while let Some(joined) = loops.join_next().await {
                // A poll loop that panicked takes the consumer with it (the others are aborted
                // as the set drops), for its supervisor to log and restart: never a silent loss
                // of consumption capacity.
                if let Err(e) = joined
                    && e.is_panic()
                {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        };
        // The heartbeat beats until the last loop has finished its batches.
        tokio::select! {
            () = loops => {}
            () = self.in_flight.heartbeat(&self.sqs, &self.queue_url, &self.metrics) => {}
        }
        tracing::info!("consumer stopped");
    }

    /// One poll loop, pipelined: while a batch is applied (and the one before it deleted, its
    /// transaction having committed), the next receive is already waiting on SQS. A loop's
    /// cycle is the longest of the three calls rather than their sum.
    async fn poll(&self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        // Received, not applied yet.
        let mut received: Vec<Message> = Vec::new();
        // Applied and committed (or counted as duplicates), not deleted yet.
        let mut handled: Vec<Message> = Vec::new();
        while !shutdown.is_cancelled() {
            // An instance that cannot fence the cache does not apply (see `apply`), so it does
            // not take messages either until Redis takes writes again: every receive counts
            // toward the DLQ's maxReceiveCount.
            let writable = self.cache.writable().await;
            self.metrics.waiting_for_cache.set(i64::from(!writable));
            let sent = Instant::now();
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(self.config.wait_seconds)
                .visibility_timeout(self.in_flight.visibility_seconds())
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_attribute_names("All")
                .send();
            // A poll cut short by shutdown leaves its messages invisible until their
            // visibility timeout; nothing is lost. The apply and the delete run to their end.
            let receive = async {
                if !writable {
                    tokio::select! {
                        () = tokio::time::sleep(UNWRITABLE_PAUSE) => return Some(Ok(None)),
                        () = shutdown.cancelled() => return None,
                    }
                }
                tokio::select! {
                    outcome = receive => Some(outcome.map(Some)),
                    () = shutdown.cancelled() => None,
                }
            };
            let batch = std::mem::take(&mut received);
            let work = async {
                let (applied, ()) = tokio::join!(
                    self.apply(batch),
                    self.delete(std::mem::take(&mut handled).into_iter())
                );
                applied
            };
            let (applied, outcome) = tokio::join!(work, receive);
            handled = applied;
            match outcome {
                None => break,
                Some(Ok(None)) => {}
                Some(Ok(Some(output))) => {
                    failures = 0;
                    received = output.messages.unwrap_or_default();
                    self.in_flight.hold(&received, sent);
                }
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    let delay = Duration::from_millis(200)
                        .saturating_mul(1 << failures.min(5))
                        .min(Duration::from_secs(5));
                    tracing::warn!(error = ?e, retry_in = ?delay, "receiving from SQS failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        // Batches in flight finish: the last one received is applied, then everything settled
        // is deleted.
        let applied = self.apply(received).await;
        handled.extend(applied);
        self.delete(handled.into_iter()).await;
    }

    /// Applies one received batch and returns the messages it settled (committed, or counted
    /// as duplicates), which the caller deletes. Retried and dead-lettered messages are dealt
    /// with here.
    async fn apply(&self, messages: Vec<Message>) -> Vec<Message> {
        if messages.is_empty() {
            return Vec::new();
        }
        self.metrics.received.inc_by(messages.len() as u64);
        let mut valid = Vec::with_capacity(messages.len());
        for message in messages {
            match decode(&message) {
                Ok(event) => valid.push((message, event)),
                Err(poison) => self.dead_letter(&message, &poison).await,
            }
        }
        if valid.is_empty() {
            return Vec::new();
        }
        // Each merchant from the first day the batch may change: fenced before the commit,
        // retired after it (a superset of what changes: duplicates and failures included, so
        // that a commit whose outcome got lost is covered too).
        let mut changes: BTreeMap<String, Date> = BTreeMap::new();
        for (_, event) in &valid {
            let from = changes
                .entry(event.merchant_id.to_string())
                .or_insert(event.business_date);
            *from = (*from).min(event.business_date);
        }
        let Some(fence) = self
            .cache
            .fence(changes.iter().map(|(m, d)| (m.as_str(), *d)))
            .await
        else {
            self.hand_back(valid.iter().map(|(message, _)| message))
                .await;
            return Vec::new();
        };
        let fenced_at = Instant::now();
        let (settled, applied) = self.apply_fenced(valid).await;
        if fenced_at.elapsed() >= self.cache.fence_expiry() {
            // Cannot happen within the deadlines the expiry is made of; if it does, a reader may
            // have ignored the fence and cached what this commit changed until the lift below.
            tracing::error!(took = ?fenced_at.elapsed(), "a fenced apply outlived its fence");
        }
        self.cache
            .lift(fence, changes.iter().map(|(m, d)| (m.as_str(), *d)))
            .await;
        // After the lift: whoever sees these events counted (in the metrics) then reads them.
        self.count(&settled, &applied);
        settled.into_iter().map(|(message, _)| message).collect()
    }

    /// Applies a fenced batch: in one transaction, or one event at a time when the batch is
    /// refused. Returns the settled messages (committed, or duplicates) and what changed.
    async fn apply_fenced(
        &self,
        valid: Vec<(Message, EntryRecordedV1)>,
    ) -> (Vec<(Message, EntryRecordedV1)>, Vec<balances::Applied>) {
        let events: Vec<EntryRecordedV1> = valid.iter().map(|(_, e)| e.clone()).collect();
        let started = Instant::now();
        match balances::apply(&self.pool, &events).await {
            Ok(applied) => {
                self.metrics
                    .apply_seconds
                    .observe(started.elapsed().as_secs_f64());
                (valid, vec![applied])
            }
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, messages = valid.len(), "applying a batch failed; retrying with backoff");
                for (message, _) in &valid {
                    self.retry(message).await;
                }
                (Vec::new(), Vec::new())
            }
            Err(e) => {
                // Something in the batch is refused: find it by applying one at a time.
                tracing::warn!(error = %e, "a batch was refused; applying its events one by one");
                let mut settled = Vec::new();
                let mut changed = Vec::new();
                for (message, event) in valid {
                    match balances::apply(&self.pool, std::slice::from_ref(&event)).await {
                        Ok(applied) => {
                            settled.push((message, event));
                            changed.push(applied);
                        }
                        Err(e) if is_transient(&e) => self.retry(&message).await,
                        Err(e) => {
                            let poison = Poison {
                                reason: "rejected",
                                detail: e.to_string(),
                            };
                            self.dead_letter(&message, &poison).await;
                        }
                    }
                }
                (settled, changed)
            }
        }
    }

    /// Metrics of settled events, once the cache no longer hides them.
    fn count(&self, handled: &[(Message, EntryRecordedV1)], changed: &[balances::Applied]) {
        let now = time::OffsetDateTime::now_utc();
        for applied in changed {
            self.metrics.applied.inc_by(applied.applied.len() as u64);
            self.metrics
                .duplicates
                .inc_by(applied.duplicates.len() as u64);
            for (_, event) in handled {
                if applied.applied.contains(&event.event_id) {
                    self.metrics
                        .lag_seconds
                        .observe((now - event.recorded_at).as_seconds_f64().max(0.0));
                }
            }
        }
    }

    /// Hands messages back to the queue unapplied, visible at once to any other instance (whose
    /// Redis may answer): this one could not fence the cache, so it must not commit.
    async fn hand_back<'a>(&self, messages: impl Iterator<Item = &'a Message>) {
        let messages: Vec<&Message> = messages.collect();
        self.metrics.handed_back.inc_by(messages.len() as u64);
        self.in_flight
            .release(messages.iter().filter_map(|m| m.receipt_handle()));
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, message)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(message.receipt_handle().map(str::to_string))
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        for chunk in entries.chunks(10) {
            let changed = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(chunk.to_vec()))
                .send()
                .await;
            if let Err(e) = changed {
                // They come back once the visibility asked for on receive runs out.
                tracing::warn!(error = ?e, "handing messages back failed");
            }
        }
    }

    /// Deletes settled messages, ten per call (SQS's batch limit). Entries SQS failed for a
    /// transient reason (throttling, a 5xx, a dropped answer) are sent again, with backoff, up to
    /// [`DELETE_RETRIES`] times; one it refused (an invalid receipt handle) or that still fails
    /// comes back after its visibility timeout and is counted as a duplicate then.
    async fn delete(&self, messages: impl Iterator<Item = Message>) {
        let receipts: Vec<String> = messages
            .filter_map(|m| m.receipt_handle().map(str::to_string))
            .collect();
        for batch in receipts.chunks(10) {
            let mut pending: Vec<&String> = batch.iter().collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let failed = self.delete_batch(&pending).await;
                let done: Vec<&str> = pending
                    .iter()
                    .filter(|r| !failed.contains(r))
                    .map(|r| r.as_str())
                    .collect();
                self.in_flight.release(done);
                pending = failed;
                attempt += 1;
                if pending.is_empty() || attempt > DELETE_RETRIES {
                    break;
                }
                self.metrics.delete_retries.inc_by(pending.len() as u64);
                let delay =
                    Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).delay(attempt);
                tokio::time::sleep(delay).await;
            }
            // Given up on: it comes back once its visibility runs out.
            self.in_flight.release(pending.iter().map(|r| r.as_str()));
        }
    }

    /// One DeleteMessageBatch; returns the receipts worth sending again (a transient failure).
    async fn delete_batch<'a>(&self, receipts: &[&'a String]) -> Vec<&'a String> {
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt.as_str())
                    .build()
                    .ok()
            })
            .collect();
        match self
            .sqs
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(output) => output
                .failed
                .iter()
                .filter_map(|failed| {
                    let transient = !failed.sender_fault || is_transient_code(&failed.code);
                    tracing::warn!(code = %failed.code, transient, "deleting a handled message failed");
                    let receipt = failed.id.parse::<usize>().ok().and_then(|i| receipts.get(i));
                    receipt.copied().filter(|_| transient)
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = ?e, "deleting handled messages failed");
                receipts.to_vec()
            }
        }
    }

    async fn retry(&self, message: &Message) {
        let receive_count = receive_count(message);
        let delay = backoff(receive_count, self.config.retry_base, self.config.retry_cap);
        self.metrics.retried.inc();
        // One line per retry, naming the message and its queue: an operator follows a message
        // through its receives, and the tests observe the backoff through it.
        tracing::info!(
            queue = %self.queue_url,
            message_id = message.message_id().unwrap_or_default(),
            receive_count,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "retrying a message after a backoff"
        );
        let Some(receipt) = message.receipt_handle() else {
            return;
        };
        // Its visibility is the backoff from now on, not the heartbeat's: should the change
        // fail, the visibility asked for on receive applies, and the next receive counts.
        self.in_flight.release([receipt]);
        let changed = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await;
        if let Err(e) = changed {
            // The queue's own visibility timeout applies instead.
            tracing::warn!(error = ?e, "setting the retry backoff failed");
        }
    }

    async fn dead_letter(&self, message: &Message, poison: &Poison) {
        tracing::warn!(
            message_id = message.message_id().unwrap_or_default(),
            reason = poison.reason,
            detail = %poison.detail,
            "sending a message that can never succeed to the DLQ"
        );
        let sent = dlq::send(
            &self.sqs,
            &self.dlq_url,
            message,
            poison.reason,
            &poison.detail,
            receive_count(message),
        )
        .await;
        match sent {
            Ok(()) => {
                self.metrics.dead_lettered.inc();
                self.delete(std::iter::once(message.clone())).await;
            }
            // Left in the queue: it comes back and is dead-lettered then (or moved by the
            // redrive policy after maxReceiveCount).
            Err(e) => {
                tracing::error!(error = ?e, "sending to the DLQ failed");
                self.in_flight.release(message.receipt_handle());
            }
        }
    }
}

fn receive_count(message: &Message) -> u32 {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|c| c.parse().ok())
        .unwrap_or(1)
}

/// Whether trying again later may succeed: the database unreachable, busy or read-only (a
/// failover, 25006), a timeout, a deadlock or serialization failure. Data and constraint errors
/// are permanent.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code == "25006"
                || ["08", "40", "53", "55", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        _ => false,
    }
}

/// Samples the DLQ's depth into the gauge until `shutdown`.
pub async fn sample_dlq_depth(
    sqs: aws_sdk_sqs::Client,
    dlq_url: String,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        if let Ok(depth) = crate::dlq::depth(&sqs, &dlq_url).await {
            metrics.dlq_depth.set(depth);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        for _ in 0..100 {
            let third = backoff(3, base, cap);
            assert!(
                (Duration::from_secs(4)..=Duration::from_secs(8)).contains(&third),
                "{third:?}"
            );
            let tenth = backoff(10, base, cap);
            assert!(
                (Duration::from_secs(30)..=cap).contains(&tenth),
                "{tenth:?}"
            );
            assert!(backoff(1, base, cap) >= Duration::from_secs(1));
        }
    }
}
