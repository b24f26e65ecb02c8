//! `consumer-drain`: how fast the consolidation applies events, beside what the SQS emulator
//! itself allows. A queue is filled with `events` real `EntryRecorded` events, then an
//! in-process consolidation with `pollers` poll loops drains it; the ceiling is the emulator's
//! own batch receive + delete rate over the same number of messages with the same number of
//! loops (`ceilings::localstack`), measured just before, in the same run (best of two rounds of
//! each). The e2e-lag scenario cannot show this: its apply rate is bounded by the POST rate it
//! is fed.

use std::time::{Duration, Instant};

use cashflow_contracts::{Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1};
use harness::{ScopeOptions, Stack};

use crate::report::Figure;

/// The share of the emulator's ceiling the consumer must reach (issue 15).
pub const GOAL: f64 = 0.8;
const MERCHANTS: usize = 50;

/// Sends `events` events (over 50 merchants and 7 days) to `queue`.
pub async fn fill(sqs: &aws_sdk_sqs::Client, queue: &str, events: usize) -> anyhow::Result<()> {
    let today = time::OffsetDateTime::now_utc().date();
    let bodies: Vec<String> = (0..events)
        .map(|i| {
            serde_json::to_string(&EntryRecordedV1 {
                event_type: ENTRY_RECORDED.into(),
                event_id: uuid::Uuid::now_v7(),
                entry_id: uuid::Uuid::now_v7(),
                merchant_id: format!("drain-{}", i % MERCHANTS).parse()?,
                kind: if i % 3 == 0 {
                    EntryKind::Debit
                } else {
                    EntryKind::Credit
                },
                amount_minor: 100 + i as i64,
                currency: Currency::BRL,
                business_date: today - time::Duration::days((i % 7) as i64),
                recorded_at: time::OffsetDateTime::now_utc(),
                reverses_entry_id: None,
            })
            .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<_>>()?;
    crate::ceilings::send_all(sqs, queue, &bodies).await
}

/// Runs the scenario on `stack`: two rounds, each the emulator's ceiling then the
/// consolidation's drain of as many events with as many poll loops; the best of each (the
/// emulator warms up, and the machine is shared: a round can be slowed by something else).
pub async fn consumer_drain(
    stack: &Stack,
    events: usize,
    pollers: u16,
) -> anyhow::Result<Vec<Figure>> {
    let (mut ceiling, mut rate): (f64, f64) = (0.0, 0.0);
    for _ in 0..2 {
        let scope = stack.scope().await?;
        ceiling = ceiling.max(
            crate::ceilings::localstack(
                &scope.sqs(),
                &scope.queues.url,
                events,
                usize::from(pollers),
            )
            .await?,
        );
        rate = rate.max(drain(stack, events, pollers).await?);
    }
    let ratio = rate / ceiling;
    Ok(vec![
        Figure::new(
            "consumer-drain",
            &format!("emulator receive+delete, {pollers} loops, best of 2"),
            ceiling,
            "msg/s",
        ),
        Figure::new(
            "consumer-drain",
            &format!(
                "apply rate draining {events} events, {pollers} pollers, best of 2 (goal {GOAL}x)"
            ),
            rate,
            "events/s",
        )
        .against("emulator receive+delete", ceiling)
        .bound(ratio >= GOAL),
    ])
}

/// One drain: a fresh queue filled with `events` events, a consolidation started on it; the
/// rate from the moment it runs to the last event applied.
async fn drain(stack: &Stack, events: usize, pollers: u16) -> anyhow::Result<f64> {
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    fill(&scope.sqs(), &scope.queues.url, events).await?;
    let mut config = crate::history::consolidation_config(stack, &scope, true, "drain");
    config.database_max_connections = 20;
    config.consumer = consolidation::config::ConsumerConfig {
        concurrency: pollers,
        wait_seconds: 1,
        ..Default::default()
    };
    let app = consolidation::Application::build(config).await?;
    let metrics = app.metrics().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let deadline = started + Duration::from_secs(600);
    while metrics.consumer.applied.get() < events as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    server.await??;
    let applied = metrics.consumer.applied.get();
    anyhow::ensure!(
        applied >= events as u64,
        "the consolidation applied {applied} of {events} events in {elapsed:?}"
    );
    Ok(events as f64 / elapsed.as_secs_f64())
}
