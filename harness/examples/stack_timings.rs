//! Measures the harness's own costs: stack start, scope creation (database from a migrated
//! template + queue pair), sequential and 8 at a time, and PostgreSQL's own write rate on the
//! stack (pgbench's TPC-B-like script, 8 clients, 10 s), so that backends and data placements
//! compare side by side.
//!
//! `cargo run -p harness --example stack_timings [-- --in-memory]`: `--in-memory` keeps
//! PostgreSQL's data on a tmpfs, as the shared test stacks do (`HARNESS_BACKEND` picks the
//! backend).

use std::time::{Duration, Instant};

use anyhow::Context;
use harness::{ScopeOptions, Stack, StackOptions};

static NOTES: sqlx::migrate::Migrator = sqlx::migrate!("tests/it/migrations");

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let in_memory = std::env::args().any(|a| a == "--in-memory");
    let mut native = harness::backend::native::NativeOptions::default();
    if in_memory {
        native = native.with_postgres_in_memory();
    }
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default().with_native(native)).await?;
    println!(
        "stack ready ({}, PostgreSQL data {}): {:.2} s",
        stack.backend().name(),
        if in_memory { "in memory" } else { "on disk" },
        started.elapsed().as_secs_f64()
    );

    let options = ScopeOptions::default().with_migrations(&NOTES);
    let first = Instant::now();
    stack.scope_with(options).await?;
    println!(
        "first scope (builds the template): {:.1} ms",
        first.elapsed().as_secs_f64() * 1e3
    );

    let mut sequential = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        stack.scope_with(options).await?;
        sequential.push(t.elapsed());
    }
    println!("scope, one at a time: {}", summary(sequential));

    // Where the time goes: the queue pair alone, and the database alone (same SQL as a scope).
    let sqs = stack.sqs();
    let mut queues = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        harness::sqs::QueuePairSpec {
            name: format!("timing-{}-{i}", std::process::id()),
            max_receive_count: 5,
            visibility_timeout_secs: 30,
        }
        .create(&sqs)
        .await?;
        queues.push(t.elapsed());
    }
    println!("  of which the queue pair: {}", summary(queues));
    let mut databases = Vec::new();
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&stack.endpoints().postgres_url).await?;
    let template: String = sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'template\\_%' ESCAPE '\\' AND datname NOT IN ('template0','template1') LIMIT 1")
        .fetch_one(&mut admin)
        .await?;
    for i in 0..10 {
        let t = Instant::now();
        sqlx::query(&format!(
            r#"CREATE DATABASE "timing_{i}" TEMPLATE "{template}""#
        ))
        .execute(&mut admin)
        .await?;
        databases.push(t.elapsed());
    }
    println!("  of which the database: {}", summary(databases));

    let stack: &'static Stack = Box::leak(Box::new(stack));
    let mut parallel = Vec::new();
    for _ in 0..4 {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn(async move {
                    let t = Instant::now();
                    stack.scope_with(options).await.map(|_| t.elapsed())
                })
            })
            .collect();
        for handle in handles {
            parallel.push(handle.await??);
        }
    }
    println!("scope, 8 at a time: {}", summary(parallel));

    let scope = stack.scope().await?;
    let pgbench = |args: &[&str]| {
        std::process::Command::new("pgbench")
            .args(args)
            .arg(&scope.database_url)
            .output()
            .context("running pgbench (Debian's postgresql-client)")
    };
    pgbench(&["-i", "-q", "-s", "4"])?;
    let run = pgbench(&["-c", "8", "-j", "2", "-T", "10", "-n"])?;
    let report = String::from_utf8_lossy(&run.stdout);
    let tps = report
        .lines()
        .find(|l| l.starts_with("tps"))
        .unwrap_or("tps: not reported");
    println!("pgbench TPC-B-like, 8 clients, 10 s: {tps}");
    stack.shutdown().await;
    Ok(())
}
