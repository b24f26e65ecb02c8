//! What the layer knows while it runs: the rules in force, the requests counted per queue and
//! operation, the messages held back for a queue's next receive, and who was delivered what
//! (for the queues a test watches).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::protocol::Operation;
use super::rules::{Action, Rule, Trigger};

/// Identifies an added rule (to remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A rule in force and what it did so far.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleState {
    /// Its id.
    pub id: RuleId,
    /// The rule.
    pub rule: Rule,
    /// Requests it applied to.
    pub fired: u64,
    /// For `--next N`: applications left.
    pub remaining: Option<u32>,
}

/// Requests of one operation on one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests that reached the layer (every attempt of the SDK's retries counts).
    pub requests: u64,
    /// Of those, the ones a rule acted on (latency included).
    pub faulted: u64,
}

/// What to do with one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Decision {
    /// Added latency (every latency rule that fired, summed).
    pub latency: Duration,
    /// The first other action that fired.
    pub action: Option<Action>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    rules: Mutex<Vec<RuleState>>,
    next_id: Mutex<u64>,
    counts: Mutex<HashMap<(String, Operation), Counts>>,
    /// Received messages (their JSON) held back for the next receive of their queue.
    held: Mutex<HashMap<String, Vec<Value>>>,
    /// Watched queues: deliveries per message id.
    deliveries: Mutex<HashMap<String, HashMap<String, u32>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    pub fn add(&self, rule: Rule) -> anyhow::Result<RuleId> {
        rule.check()?;
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            RuleId(*next)
        };
        let remaining = match rule.trigger {
            Trigger::Next(n) => Some(n),
            _ => None,
        };
        tracing::info!(%id, %rule, "SQS fault added");
        lock(&self.rules).push(RuleState {
            id,
            rule,
            fired: 0,
            remaining,
        });
        Ok(id)
    }

    pub fn remove(&self, id: RuleId) -> bool {
        let mut rules = lock(&self.rules);
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() < before
    }

    /// Removes every rule for which `remove` is true; returns how many went.
    pub fn remove_where(&self, mut remove: impl FnMut(&Rule) -> bool) -> usize {
        let mut rules = lock(&self.rules);
        let before = rules.len();
        rules.retain(|r| !remove(&r.rule));
        before - rules.len()
    }

    pub fn rules(&self) -> Vec<RuleState> {
        lock(&self.rules).clone()
    }

    /// Counts the request and decides what happens to it. A `--next N` rule that fires uses
    /// one of its N; a spent one stays listed until removed.
    pub fn decide(&self, operation: Operation, queue: Option<&str>) -> Decision {
        let mut decision = Decision::default();
        {
            let mut rules = lock(&self.rules);
            let mut rng = rand::thread_rng();
            for state in rules.iter_mut() {
                let rule = &state.rule;
                let matches = rule.operation.is_none_or(|op| op == operation)
                    && rule.queue.as_deref().is_none_or(|q| Some(q) == queue);
                if !matches || state.remaining == Some(0) {
                    continue;
                }
                let is_latency = matches!(rule.action, Action::Latency(_));
                if !is_latency && decision.action.is_some() {
                    continue;
                }
                let fires = match rule.trigger {
                    Trigger::Always | Trigger::Next(_) => true,
                    Trigger::Rate(p) => rng.gen_bool(p.clamp(0.0, 1.0)),
                };
                if !fires {
                    continue;
                }
                state.fired += 1;
                if let Some(remaining) = state.remaining.as_mut() {
                    *remaining -= 1;
                }
                match rule.action {
                    Action::Latency(d) => decision.latency += d,
                    action => decision.action = Some(action),
                }
            }
        }
        let mut counts = lock(&self.counts);
        let counted = counts
            .entry((queue.unwrap_or_default().to_string(), operation))
            .or_default();
        counted.requests += 1;
        if decision.action.is_some() || !decision.latency.is_zero() {
            counted.faulted += 1;
        }
        decision
    }

    /// The requests counted for `queue`, by operation.
    pub fn counts(&self, queue: &str) -> BTreeMap<Operation, Counts> {
        lock(&self.counts)
            .iter()
            .filter(|((q, _), _)| q == queue)
            .map(|((_, op), counts)| (*op, *counts))
            .collect()
    }

    /// Every queue's counts.
    pub fn all_counts(&self) -> BTreeMap<(String, Operation), Counts> {
        lock(&self.counts)
            .iter()
            .map(|(key, counts)| (key.clone(), *counts))
            .collect()
    }

    /// Holds `messages` back for the next receive of `queue`.
    pub fn hold(&self, queue: &str, messages: Vec<Value>) {
        if !messages.is_empty() {
            lock(&self.held)
                .entry(queue.to_string())
                .or_default()
                .extend(messages);
        }
    }

    /// Up to `max` messages held back for `queue`.
    pub fn take_held(&self, queue: &str, max: usize) -> Vec<Value> {
        let mut held = lock(&self.held);
        let Some(messages) = held.get_mut(queue) else {
            return Vec::new();
        };
        let taken: Vec<Value> = messages.drain(..max.min(messages.len())).collect();
        if messages.is_empty() {
            held.remove(queue);
        }
        taken
    }

    /// Starts counting deliveries per message on `queue`.
    pub fn watch(&self, queue: &str) {
        lock(&self.deliveries).entry(queue.to_string()).or_default();
    }

    /// Whether deliveries on `queue` are counted.
    pub fn is_watched(&self, queue: &str) -> bool {
        lock(&self.deliveries).contains_key(queue)
    }

    /// Counts the deliveries of a receive's answer, when `queue` is watched.
    pub fn delivered(&self, queue: &str, messages: &[Value]) {
        let mut deliveries = lock(&self.deliveries);
        if let Some(by_id) = deliveries.get_mut(queue) {
            for message in messages {
                if let Some(id) = message.get("MessageId").and_then(Value::as_str) {
                    *by_id.entry(id.to_string()).or_default() += 1;
                }
            }
        }
    }

    /// How often each message of a watched `queue` was delivered.
    pub fn deliveries(&self, queue: &str) -> HashMap<String, u32> {
        lock(&self.deliveries)
            .get(queue)
            .cloned()
            .unwrap_or_default()
    }

    /// Forgets everything about `queue` (its scope ended).
    pub fn forget(&self, queue: &str) {
        self.remove_where(|rule| rule.queue.as_deref() == Some(queue));
        lock(&self.held).remove(queue);
        lock(&self.deliveries).remove(queue);
        lock(&self.counts).retain(|(q, _), _| q != queue);
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{INTERNAL_FAILURE, REQUEST_THROTTLED};
    use super::*;

    #[test]
    fn next_n_rules_fire_n_times_and_only_on_their_queue() {
        let state = State::default();
        state
            .add(
                Rule::on(
                    Operation::SendMessageBatch,
                    Action::Error(REQUEST_THROTTLED),
                )
                .queue("a")
                .next(2),
            )
            .expect("rule");
        let fired = |queue| {
            state
                .decide(Operation::SendMessageBatch, Some(queue))
                .action
                .is_some()
        };
        assert!(!fired("b"));
        assert!(fired("a"));
        assert!(fired("a"));
        assert!(!fired("a"));
        let counts = state.counts("a");
        assert_eq!(
            counts[&Operation::SendMessageBatch],
            Counts {
                requests: 3,
                faulted: 2
            }
        );
    }

    #[test]
    fn latency_adds_up_and_the_first_other_action_wins() {
        let state = State::default();
        for rule in [
            Rule::on_every_operation(Action::Latency(Duration::from_millis(10))),
            Rule::on(Operation::ReceiveMessage, Action::Error(INTERNAL_FAILURE)),
            Rule::on(Operation::ReceiveMessage, Action::Duplicate),
            Rule::on(
                Operation::ReceiveMessage,
                Action::Latency(Duration::from_millis(5)),
            ),
        ] {
            state.add(rule).expect("rule");
        }
        let decision = state.decide(Operation::ReceiveMessage, Some("q"));
        assert_eq!(decision.latency, Duration::from_millis(15));
        assert_eq!(decision.action, Some(Action::Error(INTERNAL_FAILURE)));
    }

    #[test]
    fn held_messages_come_out_in_order_and_at_most_max() {
        let state = State::default();
        state.hold("q", vec![serde_json::json!(1), serde_json::json!(2)]);
        state.hold("q", vec![serde_json::json!(3)]);
        assert_eq!(
            state.take_held("q", 2),
            vec![serde_json::json!(1), serde_json::json!(2)]
        );
        assert_eq!(state.take_held("q", 10), vec![serde_json::json!(3)]);
        assert!(state.take_held("q", 10).is_empty());
    }
}
