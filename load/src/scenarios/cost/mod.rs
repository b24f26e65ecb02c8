//! `cost`: the CPU time each process spends per request, over fixed-rate runs (not a capacity
//! search), from the kernel's accounting (`/proc`, [`harness::cpu`]). Rates move with whatever
//! else the machine runs; the work per request does not, so these are the figures to quote first.
//!
//! The ledger and the consolidation run as their own processes (one replica each, started by
//! the harness's cluster), on a harness stack each ([`platform`]). Phases, each at a fixed rate
//! for `--seconds` ([`requests`]):
//!
//! - **trivial axum handler**: the ceiling's handler, served by a runtime of its own in this
//!   process whose threads are metered apart from goose's ([`crate::ceilings::axum::Apart`]);
//! - **cached read**: a day's balance of a merchant-day read before (every one is read once
//!   first), so each is one request in and one Redis round trip;
//! - **uncached read**: a day's balance of a merchant-day never read before (each request a new
//!   one), so each misses, reads PostgreSQL and stores the answer;
//! - **write**: a POST of an entry with an `Idempotency-Key`, metered from the first POST until
//!   the consolidation has applied every accepted one: the ledger, its PostgreSQL, the emulator
//!   (relay's sends, consumer's receives and deletes), the consolidation, its PostgreSQL and
//!   Redis (invalidations) all count;
//! - **reads with writes behind**: cached reads with the writer POSTing behind them, and the
//!   read capacity the platform's CPU allows with them, against the trivial handler's ([`mixed`]);
//! - **pgbench** running the ledger's own statement on the ledger's database (as the
//!   `ledger-writes` ceiling does): PostgreSQL's CPU and pgbench's own per transaction.
//!
//! Every phase also gives goose's own CPU per request (this process's main runtime, less the
//! trivial handler's runtime): when the generator spends more per request than the service, a
//! capacity search measures goose. An idle phase first gives each process's background CPU
//! (pollers, pruners), which is included in the phases' figures, not subtracted ([`meter`]).

mod args;
mod meter;
mod mixed;
mod platform;
mod requests;

use std::time::Duration;

use harness::{Service, Stack, StackOptions};

pub use self::args::CostArgs;
use self::meter::{Part, UNIT, Used, idle_figures, phase_figures};
use self::mixed::Mixed;
use self::platform::Platform;
use crate::ceilings;
use crate::kit::goose::{Attack, Run};
use crate::kit::report::Figure;
use crate::kit::target::{Target, mint_tokens};

const SCENARIO: &str = "cost";
const MERCHANTS: usize = 50;
const DAYS: i64 = 7;
/// goose users of every phase.
const USERS: usize = 32;
/// The trivial handler's runtime threads, metered by this name.
const AXUM_THREADS: &str = "cost-axum";

/// Runs the scenario on stacks of its own, `seconds` per phase, and stops everything it
/// started, also when it fails.
pub async fn run(args: &CostArgs, seconds: usize) -> anyhow::Result<Vec<Figure>> {
    eprintln!("cost: starting the ledger's and the consolidation's stacks");
    let (ledger_stack, consolidation_stack) = tokio::join!(
        Stack::start(StackOptions::default()),
        Stack::start(StackOptions::default())
    );
    let result = match (&ledger_stack, &consolidation_stack) {
        (Ok(ledger), Ok(consolidation)) => on_stacks(args, seconds, ledger, consolidation).await,
        (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!("starting the stacks: {e:#}")),
    };
    for stack in [ledger_stack, consolidation_stack].iter().flatten() {
        stack.shutdown().await;
    }
    result
}

async fn on_stacks(
    args: &CostArgs,
    seconds: usize,
    ledger_stack: &Stack,
    consolidation_stack: &Stack,
) -> anyhow::Result<Vec<Figure>> {
    let platform = Platform::start(ledger_stack, consolidation_stack).await?;
    let result = measure(args, seconds, &platform).await;
    platform.cluster.shutdown().await;
    result
}

async fn measure(
    args: &CostArgs,
    seconds: usize,
    platform: &Platform<'_>,
) -> anyhow::Result<Vec<Figure>> {
    let merchants: Vec<String> = (0..MERCHANTS).map(|i| format!("cost-{i}")).collect();
    let lifetime = Duration::from_secs(4 * 3600);
    let tokens = mint_tokens(platform.ledger_stack.identity(), &merchants, lifetime)?;
    let target = Target {
        ledger_url: platform.url(Service::Ledger)?,
        consolidation_url: platform.url(Service::Consolidation)?,
        merchants,
        tokens,
        days: DAYS,
        local: None,
    };
    let consolidation_db = platform.consolidation_scope.pg_pool().await?;
    eprintln!("cost: seeding {MERCHANTS} merchants × {DAYS} days");
    let seeded = target.seed(2).await?;
    requests::wait_applied(&consolidation_db, i64::try_from(seeded)?).await?;
    // Every seeded merchant-day read once: the cached reads all hit.
    requests::warm(&target).await?;

    let (_, idle) = platform
        .metered(async {
            tokio::time::sleep(Duration::from_secs(seconds as u64)).await;
            Ok(())
        })
        .await?;
    let mut figures = idle_figures(&idle);
    let handler = trivial_handler(args, seconds, platform, &mut figures).await?;
    reads(&target, args, seconds, platform, handler, &mut figures).await?;
    let write = writes(
        &target,
        args,
        seconds,
        platform,
        &consolidation_db,
        &mut figures,
    )
    .await?;
    let mixed = Mixed {
        target: &target,
        args,
        seconds,
        platform,
        consolidation_db: &consolidation_db,
    };
    mixed.run(handler, write.platform, &mut figures).await?;
    pgbench(
        seconds,
        platform,
        write.ledger,
        write.postgres,
        &mut figures,
    )
    .await?;
    Ok(figures)
}

/// An attack of this scenario at `rate` for `seconds`.
fn attack<'a>(host: &'a str, rate: usize, seconds: usize, report: &'a str) -> Attack<'a> {
    Attack {
        host,
        users: USERS,
        rate,
        seconds,
        report,
    }
}

/// The trivial handler under goose at the cached reads' rate; returns its own CPU per request.
async fn trivial_handler(
    args: &CostArgs,
    seconds: usize,
    platform: &Platform<'_>,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<f64> {
    eprintln!("cost: trivial axum handler at {}/s", args.cost_read_rate);
    let server = ceilings::axum::Apart::start(AXUM_THREADS)?;
    let phase = async {
        let before = server.cpu().unwrap_or_default();
        let run = attack(
            &server.address,
            args.cost_read_rate,
            seconds,
            "cost-trivial",
        )
        .run(ceilings::axum::scenario("cost-trivial"))
        .await?;
        let used = server.cpu().unwrap_or_default().saturating_sub(before);
        anyhow::Ok((run, used))
    };
    let measured = platform.metered(phase).await;
    server.stop().await;
    let ((trivial, handler_cpu), used) = measured?;
    let handler = handler_cpu.as_secs_f64() * 1e6 / trivial.requests.max(1) as f64;
    figures.extend(phase_figures(
        "trivial axum handler",
        &used,
        &trivial,
        &[Part::Goose],
    ));
    figures.push(Figure::new(
        SCENARIO,
        "trivial axum handler: its own threads",
        handler,
        UNIT,
    ));
    Ok(handler)
}

/// Cached reads, then uncached ones.
async fn reads(
    target: &Target,
    args: &CostArgs,
    seconds: usize,
    platform: &Platform<'_>,
    handler: f64,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    let parts = [
        Part::Consolidation,
        Part::Redis,
        Part::ConsolidationPostgres,
        Part::Goose,
    ];
    let host = &target.consolidation_url;
    eprintln!("cost: cached reads at {}/s", args.cost_read_rate);
    let cached = attack(host, args.cost_read_rate, seconds, "cost-cached-read");
    let (cached, used) = platform
        .metered(cached.run(requests::cached_reads(target)))
        .await?;
    figures.extend(phase_figures("cached read", &used, &cached, &parts));
    let served = used.served_per_request(cached.requests, &parts);
    figures.push(
        Figure::new(
            SCENARIO,
            "cached read, service side (stretch: at most 3x)",
            served,
            UNIT,
        )
        .against("trivial axum handler's CPU per request", handler),
    );
    figures.push(
        Figure::new(
            SCENARIO,
            "cached read, goose's own",
            used.per_request(Part::Goose, cached.requests)
                .unwrap_or(0.0),
            UNIT,
        )
        .against("the service side's", served),
    );

    eprintln!("cost: uncached reads at {}/s", args.cost_uncached_rate);
    let uncached = attack(host, args.cost_uncached_rate, seconds, "cost-uncached-read");
    let (uncached, used) = platform
        .metered(uncached.run(requests::uncached_reads(target)))
        .await?;
    figures.extend(phase_figures("uncached read", &used, &uncached, &parts));
    Ok(())
}

/// What a write cost, in µs of CPU.
struct WriteCost {
    /// The ledger process.
    ledger: Option<f64>,
    /// The ledger's PostgreSQL.
    postgres: Option<f64>,
    /// Every part of the platform, to applied: the emulator and goose left out.
    platform: f64,
}

/// Writes, metered until the consolidation has applied every accepted one.
async fn writes(
    target: &Target,
    args: &CostArgs,
    seconds: usize,
    platform: &Platform<'_>,
    consolidation_db: &sqlx::PgPool,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<WriteCost> {
    eprintln!("cost: writes at {}/s", args.cost_write_rate);
    let applied_before = requests::applied(consolidation_db).await?;
    let (written, used): (Run, Used) = platform
        .metered(async {
            let run = attack(
                &target.ledger_url,
                args.cost_write_rate,
                seconds,
                "cost-write",
            )
            .run(requests::writes(target))
            .await?;
            let accepted = i64::try_from(run.requests - run.failures)?;
            requests::wait_applied(consolidation_db, applied_before + accepted).await?;
            Ok(run)
        })
        .await?;
    figures.extend(phase_figures(
        "write (to applied)",
        &used,
        &written,
        &Part::ALL,
    ));
    let platform = used.platform_per_request(written.requests, &Part::ALL);
    figures.push(Figure::new(
        SCENARIO,
        "write (to applied): the platform (emulator and goose left out)",
        platform,
        UNIT,
    ));
    Ok(WriteCost {
        ledger: used.per_request(Part::Ledger, written.requests),
        postgres: used.per_request(Part::LedgerPostgres, written.requests),
        platform,
    })
}

/// pgbench running the ledger's statement on the ledger's database, 16 clients: PostgreSQL's
/// CPU and pgbench's own per transaction, and the write's beside them.
async fn pgbench(
    seconds: usize,
    platform: &Platform<'_>,
    write_ledger: Option<f64>,
    write_postgres: Option<f64>,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<()> {
    eprintln!("cost: pgbench, the ledger's statement, 16 clients");
    let children = harness::cpu::this_process_waited_children();
    let database = &platform.ledger_scope.database_url;
    let (tps, used) = platform
        .metered(ceilings::pgbench::pgbench(database, 16, seconds))
        .await?;
    let pgbench_client = harness::cpu::this_process_waited_children()
        .zip(children)
        .map(|(after, before)| after.saturating_sub(before));
    let transactions = (tps * seconds as f64).round().max(1.0) as usize;
    let per_tx = used
        .per_request(Part::LedgerPostgres, transactions)
        .unwrap_or(0.0);
    figures.push(Figure::new(
        SCENARIO,
        "pgbench: transactions/s",
        tps,
        "tx/s",
    ));
    figures.push(Figure::new(
        SCENARIO,
        "pgbench: PostgreSQL per transaction",
        per_tx,
        UNIT,
    ));
    if let Some(client) = pgbench_client {
        figures.push(Figure::new(
            SCENARIO,
            "pgbench: pgbench itself per transaction",
            client.as_secs_f64() * 1e6 / transactions as f64,
            UNIT,
        ));
    }
    if let Some(postgres) = write_postgres {
        figures.push(
            Figure::new(SCENARIO, "write: ledger's PostgreSQL", postgres, UNIT)
                .against("PostgreSQL per pgbench transaction", per_tx),
        );
    }
    if let (Some(ledger), Some(postgres)) = (write_ledger, write_postgres) {
        figures.push(
            Figure::new(
                SCENARIO,
                "write: ledger + its PostgreSQL (stretch: at most 2x)",
                ledger + postgres,
                UNIT,
            )
            .against("PostgreSQL per pgbench transaction", per_tx),
        );
    }
    Ok(())
}
