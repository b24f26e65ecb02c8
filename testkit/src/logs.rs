//! The services' log lines, captured in this process, for tests that observe what a service does
//! through its logs rather than through a hook of its own: the consumer's retries (one line per
//! retry scheduled, naming the queue, the message, its receive count and the backoff).
//!
//! [`capture`] installs the process's global `tracing` subscriber (once; a later call is a no-op),
//! so it must run before anything else sets one. Under nextest each test is a process of its own;
//! in a shared process (the acceptance suite) each reader filters by its own queue URL.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Where the consumer logs (its module).
const CONSUMER_TARGET: &str = "consolidation::consumer";

/// One retry the consolidation's consumer scheduled, as its log line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The SQS message id.
    pub message_id: String,
    /// `ApproximateReceiveCount` when it failed.
    pub receive_count: u32,
    /// The backoff set (its visibility timeout).
    pub delay: Duration,
    /// When the line was written.
    pub at: Instant,
}

/// Retries per queue URL, in the order they were logged.
fn retries() -> &'static Mutex<HashMap<String, Vec<Retry>>> {
    static RETRIES: OnceLock<Mutex<HashMap<String, Vec<Retry>>>> = OnceLock::new();
    RETRIES.get_or_init(Default::default)
}

/// Starts capturing the services' log lines in this process (idempotent). Call it before the
/// service under test starts.
pub fn capture() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let layer = RetryLines
            .with_filter(Targets::new().with_target(CONSUMER_TARGET, tracing::Level::INFO));
        // Fails only when another global subscriber was set first: then nothing is captured and
        // the tests that wait for retries say so when their deadline passes.
        let _ = tracing_subscriber::registry().with(layer).try_init();
    });
}

/// Every retry logged so far for the queue at `queue_url`, oldest first.
pub fn retries_on(queue_url: &str) -> Vec<Retry> {
    retries()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(queue_url)
        .cloned()
        .unwrap_or_default()
}

/// Waits until at least `n` retries were logged for the queue at `queue_url` (counting from the
/// `skip`th), polling until `timeout`; returns them, or `None` when they did not come.
pub async fn wait_for_retries(
    queue_url: &str,
    skip: usize,
    n: usize,
    timeout: Duration,
) -> Option<Vec<Retry>> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen: Vec<Retry> = retries_on(queue_url).into_iter().skip(skip).collect();
        if seen.len() >= n {
            return Some(seen);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records the consumer's retry lines: the events that carry all four retry fields.
struct RetryLines;

impl<S: tracing::Subscriber> Layer<S> for RetryLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (Some(queue), Some(message_id), Some(receive_count), Some(delay_ms)) = (
            fields.queue,
            fields.message_id,
            fields.receive_count,
            fields.delay_ms,
        ) else {
            return;
        };
        retries()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(queue)
            .or_default()
            .push(Retry {
                message_id,
                receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
                delay: Duration::from_millis(delay_ms),
                at,
            });
    }
}

#[derive(Default)]
struct Fields {
    queue: Option<String>,
    message_id: Option<String>,
    receive_count: Option<u64>,
    delay_ms: Option<u64>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "queue" => self.queue = Some(value.to_string()),
            "message_id" => self.message_id = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "receive_count" => self.receive_count = Some(value),
            "delay_ms" => self.delay_ms = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `queue = %url` arrives as Display through this.
        if field.name() == "queue" {
            self.queue = Some(format!("{value:?}"));
        }
    }
}
