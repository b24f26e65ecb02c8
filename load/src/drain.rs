//! `consumer-drain`: how fast the consolidation applies events, beside what the SQS emulator
//! itself allows. A queue is filled with `events` real `EntryRecorded` events, then an
//! in-process consolidation with `pollers` poll loops drains it. The ceiling (the goal
//! is a share of it) is the emulator's own batch receive + delete rate over the same number of
//! messages with the same number of loops (`ceilings::localstack`). A second ceiling receives the
//! same events asking what the consumer asks for (every attribute and the receive count): the
//! emulator is a single Python process near one core's worth of work, so the consumer's rate is
//! best read against what the emulator serves for the requests the consumer must make. Both are
//! measured in the same run as the drain, three alternating rounds, best of each. The e2e-lag
//! scenario cannot show this: its apply rate is bounded by the POST rate it is fed.

use std::time::{Duration, Instant};

use cashflow_contracts::{Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1};
use harness::{ScopeOptions, Stack};

use crate::ceilings::{self, Request};
use crate::report::Figure;

/// The share of the emulator's ceiling the consumer must reach (issue 15).
pub const GOAL: f64 = 0.8;
const MERCHANTS: usize = 50;
const ROUNDS: usize = 3;

/// `n` events as the ledger publishes them, over 50 merchants and 7 days.
pub fn events(n: usize) -> anyhow::Result<Vec<String>> {
    let today = time::OffsetDateTime::now_utc().date();
    (0..n)
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
        .collect()
}

/// The best of each figure over the rounds.
#[derive(Debug, Default)]
struct Best {
    bare: f64,
    as_the_consumer: f64,
    rate: f64,
    apply_ms: f64,
}

/// Runs the scenario on `stack`: rounds of the emulator's bare ceiling, its ceiling with the
/// consumer's requests, and the consolidation's drain of as many events with as many poll
/// loops; the best of each (the emulator warms up, and the machine is shared: a round can be
/// slowed by something else).
pub async fn consumer_drain(
    stack: &Stack,
    events: usize,
    pollers: u16,
) -> anyhow::Result<Vec<Figure>> {
    let mut best = Best::default();
    let loops = usize::from(pollers);
    for _ in 0..ROUNDS {
        let scope = stack.scope().await?;
        let (sqs, queue) = (scope.sqs(), scope.queues.url.clone());
        best.bare = best
            .bare
            .max(ceilings::localstack(&sqs, &queue, events, loops).await?);
        let bodies = self::events(events)?;
        let shaped =
            ceilings::receive_delete(&sqs, &queue, &bodies, loops, Request::AsTheConsumer).await?;
        best.as_the_consumer = best.as_the_consumer.max(shaped);
        let (rate, apply_ms) = drain(stack, events, pollers).await?;
        if rate > best.rate {
            (best.rate, best.apply_ms) = (rate, apply_ms);
        }
    }
    let ratio = best.rate / best.bare;
    Ok(vec![
        Figure::new(
            "consumer-drain",
            &format!("emulator receive+delete, {pollers} loops, best of {ROUNDS}"),
            best.bare,
            "msg/s",
        ),
        Figure::new(
            "consumer-drain",
            &format!(
                "emulator receive+delete asking what the consumer asks, {pollers} loops, best of {ROUNDS}"
            ),
            best.as_the_consumer,
            "msg/s",
        ),
        Figure::new(
            "consumer-drain",
            &format!(
                "apply rate draining {events} events, {pollers} pollers, best of {ROUNDS} (goal {GOAL}x)"
            ),
            best.rate,
            "events/s",
        )
        .against("emulator receive+delete", best.bare)
        .bound(ratio >= GOAL),
        Figure::new(
            "consumer-drain",
            "the same apply rate, against the emulator asked what the consumer asks",
            best.rate,
            "events/s",
        )
        .against("emulator, the consumer's requests", best.as_the_consumer),
        // Where a poll loop's cycle goes: the apply is one of the three calls it overlaps
        // (receive; apply + invalidate; delete), next to the emulator's whole cycle per loop.
        Figure::new(
            "consumer-drain",
            "apply of one batch (PostgreSQL), mean, in the best round",
            best.apply_ms,
            "ms",
        ),
        Figure::new(
            "consumer-drain",
            "emulator's receive+delete cycle per loop, mean (10 messages)",
            f64::from(pollers) * 10.0 / best.bare * 1000.0,
            "ms",
        ),
    ])
}

/// One drain: a fresh queue filled with `events` events, a consolidation started on it; the
/// rate from the moment it runs to the last event applied, and the mean apply of a batch (ms).
async fn drain(stack: &Stack, events: usize, pollers: u16) -> anyhow::Result<(f64, f64)> {
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    ceilings::send_all(&scope.sqs(), &scope.queues.url, &self::events(events)?).await?;
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
    let apply = &metrics.consumer.apply_seconds;
    let apply_ms = apply.sum() / apply.count().max(1) as f64 * 1000.0;
    Ok((events as f64 / elapsed.as_secs_f64(), apply_ms))
}
