//! Ceilings measured in the same run as the figures they divide: pgbench with the ledger's own
//! statement, LocalStack's batch receive+delete rate, and a trivial axum handler under goose.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use goose::prelude::*;

use crate::scenarios;
use crate::target::Target;

/// The ledger's insert (entry + outbox row in one statement), as pgbench runs it. A space
/// follows every colon of the JSON: pgbench would read `:null` as a variable.
const PGBENCH_SCRIPT: &str = r#"\set amount random(1, 1000000)
WITH entry AS (
  INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date,
    description, category, reverses_entry_id, recorded_at)
  VALUES (gen_random_uuid(), 'pgbench', 'credit', :amount, 'BRL', CURRENT_DATE, 'pgbench', NULL, NULL, now())
  RETURNING id, seq, merchant_id, kind, amount_minor, currency, business_date,
    description, category, reverses_entry_id, recorded_at),
event AS (
  INSERT INTO outbox (event_id, event_type, payload, traceparent)
  VALUES (gen_random_uuid(), 'entry.recorded.v1',
  '{"event_type": "entry.recorded.v1", "event_id": "018f0000-0000-7000-8000-000000000000", "entry_id": "018f0000-0000-7000-8000-000000000001", "merchant_id": "pgbench", "kind": "credit", "amount_minor": 100, "currency": "BRL", "business_date": "2026-11-24", "recorded_at": "2026-11-24T13:05:10.123Z", "reverses_entry_id": null}',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'))
SELECT * FROM entry;
"#;

/// pgbench: transactions per second of the ledger's statement with `clients` clients.
pub async fn pgbench(database_url: &str, clients: usize, seconds: usize) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("load-pgbench-{}.sql", std::process::id()));
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(database_url)
        .output()
        .await
        .context("running pgbench (apt-get install -y postgresql-client-15)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))
}

/// Sends `bodies` to `queue` in batches of ten, 16 batches in flight.
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bodies: &[String],
) -> anyhow::Result<()> {
    let mut sends = tokio::task::JoinSet::new();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (sqs, queue) = (sqs.clone(), queue.to_string());
        sends.spawn(async move {
            sqs.send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
        });
        while sends.len() >= 16 {
            sends.join_next().await.context("send task")???;
        }
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    Ok(())
}

/// The SQS emulator's rates over one queue, in messages per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalStack {
    /// Batch sends of ten, 16 batches in flight, into an empty queue.
    pub send: f64,
    /// receive(10) + delete-batch of those messages.
    pub receive_delete: f64,
    /// The emulator's CPU meanwhile, in cores, where the backend can tell.
    pub emulator_cpu: Option<f64>,
}

impl LocalStack {
    /// The rate of the whole path a ledger event takes through the emulator (sent by the relay,
    /// then received and deleted by the consumer): the emulator serves one request at a time,
    /// so the times per message add up.
    pub fn whole_path(&self) -> f64 {
        if self.send <= 0.0 || self.receive_delete <= 0.0 {
            return 0.0;
        }
        1.0 / (1.0 / self.send + 1.0 / self.receive_delete)
    }

    /// The better of each rate, and the larger CPU.
    pub fn best(self, other: Self) -> Self {
        Self {
            send: self.send.max(other.send),
            receive_delete: self.receive_delete.max(other.receive_delete),
            emulator_cpu: match (self.emulator_cpu, other.emulator_cpu) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

/// LocalStack: `messages` messages sent, then received and deleted with `pollers` loops, each
/// phase timed on its own (the receives time to the last delete).
pub async fn localstack(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    messages: usize,
    pollers: usize,
) -> anyhow::Result<LocalStack> {
    let bodies = vec!["x".repeat(300); messages];
    let started = Instant::now();
    send_all(sqs, queue, &bodies).await?;
    let send = messages as f64 / started.elapsed().as_secs_f64();
    let receive_delete =
        receive_delete_filled(sqs, queue, messages, pollers, Request::Bare, None).await?;
    Ok(LocalStack {
        send,
        receive_delete,
        emulator_cpu: None,
    })
}

/// What a ceiling's receives ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Bodies only: the emulator's least work per message.
    Bare,
    /// What the consolidation's consumer asks for: every message attribute and the receive
    /// count (which it needs for the event type, the DLQ's copy and the retry backoff).
    AsTheConsumer,
}

/// Messages per second through receive(10) + delete-batch with `pollers` loops, receives shaped
/// by `request`, of a queue already filled with `messages` messages; timed to the last delete,
/// at which `finished` is notified.
pub async fn receive_delete_filled(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    messages: usize,
    pollers: usize,
    request: Request,
    finished: Option<Arc<tokio::sync::Notify>>,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let last_delete = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let started = Instant::now();
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..pollers {
        let (sqs, queue, done, last_delete, finished) = (
            sqs.clone(),
            queue.to_string(),
            Arc::clone(&done),
            Arc::clone(&last_delete),
            finished.clone(),
        );
        loops.spawn(async move {
            while done.load(Ordering::Relaxed) < messages as u64 {
                let mut receive = sqs
                    .receive_message()
                    .queue_url(&queue)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1);
                if request == Request::AsTheConsumer {
                    receive = receive
                        .message_system_attribute_names(
                            MessageSystemAttributeName::ApproximateReceiveCount,
                        )
                        .message_attribute_names("All");
                }
                let got = receive.send().await?;
                let got = got.messages.unwrap_or_default();
                if got.is_empty() {
                    continue;
                }
                let entries: Vec<_> = got
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap_or_default())
                            .build()
                    })
                    .collect::<Result<_, _>>()?;
                sqs.delete_message_batch()
                    .queue_url(&queue)
                    .set_entries(Some(entries))
                    .send()
                    .await?;
                let total = done.fetch_add(got.len() as u64, Ordering::Relaxed) + got.len() as u64;
                if total >= messages as u64 {
                    last_delete
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(Instant::now);
                    if let Some(finished) = &finished {
                        finished.notify_one();
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = loops.join_next().await {
        result??;
    }
    let end = last_delete
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(Instant::now);
    Ok(messages as f64 / (end - started).as_secs_f64())
}

async fn hello(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

/// A trivial axum handler's rate under the same goose setup as the read scenarios.
pub async fn axum_trivial(target: &Target, seconds: usize) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let scenario = scenario!("trivial").register_transaction(transaction!(hello));
    let run = scenarios::attack(target, scenario, &address, 64, 0, seconds, "ceiling-axum").await?;
    server.abort();
    Ok(run.rate)
}
