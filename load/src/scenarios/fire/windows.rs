//! The faults of an `sla-under-fire` pass, and their windows. [`FaultKind::ALL`] is the one list
//! of what a pass injects, in order: a new fault is a variant here, its label and its
//! [`FaultKind::inject`] arm, and every table row and figure follows from it.

use std::time::{Duration, Instant};

use anyhow::Context;
use harness::cluster::{Cluster, PROGRESS_DEADLINE, Phase};
use harness::process::Signal;
use harness::sqs_faults::protocol::{INTERNAL_FAILURE, REQUEST_THROTTLED};
use harness::sqs_faults::{Action, Operation, Rule};
use harness::{Dependency, Fault, Service, Stack};
use serde::Serialize;

use super::clock::since_epoch;
use super::platform::Platform;

/// How long a fault window lasts after the fault is repaired: connections are made again,
/// passive health checks readmit the replica.
pub const WINDOW_TAIL: Duration = Duration::from_secs(5);
/// How long Redis and SQS stay frozen.
pub const FROZEN: Duration = Duration::from_secs(10);
/// How long SQS answers the way AWS answers when it degrades (ADR 0018), in each SQS window.
pub const SQS_FAULT: Duration = Duration::from_secs(10);
/// The share of a batch's entries failed, and of answers dropped, in those windows.
const SQS_SHARE: f64 = 0.3;
/// How long a killed replica may take to be serving again: the cluster's restart back-off
/// ([`super::platform::RESTART`]) and a start.
const BACK_WITHIN: Duration = Duration::from_secs(90);

/// The faults of a pass, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FaultKind {
    ConsolidationReplicaKilled,
    RedisFrozen,
    ConsolidationPostgresRestarted,
    SqsFrozen,
    LedgerReplicaKilled,
    SqsThrottled,
    SqsPartialBatches,
    SqsLostAnswers,
    LedgerRollingRestart,
    ConsolidationRollingRestart,
    Scaled,
}

impl FaultKind {
    /// What a pass injects, in order.
    pub const ALL: [Self; 11] = [
        Self::ConsolidationReplicaKilled,
        Self::RedisFrozen,
        Self::ConsolidationPostgresRestarted,
        Self::SqsFrozen,
        Self::LedgerReplicaKilled,
        Self::SqsThrottled,
        Self::SqsPartialBatches,
        Self::SqsLostAnswers,
        Self::LedgerRollingRestart,
        Self::ConsolidationRollingRestart,
        Self::Scaled,
    ];

    /// The window's name in the table and the figures.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConsolidationReplicaKilled => "consolidation replica SIGKILL + restart",
            Self::RedisFrozen => "Redis frozen 10 s",
            Self::ConsolidationPostgresRestarted => "consolidation PostgreSQL restart",
            Self::SqsFrozen => "SQS frozen 10 s",
            Self::LedgerReplicaKilled => "ledger replica SIGKILL + restart",
            Self::SqsThrottled => "SQS throttling every call 10 s",
            Self::SqsPartialBatches => "SQS 30 % of batch entries failed 10 s",
            Self::SqsLostAnswers => "SQS 30 % of batch answers lost 10 s",
            Self::LedgerRollingRestart => "ledger rolling restart",
            Self::ConsolidationRollingRestart => "consolidation rolling restart",
            Self::Scaled => "scale 2 → 4 → 2 (both services)",
        }
    }

    /// About how long from the injection to the repair: what the pass's schedule allows for it
    /// (a replica's restart and start, or a PostgreSQL restart, take a few seconds).
    pub fn expected(self) -> Duration {
        match self {
            Self::RedisFrozen | Self::SqsFrozen => FROZEN,
            Self::SqsThrottled | Self::SqsPartialBatches | Self::SqsLostAnswers => SQS_FAULT,
            // Two replicas, each started, made ready and drained in turn.
            Self::LedgerRollingRestart | Self::ConsolidationRollingRestart => {
                Duration::from_secs(20)
            }
            Self::Scaled => Duration::from_secs(20),
            Self::ConsolidationReplicaKilled
            | Self::LedgerReplicaKilled
            | Self::ConsolidationPostgresRestarted => Duration::from_secs(8),
        }
    }

    /// Injects the fault and returns once it is repaired.
    async fn inject(self, platform: &Platform<'_>) -> anyhow::Result<()> {
        match self {
            // The consolidation's last replica, the ledger's first (whatever their names after
            // a rollout or a scale of an earlier pass).
            Self::ConsolidationReplicaKilled => {
                kill_until_back(&platform.cluster, Service::Consolidation, Pick::Last).await
            }
            Self::LedgerReplicaKilled => {
                kill_until_back(&platform.cluster, Service::Ledger, Pick::First).await
            }
            Self::SqsThrottled => {
                sqs_window(
                    platform,
                    vec![Rule::on_every_operation(Action::Error(REQUEST_THROTTLED))],
                )
                .await
            }
            Self::SqsPartialBatches => {
                let fail = |operation| {
                    Rule::on(
                        operation,
                        Action::FailEntries {
                            share: SQS_SHARE,
                            error: INTERNAL_FAILURE,
                        },
                    )
                };
                sqs_window(
                    platform,
                    vec![
                        fail(Operation::SendMessageBatch),
                        fail(Operation::DeleteMessageBatch),
                    ],
                )
                .await
            }
            Self::SqsLostAnswers => {
                let drop = |operation| Rule::on(operation, Action::DropAnswer).rate(SQS_SHARE);
                sqs_window(
                    platform,
                    vec![
                        drop(Operation::SendMessageBatch),
                        drop(Operation::DeleteMessageBatch),
                    ],
                )
                .await
            }
            Self::LedgerRollingRestart => {
                platform
                    .cluster
                    .rollout_restart(Service::Ledger, Vec::new(), PROGRESS_DEADLINE)
                    .await
            }
            Self::ConsolidationRollingRestart => {
                platform
                    .cluster
                    .rollout_restart(Service::Consolidation, Vec::new(), PROGRESS_DEADLINE)
                    .await
            }
            Self::Scaled => {
                for replicas in [4, 2] {
                    for service in Service::ALL {
                        platform.cluster.scale(service, replicas).await?;
                    }
                }
                Ok(())
            }
            Self::RedisFrozen => freeze(platform.consolidation_stack, Dependency::Redis).await,
            Self::SqsFrozen => freeze(platform.ledger_stack, Dependency::Sqs).await,
            Self::ConsolidationPostgresRestarted => {
                platform
                    .consolidation_stack
                    .inject(Dependency::Postgres, Fault::Restart)
                    .await
            }
        }
    }
}

/// One fault's window, in seconds since the scenario's epoch.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub fault: FaultKind,
    /// Injected.
    pub start: f64,
    /// Repaired.
    pub repaired: f64,
    /// `repaired` + [`WINDOW_TAIL`].
    pub end: f64,
}

impl Window {
    pub fn contains(&self, at: f64) -> bool {
        (self.start..self.end).contains(&at)
    }
}

/// The faults in turn, each after a quiet gap; returns their windows.
pub async fn inject_all(platform: &Platform<'_>, gap: Duration) -> anyhow::Result<Vec<Window>> {
    let mut windows = Vec::new();
    for fault in FaultKind::ALL {
        tokio::time::sleep(gap).await;
        let start = since_epoch(Instant::now());
        eprintln!("sla-under-fire: t={start:.1} s: {} ...", fault.label());
        fault.inject(platform).await?;
        let repaired = since_epoch(Instant::now());
        eprintln!(
            "sla-under-fire: t={repaired:.1} s: repaired ({:.1} s)",
            repaired - start
        );
        windows.push(Window {
            fault,
            start,
            repaired,
            end: repaired + WINDOW_TAIL.as_secs_f64(),
        });
    }
    Ok(windows)
}

/// Which replica of a service.
#[derive(Debug, Clone, Copy)]
enum Pick {
    First,
    Last,
}

/// SIGKILLs a replica of `service` (its process group) and waits until the cluster has started
/// it again and the gateway sends it requests: repaired is when it serves again.
async fn kill_until_back(cluster: &Cluster, service: Service, pick: Pick) -> anyhow::Result<()> {
    // `consolidation-12`: by ordinal, not by name (`-12` sorts before `-2`).
    let ordinal = |name: &str| {
        name.rsplit('-')
            .next()
            .and_then(|n| n.parse::<u16>().ok())
            .unwrap_or_default()
    };
    let replicas = cluster.ps().into_iter().filter(|r| r.service == service);
    let chosen = match pick {
        Pick::First => replicas.min_by_key(|r| ordinal(&r.name)),
        Pick::Last => replicas.max_by_key(|r| ordinal(&r.name)),
    };
    let name = chosen
        .with_context(|| format!("no replica of {service}"))?
        .name;
    let name = name.as_str();
    let status = |cluster: &Cluster| {
        cluster
            .ps()
            .into_iter()
            .find(|r| r.name == name)
            .with_context(|| format!("no replica {name}"))
    };
    let before = status(cluster)?;
    let pid = before
        .pid
        .with_context(|| format!("{name} is not running"))?;
    harness::process::signal_group(pid, Signal::KILL).with_context(|| format!("killing {name}"))?;
    let deadline = Instant::now() + BACK_WITHIN;
    loop {
        let now = status(cluster)?;
        if now.restarts > before.restarts && now.phase == Phase::Ready && now.in_gateway {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} was not serving again within {BACK_WITHIN:?} ({}, last exit {:?})",
            now.phase,
            now.last_exit.map(|e| e.status)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rules` on the entries queue for [`SQS_FAULT`], through the SQS fault layer in front of the
/// emulator (ADR 0018); fails when a rule never fired (the window would have tested nothing).
async fn sqs_window(platform: &Platform<'_>, rules: Vec<Rule>) -> anyhow::Result<()> {
    let faults = platform
        .ledger_stack
        .sqs_faults()
        .queue(&platform.ledger_scope.queues.name);
    let mut ids = Vec::new();
    for rule in rules {
        ids.push((rule.to_string(), faults.add(rule)?));
    }
    tokio::time::sleep(SQS_FAULT).await;
    for (rule, id) in ids {
        let fired = faults.fired(id);
        eprintln!("sla-under-fire: {rule}: {fired} requests hit");
        anyhow::ensure!(fired > 0, "the SQS fault {rule} never fired in its window");
    }
    // Dropping the queue's faults heals it.
    drop(faults);
    Ok(())
}

/// SIGSTOP for [`FROZEN`], then SIGCONT (a stack shutting down resumes it first anyway).
async fn freeze(stack: &Stack, dependency: Dependency) -> anyhow::Result<()> {
    stack.inject(dependency, Fault::Pause).await?;
    tokio::time::sleep(FROZEN).await;
    stack.inject(dependency, Fault::Resume).await
}
