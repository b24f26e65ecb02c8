//! Consolidation figures, measured in one run:
//! - apply rate draining a pre-filled queue, beside LocalStack's own batch receive+delete rate
//!   on an identical queue with the same number of pollers;
//! - balance reads per second at zero errors.
//!
//! `cargo run --release -p load --example drain_rate [-- EVENTS READ_SECONDS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use cashflow_contracts::{Currency, ENTRY_RECORDED, EntryKind, EntryRecordedV1};
use harness::{ScopeOptions, Stack, StackOptions};

const POLLERS: u16 = 4;
const MERCHANTS: usize = 50;

async fn fill(sqs: &aws_sdk_sqs::Client, queue: &str, events: usize) -> anyhow::Result<()> {
    let today = time::OffsetDateTime::now_utc().date();
    let bodies: Vec<String> = (0..events)
        .map(|i| {
            serde_json::to_string(&EntryRecordedV1 {
                event_type: ENTRY_RECORDED.into(),
                event_id: uuid::Uuid::now_v7(),
                entry_id: uuid::Uuid::now_v7(),
                merchant_id: format!("m{}", i % MERCHANTS).parse().expect("merchant"),
                kind: if i % 3 == 0 {
                    EntryKind::Debit
                } else {
                    EntryKind::Credit
                },
                amount_minor: 100 + i as i64,
                currency: Currency::BRL,
                business_date: today - time::Duration::days((i % 7) as i64),
                recorded_at: time::OffsetDateTime::now_utc(),
                reverses_entry_id: None,
            })
            .expect("json")
        })
        .collect();
    let mut sends = tokio::task::JoinSet::new();
    for chunk in bodies.chunks(10) {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(b)
                    .build()
                    .expect("entry")
            })
            .collect();
        let (sqs, queue) = (sqs.clone(), queue.to_string());
        sends.spawn(async move {
            sqs.send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
        });
        while sends.len() >= 16 {
            sends.join_next().await.expect("task")??;
        }
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let read_seconds: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let stack = Stack::start(StackOptions::default()).await?;
    let scope = stack
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    let ceiling_scope = stack.scope().await?;
    let sqs = scope.sqs();

    // LocalStack warms up on a first round; the ceiling is the better of two measured rounds.
    let mut ceiling: f64 = 0.0;
    for _ in 0..2 {
        fill(&sqs, &ceiling_scope.queues.url, events).await?;
        ceiling = ceiling.max(
            load::ceilings::localstack(
                &sqs,
                &ceiling_scope.queues.url,
                events,
                usize::from(POLLERS),
            )
            .await?,
        );
    }

    fill(&sqs, &scope.queues.url, events).await?;
    let config = consolidation::Config {
        listen: "127.0.0.1:0".parse()?,
        database_url: scope.database_url.clone(),
        database_max_connections: 20,
        redis_url: scope.redis_url.clone(),
        redis_prefix: scope.redis_prefix.clone(),
        cache_ttl: Duration::from_secs(600),
        redis: Default::default(),
        queue_url: scope.queues.url.clone(),
        dlq_url: scope.queues.dlq_url.clone(),
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
        consumer: consolidation::config::ConsumerConfig {
            concurrency: POLLERS,
            wait_seconds: 1,
            ..Default::default()
        },
        report_max_days: 366,
        default_currency: Currency::BRL,
        deadlines: Default::default(),
        reconcile: consolidation::config::ReconcileConfig::default(),
        processed_events_retention: consolidation::config::DEFAULT_PROCESSED_EVENTS_RETENTION,
        opening_read: Default::default(),
        retention: Default::default(),
    };
    let started = Instant::now();
    let app = consolidation::Application::build(config).await?;
    let address = app.local_addr();
    let metrics = app.metrics().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    while metrics.consumer.applied.get() < events as u64 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "drain did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let apply_rate = events as f64 / started.elapsed().as_secs_f64();

    // Reads: 32 concurrent clients over the merchants' days.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let tokens: Vec<String> = (0..MERCHANTS)
        .map(|m| {
            stack
                .identity()
                .token()
                .merchant(format!("m{m}"))
                .scope("balances:read")
                .mint()
        })
        .collect::<Result<_, _>>()?;
    let today = time::OffsetDateTime::now_utc().date();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(read_seconds);
    let read_started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..32usize {
        let (http, tokens, ok, failed) = (
            http.clone(),
            tokens.clone(),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        clients.spawn(async move {
            let mut i = c;
            while Instant::now() < deadline {
                let merchant = i % MERCHANTS;
                let date = cashflow_contracts::business_date::format(
                    today - time::Duration::days((i % 7) as i64),
                );
                let url = format!("http://{address}/v1/merchants/m{merchant}/balances/{date}");
                match http.get(url).bearer_auth(&tokens[merchant]).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 7;
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let reads = ok.load(Ordering::Relaxed) as f64 / read_started.elapsed().as_secs_f64();
    shutdown.cancel();
    server.await??;

    println!("consolidation, {events} events, {POLLERS} pollers:");
    println!("  apply (drain)           {apply_rate:>8.0} events/s");
    println!(
        "  LocalStack recv+delete  {ceiling:>8.0} messages/s (same pollers, batches of 10, best of 2)"
    );
    println!(
        "  ratio                   {:>8.2}x of the LocalStack ceiling",
        apply_rate / ceiling
    );
    println!(
        "  balance reads           {reads:>8.0} reads/s, 32 clients, {read_seconds} s (ok {}, errors {})",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "  cache                   hits {}, misses {}, fallbacks {}",
        metrics.cache.hits.get(),
        metrics.cache.misses.get(),
        metrics.cache.fallbacks.get()
    );
    stack.shutdown().await;
    Ok(())
}
