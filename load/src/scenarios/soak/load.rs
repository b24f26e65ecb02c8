//! The soak's load: POSTs, day balances and reports (1 : 2 : 1) of random merchants and days, and
//! the seed that makes every merchant-day exist before it starts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use goose::prelude::*;
use rand::Rng;

use crate::kit::goose::{Step, get_as, post_entry_as, transaction};
use crate::kit::target::Target;

/// The load's scenario on `target`.
pub fn scenario(target: &Target) -> anyhow::Result<Scenario> {
    let target = Arc::new(target.clone());
    Ok(scenario!("soak")
        .register_transaction(transaction(&target, soak_post).set_weight(1)?)
        .register_transaction(transaction(&target, soak_balance).set_weight(2)?)
        .register_transaction(transaction(&target, soak_report).set_weight(1)?))
}

fn day_back(days: i64) -> String {
    cashflow_contracts::business_date::format(Target::today() - time::Duration::days(days))
}

/// POSTs an entry with a fresh Idempotency-Key: today, or one of the last 6 days (1 in 5).
fn soak_post(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        let (m, kind, cents, back) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(0..target.merchants.len()),
                if rng.gen_bool(0.25) {
                    "debit"
                } else {
                    "credit"
                },
                rng.gen_range(100..100_000),
                if rng.gen_bool(0.2) {
                    rng.gen_range(1..target.days)
                } else {
                    0
                },
            )
        };
        let body = serde_json::json!({
            "kind": kind,
            "amount": format!("{}.{:02}", cents / 100, cents % 100),
            "currency": "BRL",
            "business_date": day_back(back),
            "description": "soak",
        });
        let url = format!(
            "{}/v1/merchants/{}/entries",
            target.ledger_url, target.merchants[m]
        );
        post_entry_as(user, &url, &target.tokens[m], &body, true).await
    })
}

/// One day's balance, of the last `days`.
fn soak_balance(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        let (m, back) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(0..target.merchants.len()),
                rng.gen_range(0..target.days),
            )
        };
        let url = format!(
            "{}/v1/merchants/{}/balances/{}",
            target.consolidation_url,
            target.merchants[m],
            day_back(back)
        );
        get_as(user, &url, &target.tokens[m], "balance").await?;
        Ok(())
    })
}

/// A report over a random range of the last two weeks: many distinct cached answers, each with
/// its own TTL.
fn soak_report(user: &mut GooseUser, target: Arc<Target>) -> Step<'_> {
    Box::pin(async move {
        let (m, to, length) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(0..target.merchants.len()),
                rng.gen_range(0..7),
                rng.gen_range(2..8),
            )
        };
        let url = format!(
            "{}/v1/merchants/{}/balances?from={}&to={}",
            target.consolidation_url,
            target.merchants[m],
            day_back(to + length - 1),
            day_back(to)
        );
        get_as(user, &url, &target.tokens[m], "report").await?;
        Ok(())
    })
}

/// One entry per merchant and day of the last `days`, so that the set of merchant-days (and so
/// the rows of the per-day tables) is complete before the load starts.
pub async fn seed(target: &Target) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut jobs = tokio::task::JoinSet::new();
    let mut sent = 0;
    for (merchant, token) in target.merchants.iter().zip(&target.tokens) {
        for back in 0..target.days {
            let url = format!("{}/v1/merchants/{merchant}/entries", target.ledger_url);
            let body = serde_json::json!({
                "kind": "credit", "amount": "100.00", "currency": "BRL",
                "business_date": day_back(back), "description": "soak seed",
            });
            let (http, token) = (http.clone(), token.clone());
            jobs.spawn(async move {
                let response = http.post(url).bearer_auth(token).json(&body).send().await?;
                anyhow::ensure!(response.status() == 201, "seeding: {}", response.status());
                anyhow::Ok(())
            });
            sent += 1;
            while jobs.len() >= 16 {
                jobs.join_next().await.context("seed task")???;
            }
        }
    }
    while let Some(job) = jobs.join_next().await {
        job??;
    }
    Ok(sent)
}
