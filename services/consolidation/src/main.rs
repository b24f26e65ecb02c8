//! The consolidation binary: serves by default; `consolidation dlq list|redrive` is the DLQ
//! tooling, with the same configuration; `consolidation reconcile` runs one reconcile pass and
//! prints its report; `consolidation healthcheck` is the container health check.

use std::collections::HashSet;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Daily consolidation of merchants' entries.
#[derive(Debug, Parser)]
#[command(name = "consolidation", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the entries queue and serve the API (the default).
    Serve,
    /// Exit 0 when this machine's service answers `/health/ready` (container health check).
    Healthcheck,
    /// Inspect or redrive the dead-letter queue (needs ENTRIES_QUEUE_URL, ENTRIES_DLQ_URL and
    /// the AWS variables only).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Compare merchant-days with the ledger's digests, have the ledger replay those behind, and
    /// print the report as JSON (the service's configuration; exit 1 when divergences remain).
    Reconcile {
        /// One merchant; default every merchant.
        #[arg(long)]
        merchant: Option<String>,
        /// First business date (YYYY-MM-DD).
        #[arg(long)]
        from: String,
        /// Last business date (inclusive).
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// List messages with their failure reason and receive count.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Move messages back to the main queue: all, or the ids given.
    Redrive {
        /// A DLQ message id (repeat for several); none means all.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

/// mimalloc rather than glibc's malloc: a request allocates and frees many small buffers across
/// the runtime's threads, and glibc's arenas spent a sixth of a cached read's CPU on it
/// (`malloc_consolidate`, `_int_malloc`, `_int_free`; docs/figures.md, issue 32; ADR 22).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    if matches!(command, Command::Healthcheck) {
        return cashflow_platform::health::probe(8082);
    }
    cashflow_platform::telemetry::init_logging("consolidation");
    match command {
        Command::Healthcheck => Ok(()),
        Command::Serve => {
            let config = consolidation::Config::from_env().context("reading the configuration")?;
            let app = consolidation::Application::build(config).await?;
            tracing::info!(address = %app.local_addr(), "consolidation listening");
            let shutdown = CancellationToken::new();
            tokio::spawn(cashflow_platform::shutdown::cancel_on_signal(
                shutdown.clone(),
            ));
            app.run_until_stopped(shutdown).await
        }
        Command::Reconcile { merchant, from, to } => {
            let config = consolidation::Config::from_env().context("reading the configuration")?;
            // This command replays: the replay window always applies.
            consolidation::config::check_retention(
                config.processed_events_retention,
                Some(config.reconcile.window_days),
                config.retention.sqs,
            )?;
            let parse = |d: &str| {
                cashflow_contracts::business_date::parse(d).map_err(|e| anyhow::anyhow!(e))
            };
            let (from, to) = (parse(&from)?, parse(&to)?);
            let pool = cashflow_platform::http::connect_and_migrate(
                &config.database_url,
                2,
                &config.deadlines,
                &consolidation::MIGRATOR,
            )
            .await?;
            let reconciler = consolidation::reconcile::Reconciler::new(
                pool,
                config.reconcile.clone(),
                consolidation::metrics::ReconcileMetrics::default(),
            )?;
            let window = reconciler.window();
            anyhow::ensure!(
                to >= from && from >= window.0 && to <= window.1,
                "--from/--to must lie within the replay window {} to {} (RECONCILE_WINDOW_DAYS)",
                window.0,
                window.1
            );
            let report = reconciler
                .reconcile(from, to, merchant.as_deref())
                .await
                .context("reconciling")?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.still_divergent.is_empty() || !report.ahead.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Dlq { action } => {
            let queue_url = cashflow_platform::config::required("ENTRIES_QUEUE_URL")?;
            let dlq_url = cashflow_platform::config::required("ENTRIES_DLQ_URL")?;
            let sqs = cashflow_platform::sqs::SqsSettings::from_env()
                .client(
                    std::time::Duration::from_secs(2),
                    std::time::Duration::from_secs(10),
                )
                .await;
            match action {
                DlqAction::List { limit } => {
                    let messages = consolidation::dlq::list(&sqs, &dlq_url, limit).await?;
                    println!("{} message(s) in {dlq_url}", messages.len());
                    for m in messages {
                        println!(
                            "{}  reason={}  receives={}  detail={}\n    {}",
                            m.message_id,
                            m.reason,
                            m.receive_count
                                .map_or_else(|| "?".into(), |c| c.to_string()),
                            m.detail.unwrap_or_default(),
                            m.body
                        );
                    }
                }
                DlqAction::Redrive { ids } => {
                    let only: Option<HashSet<String>> =
                        (!ids.is_empty()).then(|| ids.into_iter().collect());
                    let moved =
                        consolidation::dlq::redrive(&sqs, &dlq_url, &queue_url, only.as_ref())
                            .await?;
                    println!("redriven {moved} message(s) to {queue_url}");
                }
            }
            Ok(())
        }
    }
}
