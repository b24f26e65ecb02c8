//! The `harness` command line: `up` runs the whole system locally, `down` stops it and removes
//! what it keeps, `token` mints a token that a running `up` (or `identity`) accepts, `identity`
//! serves the emulated identity provider alone, `fault` injects network faults on a running
//! `up`'s service→dependency links and SQS faults in its SQS fault layer, and `ps`, `rollout
//! restart` and `scale` act on its replicas.

mod cluster;
mod down;
mod fault;
mod identity;
mod running;
mod shared_deps;
mod signals;
mod token;
mod up;

use clap::{Parser, Subcommand};

/// Runs the cash-flow platform locally against real dependencies.
#[derive(Debug, Parser)]
#[command(name = "harness", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start PostgreSQL, Redis, LocalStack SQS, the identity provider and the services; print
    /// their URLs; stop everything on Ctrl-C or SIGTERM.
    Up(up::UpArgs),
    /// Stop a running `harness up` and remove what `up` keeps and leaves behind: the PostgreSQL
    /// data (native data directory, Docker volume), stray harness containers, the state file.
    Down,
    /// Print a token that the running `harness up` (or, with --keys-file, `harness identity`)
    /// accepts.
    Token(token::TokenArgs),
    /// Serve the emulated identity provider (discovery and JWKS) alone, e.g. in compose.yaml.
    Identity(identity::IdentityArgs),
    /// Inject a network fault on a link of the running `harness up`:
    /// `harness fault ledger postgres latency 300ms|blackhole|reset|refuse|heal`; an SQS fault:
    /// `harness fault sqs SendMessageBatch throttle|fail-entries 0.3|drop-answer|... [--rate 0.2
    /// | --next 5]`, `harness fault sqs heal`; `harness fault list`, `harness fault heal`.
    Fault(fault::FaultArgs),
    /// Each replica of the running `harness up`: its state, restarts, last exit (and why),
    /// port and age.
    Ps(cluster::PsArgs),
    /// `harness rollout restart <service>`: replace a service's replicas one at a time on the
    /// running `harness up`, none leaving the gateway before its replacement is ready.
    Rollout(cluster::RolloutArgs),
    /// `harness scale <service> <1-8>`: run that many replicas of a service on the running
    /// `harness up`; the gateway follows without dropping a request.
    Scale(cluster::ScaleArgs),
    /// Install what the native backend needs that lives in the project (the LocalStack and moto
    /// venvs).
    Setup,
    /// One set of dependencies for a whole `cargo nextest run` (its setup script).
    SharedDeps(shared_deps::SharedDepsArgs),
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(args).await,
            Command::Down => down::run().await,
            Command::SharedDeps(args) => shared_deps::run(args).await,
            Command::Token(args) => token::run(args),
            Command::Identity(args) => identity::run(args).await,
            Command::Fault(args) => fault::run(args).await,
            Command::Ps(args) => cluster::ps(args).await,
            Command::Rollout(args) => cluster::rollout(args).await,
            Command::Scale(args) => cluster::scale(args).await,
            Command::Setup => {
                let venv =
                    tokio::task::spawn_blocking(crate::backend::native::ensure_venv).await??;
                eprintln!("harness: LocalStack venv ready in {}", venv.display());
                let venv =
                    tokio::task::spawn_blocking(crate::backend::native::ensure_moto_venv).await??;
                eprintln!("harness: moto venv ready in {}", venv.display());
                Ok(())
            }
        }
    }
}
