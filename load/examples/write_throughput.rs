//! Ledger write throughput at 16 concurrent clients, beside pgbench running the equivalent
//! transaction (entry insert + outbox insert) on the same PostgreSQL, in one run.
//!
//! `cargo run --release -p load --example write_throughput [-- SECONDS]`
//! (`WRITE_BATCH_MAX_SIZE=1` writes each request alone, as before group commit.)
//!
//! The relay is off in the ledger run so both sides do the same work: the request's own
//! transaction. Everything (client, ledger, PostgreSQL, pgbench) shares this machine's cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{ScopeOptions, Stack, StackOptions};

const CLIENTS: usize = 16;

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let stack = Stack::start(StackOptions::default()).await?;
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
        .await?;

    // --- the ledger ---
    let mut config = ledger::Config {
        listen: "127.0.0.1:0".parse()?,
        internal_listen: "127.0.0.1:0".parse()?,
        database_url: scope.database_url.clone(),
        database_max_connections: 20,
        queue_url: scope.queues.url.clone(),
        sqs: cashflow_platform::sqs::SqsSettings {
            endpoint_url: Some(scope.sqs_endpoint.clone()),
            region: scope.aws_region.clone(),
        },
        auth: cashflow_platform::auth::AuthConfig {
            issuer: stack.identity().issuer().to_string(),
            audience: stack.identity().audience().to_string(),
            jwks_uri: Some(stack.identity().jwks_uri()),
            leeway: Duration::from_secs(30),
            keys: Default::default(),
        },
        entries: Default::default(),
        max_body_bytes: 16 * 1024,
        replay: ledger::config::ReplayConfig::default(),
        relay: Default::default(),
        deadlines: Default::default(),
        retention: Default::default(),
        // Group commit as the ledger binary reads it: WRITE_BATCH_* or the defaults.
        write_batch: ledger::config::WriteBatchConfig::from_env(20)?,
    };
    config.relay.enabled = false;
    let app = ledger::Application::build(config).await?;
    let url = format!("http://{}/v1/merchants/bench/entries", app.local_addr());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let token = stack
        .identity()
        .token()
        .merchant("bench")
        .scope("entries:write")
        .mint()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let body = serde_json::json!({"kind": "credit", "amount": "1.00", "currency": "BRL", "description": "bench"});

    // Warm-up: connections, JWKS, plans.
    for _ in 0..50 {
        http.post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
    }
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, token, body) = (http.clone(), url.clone(), token.clone(), body.clone());
        let (ok, failed) = (Arc::clone(&ok), Arc::clone(&failed));
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status() == 201 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        latencies.push(t.elapsed());
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let ledger_rate = ok.load(Ordering::Relaxed) as f64 / elapsed;
    shutdown.cancel();
    server.await??;

    // --- pgbench, same database, same client count ---
    let tps =
        load::ceilings::pgbench::pgbench(&scope.database_url, CLIENTS, seconds as usize).await?;

    println!("ledger writes, {CLIENTS} clients, {seconds} s:");
    println!(
        "  ledger   {ledger_rate:>8.0} entries/s  (ok {}, failed {}, p50 {:.1} ms, p99 {:.1} ms)",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  pgbench  {tps:>8.0} tx/s       (the ledger's entry + outbox statement, same database)"
    );
    println!(
        "  ratio    {:>8.2}x of the pgbench ceiling",
        ledger_rate / tps
    );
    stack.shutdown().await;
    Ok(())
}
