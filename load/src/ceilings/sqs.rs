//! The SQS emulator's own rates: batch sends, and receive(10) + delete-batch with a number of
//! loops (consumer-drain's and e2e-lag's ceilings).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use harness::Stack;

use crate::kit::cpu::CpuMeter;
use crate::kit::report::Figure;

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

/// LocalStack's send and receive+delete rates over 10,000 messages with 4 loops, on a fresh
/// queue of `stack`, pushed to `figures`. It warms up on a first round: the better of two.
pub async fn measure(stack: &Stack, figures: &mut Vec<Figure>) -> anyhow::Result<LocalStack> {
    let scope = stack.scope().await?;
    let mut best = LocalStack::default();
    for _ in 0..2 {
        let meter = CpuMeter::start(stack).await;
        let round = localstack(&scope.sqs(), &scope.queues.url, 10_000, 4).await?;
        let busy = meter.stop(stack).await;
        best = best.best(LocalStack {
            emulator_cpu: busy.emulator,
            ..round
        });
    }
    figures.push(Figure::new(
        "ceilings",
        "LocalStack receive+delete, 4 pollers",
        best.receive_delete,
        "msg/s",
    ));
    figures.push(Figure::new(
        "ceilings",
        "LocalStack send, batches of 10",
        best.send,
        "msg/s",
    ));
    if let Some(cores) = best.emulator_cpu {
        figures.push(Figure::new(
            "ceilings",
            "LocalStack's CPU meanwhile",
            cores * 100.0,
            "% of a core",
        ));
    }
    Ok(best)
}
