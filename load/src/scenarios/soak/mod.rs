//! `soak` (`make soak`): a steady mixed load for a long while, with every retention window
//! shortened by configuration so that it elapses several times within the run, to show that
//! nothing keeps growing: tables (rows and bytes, both databases), each service's memory and
//! connections, Redis's memory, and the backlogs.
//!
//! The services run as their own processes, one replica each behind the gateway, started by the
//! harness's cluster as `harness up` starts them ([`platform`]), so the RSS, file descriptors
//! and sockets sampled from `/proc/<pid>` ([`sampler`]) are theirs alone; in this process they
//! would be mixed with goose's. Their dependencies come from a harness stack of their own
//! (native or containers).
//!
//! Windows (defaults; each a flag, [`args`]): idempotency keys, published outbox rows, cached
//! answers and their stale copies 60 s; the queues' message retention 60 s (SQS's minimum) and so dedup records 190 s,
//! the shortest the consolidation's start-up check accepts above 60 + 60 s of SQS retention and
//! its minute of clock margin; pruning every 10 s. Replays could reach further back than that,
//! so the consolidation runs without a reconciler (`RECONCILE_ENABLED=false`, no `LEDGER_URL`),
//! which is what lets the check accept a window under a day.
//!
//! Judging ([`judge`]): the part of the run after the longest window and two pruning intervals
//! have elapsed is cut in thirds; a series keeps growing when the median of its last third
//! exceeds the median of its middle third by 5 % or more, and by more than its resolution (one
//! row or connection, one 8 KiB page, one second of writes for a backlog, whose instant value is
//! the relay's and the consumer's batching). The books themselves (`entries`) grow with every
//! entry by design: they are drawn, not judged ([`plot`]); their bytes per row are judged.

mod args;
mod books;
mod judge;
mod load;
mod platform;
mod plot;
mod sampler;
mod series;

use std::time::{Duration, Instant};

use harness::{Stack, StackOptions};
use tokio_util::sync::CancellationToken;

pub use self::args::SoakArgs;
use self::platform::Platform;
use self::sampler::{Sampler, Service, print_progress, sampler_pool};
use self::series::{Samples, Series, Unit, Verdict};
use crate::kit::goose::{Attack, Run};
use crate::kit::report::{self, Figure};
use crate::kit::target::{Target, mint_tokens};

/// Runs the soak: starts its own stack and both services, loads them for `--soak-minutes`,
/// samples, draws, judges. Fails naming every series that kept growing.
pub async fn run(args: &SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.soak_rate >= 4 && args.soak_merchants >= 1,
        "--soak-rate must be at least 4 and --soak-merchants at least 1"
    );
    let run_seconds = args.run_seconds();
    eprintln!(
        "soak: {run_seconds} s at {} req/s over {} merchants; {}",
        args.soak_rate,
        args.soak_merchants,
        args.describe_windows()
    );
    if run_seconds <= args.warm_up() + 6 * args.sample_every().as_secs() {
        eprintln!(
            "soak: WARNING: {run_seconds} s is too short to judge anything: the windows need {} \
             s to elapse (a run of {} min judges every series); the samples are drawn all the same",
            args.warm_up(),
            (args.warm_up() * 3 / 2 / 60 + 2)
        );
    }
    let stack = Stack::start(StackOptions::default()).await?;
    let result = on_stack(&stack, args, run_seconds).await;
    stack.shutdown().await;
    result
}

async fn on_stack(stack: &Stack, args: &SoakArgs, run_seconds: u64) -> anyhow::Result<()> {
    let platform = Platform::start(stack, args).await?;
    let result = soak(stack, &platform, args, run_seconds).await;
    platform.cluster.shutdown().await;
    result
}

/// What the load and the sampler left.
struct Measured {
    run: Run,
    samples: Samples,
    /// Seconds the load ran.
    end: f64,
}

async fn soak(
    stack: &Stack,
    platform: &Platform,
    args: &SoakArgs,
    run_seconds: u64,
) -> anyhow::Result<()> {
    let merchants: Vec<String> = (0..args.soak_merchants)
        .map(|i| format!("soak-{i}"))
        .collect();
    let lifetime = Duration::from_secs(run_seconds + 3600);
    let tokens = mint_tokens(stack.identity(), &merchants, lifetime)?;
    let target = Target {
        ledger_url: platform.cluster.gateway_url().to_string(),
        consolidation_url: platform.cluster.gateway_url().to_string(),
        merchants,
        tokens,
        days: 7,
        local: None,
    };
    let seeded = load::seed(&target).await?;
    eprintln!("soak: seeded {seeded} entries (every merchant-day of the last 7 days)");

    let ledger_pool = sampler_pool(&platform.ledger_scope.database_url).await?;
    let consolidation_pool = sampler_pool(&platform.consolidation_scope.database_url).await?;
    let mut sampler = Sampler {
        cluster: &platform.cluster,
        ledger: Service {
            label: "ledger",
            database: platform.ledger_scope.database.clone(),
        },
        consolidation: Service {
            label: "consolidation",
            database: platform.consolidation_scope.database.clone(),
        },
        ledger_pool: ledger_pool.clone(),
        consolidation_pool: consolidation_pool.clone(),
        redis: platform.consolidation_scope.redis().await?,
        sqs: platform.ledger_scope.sqs(),
        queue_url: platform.ledger_scope.queues.url.clone(),
        started: Instant::now(),
    };
    let measured = load_and_sample(&target, &mut sampler, args, run_seconds).await;
    let result = match measured {
        Ok(measured) => {
            // The books after the load: nothing lost, nothing counted twice, with dedup records
            // pruned all along. The pipeline drains first (consumer lag is not a difference).
            eprintln!("soak: load done; waiting for the books to agree");
            match books::books_agree(&ledger_pool, &consolidation_pool).await {
                Ok(books) => conclude(args, measured, books),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    ledger_pool.close().await;
    consolidation_pool.close().await;
    result
}

/// Runs goose for `run_seconds` while the sampler samples every `--soak-sample-seconds`; a
/// failed sample (a service gone) stops both.
async fn load_and_sample(
    target: &Target,
    sampler: &mut Sampler<'_>,
    args: &SoakArgs,
    run_seconds: u64,
) -> anyhow::Result<Measured> {
    let scenario = load::scenario(target)?;
    let mut samples = Samples::default();
    let every = args.sample_every();
    let stop = CancellationToken::new();
    let load = async {
        let run = Attack {
            host: &target.consolidation_url,
            users: 16,
            rate: args.soak_rate,
            seconds: usize::try_from(run_seconds).unwrap_or(usize::MAX),
            report: "soak",
        }
        .run(scenario)
        .await;
        stop.cancel();
        run
    };
    let sampling = async {
        sampler.started = Instant::now();
        let mut next = Instant::now();
        let mut printed = Instant::now();
        while !stop.is_cancelled() {
            if let Err(e) = sampler.sample(&mut samples).await {
                stop.cancel();
                return Err(e);
            }
            if printed.elapsed() >= Duration::from_secs(60) || samples.series.len() < 2 {
                printed = Instant::now();
                print_progress(&samples);
            }
            next += every;
            tokio::select! {
                () = tokio::time::sleep_until(next.into()) => {}
                () = stop.cancelled() => {}
            }
        }
        anyhow::Ok(())
    };
    let (run, sampled) = tokio::join!(load, sampling);
    let end = sampler
        .started
        .elapsed()
        .as_secs_f64()
        .min(run_seconds as f64);
    let run = run?;
    sampled?;
    Ok(Measured { run, samples, end })
}

/// Judges every series, draws them, publishes the figures; fails naming what kept growing, the
/// books that differ, the requests that failed.
fn conclude(
    args: &SoakArgs,
    Measured {
        run,
        mut samples,
        end,
    }: Measured,
    (differ, merchant_days): (usize, usize),
) -> anyhow::Result<()> {
    let write_rate = args.soak_rate as f64 / 4.0;
    // The load itself, from the books' growth: a window-bound table holds (write rate) x
    // (window) rows, so a rate that drifts (a machine busy with other work) moves it too.
    let writes: Vec<(f64, f64)> = samples
        .series
        .get("ledger.entries rows")
        .map(|s| {
            s.points
                .windows(2)
                .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0).max(0.001)))
                .collect()
        })
        .unwrap_or_default();
    for (at, rate) in writes {
        samples.push("load: ledger writes/s", Unit::Count, at, rate);
    }
    if let Some(series) = samples.series.get_mut("load: ledger writes/s") {
        series.drawn_only = Some("the load: drawn, not judged");
    }
    let warm_up = args.warm_up() as f64;
    for series in samples.series.values_mut() {
        series.verdict = Some(judge::judge(series, warm_up, end, write_rate));
    }
    let mut ordered: Vec<&Series> = samples.series.values().collect();
    ordered.sort_by_key(|s| plot::rank(&s.name));
    let dir = report::dir();
    let svg = dir.join("soak.svg");
    let title = [
        format!(
            "soak: {:.1} min at {} req/s asked ({:.0} writes/s; {:.1} req/s achieved) over {} \
             merchants; {} series still growing after the windows",
            end / 60.0,
            args.soak_rate,
            write_rate,
            run.rate,
            args.soak_merchants,
            ordered
                .iter()
                .filter(|s| matches!(s.verdict, Some(Verdict::Growing { .. })))
                .count()
        ),
        format!("windows: {}", args.describe_windows()),
        "dark vertical line: the windows have elapsed; shaded: the middle and the last third of the rest, \
         whose medians are compared (growing: +5 % and more than one row, connection, 8 KiB page, \
         or second of writes for a backlog)"
            .to_string(),
    ];
    plot::plot(&svg, &ordered, warm_up, end, &title)?;
    let csv = dir.join("soak.csv");
    plot::write_csv(&csv, &ordered)?;
    std::fs::write(
        dir.join("soak-series.json"),
        serde_json::to_vec_pretty(&ordered)?,
    )?;

    println!("\nsoak: {}", args.describe_windows());
    let (growing, not_judged) = judge::print_verdicts(&ordered);
    let figures = vec![
        Figure::new("soak", "requests (goose)", run.requests as f64, "requests"),
        Figure::new("soak", "achieved rate", run.rate, "req/s"),
        Figure::new("soak", "failed requests", run.failures as f64, "").bound(run.failures == 0),
        Figure::new("soak", "p99 (raw)", run.p99, "ms"),
        Figure::new(
            "soak",
            "merchant-days where the books differ",
            differ as f64,
            &format!("of {merchant_days}"),
        )
        .bound(differ == 0),
        Figure::new(
            "soak",
            "series still growing after the windows",
            growing.len() as f64,
            &format!("of {}", ordered.len()),
        )
        .bound(growing.is_empty()),
    ];
    report::publish("soak", &figures)?;
    println!(
        "plot: {}   samples: {}   goose: {}",
        svg.display(),
        csv.display(),
        dir.join("soak.html").display()
    );

    let mut failures = Vec::new();
    if !growing.is_empty() {
        let load = ordered
            .iter()
            .find(|s| s.name == "load: ledger writes/s")
            .and_then(|s| match s.verdict {
                Some(Verdict::Drawn { growth, .. }) if growth >= 0.05 => Some(growth),
                _ => None,
            })
            .map_or_else(String::new, |growth| {
                format!(
                    " (the write rate itself rose {:.0} % between those thirds, and a table \
                     bound by a window holds rate x window rows: rerun on a quieter machine)",
                    growth * 100.0
                )
            });
        failures.push(format!(
            "still growing after the windows elapsed: {}{load}",
            growing.join(", ")
        ));
    }
    if differ > 0 {
        failures.push(format!(
            "{differ} of {merchant_days} merchant-days differ between the ledger and the \
             consolidation"
        ));
    }
    if run.failures > 0 {
        failures.push(format!("{} requests failed", run.failures));
    }
    if !not_judged.is_empty() {
        println!(
            "soak: NOT JUDGED ({} series): the run was too short for the windows; use a longer \
             SOAK_MINUTES",
            not_judged.len()
        );
    }
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    Ok(())
}
