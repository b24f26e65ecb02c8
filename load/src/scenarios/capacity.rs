//! `capacity`: the read capacity search, with writes in the background.

use std::sync::Arc;
use std::time::Duration;

use crate::kit::goose::{Attack, Run, reads};
use crate::kit::report::Figure;
use crate::kit::target::Target;
use crate::kit::writer::{WriteSummary, Writer, WriterConfig};

/// `capacity`: read rate raised step by step until a failure appears, p99 exceeds 100 ms, or
/// the achieved rate stops growing (the service is saturated: raising the asked rate adds less
/// than 5 %), while the ledger receives open-loop writes at `write_rate`/s in the background
/// (0: none) through the same target. Reports the highest achieved read rate of a passing step
/// beside the trivial axum handler.
///
/// The achieved rate, not the asked one, is the figure: goose's throttle releases its tokens
/// after timer sleeps that overshoot, so it delivers 88-94 % of the asked rate even to a service
/// answering in 2 ms (a rule of "at least 90 % of the asked rate" failed steps the service
/// passed).
pub async fn capacity(
    target: &Target,
    steps: &[usize],
    seconds: usize,
    axum_ceiling: f64,
    write_rate: usize,
) -> anyhow::Result<Vec<Figure>> {
    let started = std::time::Instant::now();
    let writer = if write_rate > 0 {
        Some(Writer::start(
            WriterConfig {
                base_url: target.ledger_url.clone(),
                merchants: Arc::new(target.merchants.clone()),
                tokens: Arc::new(target.tokens.clone()),
                rate: write_rate as f64,
                description: "capacity".into(),
                retry_deadline: Duration::from_secs(30),
            },
            started,
        )?)
    } else {
        None
    };
    let mut best: Option<Run> = None;
    let mut searched = Ok(());
    for &rate in steps {
        let report = format!("capacity-{rate}");
        let attack = Attack {
            host: &target.consolidation_url,
            users: 64,
            rate,
            seconds,
            report: &report,
        };
        let metrics = match attack.metrics(reads(target)?).await {
            Ok(metrics) => metrics,
            Err(e) => {
                searched = Err(e);
                break;
            }
        };
        let run = Run::of(&metrics);
        let kinds: Vec<String> = metrics
            .requests
            .iter()
            .map(|(name, kind)| {
                format!(
                    "{name} {} ({} failed) p99 {:.1} ms",
                    crate::kit::goose::sent(kind),
                    crate::kit::goose::failed(kind),
                    kind.raw_data.percentile_us(0.99) as f64 / 1000.0
                )
            })
            .collect();
        println!(
            "capacity: asked {rate}/s got {:.0}/s, failures {}, p99 {:.1} ms (writes {write_rate}/s behind): {}",
            run.rate,
            run.failures,
            run.p99,
            kinds.join(", ")
        );
        if run.failures > 0 || run.p99 > 100.0 {
            break;
        }
        let previous = best.map_or(0.0, |b| b.rate);
        if run.rate > previous {
            best = Some(run);
        }
        if run.rate < previous * 1.05 {
            break;
        }
    }
    let writes = match writer {
        Some(writer) => writer.stop().await,
        None => Vec::new(),
    };
    searched?;
    let best = best.unwrap_or_default();
    let summary = WriteSummary::of(&writes);
    let mut figures = vec![
        Figure::new(
            "capacity",
            &format!("highest passing read rate, writes {write_rate}/s (goal 10 000)"),
            best.rate,
            "req/s",
        )
        .against("trivial axum handler", axum_ceiling)
        .bound(best.rate >= 10_000.0),
        Figure::new("capacity", "p99 at that rate", best.p99, "ms"),
    ];
    if write_rate == 0 {
        return Ok(figures);
    }
    figures.extend([
        Figure::new(
            "capacity",
            &format!("background writes accepted (asked {write_rate}/s)"),
            (summary.writes - summary.failed) as f64 / started.elapsed().as_secs_f64().max(0.001),
            "req/s",
        ),
        Figure::new(
            "capacity",
            "background writes failed (after retries)",
            summary.failed as f64,
            "POSTs",
        ),
        Figure::new("capacity", "background write p99", summary.p99_ms, "ms"),
    ]);
    Ok(figures)
}
