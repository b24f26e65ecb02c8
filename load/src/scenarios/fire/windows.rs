//! The faults of an `sla-under-fire` pass, and their windows. [`FaultKind::ALL`] is the one list
//! of what a pass injects, in order: a new fault is a variant here, its label and its
//! [`FaultKind::inject`] arm, and every table row and figure follows from it.

use std::time::{Duration, Instant};

use anyhow::Context;
use harness::cluster::{Cluster, Phase};
use harness::process::Signal;
use harness::{Dependency, Fault, Stack};
use serde::Serialize;

use super::clock::since_epoch;
use super::platform::Platform;

/// How long a fault window lasts after the fault is repaired: connections are made again,
/// passive health checks readmit the replica.
pub const WINDOW_TAIL: Duration = Duration::from_secs(5);
/// How long Redis and SQS stay frozen.
pub const FROZEN: Duration = Duration::from_secs(10);
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
}

impl FaultKind {
    /// What a pass injects, in order.
    pub const ALL: [Self; 5] = [
        Self::ConsolidationReplicaKilled,
        Self::RedisFrozen,
        Self::ConsolidationPostgresRestarted,
        Self::SqsFrozen,
        Self::LedgerReplicaKilled,
    ];

    /// The window's name in the table and the figures.
    pub fn label(self) -> &'static str {
        match self {
            Self::ConsolidationReplicaKilled => "consolidation replica SIGKILL + restart",
            Self::RedisFrozen => "Redis frozen 10 s",
            Self::ConsolidationPostgresRestarted => "consolidation PostgreSQL restart",
            Self::SqsFrozen => "SQS frozen 10 s",
            Self::LedgerReplicaKilled => "ledger replica SIGKILL + restart",
        }
    }

    /// About how long from the injection to the repair: what the pass's schedule allows for it
    /// (a replica's restart and start, or a PostgreSQL restart, take a few seconds).
    pub fn expected(self) -> Duration {
        match self {
            Self::RedisFrozen | Self::SqsFrozen => FROZEN,
            Self::ConsolidationReplicaKilled
            | Self::LedgerReplicaKilled
            | Self::ConsolidationPostgresRestarted => Duration::from_secs(8),
        }
    }

    /// Injects the fault and returns once it is repaired.
    async fn inject(self, platform: &Platform<'_>) -> anyhow::Result<()> {
        match self {
            Self::ConsolidationReplicaKilled => {
                kill_until_back(&platform.cluster, "consolidation-2").await
            }
            // The ledger's first replica.
            Self::LedgerReplicaKilled => kill_until_back(&platform.cluster, "ledger-1").await,
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

/// SIGKILLs the replica `name` (its process group) and waits until the cluster has started it
/// again and the gateway sends it requests: repaired is when it serves again.
async fn kill_until_back(cluster: &Cluster, name: &str) -> anyhow::Result<()> {
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

/// SIGSTOP for [`FROZEN`], then SIGCONT (a stack shutting down resumes it first anyway).
async fn freeze(stack: &Stack, dependency: Dependency) -> anyhow::Result<()> {
    stack.inject(dependency, Fault::Pause).await?;
    tokio::time::sleep(FROZEN).await;
    stack.inject(dependency, Fault::Resume).await
}
