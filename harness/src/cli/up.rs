//! `harness up`: the whole system running locally, until Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::backend::native::NativeOptions;
use crate::backend::{Backend, Dependency, Endpoints};
use crate::identity::IssuerKeys;
use crate::process::{ProcessSpec, Supervised};
use crate::scope::database_url;
use crate::sqs::{QueuePair, QueuePairSpec};
use crate::{Stack, StackOptions, paths};

#[derive(Debug, Args)]
pub(super) struct UpArgs {
    /// Ledger HTTP port.
    #[arg(long, env = "LEDGER_PORT", default_value_t = 8081)]
    ledger_port: u16,
    /// The ledger's internal listener (digests and replays for the consolidation's reconciler;
    /// not routed to the outside). Default: the ledger's port + 1000.
    #[arg(long, env = "LEDGER_INTERNAL_PORT")]
    ledger_internal_port: Option<u16>,
    /// Consolidation HTTP port.
    #[arg(long, env = "CONSOLIDATION_PORT", default_value_t = 8082)]
    consolidation_port: u16,
    /// Identity provider (OIDC discovery + JWKS) port.
    #[arg(long, env = "IDENTITY_PORT", default_value_t = 8089)]
    identity_port: u16,
    /// PostgreSQL port (native backend).
    #[arg(long, env = "POSTGRES_PORT", default_value_t = 5432)]
    postgres_port: u16,
    /// Redis port (native backend).
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    redis_port: u16,
    /// LocalStack port (native backend).
    #[arg(long, env = "LOCALSTACK_PORT", default_value_t = 4566)]
    localstack_port: u16,
    /// Prometheus port (run when the `prometheus` binary is installed; 0 turns it off).
    #[arg(long, env = "PROMETHEUS_PORT", default_value_t = 9090)]
    prometheus_port: u16,
    /// The gateway's port: the one entry point, nginx in front of the replicas (ADR 0011).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 8080)]
    gateway_port: u16,
    /// Replicas of each service behind the gateway. The first replica of each keeps its own
    /// port (`--ledger-port`, `--consolidation-port`) for debugging; the others get free ports.
    #[arg(long, env = "HARNESS_REPLICAS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    replicas: u16,
    /// The gateway's steady request rate per second (the terraform stage's default).
    #[arg(long, env = "GATEWAY_RATE_LIMIT", default_value_t = crate::gateway::DEFAULT_RATE_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    gateway_rate_limit: u32,
    /// Requests above the rate the gateway lets through at once (the stage's burst default).
    #[arg(long, env = "GATEWAY_BURST_LIMIT", default_value_t = crate::gateway::DEFAULT_BURST_LIMIT)]
    gateway_burst_limit: u32,
    /// Start from empty state: remove the PostgreSQL data kept by earlier runs (the native data
    /// directory and the containers' Docker volume) first. Without it, data is kept.
    #[arg(long)]
    fresh: bool,
}

/// What `harness up` shares with `harness token` and other tools while it runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpState {
    /// Process id of the running `harness up` (`harness down` stops it).
    #[serde(default)]
    pub pid: u32,
    /// The dependencies.
    pub endpoints: Endpoints,
    /// The identity provider's keys.
    pub identity: IssuerKeys,
    /// The main queue URL.
    pub queue_url: String,
    /// The DLQ URL.
    pub dlq_url: String,
    /// The gateway's URL (the one entry point), when nginx runs.
    #[serde(default)]
    pub gateway_url: Option<String>,
    /// Every replica of every service, with its own URL (for debugging and fault tools).
    #[serde(default)]
    pub replicas: Vec<ReplicaState>,
}

/// One replica of a service run by `harness up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaState {
    /// `ledger` or `consolidation`.
    pub service: String,
    /// 1-based.
    pub replica: u16,
    /// Its own HTTP URL (not through the gateway).
    pub url: String,
    /// Its process id when it was started.
    pub pid: Option<i32>,
}

/// Names used outside tests (see DESIGN.md).
const QUEUE: &str = "cashflow-entries";
const DATABASES: [&str; 2] = ["ledger", "consolidation"];
/// How long a service may take to start.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(pid) = running_up() {
        anyhow::bail!(
            "harness up already runs (pid {pid}) with the state in {}; stop it first (Ctrl-C \
             there, or `make down`)",
            paths::harness_dir().display()
        );
    }
    // A killed run's containers may still hold the ports and the data volume: they go first.
    crate::backend::containers::remove_stale_containers().await;
    if args.fresh {
        step("removing the data kept by earlier runs (--fresh)");
        super::down::remove_kept_data().await?;
    }
    let identity =
        std::net::TcpListener::bind(("127.0.0.1", args.identity_port)).with_context(|| {
            format!(
                "identity port {} is taken (use --identity-port)",
                args.identity_port
            )
        })?;
    let native = NativeOptions::default()
        .with_postgres_port(args.postgres_port)
        .with_redis_port(args.redis_port)
        .with_localstack_port(args.localstack_port)
        .with_postgres_data(paths::up_postgres_data());
    for (name, port) in [
        ("postgres", args.postgres_port),
        ("redis", args.redis_port),
        ("localstack", args.localstack_port),
    ] {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            anyhow::bail!("port {port} for {name} is taken; choose another with --{name}-port");
        }
    }
    // The services' and the gateway's ports are held until the services start: the fault
    // proxies and the dependencies bind ephemeral ports meanwhile, and the kernel could hand
    // one of these out to them.
    let ledger_internal_port = args
        .ledger_internal_port
        .unwrap_or_else(|| args.ledger_port.saturating_add(1000));
    let mut reserved = Vec::new();
    for (name, port) in [
        ("gateway", args.gateway_port),
        ("ledger", args.ledger_port),
        ("ledger-internal", ledger_internal_port),
        ("consolidation", args.consolidation_port),
    ] {
        reserved.push(
            std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
                format!("port {port} for {name} is taken; choose another with --{name}-port")
            })?,
        );
    }

    step("starting PostgreSQL, Redis, LocalStack SQS and the identity provider");
    let stack = Stack::start(
        StackOptions::default()
            .with_native(native)
            .with_identity_listener(identity),
    )
    .await
    .context("starting the dependencies")?;
    done(started);

    let result = serve(&stack, &args, started, reserved).await;
    step("stopping everything");
    stack.shutdown().await;
    let _ = std::fs::remove_file(paths::up_state_file());
    eprintln!("harness: stopped");
    result
}

async fn serve(
    stack: &Stack,
    args: &UpArgs,
    started: Instant,
    reserved: Vec<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let endpoints = stack.endpoints().clone();
    step("creating the databases and the queue with its DLQ");
    create_databases(&endpoints.postgres_url).await?;
    let queues = QueuePairSpec {
        name: QUEUE.into(),
        max_receive_count: 5,
        // As deployed (terraform's queue module): the consumer extends it while it works.
        visibility_timeout_secs: 5,
    }
    .create(&stack.sqs())
    .await?;
    done(started);

    let mut state = UpState {
        pid: std::process::id(),
        endpoints: endpoints.clone(),
        identity: stack.identity().keys().clone(),
        queue_url: queues.url.clone(),
        dlq_url: queues.dlq_url.clone(),
        gateway_url: None,
        replicas: Vec::new(),
    };
    write_state(&state)?;
    // Each service reaches each dependency through a fault proxy (`harness fault ...`).
    let faults = super::fault::FaultControl::start(stack).await?;

    let services = replica_specs(args)?;
    // Released for the services and the gateway to bind.
    drop(reserved);
    let mut running = Vec::new();
    let mut lines = Vec::new();
    let mut started_replicas = Vec::new();
    for service in &services {
        let Some(replica) = service.replica(stack, &queues, &faults)? else {
            lines.push(format!(
                "  {:<14} http://127.0.0.1:{}   (not built: cargo build -p {})",
                service.label(),
                service.port,
                service.name
            ));
            continue;
        };
        step(&format!("starting the {}", service.label()));
        replica.start(SERVICE_TIMEOUT).await?;
        done(started);
        lines.push(format!(
            "  {:<14} {}   (logs {})",
            service.label(),
            replica.url(),
            replica.process.log_file().display()
        ));
        state.replicas.push(ReplicaState {
            service: service.name.into(),
            replica: service.replica,
            url: replica.url(),
            pid: replica.process.pid(),
        });
        started_replicas.push(replica);
    }
    let upstreams = crate::replicas::upstreams(&started_replicas);
    running.extend(started_replicas.into_iter().map(|r| r.process));

    // The gateway in front of the replicas, when nginx is installed and both services run.
    let mut first_lines = Vec::new();
    let gateway_url = format!("http://127.0.0.1:{}", args.gateway_port);
    let both_services = upstreams.len() == 2;
    let dir = paths::harness_dir().join("up").join("gateway");
    let config = crate::gateway::GatewayConfig {
        listen: format!("127.0.0.1:{}", args.gateway_port),
        upstreams,
        rate_limit: args.gateway_rate_limit,
        burst_limit: args.gateway_burst_limit,
        access_log: dir.join("access.log"),
        dir,
    };
    let gateway = if both_services {
        step("starting the gateway (nginx)");
        serve_page(stack, &config.dir, &gateway_url)?;
        crate::replicas::start_gateway(
            &config,
            paths::logs_dir().join(format!("gateway-{}.log", std::process::id())),
            SERVICE_TIMEOUT,
        )
        .await?
    } else {
        None
    };
    match gateway {
        Some(gateway) => {
            done(started);
            first_lines.push(format!(
                "  {:<14} {gateway_url}/   (the cash-flow page: sign in with any user name, for \
                 merchant m1)",
                "page"
            ));
            first_lines.push(format!(
                "  {:<14} {gateway_url}   (nginx: {} replica(s) of each service, {} req/s, burst {}; \
                 access log {})",
                "gateway",
                args.replicas,
                args.gateway_rate_limit,
                args.gateway_burst_limit,
                config.access_log.display()
            ));
            // Stopped first (services stop in reverse order): nothing new reaches a draining
            // service through it.
            running.push(gateway);
            state.gateway_url = Some(gateway_url.clone());
        }
        None if both_services => first_lines.push(format!(
            "  {:<14} not running: nginx is not installed (apt-get install -y nginx, or \
             bash ci/install-deps.sh); use each service's own port",
            "gateway"
        )),
        None => {}
    }
    write_state(&state)?;
    let ledger_url = state
        .gateway_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", args.ledger_port));
    let consolidation_url = state
        .gateway_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", args.consolidation_port));
    lines.splice(0..0, first_lines);

    if let Some(prometheus) = prometheus(args, &state.replicas)? {
        step("starting Prometheus");
        match prometheus.start(SERVICE_TIMEOUT).await {
            Ok(()) => {
                done(started);
                lines.push(format!(
                    "  {:<14} http://127.0.0.1:{}   (scrapes both services; alert rules from deploy/prometheus)",
                    "prometheus", args.prometheus_port
                ));
                running.insert(0, prometheus);
            }
            Err(e) => eprintln!("harness: Prometheus did not start, going on without it: {e:#}"),
        }
    }

    let token = stack
        .identity()
        .token()
        .merchant("m1")
        .scopes(["entries:write", "entries:read", "balances:read"])
        .mint()?;
    let dependency_logs = match stack.backend() {
        Backend::Native(native) => Dependency::ALL
            .iter()
            .map(|d| native.log_file(*d).display().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Backend::External(_) => "(external backend)".into(),
        Backend::Containers(containers) => Dependency::ALL
            .iter()
            .map(|d| format!("docker logs {}", &containers.container_id(*d)[..12]))
            .collect::<Vec<_>>()
            .join("; "),
    };
    println!();
    for line in &lines {
        println!("{line}");
    }
    println!(
        "  identity       {}   (JWKS {})",
        stack.identity().issuer(),
        stack.identity().jwks_uri()
    );
    println!(
        "  localstack     {}   queue {} and {} (through the SQS fault layer, `harness fault \
         sqs ...`; the emulator itself at {})",
        endpoints.sqs_endpoint,
        queues.name,
        queues.dlq_name,
        stack.sqs_faults().upstream()
    );
    println!(
        "  postgres       {}   databases ledger, consolidation",
        endpoints.postgres_url
    );
    println!("  redis          {}", endpoints.redis_url);
    println!(
        "  metrics        http://127.0.0.1:{}/metrics (and each service's /metrics)",
        args.ledger_port
    );
    println!("  logs           {dependency_logs}");
    println!();
    println!("  a token for merchant m1 (more: cargo run -q -p harness -- token --merchant m1):");
    println!("    export TOKEN={token}");
    println!("  record a credit:");
    println!(
        "    curl -s -X POST {ledger_url}/v1/merchants/m1/entries -H \"Authorization: Bearer $TOKEN\" -H \"Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)\" -H 'Content-Type: application/json' -d '{{\"kind\":\"credit\",\"amount\":\"100.10\",\"currency\":\"BRL\",\"description\":\"card sale\"}}'"
    );
    println!("  the day's balance:");
    println!(
        "    curl -s {consolidation_url}/v1/merchants/m1/balances/$(TZ=America/Sao_Paulo date +%F) -H \"Authorization: Bearer $TOKEN\""
    );
    println!();
    println!(
        "harness: ready in {:.1} s — press Ctrl-C to stop",
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    let result = wait_for_shutdown_signal().await;
    // Services first, so they drain against live dependencies.
    for process in running.iter().rev() {
        step(&format!("stopping the {}", process.name()));
        process.stop(Duration::from_secs(30)).await?;
    }
    result
}

/// The cash-flow page behind the gateway: its locations, and its client at the identity
/// provider (redirected back to the gateway's `/`).
fn serve_page(
    stack: &Stack,
    gateway_dir: &std::path::Path,
    gateway_url: &str,
) -> anyhow::Result<()> {
    use crate::page;
    let identity = stack.identity();
    page::write(
        gateway_dir,
        &page::PageSite {
            root: page::web_root(),
            identity: identity.issuer().trim_start_matches("http://").to_string(),
            config: page::PageConfig::proxied(identity.issuer()),
        },
    )?;
    identity.register_public_client(
        page::CLIENT_ID,
        &[&format!("{gateway_url}/")],
        page::ACCESS_TTL,
    );
    Ok(())
}

/// Creates the services' databases when missing.
async fn create_databases(postgres_url: &str) -> anyhow::Result<()> {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(postgres_url).await?;
    for database in DATABASES {
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(database)
                .fetch_optional(&mut admin)
                .await?;
        if exists.is_none() {
            sqlx::query(&format!(r#"CREATE DATABASE "{database}""#))
                .execute(&mut admin)
                .await?;
        }
    }
    sqlx::Connection::close(admin).await?;
    Ok(())
}

/// A service binary `up` runs as a child process (one per replica), built next to the harness
/// binary.
struct ServiceSpec {
    name: &'static str,
    /// 1-based replica number.
    replica: u16,
    port: u16,
    database: &'static str,
    /// This replica's internal listener (the ledger's digests and replays).
    internal_port: u16,
    /// The ledger's internal listener the consolidation's reconciler calls: the first ledger
    /// replica's, at the ledger's port + 1000. The gateway never routes it (ADR 0011).
    ledger_internal_port: u16,
}

/// The replicas to run: the first of each service on its configured port (reachable directly
/// for debugging), the others on free ports.
fn replica_specs(args: &UpArgs) -> anyhow::Result<Vec<ServiceSpec>> {
    let ledger_internal_port = args
        .ledger_internal_port
        .unwrap_or_else(|| args.ledger_port.saturating_add(1000));
    let mut specs = Vec::new();
    for (name, first_port) in [
        ("ledger", args.ledger_port),
        ("consolidation", args.consolidation_port),
    ] {
        for replica in 1..=args.replicas {
            let (port, internal_port) = if replica == 1 {
                (first_port, ledger_internal_port)
            } else {
                (
                    crate::backend::native::free_port()?,
                    crate::backend::native::free_port()?,
                )
            };
            specs.push(ServiceSpec {
                name,
                replica,
                port,
                database: name,
                internal_port,
                ledger_internal_port,
            });
        }
    }
    Ok(specs)
}

impl ServiceSpec {
    /// `ledger`, or `ledger-2` for a second replica.
    fn label(&self) -> String {
        if self.replica == 1 {
            self.name.to_string()
        } else {
            format!("{}-{}", self.name, self.replica)
        }
    }

    /// The replica (not started), or `None` when the binary is not built. Every dependency is
    /// reached through its fault proxy.
    fn replica(
        &self,
        stack: &Stack,
        queues: &QueuePair,
        faults: &super::fault::FaultControl,
    ) -> anyhow::Result<Option<crate::replicas::Replica>> {
        let endpoints = stack.endpoints();
        let service: crate::netfault::Service = self.name.parse()?;
        let through = |dependency, url: &str| faults.url(service, dependency, url);
        let spec = crate::services::ServiceProcess {
            service: self.name,
            label: self.label(),
            port: self.port,
            internal_port: self.internal_port,
            ledger_internal_url: format!("http://127.0.0.1:{}", self.ledger_internal_port),
            database_url: through(
                Dependency::Postgres,
                &database_url(&endpoints.postgres_url, self.database),
            ),
            redis_url: through(Dependency::Redis, &endpoints.redis_url),
            sqs_endpoint: through(Dependency::LocalStack, &endpoints.sqs_endpoint),
            queues: queues.clone(),
            extra_env: Vec::new(),
            log_file: paths::logs_dir().join(format!(
                "{}-{}.log",
                self.label(),
                std::process::id()
            )),
        };
        crate::replicas::Replica::new(&spec, stack)
    }
}

/// Prometheus scraping both services, when the `prometheus` binary (Debian's `prometheus`
/// package) is installed; `None` otherwise or when `--prometheus-port 0`.
fn prometheus(args: &UpArgs, replicas: &[ReplicaState]) -> anyhow::Result<Option<Supervised>> {
    let Some(program) =
        crate::backend::native::which("prometheus").filter(|_| args.prometheus_port != 0)
    else {
        return Ok(None);
    };
    let dir = paths::harness_dir().join("up").join("prometheus");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rules = paths::workspace_root().join("deploy/prometheus/alerts.yml");
    let rule_files = if rules.is_file() {
        format!("rule_files:\n  - {}\n", rules.display())
    } else {
        String::new()
    };
    // Every replica of each service (each has its own /metrics).
    let targets = |service: &str| {
        replicas
            .iter()
            .filter(|r| r.service == service)
            .map(|r| format!("\"{}\"", r.url.trim_start_matches("http://")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        "# Written by `harness up`.\nglobal:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n{rule_files}\
         scrape_configs:\n  - job_name: ledger\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: consolidation\n    static_configs:\n      - targets: [{}]\n",
        targets("ledger"),
        targets("consolidation")
    );
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config)?;
    Ok(Some(Supervised::new(ProcessSpec {
        name: "prometheus".into(),
        program,
        args: vec![
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", args.prometheus_port),
            "--storage.tsdb.retention.time=2d".into(),
        ],
        env: Vec::new(),
        cwd: Some(dir),
        user: None,
        ready_line: "Server is ready to receive web requests".into(),
        stop_signal: libc::SIGTERM,
        log_file: paths::logs_dir().join(format!("prometheus-{}.log", std::process::id())),
    })))
}

/// The pid of a `harness up` that runs with this state folder, if any.
pub(super) fn running_up() -> Option<u32> {
    let text = std::fs::read_to_string(paths::up_state_file()).ok()?;
    let state: UpState = serde_json::from_str(&text).ok()?;
    let alive = state.pid != 0
        && state.pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{}/cmdline", state.pid))
            .is_ok_and(|cmdline| cmdline.contains("harness"));
    alive.then_some(state.pid)
}

fn write_state(state: &UpState) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = paths::up_state_file();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // It holds a signing key: readable by its owner only.
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("writing {}", file.display()))?;
    out.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
    Ok(())
}

pub(super) async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => eprintln!("harness: SIGTERM received"),
        _ = interrupt.recv() => eprintln!("harness: Ctrl-C received"),
    }
    Ok(())
}

fn step(what: &str) {
    eprintln!("harness: {what} ...");
}

fn done(started: Instant) {
    eprintln!(
        "harness:   done ({:.1} s since start)",
        started.elapsed().as_secs_f64()
    );
}
