//! `load`: runs the load scenarios and prints their figures beside the ceilings measured in the
//! same run. `make load` runs them all against the platform started in this process.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use load::report::{self, Figure};
use load::target::Local;
use load::{Target, ceilings, scenarios};

/// Load scenarios for the cash-flow platform.
#[derive(Debug, Parser)]
#[command(name = "load", about)]
struct Args {
    /// Scenarios to run, in order (default: all).
    #[arg(value_enum)]
    scenarios: Vec<Scenario>,
    /// Seconds per run (per step for capacity and ledger-writes); sla defaults to 60.
    #[arg(long)]
    seconds: Option<usize>,
    /// The SLA's request rate.
    #[arg(long, default_value_t = 50)]
    sla_rate: usize,
    /// The e2e-lag POST rate.
    #[arg(long, default_value_t = 500)]
    lag_rate: usize,
    /// Events the replay scenario replays.
    #[arg(long, default_value_t = 10_000)]
    replay_events: usize,
    /// Events consumer-drain drains per round.
    #[arg(long, default_value_t = 10_000)]
    drain_events: usize,
    /// The consolidation's poll loops in consumer-drain (its deployed default is 4).
    #[arg(long, default_value_t = 4)]
    drain_pollers: u16,
    /// POST rate while measuring the replay's effect.
    #[arg(long, default_value_t = 200)]
    replay_rate: usize,
    /// Request rate of each history run.
    #[arg(long, default_value_t = 100)]
    history_rate: usize,
    /// Merchants with seeded data.
    #[arg(long, default_value_t = 50)]
    merchants: usize,
    /// Days of data per merchant.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Entries seeded per merchant and day.
    #[arg(long, default_value_t = 4)]
    per_day: usize,
    /// A running ledger (with --consolidation-url and --token): no local platform, no ceilings.
    #[arg(long, requires_all = ["consolidation_url", "token"])]
    ledger_url: Option<String>,
    /// A running consolidation.
    #[arg(long)]
    consolidation_url: Option<String>,
    /// A token valid for every --merchant-id, with entries:write and balances:read.
    #[arg(long, env = "LOAD_TOKEN")]
    token: Option<String>,
    /// Merchant ids of a running deployment (repeat).
    #[arg(long = "merchant-id")]
    merchant_ids: Vec<String>,
    #[command(flatten)]
    soak: load::soak::SoakArgs,
    #[command(flatten)]
    fire: load::fire::FireArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Ceilings,
    Sla,
    /// The read capacity search, with writes at --write-rate in the background.
    Capacity,
    LedgerWrites,
    E2eLag,
    /// The consolidation draining a pre-filled queue, beside the emulator's own receive+delete
    /// rate measured in the same run (goal: 0.8x).
    ConsumerDrain,
    /// A replay of --replay-events events while POSTs go on (not part of `all`).
    Replay,
    /// Reads for merchants with 7, 365 and 1,095 days of history, cache off and on, at
    /// --history-rate (not part of `all`).
    History,
    /// A long steady mixed load with short retention windows, services as their own processes;
    /// fails if a table, a process or Redis keeps growing (not part of `all`; runs alone).
    Soak,
    /// Reads at 50/s then 500/s and writes at --write-rate through the gateway in front of two
    /// replicas of each service (processes), while replicas, Redis, PostgreSQL and SQS fail in
    /// turn; figures per fault window (starts its own stacks; last in `all`).
    SlaUnderFire,
    All,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut wanted = args.scenarios.clone();
    if wanted == [Scenario::Soak] {
        return load::soak::run(&args.soak).await;
    }
    anyhow::ensure!(
        !wanted.contains(&Scenario::Soak),
        "soak starts its own stack and services: run it alone"
    );
    if wanted.is_empty() || wanted.contains(&Scenario::All) {
        // e2e-lag before ledger-writes, whose outbox backlog takes a while to drain;
        // sla-under-fire last, on stacks of its own once the in-process platform is stopped.
        wanted = vec![
            Scenario::Ceilings,
            Scenario::Sla,
            Scenario::Capacity,
            Scenario::E2eLag,
            Scenario::ConsumerDrain,
            Scenario::LedgerWrites,
            Scenario::SlaUnderFire,
        ];
    }
    let mut figures: Vec<Figure> = Vec::new();
    // Every figure measured is published, also when a later scenario fails.
    let mut result = Ok(());
    if wanted.iter().any(|s| *s != Scenario::SlaUnderFire) {
        result = on_target(&args, &wanted, &mut figures).await;
    }
    if result.is_ok() && wanted.contains(&Scenario::SlaUnderFire) {
        eprintln!("load: sla-under-fire");
        match load::fire::run(&args.fire).await {
            Ok(fire) => figures.extend(fire),
            Err(e) => result = Err(e),
        }
    }
    report::publish("summary", &figures)?;
    result?;
    // A missed bound fails the run, once everything is printed and written.
    let missed: Vec<&Figure> = figures.iter().filter(|f| f.passed == Some(false)).collect();
    if !missed.is_empty() {
        eprintln!("\nload: {} bound(s) missed:", missed.len());
        for f in &missed {
            eprintln!("  {} / {}: {:.1} {}", f.scenario, f.name, f.value, f.unit);
        }
        std::process::exit(1);
    }
    Ok(())
}

/// The scenarios that run against one target (the in-process platform, or a deployment given by
/// URLs), which is stopped afterwards whatever happened.
async fn on_target(
    args: &Args,
    wanted: &[Scenario],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let target = match (&args.ledger_url, &args.consolidation_url, &args.token) {
        (Some(ledger), Some(consolidation), Some(token)) => {
            anyhow::ensure!(
                !args.merchant_ids.is_empty(),
                "--merchant-id is needed with --ledger-url"
            );
            Target::remote(
                ledger.clone(),
                consolidation.clone(),
                args.merchant_ids.clone(),
                token.clone(),
                args.days,
            )
        }
        _ => {
            eprintln!("load: starting the platform on a harness stack");
            Target::start_local(args.merchants, args.days).await?
        }
    };
    let result = scenarios_on(&target, args, wanted, figures).await;
    target.shutdown().await;
    result
}

#[allow(clippy::too_many_lines)]
async fn scenarios_on(
    target: &Target,
    args: &Args,
    wanted: &[Scenario],
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    eprintln!(
        "load: seeding {} merchants × {} days × {} entries",
        target.merchants.len(),
        args.days,
        args.per_day
    );
    let seeded = target.seed(args.per_day).await?;
    eprintln!("load: seeded {seeded} entries, consolidated");

    let seconds = args.seconds.unwrap_or(10);
    let (mut axum, mut pgbench, mut localstack) = (None, None, None);
    if wanted.contains(&Scenario::Ceilings) {
        if let Some(local) = &target.local {
            eprintln!("load: ceilings");
            axum = Some(axum_ceiling(target, seconds, figures).await?);
            pgbench = Some(pgbench_ceiling(local, seconds, figures).await?);
            localstack = Some(localstack_ceiling(local.stack, figures).await?);
        } else {
            eprintln!("load: ceilings need the local platform; skipped");
        }
    }
    for &scenario in wanted {
        match scenario {
            Scenario::Sla => {
                eprintln!("load: sla");
                let (_, sla) =
                    scenarios::sla(target, args.sla_rate, args.seconds.unwrap_or(60), axum).await?;
                figures.extend(sla);
            }
            Scenario::Capacity => {
                eprintln!("load: capacity");
                // The ceiling it is divided by, measured in this run.
                if axum.is_none() && target.local.is_some() {
                    axum = Some(axum_ceiling(target, seconds, figures).await?);
                }
                let steps = [
                    500, 1000, 2000, 4000, 6000, 8000, 10_000, 12_000, 15_000, 20_000,
                ];
                figures.extend(
                    scenarios::capacity(
                        target,
                        &steps,
                        seconds,
                        axum.unwrap_or(0.0),
                        args.fire.write_rate,
                    )
                    .await?,
                );
            }
            Scenario::LedgerWrites => {
                eprintln!("load: ledger-writes");
                let steps = [250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000];
                // The ceiling it is judged against, measured in this run.
                if pgbench.is_none()
                    && let Some(local) = &target.local
                {
                    pgbench = Some(pgbench_ceiling(local, seconds, figures).await?);
                }
                figures.extend(scenarios::ledger_writes(target, &steps, seconds, pgbench).await?);
            }
            Scenario::E2eLag => {
                eprintln!("load: e2e-lag");
                // The ceiling it is shown beside, measured in this run (e2e-lag needs the local
                // platform anyway).
                let l = match (localstack, &target.local) {
                    (Some(l), _) => l,
                    (None, Some(local)) => {
                        let l = localstack_ceiling(local.stack, figures).await?;
                        localstack = Some(l);
                        l
                    }
                    (None, None) => ceilings::LocalStack::default(),
                };
                figures
                    .extend(scenarios::e2e_lag(target, args.lag_rate, seconds.max(20), l).await?);
            }
            Scenario::ConsumerDrain => {
                eprintln!("load: consumer-drain");
                let local = target
                    .local
                    .as_ref()
                    .context("consumer-drain needs the platform started by this process")?;
                figures.extend(
                    load::drain::consumer_drain(local.stack, args.drain_events, args.drain_pollers)
                        .await?,
                );
            }
            Scenario::Replay => {
                eprintln!("load: replay");
                figures.extend(
                    scenarios::replay(
                        target,
                        args.replay_events,
                        args.replay_rate,
                        seconds.max(25),
                    )
                    .await?,
                );
            }
            Scenario::History => {
                eprintln!("load: history");
                figures.extend(load::history::history(target, args.history_rate, seconds).await?);
            }
            Scenario::Ceilings | Scenario::Soak | Scenario::SlaUnderFire | Scenario::All => {}
        }
    }
    Ok(())
}

// The ceilings a scenario is judged against, each measured in the run that judges it and
// reported as a figure of its own.

/// A trivial axum handler's rate under goose's 64 users, on this machine now.
async fn axum_ceiling(
    target: &Target,
    seconds: usize,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<f64> {
    let rate = ceilings::axum_trivial(target, seconds).await?;
    figures.push(Figure::new(
        "ceilings",
        "trivial axum handler, goose 64 users",
        rate,
        "req/s",
    ));
    Ok(rate)
}

/// pgbench running the ledger's own statement with 16 clients on the ledger's database.
async fn pgbench_ceiling(
    local: &Local,
    seconds: usize,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<f64> {
    let ledger_db = local.system.lock().await.ledger_scope.database_url.clone();
    let rate = ceilings::pgbench(&ledger_db, 16, seconds).await?;
    figures.push(Figure::new(
        "ceilings",
        "pgbench, ledger statement, 16 clients",
        rate,
        "tx/s",
    ));
    Ok(rate)
}

/// LocalStack's send and receive+delete rates over 10,000 messages with 4 loops, on a fresh
/// queue of `stack`. It warms up on a first round: the better of two.
async fn localstack_ceiling(
    stack: &harness::Stack,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<ceilings::LocalStack> {
    let scope = stack.scope().await?;
    let mut best = ceilings::LocalStack::default();
    for _ in 0..2 {
        let meter = load::drain::CpuMeter::start(stack).await;
        let round = ceilings::localstack(&scope.sqs(), &scope.queues.url, 10_000, 4).await?;
        let busy = meter.stop(stack).await;
        best = best.best(ceilings::LocalStack {
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
