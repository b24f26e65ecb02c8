//! Measures the harness's own costs: native stack start, and scope creation (database from a
//! migrated template + queue pair), sequential and 8 at a time.
//!
//! `cargo run -p harness --example stack_timings`

use std::time::{Duration, Instant};

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
    let started = Instant::now();
    let stack = Stack::start(StackOptions::default()).await?;
    println!("stack ready: {:.2} s", started.elapsed().as_secs_f64());

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
    stack.shutdown().await;
    Ok(())
}
