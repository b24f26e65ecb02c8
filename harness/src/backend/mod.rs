//! Swappable backends that provide the real dependencies: PostgreSQL, Redis and SQS (LocalStack
//! or moto).
//!
//! - `native`: local processes (PostgreSQL 15 binaries, `redis-server`, the SQS emulator from a
//!   venv);
//! - `external`: endpoints given in the environment (`DATABASE_URL`, `REDIS_URL`,
//!   `AWS_ENDPOINT_URL`), e.g. `compose.yaml` or CI services; faults are not available there;
//! - `containers`: Docker containers through testcontainers, faults through the Docker API.
//!
//! `HARNESS_BACKEND` chooses; unset, containers are used when a Docker engine answers and the
//! images are present or can be pulled, native processes otherwise. The choice and its reason
//! are logged once per stack.

pub mod containers;
pub mod external;
pub mod native;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;

/// Connection details of the running dependencies.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Endpoints {
    /// PostgreSQL URL of a role that may create databases (points at the `postgres` database).
    pub postgres_url: String,
    /// Redis URL.
    pub redis_url: String,
    /// SQS endpoint (the emulator's gateway).
    pub sqs_endpoint: String,
    /// AWS region used for SQS.
    pub aws_region: String,
    /// Which emulator serves SQS there (LocalStack when a lease or the environment does not
    /// say).
    #[serde(default)]
    pub sqs_emulator: SqsEmulator,
}

/// One of the dependencies the platform runs on, as the harness names it everywhere: backends,
/// faults, fault links and the command line. Which emulator serves SQS (LocalStack or moto) is
/// a property of the stack ([`SqsEmulator`], [`Endpoints::sqs_emulator`]), not another dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    /// PostgreSQL.
    Postgres,
    /// Redis.
    Redis,
    /// SQS (LocalStack or moto).
    Sqs,
}

impl Dependency {
    /// Every dependency, in start order.
    pub const ALL: [Dependency; 3] = [Dependency::Postgres, Dependency::Redis, Dependency::Sqs];

    /// The lower-case name (`postgres`, `redis`, `sqs`).
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Postgres => "postgres",
            Dependency::Redis => "redis",
            Dependency::Sqs => "sqs",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dependency {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|dependency| dependency.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown dependency {s:?} (postgres, redis, sqs)"))
    }
}

/// Which emulator stands in for SQS, chosen by `HARNESS_SQS` (`localstack`, the default, or
/// `moto`) on both owning backends. Either is [`Dependency::Sqs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqsEmulator {
    /// LocalStack 4.13.1 (community).
    #[default]
    LocalStack,
    /// moto's server mode.
    Moto,
}

impl SqsEmulator {
    /// The lower-case name (`localstack`, `moto`).
    pub fn name(self) -> &'static str {
        match self {
            Self::LocalStack => "localstack",
            Self::Moto => "moto",
        }
    }

    /// The emulator named by `HARNESS_SQS` (LocalStack when unset).
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("HARNESS_SQS") {
            Err(_) => Ok(Self::LocalStack),
            Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
                "" | "localstack" => Ok(Self::LocalStack),
                "moto" => Ok(Self::Moto),
                other => {
                    bail!("HARNESS_SQS={other:?} is not an SQS emulator; use localstack or moto")
                }
            },
        }
    }
}

impl fmt::Display for SqsEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Host ports of the dependencies, for the backends that start them; `None` takes a free port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    /// PostgreSQL.
    pub postgres: Option<u16>,
    /// Redis.
    pub redis: Option<u16>,
    /// The SQS emulator.
    pub sqs: Option<u16>,
}

impl Ports {
    /// The port of `dependency`, or a free one.
    pub fn or_free(self, dependency: Dependency) -> anyhow::Result<u16> {
        let port = match dependency {
            Dependency::Postgres => self.postgres,
            Dependency::Redis => self.redis,
            Dependency::Sqs => self.sqs,
        };
        port.map_or_else(native::free_port, Ok)
    }
}

/// A fault to inject into a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Clean shutdown (SIGTERM, or PostgreSQL's fast shutdown).
    Stop,
    /// SIGKILL to the whole process tree.
    Kill,
    /// SIGSTOP: the port stays open but nothing answers.
    Pause,
    /// SIGCONT after a pause.
    Resume,
    /// Start again on the same port with the same data (stopping first if it runs).
    Restart,
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Local processes.
    Native,
    /// Endpoints from the environment.
    External,
    /// Docker containers (testcontainers).
    Containers,
}

impl FromStr for BackendKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "native" => Ok(Self::Native),
            "external" => Ok(Self::External),
            "containers" => Ok(Self::Containers),
            other => bail!(
                "HARNESS_BACKEND={other:?} is not a backend; use native, external or containers"
            ),
        }
    }
}

impl BackendKind {
    /// The backend named by `HARNESS_BACKEND`, or else the automatic choice, with the reason.
    pub async fn choose() -> anyhow::Result<(Self, String)> {
        match std::env::var("HARNESS_BACKEND") {
            Ok(value) if !value.trim().is_empty() => {
                Ok((value.parse()?, format!("HARNESS_BACKEND={value}")))
            }
            _ => match containers::available().await {
                Ok(()) => Ok((
                    Self::Containers,
                    "HARNESS_BACKEND is unset, a Docker engine answers and the images are present"
                        .into(),
                )),
                Err(e) => Ok((
                    Self::Native,
                    format!("HARNESS_BACKEND is unset and containers cannot run: {e:#}"),
                )),
            },
        }
    }
}

/// A started backend.
#[derive(Debug)]
pub enum Backend {
    /// Local processes.
    Native(Box<native::Native>),
    /// Endpoints from the environment.
    External(external::External),
    /// Docker containers.
    Containers(Box<containers::Containers>),
}

impl Backend {
    /// Starts (or connects to) the dependencies; each owning backend reads its own options.
    pub async fn start(
        kind: BackendKind,
        native: &native::NativeOptions,
        containers: &containers::ContainerOptions,
    ) -> anyhow::Result<Self> {
        match kind {
            BackendKind::Native => Ok(Self::Native(Box::new(native::Native::start(native).await?))),
            BackendKind::External => Ok(Self::External(external::External::from_env()?)),
            BackendKind::Containers => Ok(Self::Containers(Box::new(
                containers::Containers::start(containers).await?,
            ))),
        }
    }

    /// Connection details.
    pub fn endpoints(&self) -> &Endpoints {
        match self {
            Self::Native(native) => native.endpoints(),
            Self::External(external) => external.endpoints(),
            Self::Containers(containers) => containers.endpoints(),
        }
    }

    /// The backend's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Native(_) => "native",
            Self::External(_) => "external",
            Self::Containers(_) => "containers",
        }
    }

    /// Injects a fault into one dependency.
    pub async fn inject(&self, dependency: Dependency, fault: Fault) -> anyhow::Result<()> {
        match self {
            Self::Native(native) => native.inject(dependency, fault).await,
            Self::Containers(containers) => containers.inject(dependency, fault).await,
            Self::External(_) => bail!(
                "the external backend cannot {fault:?} {dependency}: it does not own the process"
            ),
        }
    }

    /// CPU time a dependency has used since it started, where the backend can tell (it owns
    /// the process or the container): for ceilings that say how busy the emulator was.
    pub async fn cpu_time(&self, dependency: Dependency) -> anyhow::Result<Option<Duration>> {
        match self {
            Self::Native(native) => Ok(native.cpu_time(dependency)),
            Self::Containers(containers) => containers.cpu_time(dependency).await.map(Some),
            Self::External(_) => Ok(None),
        }
    }

    /// Stops whatever the backend started.
    pub async fn shutdown(&self) {
        match self {
            Self::Native(native) => native.shutdown().await,
            Self::Containers(containers) => containers.shutdown().await,
            Self::External(_) => {}
        }
    }
}
