//! The `containers` backend: PostgreSQL, Redis and the SQS emulator (LocalStack or moto) as
//! Docker containers, started with testcontainers and its modules (their images, environment
//! and ready lines), one container each per stack.
//!
//! - Images default to the official ones at pinned tags and can be overridden with
//!   `HARNESS_POSTGRES_IMAGE`, `HARNESS_REDIS_IMAGE` and `HARNESS_LOCALSTACK_IMAGE`
//!   (`name:tag`). Where no registry is reachable, `ci/images/build.sh` builds drop-in images
//!   under the same names from Debian's packages.
//! - Each container publishes its port on a host port chosen before it starts, so a stopped and
//!   started container comes back on the same address and clients reconnect.
//! - Faults go through the Docker API: stop, kill (SIGKILL), pause (cgroup freezer), restart.
//! - No container outlives its test process: a reaper (`sh` + the `docker` CLI, in its own
//!   process group) waits for the end of a pipe this process holds open, which closes however
//!   the process ends (panic, abort, `kill -9`), and then removes the containers labelled with
//!   this stack's run. Each start also removes containers left by processes that are gone.

use std::collections::HashMap;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use backon::Retryable;
use cashflow_platform::backoff::Backoff;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::Redis;
use testcontainers_modules::testcontainers::bollard::Docker;
use testcontainers_modules::testcontainers::bollard::query_parameters::{
    CreateImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use testcontainers_modules::testcontainers::core::{ContainerPort, Mount};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{
    ContainerAsync, ContainerRequest, GenericImage, Image, ImageExt,
};

use super::{Dependency, Endpoints, Fault, Ports, SqsEmulator};

/// How long a container may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Seconds Docker waits after the stop signal before SIGKILL.
const STOP_GRACE_SECS: i32 = 10;
/// Labels every harness container carries.
const LABEL: &str = "cashflow.harness";
const LABEL_PID: &str = "cashflow.harness.pid";
const LABEL_RUN: &str = "cashflow.harness.run";
const LABEL_DEPENDENCY: &str = "cashflow.harness.dependency";
/// Carries `HARNESS_SESSION` when set (`make test` sets it), so that a check for leftovers
/// (`ci/no-containers-left.sh`) looks at its own run's containers only, not at a `make up`.
const LABEL_SESSION: &str = "cashflow.harness.session";
/// The named volume that keeps `harness up`'s PostgreSQL data across runs (the default state
/// folder's; see [`up_postgres_volume`]).
pub const UP_POSTGRES_VOLUME: &str = "cashflow-harness-up-postgres";
/// Password of the `postgres` role in the PostgreSQL container.
const POSTGRES_PASSWORD: &str = "postgres";

/// Choices for the containers backend. `Default` gives free ports and throwaway data.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// Host ports the containers publish (free ports where `None`).
    pub ports: Ports,
    /// Keep PostgreSQL's data in this named Docker volume across runs (`harness up`:
    /// [`up_postgres_volume`]); `None` keeps it in the container, removed with it.
    pub postgres_volume: Option<String>,
    /// Keep PostgreSQL's throwaway data on a tmpfs, off Docker's storage driver (fuse-overlayfs
    /// here, at a third of native speed). A container's tmpfs does not survive a stop, so such a
    /// stack refuses to stop, kill or restart PostgreSQL: only stacks that never do (the shared
    /// one of a test process or of a nextest run) set it. Ignored with a volume.
    pub postgres_in_memory: bool,
}

impl ContainerOptions {
    /// Sets the published ports.
    pub fn with_ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    /// Keeps PostgreSQL's data in the named volume across runs.
    pub fn with_postgres_volume(mut self, volume: impl Into<String>) -> Self {
        self.postgres_volume = Some(volume.into());
        self
    }

    /// Keeps PostgreSQL's throwaway data on a tmpfs ([`ContainerOptions::postgres_in_memory`]).
    pub fn with_postgres_in_memory(mut self) -> Self {
        self.postgres_in_memory = true;
        self
    }
}

/// An image reference, `name:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository, e.g. `postgres` or `localstack/localstack`.
    pub name: String,
    /// Tag, e.g. `15-bookworm`.
    pub tag: String,
}

impl ImageRef {
    fn parse(reference: &str) -> anyhow::Result<Self> {
        // The tag separator is the last ':' after the last '/' (a registry may have a port).
        let slash = reference.rfind('/').map_or(0, |i| i + 1);
        match reference[slash..].rfind(':') {
            Some(i) if i > 0 => Ok(Self {
                name: reference[..slash + i].to_string(),
                tag: reference[slash + i + 1..].to_string(),
            }),
            _ => bail!("image {reference:?} has no tag; give it as name:tag"),
        }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// The images the backend runs.
#[derive(Debug, Clone)]
pub struct ContainerImages {
    /// PostgreSQL 15 (`HARNESS_POSTGRES_IMAGE`).
    pub postgres: ImageRef,
    /// Redis 7 (`HARNESS_REDIS_IMAGE`).
    pub redis: ImageRef,
    /// The SQS emulator chosen by `HARNESS_SQS`: LocalStack 4.13.1
    /// (`HARNESS_LOCALSTACK_IMAGE`) or moto 5.2.5 (`HARNESS_MOTO_IMAGE`).
    pub sqs: ImageRef,
    /// Which emulator `sqs` is.
    pub emulator: SqsEmulator,
}

impl ContainerImages {
    /// Official images at pinned tags (moto's is built by `ci/images/build.sh`).
    pub const DEFAULTS: [(&'static str, &'static str); 4] = [
        ("HARNESS_POSTGRES_IMAGE", "postgres:15-bookworm"),
        ("HARNESS_REDIS_IMAGE", "redis:7-bookworm"),
        ("HARNESS_LOCALSTACK_IMAGE", "localstack/localstack:4.13.1"),
        ("HARNESS_MOTO_IMAGE", "cashflow/moto:5.2.5"),
    ];

    /// The defaults, each overridden by its environment variable when set.
    pub fn from_env() -> anyhow::Result<Self> {
        let pick = |(var, default): (&str, &str)| {
            let reference = std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_string());
            ImageRef::parse(reference.trim()).with_context(|| format!("reading {var}"))
        };
        let [postgres, redis, localstack, moto] = Self::DEFAULTS;
        let emulator = SqsEmulator::from_env()?;
        Ok(Self {
            postgres: pick(postgres)?,
            redis: pick(redis)?,
            sqs: match emulator {
                SqsEmulator::LocalStack => pick(localstack)?,
                SqsEmulator::Moto => pick(moto)?,
            },
            emulator,
        })
    }

    fn all(&self) -> [&ImageRef; 3] {
        [&self.postgres, &self.redis, &self.sqs]
    }
}

/// Whether the containers backend can run here: a Docker engine answers and every image is
/// present or was just pulled. `Err` says why not, for the one log line of the automatic choice.
pub async fn available() -> anyhow::Result<()> {
    let images = ContainerImages::from_env()?;
    let docker = docker().await?;
    for image in images.all() {
        if docker.inspect_image(&image.to_string()).await.is_ok() {
            continue;
        }
        pull(&docker, image).await.with_context(|| {
            format!(
                "image {image} is not present and could not be pulled \
                 (build it offline with: bash ci/images/build.sh)"
            )
        })?;
    }
    Ok(())
}

async fn pull(docker: &Docker, image: &ImageRef) -> anyhow::Result<()> {
    use futures::TryStreamExt;
    let options = CreateImageOptionsBuilder::new()
        .from_image(&image.name)
        .tag(&image.tag)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while progress.try_next().await?.is_some() {}
    Ok(())
}

/// A Docker client at the version the engine speaks.
async fn docker() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_defaults().context("no Docker client configuration")?;
    let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
        .await
        .context("the Docker engine did not answer within 5 s")?
        .context("the Docker engine is not reachable")?;
    docker
        .ping()
        .await
        .context("the Docker engine does not answer ping")?;
    Ok(docker)
}

/// The testcontainers handles of one stack. They are removed through [`ContainerAsync::rm`] at
/// shutdown, which tells testcontainers they are gone: a handle dropped after the container was
/// removed some other way would log an error for the 404.
struct Handles {
    postgres: ContainerAsync<Postgres>,
    redis: ContainerAsync<Redis>,
    /// The SQS emulator (LocalStack or moto).
    sqs: ContainerAsync<GenericImage>,
}

/// The running containers of one stack.
pub struct Containers {
    docker: Docker,
    /// `None` once [`Containers::shutdown`] removed them.
    handles: Mutex<Option<Handles>>,
    /// Container ids, in [`Dependency::ALL`] order.
    ids: [String; 3],
    images: ContainerImages,
    /// The named volume PostgreSQL keeps its data in (`harness up`), if any.
    postgres_volume: Option<String>,
    /// PostgreSQL's data is on a tmpfs, lost if the container stops: stop, kill and restart of
    /// PostgreSQL are refused.
    postgres_in_memory: bool,
    endpoints: Endpoints,
    run: String,
    /// The reaper and its pipe: dropping the pipe (or this process ending) makes the reaper
    /// remove the containers; the container handles also remove theirs as they drop.
    reaper: Mutex<Option<(Child, ChildStdin)>>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("run", &self.run)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl Containers {
    /// Starts the three containers in parallel and waits until each is ready. Ports from
    /// `options` are used when given, free ports otherwise.
    ///
    /// A free port is only free when it is chosen: another process (a parallel test's client
    /// socket, another stack's published port) can take it before Docker binds it. Such a start
    /// is tried again, with new free ports, or after a pause for the ports `options` pins.
    pub async fn start(options: &ContainerOptions) -> anyhow::Result<Self> {
        let mut attempt = 1;
        loop {
            match Self::start_once(options).await {
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    eprintln!(
                        "harness: a port was taken before Docker bound it; starting again ({e:#})"
                    );
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn start_once(options: &ContainerOptions) -> anyhow::Result<Self> {
        let images = ContainerImages::from_env()?;
        let docker = docker().await?;
        remove_left_by_dead_processes(&docker).await;
        let run = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let reaper = spawn_reaper(&run);

        let postgres_port = options.ports.or_free(Dependency::Postgres)?;
        let redis_port = options.ports.or_free(Dependency::Redis)?;
        let sqs_port = options.ports.or_free(Dependency::Sqs)?;
        let session = std::env::var("HARNESS_SESSION").unwrap_or_default();
        let labels = [
            (LABEL, "1".to_string()),
            (LABEL_PID, std::process::id().to_string()),
            (LABEL_RUN, run.clone()),
            (LABEL_SESSION, session),
        ];
        let labels = |dependency: &str| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .chain([(LABEL_DEPENDENCY.to_string(), dependency.to_string())])
                .collect::<HashMap<_, _>>()
        };

        let mut postgres = request(
            Postgres::default().with_password(POSTGRES_PASSWORD),
            &images.postgres,
            labels("postgres"),
            (postgres_port, 5432),
        )
        // Throwaway data: fsync off like the native backend; commits stay synchronous.
        .with_cmd([
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=500",
            "-c",
            "shared_buffers=128MB",
        ]);
        let postgres_volume = options.postgres_volume.clone();
        let postgres_in_memory = options.postgres_in_memory && postgres_volume.is_none();
        if let Some(volume) = &postgres_volume {
            // `harness up` keeps its data across runs: a named volume outlives the container.
            postgres = postgres.with_mount(Mount::volume_mount(volume, "/var/lib/postgresql/data"));
        } else if postgres_in_memory {
            // Off Docker's storage driver (fuse-overlayfs here: a third of native speed).
            postgres = postgres.with_mount(Mount::tmpfs_mount("/var/lib/postgresql/data"));
        }
        let postgres = postgres.start();
        let redis = request(
            Redis::default(),
            &images.redis,
            labels("redis"),
            (redis_port, 6379),
        )
        // A cache: no persistence, so a restart comes back empty as in production.
        .with_cmd([
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "10000",
        ])
        .start();
        let gateway_host = format!("127.0.0.1:{sqs_port}");
        let sqs_image = GenericImage::new(&images.sqs.name, &images.sqs.tag);
        let localstack = match images.emulator {
            SqsEmulator::LocalStack => request(
                sqs_image,
                &images.sqs,
                labels("localstack"),
                (sqs_port, 4566),
            )
            .with_env_var("SERVICES", "sqs")
            .with_env_var("EAGER_SERVICE_LOADING", "1")
            .with_env_var("SQS_ENDPOINT_STRATEGY", "path")
            // Queue URLs must point at the published port, not the container's 4566.
            .with_env_var("LOCALSTACK_HOST", &gateway_host)
            .with_env_var("DNS_ADDRESS", "0")
            .with_env_var("DISABLE_EVENTS", "1"),
            // moto makes queue URLs from the request's Host header: the published port.
            SqsEmulator::Moto => request(sqs_image, &images.sqs, labels("moto"), (sqs_port, 5000)),
        }
        .start();

        let (postgres, redis, localstack) = tokio::join!(postgres, redis, localstack);
        let started = async {
            let postgres = postgres.context("starting the PostgreSQL container")?;
            let redis = redis.context("starting the Redis container")?;
            let localstack = localstack.context("starting the SQS emulator container")?;
            anyhow::Ok((postgres, redis, localstack))
        }
        .await;
        let (postgres, redis, localstack) = match started {
            Ok(started) => started,
            Err(e) => {
                // Whichever started is removed when its handle drops; the reaper covers the rest.
                return Err(e.context(format!(
                    "images: {} {} {} (override with HARNESS_*_IMAGE)",
                    images.postgres, images.redis, images.sqs
                )));
            }
        };
        let ids = [
            postgres.id().to_string(),
            redis.id().to_string(),
            localstack.id().to_string(),
        ];
        let containers = Self {
            endpoints: Endpoints {
                postgres_url: format!(
                    "postgres://postgres:{POSTGRES_PASSWORD}@127.0.0.1:{postgres_port}/postgres"
                ),
                redis_url: format!("redis://127.0.0.1:{redis_port}"),
                sqs_endpoint: format!("http://{gateway_host}"),
                aws_region: "us-east-1".into(),
                sqs_emulator: images.emulator,
            },
            docker,
            handles: Mutex::new(Some(Handles {
                postgres,
                redis,
                sqs: localstack,
            })),
            ids,
            images,
            postgres_volume,
            postgres_in_memory,
            run,
            reaper: Mutex::new(reaper),
        };
        // Ready means answering: each server is asked over its own protocol (see `wait_ready`).
        let (pg, rd, ls) = tokio::join!(
            containers.wait_ready(Dependency::Postgres),
            containers.wait_ready(Dependency::Redis),
            containers.wait_ready(Dependency::Sqs)
        );
        if let Err(e) = pg.and(rd).and(ls) {
            containers.shutdown().await;
            return Err(e);
        }
        Ok(containers)
    }

    /// Connection details.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// CPU time a dependency's container has used since it started, from the Docker engine's
    /// statistics (cgroup v1 or v2 alike, local or remote engine).
    pub async fn cpu_time(&self, dependency: Dependency) -> anyhow::Result<Duration> {
        use futures::StreamExt;
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stats = self
            .docker
            .stats(self.container_id(dependency), Some(options));
        let stats = tokio::time::timeout(Duration::from_secs(5), stats.next())
            .await
            .with_context(|| {
                format!("the Docker engine gave no statistics of {dependency} within 5 s")
            })?
            .with_context(|| format!("no statistics of {dependency}"))?
            .with_context(|| format!("reading the statistics of {dependency}"))?;
        let nanos = stats
            .cpu_stats
            .and_then(|cpu| cpu.cpu_usage)
            .and_then(|usage| usage.total_usage)
            .with_context(|| format!("the statistics of {dependency} have no CPU usage"))?;
        Ok(Duration::from_nanos(nanos))
    }

    /// The container id of a dependency.
    pub fn container_id(&self, dependency: Dependency) -> &str {
        match dependency {
            Dependency::Postgres => &self.ids[0],
            Dependency::Redis => &self.ids[1],
            Dependency::Sqs => &self.ids[2],
        }
    }

    /// This stack's run label (`cashflow.harness.run`).
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Injects a fault through the Docker API; `Restart` returns once the dependency answers.
    pub async fn inject(&self, dependency: Dependency, fault: Fault) -> anyhow::Result<()> {
        let id = self.container_id(dependency).to_string();
        if self.postgres_in_memory
            && dependency == Dependency::Postgres
            && matches!(fault, Fault::Stop | Fault::Kill | Fault::Restart)
        {
            anyhow::bail!(
                "{fault:?} {dependency}: this stack keeps PostgreSQL's data in memory (a tmpfs, \
                 lost when the container stops; the shared stack does); start a stack of the \
                 test's own (`Stack::start(StackOptions::default())`) to stop PostgreSQL"
            );
        }
        let result = async {
            match fault {
                Fault::Stop => self.stop(dependency).await,
                Fault::Kill => {
                    if self.is_running(&id).await? {
                        self.docker
                            .kill_container(
                                &id,
                                Some(KillContainerOptionsBuilder::new().signal("SIGKILL").build()),
                            )
                            .await?;
                    }
                    self.wait_stopped(&id).await
                }
                Fault::Pause => self.pause(&id).await,
                Fault::Resume => Ok(self.docker.unpause_container(&id).await?),
                Fault::Restart => {
                    self.stop(dependency).await?;
                    self.start_container(dependency).await?;
                    self.wait_ready(dependency).await
                }
            }
        }
        .await;
        result.with_context(|| format!("{fault:?} {dependency} (container {id})"))
    }

    async fn stop(&self, dependency: Dependency) -> anyhow::Result<()> {
        let id = self.container_id(dependency);
        let paused = self
            .docker
            .inspect_container(id, None)
            .await?
            .state
            .and_then(|s| s.paused)
            .unwrap_or(false);
        if paused {
            self.docker.unpause_container(id).await?;
        }
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_GRACE_SECS)
            .build();
        self.docker.stop_container(id, Some(options)).await?;
        self.wait_stopped(id).await
    }

    /// Freezes the container's processes (`docker pause`). The cgroup freezer gives up when a
    /// process does not reach a freezable point in time (runc's "unable to freeze", seen on a
    /// loaded CI machine while LocalStack's threads were busy); runc thaws the cgroup again
    /// before it returns that error, so trying once more is safe and is what a person would do.
    async fn pause(&self, id: &str) -> anyhow::Result<()> {
        let pause = || async { self.docker.pause_container(id).await };
        pause
            .retry(Backoff::new(Duration::from_millis(200), Duration::from_secs(2)).retrying(6))
            .when(|error| error.to_string().contains("unable to freeze"))
            .notify(|error, after| {
                eprintln!("harness: pausing container {id} failed ({error}); again in {after:?}");
            })
            .await?;
        Ok(())
    }

    async fn start_container(&self, dependency: Dependency) -> anyhow::Result<()> {
        let id = self.container_id(dependency);
        self.docker.start_container(id, None).await?;
        Ok(())
    }

    async fn is_running(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self
            .docker
            .inspect_container(id, None)
            .await?
            .state
            .and_then(|s| s.running)
            .unwrap_or(false))
    }

    async fn wait_stopped(&self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.is_running(id).await? {
            if Instant::now() > deadline {
                bail!("container {id} still runs 20 s after it was stopped");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Polls the dependency's own protocol until it answers, against [`START_TIMEOUT`]. Log lines
    /// cannot tell: PostgreSQL prints its ready line twice on a first start (the init server,
    /// then the real one) and once on a kept data directory, and after `docker start` the log
    /// still holds the previous start's lines. A container that exits fails at once. The error
    /// names the dependency, what was waited for and how long, and ends with its last log lines
    /// and the likely fix.
    async fn wait_ready(&self, dependency: Dependency) -> anyhow::Result<()> {
        let started = Instant::now();
        let deadline = started + START_TIMEOUT;
        let id = self.container_id(dependency);
        let last_error = loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), self.probe(dependency));
            let error = match attempt.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "no answer within 2 s".to_string(),
            };
            if !self.is_running(id).await.unwrap_or(true) {
                return Err(self
                    .not_ready(dependency, started, "the container exited", &error)
                    .await);
            }
            if Instant::now() >= deadline {
                break error;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Err(self
            .not_ready(dependency, started, "the deadline passed", &last_error)
            .await)
    }

    /// The error for a dependency that did not become ready.
    async fn not_ready(
        &self,
        dependency: Dependency,
        started: Instant,
        why: &str,
        last_error: &str,
    ) -> anyhow::Error {
        let id = self.container_id(dependency);
        let (image, waited_for) = match dependency {
            Dependency::Postgres => (&self.images.postgres, "a connection that answers SELECT 1"),
            Dependency::Redis => (&self.images.redis, "an answer to PING"),
            Dependency::Sqs => (&self.images.sqs, "an answer to SQS ListQueues"),
        };
        let image_hint = format!(
            "check the image ({image}; rebuild it with `bash ci/images/build.sh --force`) and the \
             Docker engine (`docker info`)"
        );
        let hint = match (dependency, &self.postgres_volume) {
            (Dependency::Postgres, Some(volume)) => format!(
                "PostgreSQL runs on data kept from an earlier run in the Docker volume {volume}; \
                 if that data is unusable, start from empty with `make up-fresh` \
                 (`harness up --fresh`), or remove it with `make down` (`harness down`); \
                 otherwise {image_hint}"
            ),
            _ => image_hint,
        };
        let name = match dependency {
            Dependency::Postgres => "PostgreSQL",
            Dependency::Redis => "Redis",
            Dependency::Sqs => match self.images.emulator {
                SqsEmulator::LocalStack => "LocalStack",
                SqsEmulator::Moto => "moto (SQS)",
            },
        };
        anyhow::anyhow!(
            "{name} (container {short}, image {image}) was not ready after {secs:.0} s: {why}.\n\
             waited for: {waited_for} on {address} (deadline {deadline} s)\n\
             last error: {last_error}\n\
             last lines of its log (docker logs {short}):\n{log}\n\
             likely fix: {hint}",
            short = &id[..12.min(id.len())],
            secs = started.elapsed().as_secs_f64(),
            address = self.address(dependency),
            deadline = START_TIMEOUT.as_secs(),
            log = indent(&self.log_tail(id, 20).await),
        )
    }

    fn address(&self, dependency: Dependency) -> &str {
        match dependency {
            Dependency::Postgres => self
                .endpoints
                .postgres_url
                .rsplit('@')
                .next()
                .unwrap_or_default(),
            Dependency::Redis => &self.endpoints.redis_url,
            Dependency::Sqs => &self.endpoints.sqs_endpoint,
        }
    }

    /// The last `lines` lines of a container's output (stdout and stderr).
    async fn log_tail(&self, id: &str, lines: usize) -> String {
        use futures::StreamExt;
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        let collect = async {
            while let Some(Ok(chunk)) = stream.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), collect)
            .await
            .is_err()
        {
            text.push_str("(the log could not be read within 5 s)");
        }
        text.trim_end().to_string()
    }

    async fn probe(&self, dependency: Dependency) -> anyhow::Result<()> {
        use sqlx::Connection;
        match dependency {
            Dependency::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.endpoints.postgres_url).await?;
                sqlx::query("SELECT 1").execute(&mut conn).await?;
                conn.close().await?;
            }
            Dependency::Redis => {
                let client = redis::Client::open(self.endpoints.redis_url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            }
            Dependency::Sqs => {
                crate::sqs::client(&self.endpoints.sqs_endpoint, &self.endpoints.aws_region)
                    .list_queues()
                    .send()
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes the containers (and their anonymous volumes) and lets the reaper go. The handles
    /// remove their own containers, so that none of them logs a failed removal when it drops;
    /// whatever else carries this run's label goes after them.
    pub async fn shutdown(&self) {
        let handles = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Handles {
            postgres,
            redis,
            sqs,
        }) = handles
        {
            let _ = tokio::join!(postgres.rm(), redis.rm(), sqs.rm());
        }
        remove_run(&self.docker, &self.run).await;
        if let Some((mut child, stdin)) =
            self.reaper.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// A module's container request with what every dependency shares: the image reference, the
/// labels, the host port published for its port (chosen before start, kept across restarts)
/// and the start timeout. The modules' ready conditions (log lines) are dropped: readiness is
/// the server answering, polled by [`Containers::wait_ready`].
fn request<I: Image>(
    image: I,
    reference: &ImageRef,
    labels: HashMap<String, String>,
    (host_port, container_port): (u16, u16),
) -> ContainerRequest<I> {
    image
        .with_name(&reference.name)
        .with_tag(&reference.tag)
        .with_labels(labels)
        .with_mapped_port(host_port, ContainerPort::Tcp(container_port))
        .with_ready_conditions(Vec::new())
        .with_startup_timeout(START_TIMEOUT)
}

/// Starts the reaper for `run`; `None` (with a warning) when the `docker` CLI is missing, in
/// which case a later start removes what a dead process left.
fn spawn_reaper(run: &str) -> Option<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt;
    // `read` returns at end of input, i.e. when every holder of the pipe's write end is gone.
    let script = format!(
        "read _ignored; ids=$(docker ps -aq --filter label={LABEL_RUN}={run}); \
         [ -z \"$ids\" ] || docker rm -f -v $ids >/dev/null 2>&1; exit 0"
    );
    let spawned = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a terminal's Ctrl-C must not end it before it has reaped.
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut child) => {
            let stdin = child.stdin.take()?;
            Some((child, stdin))
        }
        Err(e) => {
            eprintln!(
                "harness: no container reaper ({e}); containers of a crashed run are removed by the next run"
            );
            None
        }
    }
}

/// Ids of the containers (running or not) of a stack's run, e.g. to check none is left.
pub async fn containers_of_run(run: &str) -> anyhow::Result<Vec<String>> {
    let docker = docker().await?;
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_RUN}={run}")])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker.list_containers(Some(options)).await?;
    Ok(containers.into_iter().filter_map(|c| c.id).collect())
}

/// Removes every container of `run`.
async fn remove_run(docker: &Docker, run: &str) {
    remove_labelled(docker, &format!("{LABEL_RUN}={run}")).await;
}

async fn remove_labelled(docker: &Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for id in containers.into_iter().filter_map(|c| c.id) {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let _ = docker.remove_container(&id, Some(options)).await;
    }
}

/// Removes harness containers whose process is gone (a reaper that could not run, a machine
/// that went down).
async fn remove_left_by_dead_processes(docker: &Docker) {
    let filters = HashMap::from([("label".to_string(), vec![LABEL.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for container in containers {
        let pid = container
            .labels
            .as_ref()
            .and_then(|labels| labels.get(LABEL_PID))
            .and_then(|pid| pid.parse::<u32>().ok());
        let gone = pid.is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if let (true, Some(id)) = (gone, container.id) {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            let _ = docker.remove_container(&id, Some(options)).await;
        }
    }
}

/// The named volume `harness up` keeps PostgreSQL's data in: [`UP_POSTGRES_VOLUME`] for the
/// default state folder, and a name of its own for any other `HARNESS_STATE_DIR` (a test's
/// `harness up` never touches a developer's data).
pub fn up_postgres_volume() -> String {
    if std::env::var_os("HARNESS_STATE_DIR").is_none() {
        return UP_POSTGRES_VOLUME.to_string();
    }
    use sha2::Digest;
    let state = crate::paths::harness_dir();
    let hash = sha2::Sha256::digest(state.to_string_lossy().as_bytes());
    let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{UP_POSTGRES_VOLUME}-{hex}")
}

/// Removes `harness up`'s PostgreSQL volume (`--fresh`, `harness down`). `Ok(false)` when there
/// was none, or no Docker engine answers (then there is no volume to remove either).
pub async fn remove_up_volume() -> anyhow::Result<bool> {
    let Ok(docker) = docker().await else {
        return Ok(false);
    };
    let volume = up_postgres_volume();
    if docker.inspect_volume(&volume).await.is_err() {
        return Ok(false);
    }
    let options = RemoveVolumeOptionsBuilder::new().force(true).build();
    docker
        .remove_volume(&volume, Some(options))
        .await
        .with_context(|| format!("removing the Docker volume {volume}"))?;
    Ok(true)
}

/// Removes harness containers whose process is gone, when a Docker engine answers: `harness
/// up` calls it before it checks its ports, which a killed run's containers may still hold.
pub async fn remove_stale_containers() {
    if let Ok(docker) = docker().await {
        remove_left_by_dead_processes(&docker).await;
    }
}

/// Removes the containers a process started (`harness down` after a `harness up` that is gone).
pub async fn remove_containers_of_process(pid: u32) {
    if let Ok(docker) = docker().await {
        remove_labelled(&docker, &format!("{LABEL_PID}={pid}")).await;
    }
}

fn indent(text: &str) -> String {
    if text.is_empty() {
        return "    (empty)".into();
    }
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    #[test]
    fn image_references_split_at_the_tag() {
        let parsed = ImageRef::parse("localstack/localstack:4.13.1").expect("parses");
        assert_eq!(parsed.name, "localstack/localstack");
        assert_eq!(parsed.tag, "4.13.1");
        let parsed = ImageRef::parse("registry.local:5000/postgres:15").expect("parses");
        assert_eq!(parsed.name, "registry.local:5000/postgres");
        assert_eq!(parsed.tag, "15");
        assert!(ImageRef::parse("registry.local:5000/postgres").is_err());
        assert!(ImageRef::parse("postgres").is_err());
    }
}
