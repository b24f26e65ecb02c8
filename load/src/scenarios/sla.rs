//! `sla`: the consolidation's SLA, balance and report reads at a steady rate.

use crate::kit::goose::{Attack, Run, reads};
use crate::kit::report::Figure;
use crate::kit::target::Target;

/// `sla`: balance and report reads at `rate`/s for `seconds`. Passes when at most 5 % fail.
pub async fn sla(
    target: &Target,
    rate: usize,
    seconds: usize,
    axum_ceiling: Option<f64>,
) -> anyhow::Result<(Run, Vec<Figure>)> {
    let run = Attack {
        host: &target.consolidation_url,
        users: 16,
        rate,
        seconds,
        report: "sla",
    }
    .run(reads(target)?)
    .await?;
    let ok = run.failure_ratio() <= 0.05;
    let mut rate_figure = Figure::new(
        "sla",
        &format!("achieved rate (asked {rate}/s)"),
        run.rate,
        "req/s",
    );
    if let Some(ceiling) = axum_ceiling {
        rate_figure = rate_figure.against("trivial axum handler", ceiling);
    }
    let figures = vec![
        Figure::new(
            "sla",
            "failure ratio (bound 5 %)",
            run.failure_ratio() * 100.0,
            "%",
        )
        .bound(ok),
        rate_figure,
        Figure::new("sla", "p50", run.p50, "ms"),
        Figure::new("sla", "p95", run.p95, "ms"),
        Figure::new("sla", "p99 (goal 20 ms)", run.p99, "ms").bound(run.p99 <= 20.0),
        Figure::new("sla", "p99 with CO back-fill", run.p99_mitigated, "ms"),
    ];
    Ok((run, figures))
}
