//! `ledger-writes`: the ledger's write capacity, judged against pgbench.

use crate::kit::goose::{Attack, Run, writes};
use crate::kit::report::Figure;
use crate::kit::target::Target;

/// `ledger-writes`: POST rate raised step by step; the highest with zero errors, judged against
/// `pgbench` (measured in the same run) when there is one to judge it by.
pub async fn ledger_writes(
    target: &Target,
    steps: &[usize],
    seconds: usize,
    pgbench: Option<f64>,
) -> anyhow::Result<Vec<Figure>> {
    let scenario = || writes(target, "load");
    let mut best: Option<Run> = None;
    for &rate in steps {
        let run = Attack {
            host: &target.ledger_url,
            users: 32,
            rate,
            seconds,
            report: &format!("ledger-writes-{rate}"),
        }
        .run(scenario())
        .await?;
        println!(
            "ledger-writes: asked {rate}/s got {:.0}/s, failures {}, p99 {:.1} ms",
            run.rate, run.failures, run.p99
        );
        if run.failures > 0 || run.rate < 0.9 * rate as f64 {
            break;
        }
        best = Some(run);
    }
    let best = best.unwrap_or_default();
    let mut highest = Figure::new(
        "ledger-writes",
        "highest sustained POST rate, 0 errors",
        best.rate,
        "req/s",
    );
    if let Some(pgbench) = pgbench {
        highest = highest
            .against("pgbench, the ledger's statement", pgbench)
            .bound(best.rate >= 0.5 * pgbench);
    }
    Ok(vec![
        highest,
        Figure::new("ledger-writes", "p99 at that rate", best.p99, "ms"),
    ])
}
