//! Rules: which requests a fault applies to (an operation, optionally a queue), how often (a
//! probability, or the next N calls) and what it does ([`Action`]).
//!
//! A rule is checked when it is added: an error must be one the API reference documents for its
//! operation, entries can only fail in batch operations, duplicates and reorders only happen
//! to receives. The CLI spells rules as words (`SendMessageBatch fail-entries 0.3`, see
//! [`Rule::parse`]).

use std::time::Duration;

use anyhow::{Context, bail, ensure};

use super::protocol::{AwsError, INTERNAL_FAILURE, Operation, REQUEST_THROTTLED};

/// What a rule does to a request it applies to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Answer this error instead of forwarding: SQS did nothing.
    Error(AwsError),
    /// Of a batch, fail `share` of the entries (at least one) with `error`: only the others are
    /// forwarded, and the answer lists the failed ones under `Failed`.
    FailEntries {
        /// Share of the entries that fail, in (0, 1].
        share: f64,
        /// What they fail with.
        error: AwsError,
    },
    /// Forward, then close the connection instead of answering: SQS did it, the caller cannot
    /// tell.
    DropAnswer,
    /// A receive's messages are delivered again by the next receive of the queue (as SQS's
    /// at-least-once delivery does when a copy outlives a delete).
    Duplicate,
    /// A receive's messages come in reverse order, and its first one only with the next
    /// receive of the queue.
    Reorder,
    /// Wait this long before forwarding.
    Latency(Duration),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Error(e) => write!(f, "error {}", e.shape()),
            Self::FailEntries { share, error } => {
                write!(f, "fail-entries {share} {}", error.shape())
            }
            Self::DropAnswer => f.write_str("drop-answer"),
            Self::Duplicate => f.write_str("duplicate"),
            Self::Reorder => f.write_str("reorder"),
            Self::Latency(d) => write!(f, "latency {}ms", d.as_millis()),
        }
    }
}

/// How often a rule applies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// To every matching request.
    Always,
    /// To each matching request with this probability, in (0, 1].
    Rate(f64),
    /// To the next N matching requests, then never again.
    Next(u32),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Rate(p) => write!(f, "--rate {p}"),
            Self::Next(n) => write!(f, "--next {n}"),
        }
    }
}

/// One fault: what it matches, how often, what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The operation (`None`: every operation).
    pub operation: Option<Operation>,
    /// The queue, by name (`None`: every queue). Tests always name theirs, so that their rules
    /// never touch another test's queues.
    pub queue: Option<String>,
    /// How often.
    pub trigger: Trigger,
    /// What it does.
    pub action: Action,
}

impl Rule {
    /// `action` on every request of `operation`, any queue.
    pub fn on(operation: Operation, action: Action) -> Self {
        Self {
            operation: Some(operation),
            queue: None,
            trigger: Trigger::Always,
            action,
        }
    }

    /// `action` on every request, whatever the operation.
    pub fn on_every_operation(action: Action) -> Self {
        Self {
            operation: None,
            queue: None,
            trigger: Trigger::Always,
            action,
        }
    }

    /// Only requests about the queue `name`.
    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queue = Some(name.into());
        self
    }

    /// Each matching request with probability `p`.
    pub fn rate(mut self, p: f64) -> Self {
        self.trigger = Trigger::Rate(p);
        self
    }

    /// The next `n` matching requests only.
    pub fn next(mut self, n: u32) -> Self {
        self.trigger = Trigger::Next(n);
        self
    }

    /// Refuses a rule that would answer something SQS never does (see the module doc).
    pub fn check(&self) -> anyhow::Result<()> {
        let on = self
            .operation
            .map_or_else(|| "every operation".to_string(), |op| op.to_string());
        match self.trigger {
            Trigger::Rate(p) => ensure!(p > 0.0 && p <= 1.0, "a rate is in (0, 1], not {p}"),
            Trigger::Next(n) => ensure!(n >= 1, "--next takes at least 1"),
            Trigger::Always => {}
        }
        match self.action {
            Action::Error(error) => ensure!(
                error.documented_for(self.operation),
                "SQS does not document {} for {on}",
                error.shape()
            ),
            Action::FailEntries { share, error } => {
                let Some(operation) = self.operation.filter(|op| op.single().is_some()) else {
                    bail!("only batch operations have entries to fail, not {on}");
                };
                ensure!(
                    share > 0.0 && share <= 1.0,
                    "the share of entries is in (0, 1], not {share}"
                );
                ensure!(
                    error.documented_for_entries_of(operation),
                    "SQS does not document {} for the entries of {operation}",
                    error.shape()
                );
            }
            Action::Duplicate | Action::Reorder => ensure!(
                self.operation == Some(Operation::ReceiveMessage),
                "only ReceiveMessage delivers messages to duplicate or reorder, not {on}"
            ),
            Action::DropAnswer | Action::Latency(_) => {}
        }
        Ok(())
    }

    /// A rule from the CLI's words: the operation (`SendMessageBatch`, or `any`), then the
    /// fault:
    /// - `throttle` (RequestThrottled), `error <Error>`, or the error's name alone
    ///   (`InternalFailure`, `ServiceUnavailable`, `ThrottlingException`,
    ///   `ReceiptHandleIsInvalid`, `MessageNotInflight`, `OverLimit`);
    /// - `fail-entries <share> [<Error>]` (default InternalFailure);
    /// - `drop-answer`, `duplicate`, `reorder`, `latency <duration>`.
    pub fn parse(operation: &str, fault: &[&str]) -> anyhow::Result<Self> {
        let operation = match operation.to_ascii_lowercase().as_str() {
            "any" | "all" | "*" => None,
            _ => Some(operation.parse::<Operation>()?),
        };
        let action = match fault {
            ["throttle"] => Action::Error(REQUEST_THROTTLED),
            ["error", name] => Action::Error(AwsError::named(name)?),
            ["fail-entries", share] | ["fail-entries", share, _] => Action::FailEntries {
                share: share
                    .parse()
                    .with_context(|| format!("{share:?} is not a share such as 0.3"))?,
                error: match fault.get(2) {
                    Some(name) => AwsError::named(name)?,
                    None => INTERNAL_FAILURE,
                },
            },
            ["drop-answer"] => Action::DropAnswer,
            ["duplicate"] => Action::Duplicate,
            ["reorder"] => Action::Reorder,
            ["latency", duration] => Action::Latency(crate::netfault::parse_duration(duration)?),
            [name] => Action::Error(AwsError::named(name).with_context(|| {
                format!(
                    "unknown SQS fault {name:?}: throttle, error <Error>, <Error>, \
                     fail-entries <share> [<Error>], drop-answer, duplicate, reorder, \
                     latency <duration>"
                )
            })?),
            _ => bail!(
                "unknown SQS fault {:?}: throttle, error <Error>, <Error>, fail-entries <share> \
                 [<Error>], drop-answer, duplicate, reorder, latency <duration>",
                fault.join(" ")
            ),
        };
        let rule = Self {
            operation,
            queue: None,
            trigger: Trigger::Always,
            action,
        };
        rule.check()?;
        Ok(rule)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.operation {
            Some(op) => write!(f, "{op}")?,
            None => f.write_str("any")?,
        }
        write!(f, " {}", self.action)?;
        if self.trigger != Trigger::Always {
            write!(f, " {}", self.trigger)?;
        }
        if let Some(queue) = &self.queue {
            write!(f, " --queue {queue}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::{MESSAGE_NOT_INFLIGHT, RECEIPT_HANDLE_IS_INVALID};
    use super::*;

    #[test]
    fn rules_parse_as_the_cli_spells_them() {
        let rule = Rule::parse("SendMessageBatch", &["fail-entries", "0.3"]).expect("rule");
        assert_eq!(
            rule.action,
            Action::FailEntries {
                share: 0.3,
                error: INTERNAL_FAILURE
            }
        );
        assert_eq!(
            Rule::parse("ReceiveMessage", &["throttle"])
                .expect("rule")
                .action,
            Action::Error(REQUEST_THROTTLED)
        );
        assert_eq!(
            Rule::parse(
                "DeleteMessageBatch",
                &["fail-entries", "1", "ReceiptHandleIsInvalid"]
            )
            .expect("rule")
            .action,
            Action::FailEntries {
                share: 1.0,
                error: RECEIPT_HANDLE_IS_INVALID
            }
        );
        assert_eq!(
            Rule::parse("any", &["latency", "300ms"])
                .expect("rule")
                .action,
            Action::Latency(Duration::from_millis(300))
        );
        let text = Rule::parse("ReceiveMessage", &["duplicate"])
            .expect("rule")
            .next(2)
            .queue("q")
            .to_string();
        assert_eq!(text, "ReceiveMessage duplicate --next 2 --queue q");
    }

    #[test]
    fn rules_answering_what_sqs_never_does_are_refused() {
        for (operation, fault) in [
            ("SendMessage", &["ReceiptHandleIsInvalid"][..]),
            ("ReceiveMessage", &["fail-entries", "0.5"][..]),
            (
                "SendMessageBatch",
                &["fail-entries", "0.5", "MessageNotInflight"][..],
            ),
            ("SendMessageBatch", &["duplicate"][..]),
            ("any", &["OverLimit"][..]),
            ("SendMessageBatch", &["fail-entries", "0"][..]),
            ("SendMessageBatch", &["wobble"][..]),
        ] {
            assert!(
                Rule::parse(operation, fault).is_err(),
                "{operation} {fault:?} was accepted"
            );
        }
        assert!(
            Rule::parse(
                "ChangeMessageVisibilityBatch",
                &["fail-entries", "1", "MessageNotInflight"]
            )
            .is_ok()
        );
        assert!(
            Rule::on(
                Operation::ChangeMessageVisibility,
                Action::Error(MESSAGE_NOT_INFLIGHT)
            )
            .rate(1.5)
            .check()
            .is_err()
        );
    }
}
