//! `harness up`: the whole system running locally, until Ctrl-C or SIGTERM.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::running::{self, UpState};
use crate::backend::containers::{self, ContainerOptions};
use crate::backend::native::NativeOptions;
use crate::backend::{Backend, Dependency, Ports};
use crate::cluster::control::ControlServer;
use crate::cluster::{Cluster, ClusterSpec, GatewaySpec, RestartPolicy, ServiceTemplate};
use crate::process::{ProcessSpec, Signal, Supervised};
use crate::scope::database_url;
use crate::sqs::QueuePairSpec;
use crate::{Service, Stack, StackOptions, paths};

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
    /// The SQS emulator's port (LocalStack or moto, as `HARNESS_SQS` says).
    #[arg(long, env = "SQS_PORT", default_value_t = 4566)]
    sqs_port: u16,
    /// Prometheus port (run when the `prometheus` binary is installed; 0 turns it off).
    #[arg(long, env = "PROMETHEUS_PORT", default_value_t = 9090)]
    prometheus_port: u16,
    /// The gateway's port: the one entry point, nginx in front of the replicas (ADR 0011).
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 8080)]
    gateway_port: u16,
    /// Replicas of each service behind the gateway, each restarted with a growing back-off when
    /// it exits (`harness ps`, `harness rollout restart`, `harness scale` while it runs). The
    /// first replica of each keeps its own port (`--ledger-port`, `--consolidation-port`) for
    /// debugging; the others get free ports.
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

/// Names used outside tests (see DESIGN.md).
const QUEUE: &str = "cashflow-entries";
const DATABASES: [&str; 2] = ["ledger", "consolidation"];
/// How long a service may take to start.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(pid) = running::running_up() {
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
        running::remove_kept_data().await?;
    }
    let identity =
        std::net::TcpListener::bind(("127.0.0.1", args.identity_port)).with_context(|| {
            format!(
                "port {} for identity is taken; choose another with --identity-port",
                args.identity_port
            )
        })?;
    let ports = Ports {
        postgres: Some(args.postgres_port),
        redis: Some(args.redis_port),
        sqs: Some(args.sqs_port),
    };
    let native = NativeOptions::default()
        .with_ports(ports)
        .with_postgres_data(paths::up_postgres_data());
    let containers = ContainerOptions::default()
        .with_ports(ports)
        .with_postgres_volume(containers::up_postgres_volume());
    for (name, port) in [
        ("postgres", args.postgres_port),
        ("redis", args.redis_port),
        ("sqs", args.sqs_port),
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

    step(&format!(
        "starting PostgreSQL, Redis, SQS ({}) and the identity provider",
        crate::backend::SqsEmulator::from_env()?
    ));
    let stack = Stack::start(
        StackOptions::default()
            .with_native(native)
            .with_containers(containers)
            .with_identity_listener(identity),
    )
    .await
    .context("starting the dependencies")?;
    done(started);

    let result = serve(&stack, &args, started, reserved).await;
    step("stopping everything");
    stack.shutdown().await;
    UpState::remove();
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

    let gateway_url = format!("http://127.0.0.1:{}", args.gateway_port);
    let state = UpState {
        pid: std::process::id(),
        endpoints: endpoints.clone(),
        identity: stack.identity().keys().clone(),
        queue_url: queues.url.clone(),
        dlq_url: queues.dlq_url.clone(),
        gateway_url: Some(gateway_url.clone()),
    };
    state.write()?;
    // Each service reaches each dependency through a fault proxy (`harness fault ...`).
    let faults = super::fault::FaultControl::start(stack).await?;
    let through = |service, dependency, url: &str| faults.url(service, dependency, url);
    let services = Service::ALL.map(|service| {
        let template = ServiceTemplate {
            database_url: through(
                service,
                Dependency::Postgres,
                &database_url(&endpoints.postgres_url, service.name()),
            ),
            redis_url: through(service, Dependency::Redis, &endpoints.redis_url),
            sqs_endpoint: through(service, Dependency::Sqs, &endpoints.sqs_endpoint),
            queues: queues.clone(),
            env: Vec::new(),
        };
        (service, template)
    });
    // Released for the services and the gateway to bind.
    drop(reserved);
    step(&format!(
        "starting {} replica(s) of each service behind the gateway (nginx)",
        args.replicas
    ));
    let gateway_dir = paths::harness_dir().join("up").join("gateway");
    // The page's locations are in place before nginx reads its configuration.
    serve_page(stack, &gateway_dir, &gateway_url)?;
    let cluster = Cluster::start(
        stack,
        ClusterSpec {
            services: services.into(),
            replicas: args.replicas,
            first_ports: [
                (Service::Ledger, args.ledger_port),
                (Service::Consolidation, args.consolidation_port),
            ]
            .into(),
            gateway: GatewaySpec {
                port: args.gateway_port,
                ledger_internal_port: args
                    .ledger_internal_port
                    .unwrap_or_else(|| args.ledger_port.saturating_add(1000)),
                rate_limit: args.gateway_rate_limit,
                burst_limit: args.gateway_burst_limit,
                dir: gateway_dir,
            },
            restart: RestartPolicy::default(),
            logs: (paths::logs_dir(), std::process::id().to_string()),
        },
    )
    .await?;
    let cluster = Arc::new(cluster);
    done(started);
    // From here on, one line per replica event (a crash, its restart, a rollout's steps).
    let mut events = cluster.subscribe();
    let printer = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            eprintln!("harness: {event}");
        }
    });
    let control = ControlServer::start(Arc::clone(&cluster), paths::up_control_socket())?;

    let mut lines = vec![format!(
        "  {:<14} {gateway_url}/   (the cash-flow page: sign in with any user name, for \
         merchant m1)",
        "page"
    )];
    lines.push(format!(
        "  {:<14} {gateway_url}   (nginx: {} replica(s) of each service, {} req/s, burst {}; \
         access log {})",
        "gateway",
        args.replicas,
        args.gateway_rate_limit,
        args.gateway_burst_limit,
        cluster.access_log().await.display()
    ));
    for replica in cluster.ps() {
        lines.push(format!(
            "  {:<16} http://127.0.0.1:{}   (logs {})",
            replica.name, replica.port, replica.log_file
        ));
    }
    lines.push(format!(
        "  {:<14} harness ps | harness rollout restart <service> | harness scale <service> <1-8>",
        "replicas"
    ));
    let prometheus = prometheus(args, &cluster)?;
    if let Some((process, _)) = &prometheus {
        step("starting Prometheus");
        match process.start(SERVICE_TIMEOUT).await {
            Ok(()) => {
                done(started);
                lines.push(format!(
                    "  {:<14} http://127.0.0.1:{}   (scrapes every replica; alert rules from deploy/prometheus)",
                    "prometheus", args.prometheus_port
                ));
            }
            Err(e) => eprintln!("harness: Prometheus did not start, going on without it: {e:#}"),
        }
    }
    // Prometheus follows the replicas as they come and go.
    let targets = prometheus.as_ref().map(|(_, targets)| {
        let (cluster, targets) = (Arc::clone(&cluster), targets.clone());
        let mut events = cluster.subscribe();
        tokio::spawn(async move {
            while events.recv().await.is_ok() {
                let _ = write_targets(&targets, &cluster);
            }
        })
    });

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
        "  {:<16} {}   queue {} and {} (through the SQS fault layer, `harness fault \
         sqs ...`; the emulator itself at {})",
        format!("sqs ({})", stack.sqs_emulator()),
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
        "  metrics        http://127.0.0.1:{}/metrics (and each replica's /metrics)",
        args.ledger_port
    );
    println!("  logs           {dependency_logs}");
    println!();
    println!("  a token for merchant m1 (more: cargo run -q -p harness -- token --merchant m1):");
    println!("    export TOKEN={token}");
    println!("  record a credit:");
    println!(
        "    curl -s -X POST {gateway_url}/v1/merchants/m1/entries -H \"Authorization: Bearer $TOKEN\" -H \"Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)\" -H 'Content-Type: application/json' -d '{{\"kind\":\"credit\",\"amount\":\"100.10\",\"currency\":\"BRL\",\"description\":\"card sale\"}}'"
    );
    println!("  the day's balance:");
    println!(
        "    curl -s {gateway_url}/v1/merchants/m1/balances/$(TZ=America/Sao_Paulo date +%F) -H \"Authorization: Bearer $TOKEN\""
    );
    println!();
    println!(
        "harness: ready in {:.1} s — press Ctrl-C to stop",
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    let result = super::signals::wait_for_shutdown_signal().await;
    drop(control);
    if let Some(targets) = targets {
        targets.abort();
    }
    if let Some((process, _)) = &prometheus {
        step("stopping Prometheus");
        process.stop(Duration::from_secs(10)).await?;
    }
    // The gateway first, then the replicas drain, against live dependencies.
    step("stopping the gateway and the replicas");
    cluster.shutdown().await;
    printer.abort();
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

/// Prometheus scraping every replica, when the `prometheus` binary (Debian's `prometheus`
/// package) is installed; `None` otherwise or when `--prometheus-port 0`. Its targets are a
/// file (`file_sd_configs`) rewritten as replicas come and go; the second value is that file.
fn prometheus(
    args: &UpArgs,
    cluster: &Cluster,
) -> anyhow::Result<Option<(Supervised, std::path::PathBuf)>> {
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
    let targets = dir.join("targets.json");
    write_targets(&targets, cluster)?;
    let config = format!(
        "# Written by `harness up`.\nglobal:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n{rule_files}\
         scrape_configs:\n  - job_name: services\n    file_sd_configs:\n      - files: [{}]\n\
         \x20       refresh_interval: 5s\n",
        targets.display()
    );
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config)?;
    let process = Supervised::new(ProcessSpec {
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
        stop_signal: Signal::TERM,
        log_file: paths::logs_dir().join(format!("prometheus-{}.log", std::process::id())),
    });
    Ok(Some((process, targets)))
}

/// Prometheus's targets: each replica's `/metrics`, labelled with its service (the `job` the
/// alert rules name) and replica. Written whole, then renamed.
fn write_targets(file: &std::path::Path, cluster: &Cluster) -> anyhow::Result<()> {
    let groups: Vec<serde_json::Value> = cluster
        .ps()
        .into_iter()
        .map(|replica| {
            serde_json::json!({
                "targets": [format!("127.0.0.1:{}", replica.port)],
                "labels": {"job": replica.service.name(), "replica": replica.name},
            })
        })
        .collect();
    let partial = file.with_extension("partial");
    std::fs::write(&partial, serde_json::to_string_pretty(&groups)?)?;
    std::fs::rename(&partial, file)?;
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
