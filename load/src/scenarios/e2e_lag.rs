//! `e2e-lag`: the time from the ledger's commit to the consolidation's apply.

use std::time::Duration;

use anyhow::Context;

use crate::ceilings::sqs::LocalStack;
use crate::kit::cpu::CpuMeter;
use crate::kit::goose::{Attack, writes};
use crate::kit::journey::recorded_and_applied;
use crate::kit::report::Figure;
use crate::kit::stats::percentile;
use crate::kit::target::Target;

/// `e2e-lag`: POSTs at `rate`/s for `seconds`; then, per entry, the time from the ledger
/// committing it to the consolidation applying it (from both databases' clocks, which are the
/// same PostgreSQL here). In-process targets only. The apply rate is shown beside the emulator's
/// receive+delete rate measured in the same run.
pub async fn e2e_lag(
    target: &Target,
    rate: usize,
    seconds: usize,
    localstack: LocalStack,
) -> anyhow::Result<Vec<Figure>> {
    let local = target
        .local
        .as_ref()
        .context("e2e-lag needs the platform started by this process")?;
    // Start from a drained pipeline: a backlog left by an earlier scenario would be measured.
    local
        .system
        .lock()
        .await
        .wait_consistent(&target.merchants, Duration::from_secs(600))
        .await?;
    let scenario = writes(target, "e2e");
    let metrics = local.system.lock().await.consolidation_metrics.clone();
    let batches = || {
        let consumer = &metrics.as_ref()?.consumer;
        Some((consumer.received.get(), consumer.apply_seconds.count()))
    };
    let batches_before = batches();
    let meter = CpuMeter::start(local.stack).await;
    let run = Attack {
        host: &target.ledger_url,
        users: 32,
        rate,
        seconds,
        report: "e2e-lag",
    }
    .run(scenario)
    .await?;
    let busy = meter.stop(local.stack).await;
    let batches_after = batches();
    let system = local.system.lock().await;
    system
        .wait_consistent(&target.merchants, Duration::from_secs(300))
        .await?;
    let ledger = system.ledger_scope.pg_pool().await?;
    let consolidation = system.consolidation_scope.pg_pool().await?;
    let journeys = recorded_and_applied(&ledger, &consolidation, "e2e").await?;
    let ms = |from: time::OffsetDateTime, to: time::OffsetDateTime| {
        (to - from).as_seconds_f64() * 1000.0
    };
    let sorted = |values: &mut dyn Iterator<Item = f64>| {
        let mut values: Vec<f64> = values.collect();
        values.sort_by(f64::total_cmp);
        values
    };
    let lags = sorted(&mut journeys.iter().map(|j| ms(j.recorded, j.applied)));
    // The two halves: the ledger's relay, and the consumer (SQS's queueing included).
    let relayed = sorted(
        &mut journeys
            .iter()
            .filter_map(|j| Some(ms(j.recorded, j.published?))),
    );
    let consumed = sorted(
        &mut journeys
            .iter()
            .filter_map(|j| Some(ms(j.published?, j.applied))),
    );
    let at = percentile;
    let span = journeys
        .iter()
        .map(|j| j.recorded)
        .min()
        .zip(journeys.iter().map(|j| j.applied).max());
    let apply_rate = span.map_or(0.0, |(first, last)| {
        lags.len() as f64 / (last - first).as_seconds_f64().max(0.001)
    });
    let mut figures = vec![
        Figure::new(
            "e2e-lag",
            &format!("POST rate achieved (asked {rate}/s)"),
            run.rate,
            "req/s",
        ),
        Figure::new("e2e-lag", "entries measured", lags.len() as f64, ""),
        Figure::new("e2e-lag", "lag p50", at(&lags, 0.5), "ms"),
        Figure::new("e2e-lag", "lag p99 (goal 1000 ms)", at(&lags, 0.99), "ms")
            .bound(at(&lags, 0.99) <= 1000.0),
        // Why the lag grows at a rate the receive+delete ceiling alone would allow: each event
        // is also sent through the same one-request-at-a-time emulator.
        Figure::new("e2e-lag", "POST rate achieved", run.rate, "req/s").against(
            "LocalStack whole path (send, receive, delete)",
            localstack.whole_path(),
        ),
        Figure::new(
            "e2e-lag",
            "apply rate (bounded by the POST rate)",
            apply_rate,
            "events/s",
        )
        .against("LocalStack receive+delete", localstack.receive_delete),
    ];
    for (half, lags) in [
        ("commit to publish (relay)", &relayed),
        ("publish to apply (consumer)", &consumed),
    ] {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            figures.push(Figure::new(
                "e2e-lag",
                &format!("{half}, {name}"),
                at(lags, q),
                "ms",
            ));
        }
    }
    // How full the consumer's batches were: a receive returns what is there, up to ten, so a
    // live queue costs the emulator more calls per event than a filled one.
    if let (Some((received_0, batches_0)), Some((received_1, batches_1))) =
        (batches_before, batches_after)
    {
        figures.push(Figure::new(
            "e2e-lag",
            "events per applied batch, mean (at most 10)",
            (received_1 - received_0) as f64 / (batches_1 - batches_0).max(1) as f64,
            "",
        ));
    }
    // The whole path again, at the CPU the emulator got while the POSTs ran rather than the
    // CPU it had to itself: the rate it could serve then, which the POSTs are judged against.
    if let (Some(during), Some(alone)) = (busy.emulator, localstack.emulator_cpu) {
        figures.push(
            Figure::new("e2e-lag", "POST rate achieved", run.rate, "req/s").against(
                "LocalStack whole path at its CPU during the POSTs",
                localstack.whole_path() * during / alone.max(f64::EPSILON),
            ),
        );
    }
    // Who used the two cores while the POSTs ran: the emulator serves the relay's sends and the
    // consumer's receives and deletes; this process runs goose, the ledger and the consolidation.
    figures.extend(busy.figures(
        "e2e-lag",
        "the POSTs",
        "this process (goose, ledger, consolidation)",
    ));
    Ok(figures)
}
