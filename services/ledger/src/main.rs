//! The ledger service binary: configuration from the environment, then [`ledger::Application`].
//! `ledger healthcheck` is the container health check; `ledger replay` re-publishes a merchant's
//! days through the outbox (the same code and rate limit as the replay API).

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Records merchants' cash entries.
#[derive(Debug, Parser)]
#[command(name = "ledger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and relay the outbox (the default).
    Serve,
    /// Exit 0 when this machine's service answers `/health/ready` (container health check).
    Healthcheck,
    /// Re-publish the entry.recorded events of a merchant's days through the outbox, with their
    /// original event ids (needs DATABASE_URL; the running relay publishes them).
    Replay {
        /// The merchant.
        #[arg(long)]
        merchant: String,
        /// First business date (YYYY-MM-DD).
        #[arg(long)]
        from: String,
        /// Last business date (inclusive); default `--from`.
        #[arg(long)]
        to: Option<String>,
        /// Events per second (default REPLAY_EVENTS_PER_SECOND or 500).
        #[arg(long, env = "REPLAY_EVENTS_PER_SECOND", default_value_t = 500)]
        rate: u32,
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
        return cashflow_platform::health::probe(8081);
    }
    cashflow_platform::telemetry::init_logging("ledger");
    match command {
        Command::Healthcheck => Ok(()),
        Command::Serve => {
            let config = ledger::Config::from_env().context("reading the configuration")?;
            let app = ledger::Application::build(config).await?;
            tracing::info!(address = %app.local_addr(), "ledger listening");
            let shutdown = CancellationToken::new();
            tokio::spawn(cashflow_platform::shutdown::cancel_on_signal(
                shutdown.clone(),
            ));
            app.run_until_stopped(shutdown).await
        }
        Command::Replay {
            merchant,
            from,
            to,
            rate,
        } => {
            let parse = |d: &str| {
                cashflow_contracts::business_date::parse(d).map_err(|e| anyhow::anyhow!(e))
            };
            let from = parse(&from)?;
            let to = to.as_deref().map_or(Ok(from), parse)?;
            anyhow::ensure!(to >= from, "--to must not be before --from");
            let url = cashflow_platform::config::required("DATABASE_URL")?;
            let deadlines = cashflow_platform::deadline::Deadlines::from_env()?;
            let pool = cashflow_platform::http::connect_and_migrate(
                &url,
                2,
                &deadlines,
                &ledger::MIGRATOR,
            )
            .await?;
            let pacer = ledger::reconcile::Pacer::new(rate);
            let outcome = ledger::reconcile::replay(&pool, &merchant, from, to, &pacer).await?;
            println!(
                "replayed {} event(s) of {merchant} ({} skipped: no stored event id)",
                outcome.replayed, outcome.skipped
            );
            Ok(())
        }
    }
}
