//! `load`: runs the load scenarios and prints their figures beside the ceilings measured in the
//! same run. `make load` runs `load all`; `make soak` runs `load soak`.

use clap::{Parser, Subcommand};
use load::kit::report::{self, Figure};
use load::scenarios::cost::CostArgs;
use load::scenarios::fire::FireArgs;
use load::scenarios::soak::SoakArgs;
use load::suite::{OnTarget, TargetArgs};

/// Load scenarios for the cash-flow platform.
#[derive(Debug, Parser)]
#[command(name = "load", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What `make load` runs: ceilings, sla, capacity, e2e-lag, consumer-drain, ledger-writes
    /// on the platform started in this process, then cost and sla-under-fire on stacks of their
    /// own.
    All {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        cost: CostArgs,
        #[command(flatten)]
        fire: FireArgs,
    },
    /// The ceilings alone (axum, pgbench, the SQS emulator).
    Ceilings(Chain),
    /// Balance and report reads at --sla-rate (goal: p99 20 ms, at most 5 % failed).
    Sla(Chain),
    /// The read capacity search, with writes at --write-rate in the background.
    Capacity(Chain),
    /// The ledger's write capacity, beside pgbench.
    LedgerWrites(Chain),
    /// The time from the ledger's commit to the consolidation's apply, at --lag-rate.
    E2eLag(Chain),
    /// The consolidation draining a pre-filled queue, beside the emulator's own receive+delete
    /// rate measured in the same run (goal: 0.8x).
    ConsumerDrain(Chain),
    /// A replay of --replay-events events while POSTs go on (not part of `all`).
    Replay(Chain),
    /// Reads for merchants with 7, 365 and 1,095 days of history, cache off and on, at
    /// --history-rate (not part of `all`).
    History(Chain),
    /// Reads at 50/s then 500/s and writes at --write-rate through the gateway in front of two
    /// replicas of each service, while replicas, Redis, PostgreSQL and SQS fail in turn; figures
    /// per fault window (starts its own stacks; last in `all`).
    SlaUnderFire {
        /// POSTs per second through the gateway during each pass.
        #[arg(long, default_value_t = 200)]
        write_rate: usize,
        #[command(flatten)]
        fire: FireArgs,
    },
    /// CPU time per request of each process (services, PostgreSQL, Redis, the emulator, goose)
    /// over fixed-rate runs: cached read, uncached read, write, trivial handler, pgbench (starts
    /// its own stacks).
    Cost {
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: usize,
        #[command(flatten)]
        cost: CostArgs,
    },
    /// A long steady mixed load with short retention windows, services as their own processes;
    /// fails if a table, a process or Redis keeps growing (not part of `all`).
    Soak(SoakArgs),
}

/// A scenario that runs against a target, and more to run after it on the same target.
#[derive(Debug, clap::Args)]
struct Chain {
    /// More scenarios to run after this one, in order, on the same target.
    #[arg(value_enum)]
    then: Vec<OnTarget>,
    #[command(flatten)]
    target: TargetArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut figures: Vec<Figure> = Vec::new();
    // Every figure measured is published, also when a later scenario fails.
    let result = match Cli::parse().command {
        Command::Soak(args) => return load::scenarios::soak::run(&args).await,
        Command::All { target, cost, fire } => {
            // e2e-lag before ledger-writes, whose outbox backlog takes a while to drain; cost,
            // then sla-under-fire last, on stacks of their own once the in-process platform is
            // stopped.
            let wanted = [
                OnTarget::Ceilings,
                OnTarget::Sla,
                OnTarget::Capacity,
                OnTarget::E2eLag,
                OnTarget::ConsumerDrain,
                OnTarget::LedgerWrites,
            ];
            let seconds = target.seconds.unwrap_or(10);
            match load::suite::run(&target, &wanted, &mut figures).await {
                Ok(()) => match cost_into(&cost, seconds, &mut figures).await {
                    Ok(()) => fire_into(&fire, target.write_rate, &mut figures).await,
                    failed => failed,
                },
                failed => failed,
            }
        }
        Command::Cost { seconds, cost } => cost_into(&cost, seconds, &mut figures).await,
        Command::SlaUnderFire { write_rate, fire } => {
            fire_into(&fire, write_rate, &mut figures).await
        }
        Command::Ceilings(chain) => on_target(OnTarget::Ceilings, chain, &mut figures).await,
        Command::Sla(chain) => on_target(OnTarget::Sla, chain, &mut figures).await,
        Command::Capacity(chain) => on_target(OnTarget::Capacity, chain, &mut figures).await,
        Command::LedgerWrites(chain) => {
            on_target(OnTarget::LedgerWrites, chain, &mut figures).await
        }
        Command::E2eLag(chain) => on_target(OnTarget::E2eLag, chain, &mut figures).await,
        Command::ConsumerDrain(chain) => {
            on_target(OnTarget::ConsumerDrain, chain, &mut figures).await
        }
        Command::Replay(chain) => on_target(OnTarget::Replay, chain, &mut figures).await,
        Command::History(chain) => on_target(OnTarget::History, chain, &mut figures).await,
    };
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

async fn on_target(first: OnTarget, chain: Chain, figures: &mut Vec<Figure>) -> anyhow::Result<()> {
    let wanted: Vec<OnTarget> = std::iter::once(first).chain(chain.then).collect();
    load::suite::run(&chain.target, &wanted, figures).await
}

async fn cost_into(
    cost: &CostArgs,
    seconds: usize,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    eprintln!("load: cost");
    figures.extend(load::scenarios::cost::run(cost, seconds).await?);
    Ok(())
}

async fn fire_into(
    fire: &FireArgs,
    write_rate: usize,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    eprintln!("load: sla-under-fire");
    figures.extend(load::scenarios::fire::run(fire, write_rate).await?);
    Ok(())
}
