//! What the load runs against: the platform started in-process on a harness stack (the default),
//! or base URLs of a running deployment with a token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use harness::{Stack, StackOptions};
use serde_json::json;
use testkit::{Placement, System};

/// Where requests go and how they authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Ledger base URL.
    pub ledger_url: String,
    /// Consolidation base URL.
    pub consolidation_url: String,
    /// Merchants with data.
    pub merchants: Vec<String>,
    /// One token per merchant (same order), with every merchant scope.
    pub tokens: Vec<String>,
    /// Days back from today that hold entries (0 = today).
    pub days: i64,
    /// The in-process platform, when this process started it.
    pub local: Option<Arc<Local>>,
}

/// The platform this process started.
#[derive(Debug)]
pub struct Local {
    /// The stack.
    pub stack: &'static Stack,
    /// Both services.
    pub system: tokio::sync::Mutex<System>,
}

/// A token per merchant (same order) with every merchant scope, valid for `lifetime`.
pub fn mint_tokens(
    identity: &harness::IdentityProvider,
    merchants: &[String],
    lifetime: Duration,
) -> anyhow::Result<Vec<String>> {
    merchants
        .iter()
        .map(|m| {
            identity
                .token()
                .merchant(m.as_str())
                .scopes(["entries:write", "entries:read", "balances:read"])
                .ttl(lifetime)
                .mint()
        })
        .collect()
}

impl Target {
    /// Starts a stack and both services in this process.
    pub async fn start_local(merchants: usize, days: i64) -> anyhow::Result<Self> {
        let stack: &'static Stack =
            Box::leak(Box::new(Stack::start(StackOptions::default()).await?));
        let system = System::start(
            Placement {
                ledger: stack,
                consolidation: stack,
            },
            5,
        )
        .await?;
        let merchants: Vec<String> = (0..merchants).map(|i| format!("load-{i}")).collect();
        let tokens = merchants
            .iter()
            .map(|m| system.full_token(m))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            ledger_url: system.ledger_url().to_string(),
            consolidation_url: system.consolidation_url().to_string(),
            merchants,
            tokens,
            days,
            local: Some(Arc::new(Local {
                stack,
                system: tokio::sync::Mutex::new(system),
            })),
        })
    }

    /// A running deployment: `token` must be valid for every merchant listed.
    pub fn remote(
        ledger_url: String,
        consolidation_url: String,
        merchants: Vec<String>,
        token: String,
        days: i64,
    ) -> Self {
        let tokens = vec![token; merchants.len()];
        Self {
            ledger_url,
            consolidation_url,
            merchants,
            tokens,
            days,
            local: None,
        }
    }

    /// Today in the merchants' zone.
    pub fn today() -> time::Date {
        ledger::entries::today(&ledger::config::EntryRules::default()).expect("today")
    }

    /// Seeds `per_day` entries per merchant and day through the ledger API, then waits until
    /// the consolidation has applied them.
    pub async fn seed(&self, per_day: usize) -> anyhow::Result<usize> {
        let http = reqwest::Client::new();
        let today = Self::today();
        let mut jobs = tokio::task::JoinSet::new();
        let mut sent = 0;
        for (merchant, token) in self.merchants.iter().zip(&self.tokens) {
            for day in 0..self.days {
                for i in 0..per_day {
                    let date = cashflow_contracts::business_date::format(
                        today - time::Duration::days(day),
                    );
                    let body = json!({
                        "kind": if i % 3 == 0 { "debit" } else { "credit" },
                        "amount": format!("{}.{:02}", 10 + i, i % 100),
                        "currency": "BRL",
                        "business_date": date,
                        "description": "seed",
                    });
                    let (http, token) = (http.clone(), token.clone());
                    let url = format!("{}/v1/merchants/{merchant}/entries", self.ledger_url);
                    jobs.spawn(async move {
                        let response = http.post(url).bearer_auth(token).json(&body).send().await?;
                        anyhow::ensure!(
                            response.status() == 201,
                            "seeding got {}",
                            response.status()
                        );
                        anyhow::Ok(())
                    });
                    sent += 1;
                    while jobs.len() >= 32 {
                        jobs.join_next().await.context("seed task")???;
                    }
                }
            }
        }
        while let Some(job) = jobs.join_next().await {
            job??;
        }
        if let Some(local) = &self.local {
            local
                .system
                .lock()
                .await
                .wait_consistent(&self.merchants, Duration::from_secs(300))
                .await?;
        }
        // One read per merchant: JWKS fetched, connections and caches warm before measuring.
        let today = cashflow_contracts::business_date::format(today);
        for (merchant, token) in self.merchants.iter().zip(&self.tokens) {
            http.get(format!(
                "{}/v1/merchants/{merchant}/balances/{today}",
                self.consolidation_url
            ))
            .bearer_auth(token)
            .send()
            .await?;
        }
        Ok(sent)
    }

    /// Stops what this process started.
    pub async fn shutdown(&self) {
        if let Some(local) = &self.local {
            let _ = local.system.lock().await.stop().await;
            local.stack.shutdown().await;
        }
    }
}
