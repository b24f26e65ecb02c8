//! Group commit of new entries: concurrent `POST .../entries` requests are written together, in
//! one multi-row statement in autocommit (their `Idempotency-Key` claims with the answers,
//! entries and outbox rows), and each caller is answered only after that commit (ADR 0012).
//!
//! A handler hands its checked entry to [`GroupCommit::record`] and waits for its answer. The
//! [`Writer`] (a supervised background task) takes the first waiting request, adds every other
//! one already queued (up to `WRITE_BATCH_MAX_SIZE`) and writes them at once. A lone request is
//! written at once: batches form only from requests that queued while earlier batches were
//! being written (`WRITE_BATCH_MAX_IN_FLIGHT` at a time), or within `WRITE_BATCH_MAX_WAIT_MS`
//! when another batch is in flight.
//!
//! Invariants:
//! - **201 only after commit.** An answer is sent once the batch's statement has returned, that
//!   is committed (autocommit: a failure at commit is the statement's error).
//! - **Idempotency is exact.** Keys are claimed by the batch's statement, as one request claims
//!   its key ([`crate::idempotency`]), and an entry is written only if its key was claimed; the
//!   claimed key's row carries its answer from the start (one row version, no "in progress"
//!   state ever committed). Two requests of one batch with the same key are never both
//!   written: the later waits for the first's outcome and gets its answer (same body) or 422
//!   (another body).
//! - **The outbox row is in the same transaction** as its entry: one statement writes both.
//! - **A batch failure fails no innocent request.** When the database refuses a batch, each of
//!   its requests is written again alone, so that only the guilty one gets its error. A lost
//!   connection or pool timeout is everyone's: all get the 503.
//! - **Deadlines hold.** A caller waits under the request deadline; a request whose caller has
//!   given up (deadline passed, client gone) before its batch started is not written.
//! - **Shutdown drains.** The writer stops after the HTTP server has drained, and writes what
//!   is still queued before it returns.
//! - **No deadlocks between batches.** Rows are written in (business date, merchant) order,
//!   the order of the digest rows they lock, and keys are claimed in (merchant, key) order.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use sqlx::PgPool;
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::WriteBatchConfig;
use crate::entries::{self, KeyClaim, NewEntry, PreparedEntry};
use crate::idempotency::{self, Idempotency};
use crate::metrics::WriteMetrics;
use cashflow_platform::edge::ApiError;

/// What a recording request is answered: 201 and the entry, or the replay of a key's first
/// answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// 201, or the replayed status.
    pub status: StatusCode,
    /// The entry (JSON text), as stored with its key.
    pub body: String,
    /// The entry's id, for the `Location` header.
    pub id: Option<String>,
}

/// One request waiting for its batch.
#[derive(Debug)]
struct Job {
    entry: PreparedEntry,
    idempotency: Option<Idempotency>,
    reply: oneshot::Sender<Result<Answer, ApiError>>,
}

impl Job {
    fn merchant(&self) -> &str {
        &self.entry.entry.merchant_id
    }

    /// Whether this job and `other` carry the same key of the same merchant.
    fn same_key(&self, other: &Self) -> bool {
        match (&self.idempotency, &other.idempotency) {
            (Some(a), Some(b)) => a.key() == b.key() && self.merchant() == other.merchant(),
            _ => false,
        }
    }
}

/// The handlers' side: queues a request for the writer and waits for its answer. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
    /// Requests queued and not yet taken by a batch (the writer decrements it).
    queued: prometheus_client::metrics::gauge::Gauge,
}

impl GroupCommit {
    /// A queue and the writer that serves it (to run with [`Writer::run`]).
    pub fn new(
        config: WriteBatchConfig,
        pool: PgPool,
        idempotency_window: Duration,
        relay_wake: Arc<Notify>,
        metrics: WriteMetrics,
    ) -> (Self, Writer) {
        // Bounded: past this, handlers wait to queue (under their request deadline).
        let (queue, receiver) = mpsc::channel(config.max_size * config.max_in_flight * 4);
        let queued = metrics.queued.clone();
        let writer = Writer {
            receiver: Arc::new(Mutex::new(receiver)),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            shared: Arc::new(Shared {
                pool,
                idempotency_window,
                relay_wake,
                metrics,
            }),
            config,
        };
        (Self { queue, queued }, writer)
    }

    /// Records `entry` with its batch and answers once the batch has committed.
    pub async fn record(
        &self,
        entry: NewEntry,
        idempotency: Option<Idempotency>,
        traceparent: String,
    ) -> Result<Answer, ApiError> {
        let entry = PreparedEntry::new(entry, entries::recording_time(), traceparent)
            .map_err(anyhow::Error::from)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            entry,
            idempotency,
            reply,
        };
        let stopped = || ApiError::Unavailable {
            what: "the ledger",
            cause: anyhow::anyhow!("the entry writer has stopped (shutting down)"),
        };
        // Counted once queued (the writer may take it first: the gauge can dip below the truth
        // for an instant, never drift), not before: a caller dropped while waiting for room in
        // the queue must not leave a count behind.
        self.queue.send(job).await.map_err(|_| stopped())?;
        self.queued.inc();
        answer.await.unwrap_or_else(|_| {
            // The batch's task died (a panic, logged where it happened) before answering:
            // whether it committed is unknown, hence no 503 inviting a blind retry.
            Err(ApiError::Internal(anyhow::anyhow!(
                "the entry writer stopped before answering"
            )))
        })
    }
}

/// What every batch needs.
#[derive(Debug)]
struct Shared {
    pool: PgPool,
    idempotency_window: Duration,
    relay_wake: Arc<Notify>,
    metrics: WriteMetrics,
}

/// The background task forming and writing batches. Cheap to clone; clones share the queue, so
/// a restarted writer (after a panic) carries on with what is queued.
#[derive(Debug, Clone)]
pub struct Writer {
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    /// One permit per batch in flight.
    slots: Arc<Semaphore>,
    shared: Arc<Shared>,
    config: WriteBatchConfig,
}

impl Writer {
    /// Writes batches until `stop` is cancelled, then writes whatever is still queued and waits
    /// for the batches in flight. Cancel `stop` only once no request can queue any more (the
    /// HTTP server has drained); a request queued later is answered 503.
    pub async fn run(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut receiver = self.receiver.lock().await;
        loop {
            let slot = tokio::select! {
                slot = Arc::clone(&self.slots).acquire_owned() => slot?,
                () = stop.cancelled() => break,
            };
            let first = tokio::select! {
                job = receiver.recv() => job,
                () = stop.cancelled() => break,
            };
            let Some(first) = first else {
                // Every handle is gone (the router dropped as the HTTP server drained): nothing
                // more can come. Returning now, before `stop`, would be taken by the supervisor
                // for a crash (an ERROR and a restart on every clean shutdown).
                stop.cancelled().await;
                break;
            };
            let batch = self.collect(&mut receiver, first, true).await;
            self.spawn(batch, slot);
        }
        receiver.close();
        while let Some(first) = receiver.recv().await {
            let slot = Arc::clone(&self.slots).acquire_owned().await?;
            let batch = self.collect(&mut receiver, first, false).await;
            self.spawn(batch, slot);
        }
        let all = u32::try_from(self.config.max_in_flight).unwrap_or(u32::MAX);
        drop(self.slots.acquire_many(all).await?);
        Ok(())
    }

    /// `first` and what else is queued, up to the batch size. Waits up to the configured
    /// time for more only when another batch is in flight (then there is load; a lone request
    /// never waits).
    async fn collect(
        &self,
        receiver: &mut mpsc::Receiver<Job>,
        first: Job,
        may_wait: bool,
    ) -> Vec<Job> {
        let max = self.config.max_size;
        let mut batch = Vec::with_capacity(max.min(128));
        batch.push(first);
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let others_in_flight = self.slots.available_permits() + 1 < self.config.max_in_flight;
        if may_wait && batch.len() < max && !self.config.max_wait.is_zero() && others_in_flight {
            let until = tokio::time::Instant::now() + self.config.max_wait;
            while batch.len() < max {
                match tokio::time::timeout_at(until, receiver.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        self.shared
            .metrics
            .queued
            .dec_by(i64::try_from(batch.len()).unwrap_or(i64::MAX));
        batch
    }

    /// Writes `batch` in a task of its own, holding `slot` until it is answered. A panic there
    /// is logged; its callers get a 500.
    fn spawn(&self, batch: Vec<Job>, slot: OwnedSemaphorePermit) {
        let shared = Arc::clone(&self.shared);
        let write = tokio::spawn(async move { shared.write(batch).await });
        tokio::spawn(async move {
            if let Err(e) = write.await {
                tracing::error!(error = %e, "a batch of entries failed before answering");
            }
            drop(slot);
        });
    }
}

/// How one request of a batch ends: answered, or to be written again alone.
enum Outcome {
    Done(Result<Answer, ApiError>),
    Again,
}

impl Shared {
    /// Writes a batch and answers each of its callers.
    async fn write(&self, mut jobs: Vec<Job>) {
        let before = jobs.len();
        jobs.retain(|job| !job.reply.is_closed());
        self.metrics.abandoned.inc_by((before - jobs.len()) as u64);
        if jobs.is_empty() {
            return;
        }
        // Lock order (see the module's invariants); stable, so a merchant-day's entries keep
        // their arrival order.
        jobs.sort_by(|a, b| a.entry.lock_order().cmp(&b.entry.lock_order()));
        // A request repeating the key of an earlier one in this batch waits for that one.
        let (jobs, repeats): (Vec<Job>, Vec<Job>) = {
            let mut firsts: Vec<Job> = Vec::with_capacity(jobs.len());
            let mut repeats = Vec::new();
            for job in jobs {
                if firsts.iter().any(|first| first.same_key(&job)) {
                    repeats.push(job);
                } else {
                    firsts.push(job);
                }
            }
            (firsts, repeats)
        };
        self.metrics.batch_size.observe(jobs.len() as f64);
        let outcomes = match self.attempt(&jobs).await {
            Ok(outcomes) => outcomes,
            Err(e) if jobs.len() > 1 && caused_by_a_row(&e) => {
                tracing::warn!(error = %e, size = jobs.len(),
                    "a batch of entries failed; writing each alone");
                self.metrics.retried_alone.inc();
                jobs.iter().map(|_| Outcome::Again).collect()
            }
            Err(e) => everyones(&e, jobs.len()),
        };
        let mut answered: Vec<(Job, Result<Answer, ApiError>)> = Vec::with_capacity(jobs.len());
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let result = match outcome {
                Outcome::Done(result) => result,
                Outcome::Again => self.alone(&job).await,
            };
            answered.push((job, result));
        }
        for repeat in repeats {
            let first = answered
                .iter()
                .find(|(first, _)| first.same_key(&repeat))
                .map(|(first, result)| (first.idempotency.as_ref(), result.as_ref().ok()));
            let result = match first {
                Some((Some(key), Some(answer))) => match repeat.idempotency.as_ref() {
                    Some(repeated) if repeated.same_request(key) => Ok(answer.clone()),
                    _ => Err(ApiError::IdempotencyMismatch),
                },
                // The first failed: the key is free again; this one is a request of its own.
                _ => self.alone(&repeat).await,
            };
            let _ = repeat.reply.send(result);
        }
        for (job, result) in answered {
            // The caller may have left meanwhile; its entry is committed regardless, like a
            // request whose client disconnects after the commit.
            let _ = job.reply.send(result);
        }
    }

    /// One request written on its own (after its batch failed).
    async fn alone(&self, job: &Job) -> Result<Answer, ApiError> {
        if job.reply.is_closed() {
            return Err(ApiError::Internal(anyhow::anyhow!("the caller left")));
        }
        self.metrics.batch_size.observe(1.0);
        match self.attempt(std::slice::from_ref(job)).await {
            Ok(mut outcomes) => match outcomes.pop() {
                Some(Outcome::Done(result)) => result,
                _ => Err(ApiError::Internal(anyhow::anyhow!(
                    "no outcome for an entry"
                ))),
            },
            Err(e) => Err(ApiError::from(e)),
        }
    }

    /// Writes `jobs` in one statement in autocommit ([`entries::insert_batch`]): their keys
    /// claimed, and the entries whose key it claimed (or that have none) written with their
    /// events and their keys' answers. `Err` means nothing was written. A key seen before is
    /// answered from its stored row, read once the statement has committed.
    async fn attempt(&self, jobs: &[Job]) -> Result<Vec<Outcome>, sqlx::Error> {
        let key_of = |i: usize| jobs[i].idempotency.as_ref().map(Idempotency::key);
        // Claimed in (merchant, key) order.
        let mut order: Vec<usize> = (0..jobs.len()).filter(|&i| key_of(i).is_some()).collect();
        order.sort_by(|&a, &b| {
            (jobs[a].merchant(), key_of(a)).cmp(&(jobs[b].merchant(), key_of(b)))
        });
        let claims: Vec<KeyClaim<'_>> = order
            .iter()
            .filter_map(|&i| {
                let key = jobs[i].idempotency.as_ref()?;
                Some(KeyClaim {
                    merchant: jobs[i].merchant(),
                    key: key.key(),
                    request_hash: key.request_hash(),
                    status: CREATED,
                    body: jobs[i].entry.answer(),
                })
            })
            .collect();
        let rows: Vec<&PreparedEntry> = jobs.iter().map(|job| &job.entry).collect();
        let keys_of: Vec<Option<&str>> = (0..jobs.len()).map(key_of).collect();
        let claimed = entries::insert_batch(
            &self.pool,
            &rows,
            &keys_of,
            &claims,
            self.idempotency_window,
        )
        .await?;
        // Committed from here on: every outcome below is an answer, never `Err`.
        let is_claimed = |job: &Job| match &job.idempotency {
            None => true,
            Some(key) => claimed
                .iter()
                .any(|(m, k)| m == job.merchant() && k == key.key()),
        };
        if jobs.iter().any(is_claimed) {
            self.relay_wake.notify_one();
        }
        let seen_before: Vec<(&str, &Idempotency)> = jobs
            .iter()
            .filter(|job| !is_claimed(job))
            .filter_map(|job| Some((job.merchant(), job.idempotency.as_ref()?)))
            .collect();
        let mut firsts = if seen_before.is_empty() {
            Vec::new()
        } else {
            // A statement of its own, after the commit: in READ COMMITTED it sees what a
            // transaction the claim waited for committed meanwhile.
            match idempotency::first_answers(&self.pool, &seen_before).await {
                Ok(firsts) => firsts
                    .into_iter()
                    .map(|first| {
                        first.map(|first| Answer {
                            status: first.status,
                            body: first.body,
                            id: first.id,
                        })
                    })
                    .collect(),
                Err(e) => seen_before.iter().map(|_| Err(failure(&e))).collect(),
            }
        }
        .into_iter();
        Ok(jobs
            .iter()
            .map(|job| {
                Outcome::Done(if is_claimed(job) {
                    Ok(Answer {
                        status: StatusCode::CREATED,
                        body: job.entry.answer().to_string(),
                        id: Some(job.entry.entry.id.to_string()),
                    })
                } else {
                    firsts.next().unwrap_or_else(|| {
                        Err(ApiError::Internal(anyhow::anyhow!(
                            "no outcome for an entry"
                        )))
                    })
                })
            })
            .collect())
    }
}

/// The status a recorded entry is answered (as stored with its key).
const CREATED: i16 = 201;

/// Whether PostgreSQL refused the batch's statement (a constraint, a trigger, a deadlock, a
/// timeout: possibly because of one row) rather than being unreachable (then everyone's
/// request would fail alone too).
fn caused_by_a_row(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(_))
}

/// The same failure for each of `n` requests (each answer logs it, as a request alone would).
fn everyones(error: &sqlx::Error, n: usize) -> Vec<Outcome> {
    (0..n).map(|_| Outcome::Done(Err(failure(error)))).collect()
}

/// A request's error for a database `error` (one per request: an [`ApiError`] is not `Clone`).
fn failure(error: &sqlx::Error) -> ApiError {
    let cause = anyhow::anyhow!("writing a batch of entries: {error}");
    if cashflow_platform::deadline::is_unavailable(error) {
        ApiError::Unavailable {
            what: "the ledger database",
            cause,
        }
    } else {
        ApiError::Internal(cause)
    }
}
