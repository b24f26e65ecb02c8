//! The `native` backend: real PostgreSQL 15, Redis and the SQS emulator (LocalStack or moto) as
//! local processes, started once per test process (or per `harness up`) and stopped with it.

mod host;
mod localstack;
mod moto;
mod postgres;
mod redis;
mod venv;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

pub use self::host::free_port;
use self::host::run_id;
pub(crate) use self::host::which;
pub use self::localstack::ensure_venv;
pub use self::moto::ensure_venv as ensure_moto_venv;
use super::{Dependency, Endpoints, Fault, Ports, SqsEmulator};
use crate::process::Supervised;

/// How long a dependency may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean stop may take before the process is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Choices for the native backend (the containers backend has its own,
/// [`super::containers::ContainerOptions`]). `Default` gives free ports and throwaway data.
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// Ports of the dependencies (free ports where `None`).
    pub ports: Ports,
    /// Keep PostgreSQL's data in this folder across runs (`harness up`); `None` gives a fresh copy
    /// of the initialised data directory, removed by a later run.
    pub postgres_data: Option<PathBuf>,
    /// Keep PostgreSQL's throwaway data in memory (a folder on `/dev/shm` when it has room):
    /// database creation and writes cost no disk work.
    pub postgres_in_memory: bool,
}

impl NativeOptions {
    /// Sets the dependencies' ports.
    pub fn with_ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// Keeps PostgreSQL's data in `dir` across runs.
    pub fn with_postgres_data(mut self, dir: impl Into<PathBuf>) -> Self {
        self.postgres_data = Some(dir.into());
        self
    }

    /// Keeps PostgreSQL's throwaway data in memory ([`NativeOptions::postgres_in_memory`]).
    pub fn with_postgres_in_memory(mut self) -> Self {
        self.postgres_in_memory = true;
        self
    }
}

/// The running native dependencies.
#[derive(Debug)]
pub struct Native {
    postgres: Supervised,
    redis: Supervised,
    /// LocalStack or moto.
    sqs: Supervised,
    endpoints: Endpoints,
}

impl Native {
    /// Starts the three dependencies in parallel and waits until each is ready.
    pub async fn start(options: &NativeOptions) -> anyhow::Result<Self> {
        let run = run_id();
        let postgres_port = options.ports.or_free(Dependency::Postgres)?;
        let redis_port = options.ports.or_free(Dependency::Redis)?;
        let sqs_port = options.ports.or_free(Dependency::Sqs)?;
        let sqs_emulator = SqsEmulator::from_env()?;

        // Specs are prepared first: each step that can fail on a missing binary fails fast,
        // before anything was started.
        let postgres = Supervised::new(
            postgres::prepare(
                postgres_port,
                options.postgres_data.as_deref(),
                options.postgres_in_memory,
                &run,
            )
            .await?,
        );
        let redis = Supervised::new(redis::spec(redis_port, &run)?);
        // The SQS emulator (`HARNESS_SQS`): LocalStack, or moto.
        let sqs = Supervised::new(match sqs_emulator {
            SqsEmulator::LocalStack => localstack::spec(sqs_port, &run).await?,
            SqsEmulator::Moto => moto::spec(sqs_port, &run).await?,
        });

        let (pg, rd, ls) = tokio::join!(
            postgres.start(START_TIMEOUT),
            redis.start(START_TIMEOUT),
            sqs.start(START_TIMEOUT)
        );
        let native = Self {
            endpoints: Endpoints {
                postgres_url: format!("postgres://postgres@127.0.0.1:{postgres_port}/postgres"),
                redis_url: format!("redis://127.0.0.1:{redis_port}"),
                sqs_endpoint: format!("http://127.0.0.1:{sqs_port}"),
                aws_region: "us-east-1".into(),
                sqs_emulator,
            },
            postgres,
            redis,
            sqs,
        };
        // Whatever started is stopped by Drop when another one failed.
        if let (Err(e), Some(dir)) = (&pg, &options.postgres_data) {
            anyhow::bail!(
                "{e:#}\nlikely fix: PostgreSQL runs on data kept from an earlier run in {}; if that \
                 data is unusable, start from empty with `make up-fresh` (`harness up --fresh`), \
                 or remove it with `make down` (`harness down`)",
                dir.display()
            );
        }
        pg?;
        rd?;
        ls?;
        postgres::wait_accepting(&native.endpoints.postgres_url, START_TIMEOUT).await?;
        Ok(native)
    }

    /// Connection details.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn process(&self, dependency: Dependency) -> &Supervised {
        match dependency {
            Dependency::Postgres => &self.postgres,
            Dependency::Redis => &self.redis,
            Dependency::Sqs => &self.sqs,
        }
    }

    /// Process id of a dependency while it runs (its process group has the same id).
    pub fn pid(&self, dependency: Dependency) -> Option<i32> {
        self.process(dependency).pid()
    }

    /// CPU time a dependency has used since it started: its process and every live descendant
    /// (PostgreSQL's backends are processes of their own). `None` without `/proc`, or when it
    /// is not running.
    pub fn cpu_time(&self, dependency: Dependency) -> Option<Duration> {
        crate::cpu::process_tree(self.pid(dependency)?)
    }

    /// Log file of a dependency.
    pub fn log_file(&self, dependency: Dependency) -> &Path {
        self.process(dependency).log_file()
    }

    /// Injects a fault; `Restart` returns once the dependency is ready again.
    pub async fn inject(&self, dependency: Dependency, fault: Fault) -> anyhow::Result<()> {
        let process = self.process(dependency);
        match fault {
            Fault::Stop => process.stop(STOP_GRACE).await,
            Fault::Kill => process.kill().await,
            Fault::Pause => process.pause(),
            Fault::Resume => process.resume(),
            Fault::Restart => {
                process.stop(STOP_GRACE).await?;
                process.start(START_TIMEOUT).await?;
                if dependency == Dependency::Postgres {
                    postgres::wait_accepting(&self.endpoints.postgres_url, START_TIMEOUT).await?;
                }
                Ok(())
            }
        }
        .with_context(|| format!("{fault:?} {dependency}"))
    }

    /// Stops every dependency cleanly.
    pub async fn shutdown(&self) {
        let _ = tokio::join!(
            self.sqs.stop(STOP_GRACE),
            self.redis.stop(STOP_GRACE),
            self.postgres.stop(STOP_GRACE)
        );
    }
}
