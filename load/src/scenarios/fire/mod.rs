//! `sla-under-fire`: the consolidation SLA measured the way production fails. Two replicas of
//! each service run as their own processes behind the nginx gateway, supervised by the
//! harness's cluster as `harness up` runs them ([`platform`]); every request goes through the
//! gateway. Balance and report reads run at the SLA rate (50/s), then in a second pass at 10× it
//! (500/s), while the ledger receives open-loop writes at a steady rate spread over 1,000
//! merchants (so cached balances really are invalidated). During each pass, in turn, with quiet
//! gaps between, the faults of [`windows::FaultKind::ALL`]: one consolidation replica SIGKILLed
//! (the cluster restarts it), Redis frozen (SIGSTOP) for 10 s, the consolidation's PostgreSQL
//! restarted, SQS frozen for 10 s, one ledger replica SIGKILLed.
//!
//! The ledger and the consolidation have a harness stack each (PostgreSQL, Redis; the queue is
//! the ledger stack's), so restarting the consolidation's PostgreSQL leaves the ledger's alone,
//! as in the deployment.
//!
//! Every request is recorded with its start time, outcome and latency ([`sampler`]), so each
//! figure is computed overall, per fault window and outside the fault windows ([`judge`]). A
//! fault window runs from the injection until the fault is repaired (replica serving again, Redis
//! or SQS resumed, PostgreSQL accepting connections) plus [`windows::WINDOW_TAIL`]. Percentiles
//! are raw, and the p99 also with the back-fill for coordinated omission at each goose user's
//! intended interval (users / rate). After the run drains, the system invariant is checked
//! through the HTTP APIs ([`books`]).

mod args;
mod books;
mod clock;
mod history;
mod judge;
mod platform;
mod sampler;
mod table;
mod windows;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Stack, StackOptions};

pub use self::args::FireArgs;
use self::books::check_books;
use self::clock::{epoch, since_epoch};
use self::judge::Row;
use self::platform::Platform;
use self::sampler::{Pass, Reads};
use self::windows::FaultKind;
use crate::kit::goose::Attack;
use crate::kit::report::{self, Figure};
use crate::kit::target::{Target, mint_tokens};
use crate::kit::writer::{Accepted, Writer, WriterConfig};

/// Days of data per merchant (the reports' range).
const DAYS: i64 = 7;
/// How long the pipeline may take to drain before the invariant is judged.
const DRAIN: Duration = Duration::from_secs(300);

/// Runs the scenario on stacks of its own, and stops everything it started, also when it fails.
pub async fn run(args: &FireArgs, write_rate: usize) -> anyhow::Result<Vec<Figure>> {
    anyhow::ensure!(
        args.fire_merchants >= 1 && write_rate >= 1 && !args.fire_read_rates.is_empty(),
        "sla-under-fire needs merchants, a write rate and at least one read rate"
    );
    epoch();
    eprintln!("sla-under-fire: starting the ledger's and the consolidation's stacks");
    let (ledger_stack, consolidation_stack) = tokio::join!(
        Stack::start(StackOptions::default()),
        Stack::start(StackOptions::default())
    );
    let result = match (&ledger_stack, &consolidation_stack) {
        (Ok(ledger), Ok(consolidation)) => on_stacks(args, write_rate, ledger, consolidation).await,
        (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!("starting the stacks: {e:#}")),
    };
    for stack in [ledger_stack, consolidation_stack].iter().flatten() {
        stack.shutdown().await;
    }
    result
}

async fn on_stacks(
    args: &FireArgs,
    write_rate: usize,
    ledger_stack: &Stack,
    consolidation_stack: &Stack,
) -> anyhow::Result<Vec<Figure>> {
    let platform = Platform::start(ledger_stack, consolidation_stack).await?;
    let result = measure(args, write_rate, &platform).await;
    // The gateway first, then the replicas drain.
    platform.cluster.shutdown().await;
    result
}

async fn measure(
    args: &FireArgs,
    write_rate: usize,
    platform: &Platform<'_>,
) -> anyhow::Result<Vec<Figure>> {
    let lifetime = Duration::from_secs(4 * 3600);
    let merchants: Vec<String> = (0..args.fire_merchants)
        .map(|i| format!("fire-{i}"))
        .collect();
    let tokens = mint_tokens(platform.ledger_stack.identity(), &merchants, lifetime)?;
    let target = Target {
        ledger_url: platform.gateway_url(),
        consolidation_url: platform.gateway_url(),
        merchants,
        tokens,
        days: DAYS,
        local: None,
    };
    eprintln!(
        "sla-under-fire: seeding {} merchants × {DAYS} days through the gateway",
        target.merchants.len()
    );
    let seeded = target.seed(1).await?;
    let books = check_books(&target, &[], Duration::from_secs(300)).await?;
    anyhow::ensure!(
        books.holds(),
        "the seeded books do not agree: {:?}",
        books.differing
    );
    eprintln!("sla-under-fire: seeded {seeded} entries, consolidated");

    let history = history::start(&target).await?;
    let mut passes = Vec::new();
    for (n, &rate) in args.fire_read_rates.iter().enumerate() {
        let reads = Reads::new(
            target.clone(),
            Arc::clone(&history),
            n * history::CLIENTS_PER_PASS,
        );
        let pass = pass(args, write_rate, platform, &target, rate, reads).await?;
        history::record_writes(&history, &target, &pass.writes);
        passes.push(pass);
    }
    eprintln!("sla-under-fire: waiting for the pipeline to drain, then checking the books");
    let accepted: Vec<(usize, Accepted)> = passes
        .iter()
        .flat_map(|p| &p.writes)
        .filter_map(|w| w.accepted.clone().map(|a| (w.merchant, a)))
        .collect();
    let books = check_books(&target, &accepted, DRAIN).await?;
    let verdict = history::check(&target, &history).await?;
    let lags = sampler::lags(platform).await?;
    let rows: Vec<Row> = passes.iter().flat_map(|p| judge::rows(p, &lags)).collect();
    let mut markdown = table::markdown(&rows, &books, write_rate, args.fire_merchants);
    markdown.push_str(&format!(
        "\nThe clients' history (each goose user a client; entries may lag up to {} s): {verdict}. \
         {}\n",
        history::LAG_ALLOWANCE.as_secs(),
        if verdict.holds() { "HOLDS" } else { "BROKEN" }
    ));
    let resent = crate::kit::goose::resent_gets();
    markdown.push_str(&format!(
        "\nReads sent a second time, on a new connection, because theirs closed with no answer \
         (a gateway reload closes idle keep-alive connections; RFC 9112 §9.3.1): {resent}. \
         Each counts once above, with its time from the first send.\n"
    ));
    println!("\n{markdown}");
    std::fs::write(report::dir().join("sla-under-fire.md"), &markdown)?;
    std::fs::write(
        report::dir().join("sla-under-fire.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "write_rate": write_rate,
            "merchants": args.fire_merchants,
            "rows": rows,
            "windows": passes.iter().map(|p| (p.rate, &p.windows)).collect::<Vec<_>>(),
            "books": books,
            "history": history::Counts::from(&verdict),
            "reads_resent": resent,
        }))?,
    )?;
    Ok(judge::figures(&passes, &rows, &books, write_rate))
}

/// Runs one pass: goose reads at `rate`, writes at the write rate, the faults in turn.
async fn pass(
    args: &FireArgs,
    write_rate: usize,
    platform: &Platform<'_>,
    target: &Target,
    rate: usize,
    reads: Arc<Reads>,
) -> anyhow::Result<Pass> {
    let gap = Duration::from_secs(args.fire_gap_seconds);
    // Enough users that a few stalled ones leave the rest able to keep the rate.
    let users = if rate <= 100 { 16 } else { 64 };
    // The schedule's length: a gap before each fault and after the last, each fault's time,
    // and a margin.
    let faults: Duration = FaultKind::ALL.iter().map(|f| f.expected()).sum();
    let gaps = gap * (FaultKind::ALL.len() as u32 + 1);
    let seconds = (gaps + faults).as_secs() as usize + 10;
    eprintln!(
        "sla-under-fire: pass at {rate} reads/s ({users} goose users) and {} writes/s for {seconds} s",
        write_rate
    );
    let start = since_epoch(Instant::now());
    let writer = Writer::start(
        WriterConfig {
            base_url: target.ledger_url.clone(),
            merchants: Arc::new(target.merchants.clone()),
            tokens: Arc::new(target.tokens.clone()),
            rate: write_rate as f64,
            description: "fire".into(),
            retry_deadline: Duration::from_secs(30),
        },
        epoch(),
    )?;
    let report = format!("sla-under-fire-{rate}");
    let attack = Attack {
        host: &target.consolidation_url,
        users,
        rate,
        seconds,
        report: &report,
    };
    let (metrics, windows) = tokio::join!(
        attack.metrics(reads.scenario()?),
        windows::inject_all(platform, gap)
    );
    let writes = writer.stop().await;
    let end = since_epoch(Instant::now());
    let windows = windows?;
    let metrics = metrics?;
    let goose_p99_co = metrics
        .requests
        .values()
        .max_by_key(|a| a.raw_data.counter)
        .map_or(f64::NAN, |a| {
            a.coordinated_omission_data
                .as_ref()
                .unwrap_or(&a.raw_data)
                .percentile_us(0.99) as f64
                / 1000.0
        });
    Ok(Pass {
        rate,
        users,
        start,
        end,
        windows,
        reads: reads.take(),
        writes,
        goose_p99_co,
    })
}
