//! The requests of each phase, as goose scenarios whose transactions carry their state (the
//! target, their counters), and what prepares and ends them: the cache warmed, the
//! consolidation's applied events counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use goose::prelude::*;

use crate::kit::goose::{Step, get_as, post_entry_as, request_balance, transaction};
use crate::kit::target::Target;

/// Balance reads of seeded merchant-days (all cached by [`warm`]).
pub fn cached_reads(target: &Target) -> Scenario {
    scenario!("cost-cached")
        .register_transaction(transaction(&Arc::new(target.clone()), cached_read))
}

fn cached_read(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        request_balance(user, &target).await?;
        Ok(())
    })
}

/// A target and a counter of the requests made to it.
struct Counted {
    target: Target,
    next: AtomicU64,
}

fn counted(target: &Target) -> Arc<Counted> {
    Arc::new(Counted {
        target: target.clone(),
        next: AtomicU64::new(0),
    })
}

/// Balance reads each of a merchant-day never read before: the merchants in turn, then a day
/// further back (before the seeded days, so no write invalidates it meanwhile).
pub fn uncached_reads(target: &Target) -> Scenario {
    scenario!("cost-uncached").register_transaction(transaction(&counted(target), uncached_read))
}

fn uncached_read(user: &mut GooseUser, state: Arc<Counted>) -> Step<'_> {
    Box::pin(async move {
        let target = &state.target;
        let n = usize::try_from(state.next.fetch_add(1, Ordering::Relaxed)).unwrap_or_default();
        let m = n % target.merchants.len();
        let back = target.days + i64::try_from(n / target.merchants.len()).unwrap_or(0);
        let day =
            cashflow_contracts::business_date::format(Target::today() - time::Duration::days(back));
        let path = format!("/v1/merchants/{}/balances/{day}", target.merchants[m]);
        get_as(user, &path, &target.tokens[m], "uncached balance").await?;
        Ok(())
    })
}

/// POSTs of entries for today, each with a fresh `Idempotency-Key` and a distinct amount, the
/// merchants in turn.
pub fn writes(target: &Target) -> Scenario {
    scenario!("cost-writes").register_transaction(transaction(&counted(target), write))
}

fn write(user: &mut GooseUser, state: Arc<Counted>) -> Step<'_> {
    Box::pin(async move {
        let target = &state.target;
        let n = state.next.fetch_add(1, Ordering::Relaxed);
        let m = usize::try_from(n).unwrap_or_default() % target.merchants.len();
        let body = serde_json::json!({
            "kind": if n.is_multiple_of(4) { "debit" } else { "credit" },
            "amount": format!("{}.{:02}", 1 + n % 500, n % 100),
            "currency": "BRL",
            "description": "cost",
        });
        let path = format!("/v1/merchants/{}/entries", target.merchants[m]);
        post_entry_as(user, &path, &target.tokens[m], &body, true).await
    })
}

/// Reads every seeded merchant-day once, so that each is cached.
pub async fn warm(target: &Target) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let today = Target::today();
    for (merchant, token) in target.merchants.iter().zip(&target.tokens) {
        for back in 0..target.days {
            let day = cashflow_contracts::business_date::format(today - time::Duration::days(back));
            let response = http
                .get(format!(
                    "{}/v1/merchants/{merchant}/balances/{day}",
                    target.consolidation_url
                ))
                .bearer_auth(token)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "warming the cache: {}",
                response.status()
            );
        }
    }
    Ok(())
}

/// Events the consolidation has applied so far.
pub async fn applied(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(pool)
        .await?)
}

/// Waits until the consolidation has applied at least `events` events (300 s at most).
pub async fn wait_applied(pool: &sqlx::PgPool, events: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = applied(pool).await?;
        if now >= events {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the consolidation applied {now} of {events} events in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
