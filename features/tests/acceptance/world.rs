//! The scenarios' shared world: one `Platform` per scenario (the system it runs, the merchant
//! it acts as, the answers it got), and the helpers every step module uses. Re-exports the
//! imports the step modules share.

pub(crate) use cucumber::{World, given, then, when};
pub(crate) use harness::{Dependency, Fault, Stack, StackOptions, TokenFlaw};
pub(crate) use serde_json::{Value, json};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
pub(crate) use std::time::Duration;
pub(crate) use testkit::{Placement, System};
pub(crate) use time::Date;

/// One scenario's state.
#[derive(Debug, Default, World)]
pub struct Platform {
    pub(crate) system: Option<System>,
    /// Stacks this scenario started, shut down after it.
    pub(crate) own_stacks: Vec<&'static Stack>,
    pub(crate) merchant: String,
    pub(crate) last: Option<(u16, Value)>,
    pub(crate) answers: Vec<(u16, Value)>,
    pub(crate) entry_id: Option<String>,
    pub(crate) csv: Option<String>,
    pub(crate) load: Option<Load>,
    /// Every merchant this scenario wrote for.
    pub(crate) merchants: Vec<String>,
    /// The browser and the page it shows (`page.feature`).
    pub(crate) page: Option<crate::steps::page::PageSession>,
}

/// Entries sent, and balances read, at a steady rate in the background, every operation
/// recorded in the clients' history.
#[derive(Debug)]
pub(crate) struct Load {
    pub(crate) stop: tokio_util::sync::CancellationToken,
    /// The writers' task, then the readers'.
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Every client operation, checked at the end (`testkit::history`).
    pub(crate) history: Arc<testkit::history::History>,
    /// Each merchant's current token, shared by writers and readers: a 401 (its key was
    /// retired) replaces it with a fresh one.
    pub(crate) tokens: Arc<Vec<std::sync::Mutex<String>>>,
    pub(crate) sent: Arc<AtomicU64>,
    pub(crate) failed: Arc<AtomicU64>,
    /// 401s answered by getting a fresh token (after a key rotation) and sending again.
    pub(crate) reauthenticated: Arc<AtomicU64>,
}

impl Platform {
    pub(crate) fn system(&self) -> &System {
        self.system
            .as_ref()
            .expect("the platform is running (a Given step starts it)")
    }

    pub(crate) fn system_mut(&mut self) -> &mut System {
        self.system
            .as_mut()
            .expect("the platform is running (a Given step starts it)")
    }

    pub(crate) fn token(&self) -> String {
        self.system().full_token(&self.merchant).expect("token")
    }

    pub(crate) async fn start(&mut self, placement: Placement, max_receive_count: u32) {
        self.system = Some(
            System::start(placement, max_receive_count)
                .await
                .expect("platform starts"),
        );
    }

    /// Same, with an identity provider of the system's own whose keys rotate.
    pub(crate) async fn start_rotating(&mut self, placement: Placement, max_receive_count: u32) {
        self.system = Some(
            System::start_with_rotating_identity(placement, max_receive_count)
                .await
                .expect("platform starts"),
        );
    }

    pub(crate) async fn own_stack(&mut self) -> &'static Stack {
        let stack: &'static Stack = Box::leak(Box::new(
            Stack::start(StackOptions::default()).await.expect("stack"),
        ));
        self.own_stacks.push(stack);
        stack
    }

    pub(crate) async fn cleanup(&mut self) {
        if let Some(page) = self.page.take() {
            page.close().await;
        }
        if let Some(mut load) = self.load.take() {
            load.stop.cancel();
            for task in load.tasks.drain(..) {
                let _ = task.await;
            }
        }
        if let Some(system) = self.system.as_mut() {
            let _ = system.stop().await;
        }
        for stack in self.own_stacks.drain(..) {
            stack.shutdown().await;
        }
    }

    pub(crate) async fn record(&mut self, body: Value, idempotency_key: Option<&str>) {
        let system = self.system();
        let mut request = system
            .http()
            .post(format!(
                "{}/v1/merchants/{}/entries",
                system.ledger_url(),
                self.merchant
            ))
            .bearer_auth(self.token())
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("POST");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 201 {
            self.entry_id = body["id"].as_str().map(str::to_string);
        }
        self.last = Some((status, body.clone()));
        self.answers.push((status, body));
    }

    pub(crate) async fn consistent(&self) {
        let merchants = if self.merchants.is_empty() {
            vec![self.merchant.clone()]
        } else {
            self.merchants.clone()
        };
        self.system()
            .wait_consistent(&merchants, Duration::from_secs(90))
            .await
            .expect("consistent");
    }

    pub(crate) async fn inject(&self, side: Side, dependency: Dependency, fault: Fault) {
        let placement = self.system().placement();
        let stack = match side {
            Side::Ledger => placement.ledger,
            Side::Consolidation => placement.consolidation,
        };
        stack
            .inject(dependency, fault)
            .await
            .expect("fault injected");
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Side {
    Ledger,
    Consolidation,
}

pub(crate) fn today() -> Date {
    ledger::entries::today(&ledger::config::EntryRules::default()).expect("today")
}

pub(crate) fn day(days_ago: Option<i64>) -> Date {
    today() - time::Duration::days(days_ago.unwrap_or(0))
}

pub(crate) fn format(date: Date) -> String {
    cashflow_contracts::business_date::format(date)
}

/// "today" or "N days ago".
pub(crate) fn parse_day(text: &str) -> Date {
    if text == "today" {
        return today();
    }
    let days: i64 = text
        .trim_end_matches(" days ago")
        .parse()
        .expect("N days ago");
    day(Some(days))
}
