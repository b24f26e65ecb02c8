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

    step("starting PostgreSQL, Redis, LocalStack SQS and the identity provider");
    let stack = Stack::start(
        StackOptions::default()
            .with_native(native)
            .with_identity_listener(identity),
    )
    .await
    .context("starting the dependencies")?;
    done(started);

    let result = serve(&stack, &args, started).await;
    step("stopping everything");
    stack.shutdown().await;
    let _ = std::fs::remove_file(paths::up_state_file());
    eprintln!("harness: stopped");
    result
}

async fn serve(stack: &Stack, args: &UpArgs, started: Instant) -> anyhow::Result<()> {
    let endpoints = stack.endpoints().clone();
    step("creating the databases and the queue with its DLQ");
    create_databases(&endpoints.postgres_url).await?;
    let queues = QueuePairSpec {
        name: QUEUE.into(),
        max_receive_count: 5,
        visibility_timeout_secs: 30,
    }
    .create(&stack.sqs())
    .await?;
    done(started);

    let state = UpState {
        pid: std::process::id(),
        endpoints: endpoints.clone(),
        identity: stack.identity().keys().clone(),
        queue_url: queues.url.clone(),
        dlq_url: queues.dlq_url.clone(),
    };
    write_state(&state)?;
    // Each service reaches each dependency through a fault proxy (`harness fault ...`).
    let faults = super::fault::FaultControl::start(stack).await?;

    let services = [
        ServiceSpec {
            name: "ledger",
            port: args.ledger_port,
            database: "ledger",
            ledger_internal_port: args
                .ledger_internal_port
                .unwrap_or_else(|| args.ledger_port.saturating_add(1000)),
        },
        ServiceSpec {
            name: "consolidation",
            port: args.consolidation_port,
            database: "consolidation",
            ledger_internal_port: args
                .ledger_internal_port
                .unwrap_or_else(|| args.ledger_port.saturating_add(1000)),
        },
    ];
    let mut running = Vec::new();
    let mut lines = Vec::new();
    for service in &services {
        let Some(process) = service.process(stack, &queues, &faults)? else {
            lines.push(format!(
                "  {:<14} http://127.0.0.1:{}   (not built: cargo build -p {})",
                service.name, service.port, service.name
            ));
            continue;
        };
        step(&format!("starting the {}", service.name));
        process.start(SERVICE_TIMEOUT).await?;
        wait_ready(service.port).await?;
        done(started);
        lines.push(format!(
            "  {:<14} http://127.0.0.1:{}   (logs {})",
            service.name,
            service.port,
            process.log_file().display()
        ));
        running.push(process);
    }

    if let Some(prometheus) = prometheus(args)? {
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
        "  localstack     {}   queue {} and {}",
        endpoints.sqs_endpoint, queues.name, queues.dlq_name
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
        "    curl -s -X POST http://127.0.0.1:{}/v1/merchants/m1/entries -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{{\"kind\":\"credit\",\"amount\":\"100.10\",\"currency\":\"BRL\",\"description\":\"card sale\"}}'",
        args.ledger_port
    );
    println!("  the day's balance:");
    println!(
        "    curl -s http://127.0.0.1:{}/v1/merchants/m1/balances/$(TZ=America/Sao_Paulo date +%F) -H \"Authorization: Bearer $TOKEN\"",
        args.consolidation_port
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

/// A service binary `up` runs as a child process, built next to the harness binary.
struct ServiceSpec {
    name: &'static str,
    port: u16,
    database: &'static str,
    /// The ledger's internal listener (digests, replays), which the consolidation's reconciler
    /// calls: the ledger's port + 1000.
    ledger_internal_port: u16,
}

impl ServiceSpec {
    /// The supervised process, or `None` when the binary is not built.
    fn process(
        &self,
        stack: &Stack,
        queues: &QueuePair,
        faults: &super::fault::FaultControl,
    ) -> anyhow::Result<Option<Supervised>> {
        let exe = std::env::current_exe().context("locating the harness binary")?;
        let program = exe.with_file_name(self.name);
        if !program.is_file() {
            return Ok(None);
        }
        let endpoints = stack.endpoints();
        let service: crate::netfault::Service = self.name.parse()?;
        let through = |dependency, url: &str| faults.url(service, dependency, url);
        // The consolidation calls the ledger as itself (client credentials).
        let client = stack.identity().register_client(
            "consolidation",
            &["ledger:reconcile"],
            std::time::Duration::from_secs(300),
        );
        let env = [
            (
                "INTERNAL_LISTEN_ADDR",
                format!("127.0.0.1:{}", self.ledger_internal_port),
            ),
            (
                "LEDGER_URL",
                format!("http://127.0.0.1:{}", self.ledger_internal_port),
            ),
            ("OAUTH_TOKEN_URL", client.token_url),
            ("OAUTH_CLIENT_ID", client.client_id),
            ("OAUTH_CLIENT_SECRET", client.client_secret),
            ("LISTEN_ADDR", format!("127.0.0.1:{}", self.port)),
            (
                "DATABASE_URL",
                through(
                    Dependency::Postgres,
                    &database_url(&endpoints.postgres_url, self.database),
                ),
            ),
            (
                "REDIS_URL",
                through(Dependency::Redis, &endpoints.redis_url),
            ),
            ("ENTRIES_QUEUE_URL", queues.url.clone()),
            ("ENTRIES_DLQ_URL", queues.dlq_url.clone()),
            (
                "AWS_ENDPOINT_URL",
                through(Dependency::LocalStack, &endpoints.sqs_endpoint),
            ),
            ("AWS_REGION", endpoints.aws_region.clone()),
            ("AUTH_ISSUER", stack.identity().issuer().to_string()),
            ("AUTH_AUDIENCE", stack.identity().audience().to_string()),
            ("AUTH_JWKS_URI", stack.identity().jwks_uri()),
            (
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec();
        Ok(Some(Supervised::new(ProcessSpec {
            name: self.name.into(),
            program,
            args: Vec::new(),
            env,
            cwd: None,
            user: None,
            ready_line: "listening".into(),
            stop_signal: libc::SIGTERM,
            log_file: paths::logs_dir().join(format!("{}-{}.log", self.name, std::process::id())),
        })))
    }
}

/// Prometheus scraping both services, when the `prometheus` binary (Debian's `prometheus`
/// package) is installed; `None` otherwise or when `--prometheus-port 0`.
fn prometheus(args: &UpArgs) -> anyhow::Result<Option<Supervised>> {
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
    let config = format!(
        "# Written by `harness up`.\nglobal:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n{rule_files}\
         scrape_configs:\n  - job_name: ledger\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n\
         \x20 - job_name: consolidation\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
        args.ledger_port, args.consolidation_port
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

/// Polls `/health/ready` until it answers 200.
async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = format!(
                "GET /health/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            );
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the service on port {port} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
