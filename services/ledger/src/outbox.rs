//! The outbox relay: publishes events written by request transactions to SQS in batches.
//!
//! A publish cycle is three steps, none of which holds a database connection while SQS answers
//! (ADR 0014):
//! 1. claim: one autocommitted `UPDATE` leases up to `concurrency` batches of unpublished rows to
//!    this relay (`claimed_until`, picked with `FOR UPDATE SKIP LOCKED`), so several replicas
//!    share the work without claiming a row twice;
//! 2. publish: one `SendMessageBatch` per batch of ten, all at once, each bounded by half the
//!    lease;
//! 3. mark the accepted rows published, and release the refused ones for the next cycle.
//!
//! Once the outbox is drained the relay waits for a commit's poke, then lingers a moment
//! (`OUTBOX_LINGER_MS`) so that the next cycle sends full batches: at a steady 200 events/s
//! about one SendMessageBatch of ten every 50 ms instead of one per group commit of a few
//! events (SQS bills per request, and an emulator spends its CPU on them).
//!
//! A relay that dies or hangs between claim and mark loses nothing: its lease passes and another
//! claims the rows again. That may publish an event twice (at least once); the consumer
//! deduplicates on the event id. While SQS fails the relay backs off exponentially (capped);
//! the outbox just grows, and recording goes on.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use cashflow_contracts::{EVENT_TYPE_ATTRIBUTE, TRACEPARENT_ATTRIBUTE};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::metrics::OutboxMetrics;

/// Publishes the outbox to one queue (a clone shares nothing but its handles).
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    config: RelayConfig,
    /// Poked after a request commits, so events leave at once instead of at the next poll.
    wake: Arc<Notify>,
    metrics: OutboxMetrics,
}

#[derive(Debug, sqlx::FromRow)]
struct PendingRow {
    id: i64,
    /// The claim's lease end, the same for every row of one claim: the mark and the release
    /// touch a row only while it still holds this claim.
    claimed_until: time::OffsetDateTime,
    event_type: String,
    payload: String,
    traceparent: Option<String>,
}

impl Relay {
    /// A relay; `wake` is shared with the request handlers.
    pub fn new(
        pool: PgPool,
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        config: RelayConfig,
        wake: Arc<Notify>,
        metrics: OutboxMetrics,
    ) -> Self {
        Self {
            pool,
            sqs,
            queue_url,
            config,
            wake,
            metrics,
        }
    }

    /// Rows claimed per cycle: `concurrency` batches.
    fn claim_limit(&self) -> usize {
        usize::from(self.config.batch_size) * usize::from(self.config.concurrency.max(1))
    }

    /// Publishes until `shutdown`; the cycle in flight finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        while !shutdown.is_cancelled() {
            match self.publish_cycle().await {
                // A full cycle: more rows are likely waiting.
                Ok(published) if published >= self.claim_limit() => failures = 0,
                Ok(_) => {
                    failures = 0;
                    // Drained: wait for a commit's poke (or the poll, for rows other replicas
                    // wrote), then let a few more commits arrive so that batches leave full.
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.config.idle_poll) => {}
                        () = shutdown.cancelled() => {}
                    }
                    tokio::select! {
                        () = tokio::time::sleep(self.config.linger) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.publish_failures.inc();
                    let delay = self.config.backoff().delay(failures);
                    tracing::warn!(error = ?e, retry_in = ?delay, "publishing the outbox failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// One cycle: claims up to [`Self::claim_limit`] rows, publishes them in batches sent
    /// together, marks what SQS accepted; returns how many events it accepted. An error when
    /// a whole batch failed (what other batches published is marked first).
    pub async fn publish_cycle(&self) -> anyhow::Result<usize> {
        let lease = self.config.claim_lease;
        let mut rows: Vec<PendingRow> = sqlx::query_as(
            "UPDATE outbox o SET claimed_until = now() + make_interval(secs => $2) \
             FROM (SELECT id FROM outbox \
                   WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now()) \
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) claimed \
             WHERE o.id = claimed.id \
             RETURNING o.id, o.claimed_until, o.event_type, o.payload::text AS payload, \
               o.traceparent",
        )
        .bind(i64::try_from(self.claim_limit()).unwrap_or(i64::MAX))
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .context("claiming outbox rows")?;
        if rows.is_empty() {
            return Ok(0);
        }
        rows.sort_by_key(|row| row.id);
        let sends = rows
            .chunks(usize::from(self.config.batch_size.max(1)))
            .map(|batch| self.send(batch, lease / 2));
        let mut published = Vec::with_capacity(rows.len());
        let mut failed_batch = None;
        for sent in futures::future::join_all(sends).await {
            match sent {
                Ok(sent) => {
                    self.metrics.batches_sent.inc();
                    published.extend(
                        sent.successful
                            .iter()
                            .filter_map(|ok| ok.id.parse::<i64>().ok()),
                    );
                    for failed in &sent.failed {
                        tracing::warn!(row = %failed.id, code = %failed.code, message = ?failed.message, "SQS refused an outbox event");
                    }
                }
                Err(e) => failed_batch = Some(e),
            }
        }
        // Only rows still under this claim: a replay that re-armed a row while it was being
        // sent (published_at and claimed_until back to NULL), or another relay that claimed it
        // after the lease passed, wants it sent again. Should the mark fail, SQS has the events
        // but the rows are still unpublished: the lease passes and they are sent again, which
        // the consumer's deduplication absorbs.
        let claim = rows[0].claimed_until;
        sqlx::query(
            "UPDATE outbox SET published_at = now(), claimed_until = NULL \
             WHERE id = ANY($1) AND claimed_until = $2",
        )
        .bind(&published)
        .bind(claim)
        .execute(&self.pool)
        .await
        .context("marking outbox rows published")?;
        self.metrics.published.inc_by(published.len() as u64);
        if published.len() < rows.len() {
            // Handed back at once rather than at the lease's end. Should this fail too, the
            // lease hands them back anyway.
            let unpublished: Vec<i64> = rows
                .iter()
                .map(|row| row.id)
                .filter(|id| !published.contains(id))
                .collect();
            self.release(&unpublished, claim).await;
        }
        if let Some(e) = failed_batch {
            return Err(e);
        }
        if published.is_empty() {
            anyhow::bail!("SQS refused all {} events", rows.len());
        }
        Ok(published.len())
    }

    /// One `SendMessageBatch` of `rows`, given up after `deadline` (whatever the SDK's own
    /// retries would still try), so that it always ends inside the rows' lease.
    async fn send(
        &self,
        rows: &[PendingRow],
        deadline: Duration,
    ) -> anyhow::Result<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput> {
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(row.id.to_string())
                .message_body(&row.payload)
                .message_attributes(EVENT_TYPE_ATTRIBUTE, string_attribute(&row.event_type)?);
            if let Some(traceparent) = &row.traceparent {
                entry =
                    entry.message_attributes(TRACEPARENT_ATTRIBUTE, string_attribute(traceparent)?);
            }
            entries.push(entry.build()?);
        }
        let call = self
            .sqs
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send();
        tokio::time::timeout(deadline, call)
            .await
            .with_context(|| format!("SendMessageBatch took longer than {deadline:?}"))?
            .context("SendMessageBatch")
    }

    /// Ends the lease on rows that were not published, so the next cycle takes them again (rows
    /// another claim took meanwhile are left to it).
    async fn release(&self, ids: &[i64], claim: time::OffsetDateTime) {
        let released = sqlx::query(
            "UPDATE outbox SET claimed_until = NULL \
             WHERE id = ANY($1) AND published_at IS NULL AND claimed_until = $2",
        )
        .bind(ids)
        .bind(claim)
        .execute(&self.pool)
        .await;
        if let Err(e) = released {
            tracing::debug!(error = %e, rows = ids.len(), "releasing outbox rows failed; their lease will pass");
        }
    }
}

fn string_attribute(value: &str) -> anyhow::Result<MessageAttributeValue> {
    Ok(MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()?)
}

/// Keeps the backlog gauges current (every second) until `shutdown`.
pub async fn sample_backlog(pool: PgPool, metrics: OutboxMetrics, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let sample: Result<(i64, Option<f64>), _> = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 \
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&pool)
        .await;
        match sample {
            Ok((count, age)) => {
                metrics.backlog.set(count);
                metrics.oldest_age_seconds.set(age.unwrap_or(0.0));
            }
            Err(e) => tracing::debug!(error = %e, "sampling the outbox backlog failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => {}
        }
    }
}
