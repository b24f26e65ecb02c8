//! The scenarios that run against one target — the platform started in this process, or a
//! deployment given by URLs — in the order asked, each with the ceilings it is judged against
//! measured in the same run. `make load` runs them, then `sla-under-fire` on stacks of its own.

use anyhow::Context;

use crate::ceilings;
use crate::ceilings::sqs::LocalStack;
use crate::kit::report::Figure;
use crate::kit::target::{Local, Target};
use crate::scenarios;

/// A scenario that runs against a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnTarget {
    /// The ceilings alone (axum, pgbench, the SQS emulator).
    Ceilings,
    /// Balance and report reads at --sla-rate.
    Sla,
    /// The read capacity search, with writes at --write-rate in the background.
    Capacity,
    /// The ledger's write capacity, beside pgbench.
    LedgerWrites,
    /// The time from the ledger's commit to the consolidation's apply, at --lag-rate.
    E2eLag,
    /// The consolidation draining a pre-filled queue, beside the emulator's own receive+delete
    /// rate measured in the same run (goal: 0.8x).
    ConsumerDrain,
    /// A replay of --replay-events events while POSTs go on.
    Replay,
    /// Reads for merchants with 7, 365 and 1,095 days of history, cache off and on, at
    /// --history-rate.
    History,
}

/// The settings of the scenarios that run against a target.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Seconds per run (per step for capacity and ledger-writes); sla defaults to 60.
    #[arg(long)]
    pub seconds: Option<usize>,
    /// The SLA's request rate.
    #[arg(long, default_value_t = 50)]
    pub sla_rate: usize,
    /// POSTs per second in the background of the capacity search (0: none).
    #[arg(long, default_value_t = 200)]
    pub write_rate: usize,
    /// The e2e-lag POST rate.
    #[arg(long, default_value_t = 500)]
    pub lag_rate: usize,
    /// Events the replay scenario replays.
    #[arg(long, default_value_t = 10_000)]
    pub replay_events: usize,
    /// Events consumer-drain drains per round.
    #[arg(long, default_value_t = 10_000)]
    pub drain_events: usize,
    /// The consolidation's poll loops in consumer-drain (its deployed default is 4).
    #[arg(long, default_value_t = 4)]
    pub drain_pollers: u16,
    /// POST rate while measuring the replay's effect.
    #[arg(long, default_value_t = 200)]
    pub replay_rate: usize,
    /// Request rate of each history run.
    #[arg(long, default_value_t = 100)]
    pub history_rate: usize,
    /// Merchants with seeded data.
    #[arg(long, default_value_t = 50)]
    pub merchants: usize,
    /// Days of data per merchant.
    #[arg(long, default_value_t = 7)]
    pub days: i64,
    /// Entries seeded per merchant and day.
    #[arg(long, default_value_t = 4)]
    pub per_day: usize,
    /// A running ledger (with --consolidation-url and --token): no local platform, no ceilings.
    #[arg(long, requires_all = ["consolidation_url", "token"])]
    pub ledger_url: Option<String>,
    /// A running consolidation.
    #[arg(long)]
    pub consolidation_url: Option<String>,
    /// A token valid for every --merchant-id, with entries:write and balances:read.
    #[arg(long, env = "LOAD_TOKEN")]
    pub token: Option<String>,
    /// Merchant ids of a running deployment (repeat).
    #[arg(long = "merchant-id")]
    pub merchant_ids: Vec<String>,
}

/// Starts (or names) the target, runs `wanted` on it in order, and stops what it started
/// whatever happened. Every figure measured lands in `figures`, also when a scenario fails.
pub async fn run(
    args: &TargetArgs,
    wanted: &[OnTarget],
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
    let result = on(&target, args, wanted, figures).await;
    target.shutdown().await;
    result
}

/// The ceilings measured so far in this run: each at most once, when a scenario first needs it.
#[derive(Debug, Default)]
struct Measured {
    axum: Option<f64>,
    pgbench: Option<f64>,
    localstack: Option<LocalStack>,
}

impl Measured {
    async fn axum(&mut self, seconds: usize, figures: &mut Vec<Figure>) -> anyhow::Result<f64> {
        if let Some(rate) = self.axum {
            return Ok(rate);
        }
        let rate = ceilings::axum::measure(seconds, figures).await?;
        self.axum = Some(rate);
        Ok(rate)
    }

    async fn pgbench(
        &mut self,
        local: &Local,
        seconds: usize,
        figures: &mut Vec<Figure>,
    ) -> anyhow::Result<f64> {
        if let Some(rate) = self.pgbench {
            return Ok(rate);
        }
        let ledger_db = local.system.lock().await.ledger_scope.database_url.clone();
        let rate = ceilings::pgbench::measure(&ledger_db, seconds, figures).await?;
        self.pgbench = Some(rate);
        Ok(rate)
    }

    async fn localstack(
        &mut self,
        local: &Local,
        figures: &mut Vec<Figure>,
    ) -> anyhow::Result<LocalStack> {
        if let Some(rates) = self.localstack {
            return Ok(rates);
        }
        let rates = ceilings::sqs::measure(local.stack, figures).await?;
        self.localstack = Some(rates);
        Ok(rates)
    }
}

async fn on(
    target: &Target,
    args: &TargetArgs,
    wanted: &[OnTarget],
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
    let mut measured = Measured::default();
    let local = target.local.as_deref();
    for &scenario in wanted {
        eprintln!(
            "load: {}",
            clap::ValueEnum::to_possible_value(&scenario)
                .map_or_else(String::new, |v| v.get_name().to_string())
        );
        match scenario {
            OnTarget::Ceilings => {
                let Some(local) = local else {
                    eprintln!("load: ceilings need the local platform; skipped");
                    continue;
                };
                measured.axum(seconds, figures).await?;
                measured.pgbench(local, seconds, figures).await?;
                measured.localstack(local, figures).await?;
            }
            OnTarget::Sla => {
                let axum = measured.axum;
                let sla_seconds = args.seconds.unwrap_or(60);
                let (_, sla) =
                    scenarios::sla::sla(target, args.sla_rate, sla_seconds, axum).await?;
                figures.extend(sla);
            }
            OnTarget::Capacity => {
                // The ceiling it is divided by, measured in this run.
                let axum = match local {
                    Some(_) => measured.axum(seconds, figures).await?,
                    None => 0.0,
                };
                let steps = [
                    500, 1000, 2000, 4000, 6000, 8000, 10_000, 12_000, 15_000, 20_000,
                ];
                let capacity =
                    scenarios::capacity::capacity(target, &steps, seconds, axum, args.write_rate);
                figures.extend(capacity.await?);
            }
            OnTarget::LedgerWrites => {
                let steps = [250, 500, 1000, 2000, 3000, 4000, 5000, 6000, 8000];
                // The ceiling it is judged against, measured in this run.
                let pgbench = match local {
                    Some(local) => Some(measured.pgbench(local, seconds, figures).await?),
                    None => None,
                };
                let writes =
                    scenarios::ledger_writes::ledger_writes(target, &steps, seconds, pgbench);
                figures.extend(writes.await?);
            }
            OnTarget::E2eLag => {
                // The ceiling it is shown beside, measured in this run (e2e-lag needs the local
                // platform anyway).
                let localstack = match local {
                    Some(local) => measured.localstack(local, figures).await?,
                    None => LocalStack::default(),
                };
                let lag =
                    scenarios::e2e_lag::e2e_lag(target, args.lag_rate, seconds.max(20), localstack);
                figures.extend(lag.await?);
            }
            OnTarget::ConsumerDrain => {
                let local =
                    local.context("consumer-drain needs the platform started by this process")?;
                let drain = scenarios::drain::consumer_drain(
                    local.stack,
                    args.drain_events,
                    args.drain_pollers,
                );
                figures.extend(drain.await?);
            }
            OnTarget::Replay => {
                let replay = scenarios::replay::replay(
                    target,
                    args.replay_events,
                    args.replay_rate,
                    seconds.max(25),
                );
                figures.extend(replay.await?);
            }
            OnTarget::History => {
                let history = scenarios::history::history(target, args.history_rate, seconds);
                figures.extend(history.await?);
            }
        }
    }
    Ok(())
}
