//! `harness up`: the whole system running locally, until Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::backend::native::NativeOptions;
use crate::backend::{Backend, Dependency, Endpoints};
use crate::identity::IssuerKeys;
use crate::sqs::QueuePairSpec;
use crate::{Stack, StackOptions, paths};

#[derive(Debug, Args)]
pub(super) struct UpArgs {
    /// Ledger HTTP port.
    #[arg(long, env = "LEDGER_PORT", default_value_t = 8081)]
    ledger_port: u16,
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
}

/// What `harness up` shares with `harness token` and other tools while it runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct UpState {
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

pub(super) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
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
        .with_postgres_data(paths::postgres_root().join("up-data"));
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
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&endpoints.postgres_url).await?;
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
    let queues = QueuePairSpec {
        name: QUEUE.into(),
        max_receive_count: 5,
        visibility_timeout_secs: 30,
    }
    .create(&stack.sqs())
    .await?;
    done(started);

    let state = UpState {
        endpoints: endpoints.clone(),
        identity: stack.identity().keys().clone(),
        queue_url: queues.url.clone(),
        dlq_url: queues.dlq_url.clone(),
    };
    write_state(&state)?;

    let token = stack
        .identity()
        .token()
        .merchant("m1")
        .scopes(["entries:write", "entries:read", "balances:read"])
        .mint()?;
    let logs = match stack.backend() {
        Backend::Native(native) => format!(
            "{}\n    {}\n    {}",
            native.log_file(Dependency::Postgres).display(),
            native.log_file(Dependency::Redis).display(),
            native.log_file(Dependency::LocalStack).display()
        ),
        Backend::External(_) => "(external backend: see the services that run them)".into(),
    };
    println!();
    println!(
        "  ledger         http://127.0.0.1:{}   (not part of the stack yet)",
        args.ledger_port
    );
    println!(
        "  consolidation  http://127.0.0.1:{}   (not part of the stack yet)",
        args.consolidation_port
    );
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
    println!("  logs           {logs}");
    println!();
    println!("  a token for merchant m1 (more with: cargo run -p harness -- token --merchant m1):");
    println!("    export TOKEN={token}");
    println!("  the identity provider's keys:");
    println!("    curl -s {}", stack.identity().jwks_uri());
    println!("  a message on the queue:");
    println!(
        "    curl -s -X POST '{}' -H 'Content-Type: application/x-amz-json-1.0' -H 'X-Amz-Target: AmazonSQS.GetQueueAttributes' -d '{{\"QueueUrl\":\"{}\",\"AttributeNames\":[\"All\"]}}'",
        endpoints.sqs_endpoint, queues.url
    );
    println!();
    println!(
        "harness: ready in {:.1} s — press Ctrl-C to stop",
        started.elapsed().as_secs_f64()
    );
    std::io::stdout().flush()?;
    wait_for_shutdown_signal().await
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

async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
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
