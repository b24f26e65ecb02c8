//! What happens to the replicas, one line each: what `harness up` prints, what `harness rollout`
//! and `harness scale` stream back, what tests watch for.

use std::fmt;
use std::time::Duration;

/// One event of one replica (or of an operation on a service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `consolidation-2`, or the service for an operation's own events.
    pub subject: String,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A new replica is starting.
    Starting {
        /// Its own port.
        port: u16,
    },
    /// It answers `/health/ready` and is in the gateway.
    Ready,
    /// It exited on its own (or never became ready) and starts again after `restart_in`.
    Exited {
        /// `signal 9`, `exit code 1`, `not ready within 60 s`.
        status: String,
        /// Why, from its last output (the error a bad setting prints), when it said.
        reason: Option<String>,
        /// The back-off before the next start.
        restart_in: Duration,
    },
    /// Taken out of the gateway, then sent SIGTERM to drain.
    Leaving {
        /// From the decision until no new request reached it (the gateway's new worker ran).
        no_new_requests: Duration,
        /// From the decision until the gateway's old worker had finished what it held: no
        /// request at all reaches it after.
        none_in_flight: Duration,
    },
    /// Removed while it was not running (in back-off): nothing to drain.
    Removed,
    /// It exited after SIGTERM.
    Stopped {
        /// How it exited.
        status: String,
        /// From SIGTERM to its exit: its drain.
        drained_in: Duration,
    },
    /// A line about an operation (`rollout restart ledger: done`).
    Note(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = &self.subject;
        match &self.kind {
            EventKind::Starting { port } => write!(f, "{subject} starting on port {port}"),
            EventKind::Ready => write!(f, "{subject} ready"),
            EventKind::Exited {
                status,
                reason,
                restart_in,
            } => {
                write!(f, "{subject} exited ({status}")?;
                if let Some(reason) = reason {
                    write!(f, ": {reason}")?;
                }
                write!(f, "); restarting in {}", seconds(*restart_in))
            }
            EventKind::Leaving {
                no_new_requests,
                none_in_flight,
            } => write!(
                f,
                "{subject} out of the gateway (no new requests after {} ms, none in flight after \
                 {} ms); SIGTERM, draining",
                no_new_requests.as_millis(),
                none_in_flight.as_millis()
            ),
            EventKind::Removed => write!(f, "{subject} removed (it was not running)"),
            EventKind::Stopped { status, drained_in } => write!(
                f,
                "{subject} stopped ({status}, {} after SIGTERM)",
                seconds(*drained_in)
            ),
            EventKind::Note(text) => write!(f, "{subject}: {text}"),
        }
    }
}

/// `1 s`, `1.5 s`, `0.25 s`.
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else if secs >= 10.0 {
        format!("{secs:.0} s")
    } else if secs >= 1.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Event, EventKind};

    #[test]
    fn an_exit_reads_as_the_kubelet_would_say_it() {
        let event = Event {
            subject: "consolidation-2".into(),
            kind: EventKind::Exited {
                status: "signal 9".into(),
                reason: None,
                restart_in: Duration::from_secs(1),
            },
        };
        assert_eq!(
            event.to_string(),
            "consolidation-2 exited (signal 9); restarting in 1 s"
        );
        let ready = Event {
            subject: "consolidation-2".into(),
            kind: EventKind::Ready,
        };
        assert_eq!(ready.to_string(), "consolidation-2 ready");
    }
}
