//! An SQS fault layer: an HTTP proxy in front of the emulator (LocalStack or moto) that answers
//! the way SQS answers when it degrades, which neither emulator does on request
//! (docs/adr/0018-sqs-fault-layer-speaks-the-documented-errors.md).
//!
//! Every stack starts one ([`crate::Stack::sqs_faults`]); its [`Endpoints`](crate::Endpoints)
//! name it as the SQS endpoint, so the services, the scopes and `harness up` all reach the
//! emulator through it. With no rule it forwards every request untouched. A [`Rule`] matches an
//! operation and, optionally, a queue; applies always, with a probability or to the next N
//! calls; and does one [`Action`]: a documented error, a share of a batch's entries failed, an
//! answer dropped after the request was applied, a receive delivered twice or out of order,
//! added latency.
//!
//! Three ways to drive it:
//! - tests: `let faults = stack.sqs_faults().queue(&scope.queues.name);
//!   faults.add(Rule::on(Operation::SendMessageBatch, Action::DropAnswer).next(1))?` — the
//!   rules, counts and held messages of that queue go when `faults` is dropped;
//! - the CLI on a running `harness up`: `harness fault sqs SendMessageBatch throttle --rate 0.2`,
//!   `harness fault list`, `harness fault sqs heal`;
//! - the load suite: [`SqsFaults::during`] for a fault window, [`SqsFaults::requests`] for
//!   the requests each operation cost.

mod actions;
pub mod protocol;
pub mod rules;
mod server;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use protocol::{AwsError, Operation};
pub use rules::{Action, Rule, Trigger};
pub use state::{Counts, RuleId, RuleState};

use state::State;

/// A running fault layer (a handle: clones share it; the last one dropped stops it).
#[derive(Debug, Clone)]
pub struct SqsFaults {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: SocketAddr,
    upstream: String,
    state: Arc<State>,
    shutdown: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl SqsFaults {
    /// Starts the layer on a free port of 127.0.0.1, in front of the SQS endpoint `upstream`
    /// (`http://host:port`), on a thread of its own.
    pub fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding the SQS fault layer")?;
        let address = listener.local_addr()?;
        let state = Arc::new(State::default());
        let shutdown = CancellationToken::new();
        server::spawn(
            listener,
            upstream.to_string(),
            Arc::clone(&state),
            shutdown.clone(),
        )
        .context("starting the SQS fault layer")?;
        Ok(Self {
            inner: Arc::new(Inner {
                address,
                upstream: upstream.to_string(),
                state,
                shutdown,
            }),
        })
    }

    /// The layer's URL: the SQS endpoint to give clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.address)
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.inner.address
    }

    /// The emulator's endpoint it forwards to.
    pub fn upstream(&self) -> &str {
        &self.inner.upstream
    }

    /// Adds a rule (refused when it would answer something SQS does not document, see
    /// [`Rule::check`]).
    pub fn add(&self, rule: Rule) -> anyhow::Result<RuleId> {
        self.inner.state.add(rule)
    }

    /// Removes a rule; false when there was none with this id.
    pub fn remove(&self, id: RuleId) -> bool {
        self.inner.state.remove(id)
    }

    /// Removes every rule of `operation` (`None`: every rule); returns how many went.
    pub fn heal(&self, operation: Option<Operation>) -> usize {
        self.inner
            .state
            .remove_where(|rule| operation.is_none() || rule.operation == operation)
    }

    /// The rules in force, in the order they were added.
    pub fn rules(&self) -> Vec<RuleState> {
        self.inner.state.rules()
    }

    /// The requests the layer saw for `queue` (its name), by operation.
    pub fn requests(&self, queue: &str) -> BTreeMap<Operation, Counts> {
        self.inner.state.counts(queue)
    }

    /// The requests of every queue (`""` for requests about no queue), by operation.
    pub fn all_requests(&self) -> BTreeMap<(String, Operation), Counts> {
        self.inner.state.all_counts()
    }

    /// The faults of one queue, for a test: see [`QueueFaults`].
    pub fn queue(&self, name: &str) -> QueueFaults {
        self.inner.state.watch(name);
        QueueFaults {
            layer: self.clone(),
            queue: name.to_string(),
        }
    }

    /// Applies `rule` for `duration`, then removes it: a fault window (the load suite's).
    pub async fn during(&self, rule: Rule, duration: Duration) -> anyhow::Result<u64> {
        let id = self.add(rule)?;
        tokio::time::sleep(duration).await;
        let fired = self
            .rules()
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired);
        self.remove(id);
        Ok(fired)
    }
}

/// The faults of one queue, for one test: every rule added here applies to that queue only,
/// and when this is dropped the queue's rules, counts, held messages and delivery counts go
/// with it, so a test's faults end with its scope. Take one per queue.
#[derive(Debug)]
pub struct QueueFaults {
    layer: SqsFaults,
    queue: String,
}

impl Drop for QueueFaults {
    fn drop(&mut self) {
        self.layer.inner.state.forget(&self.queue);
    }
}

impl QueueFaults {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.queue
    }

    /// Adds `rule`, restricted to this queue.
    pub fn add(&self, rule: Rule) -> anyhow::Result<RuleId> {
        self.layer.add(rule.queue(self.queue.clone()))
    }

    /// Removes one of this queue's rules.
    pub fn remove(&self, id: RuleId) -> bool {
        self.layer.remove(id)
    }

    /// Removes every rule of this queue.
    pub fn heal(&self) {
        self.layer
            .inner
            .state
            .remove_where(|rule| rule.queue.as_deref() == Some(self.queue.as_str()));
    }

    /// How many requests the rule `id` applied to so far.
    pub fn fired(&self, id: RuleId) -> u64 {
        self.layer
            .rules()
            .iter()
            .find(|r| r.id == id)
            .map_or(0, |r| r.fired)
    }

    /// The requests the layer saw for this queue, by operation.
    pub fn requests(&self) -> BTreeMap<Operation, Counts> {
        self.layer.requests(&self.queue)
    }

    /// Requests of `operation` seen so far.
    pub fn requests_of(&self, operation: Operation) -> u64 {
        self.requests()
            .get(&operation)
            .map_or(0, |counts| counts.requests)
    }

    /// How often each message (by id) was delivered by a receive of this queue.
    pub fn deliveries(&self) -> HashMap<String, u32> {
        self.layer.inner.state.deliveries(&self.queue)
    }
}
