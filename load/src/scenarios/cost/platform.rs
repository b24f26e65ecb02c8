//! What `cost` runs against and reads the CPU of: a harness stack each for the ledger and the
//! consolidation (so each service's PostgreSQL is metered apart; the queue is the ledger stack's
//! emulator, as in `sla-under-fire`), and the harness's cluster on them (testkit's plan) with one
//! replica of each service, as its own process. Requests go to the replicas' own ports, not
//! through the gateway: what is metered is the services.

use std::time::Duration;

use anyhow::Context;
use harness::cluster::Cluster;
use harness::{Dependency, Scope, Service, Stack};
use testkit::ClusterPlan;

use super::meter::{Part, Readings, Used};

/// The stacks, their scopes and the cluster.
pub struct Platform<'a> {
    pub ledger_stack: &'a Stack,
    pub consolidation_stack: &'a Stack,
    pub ledger_scope: Scope,
    pub consolidation_scope: Scope,
    pub cluster: Cluster,
}

impl<'a> Platform<'a> {
    /// Migrated scopes on each stack, then one replica of each service.
    pub async fn start(
        ledger_stack: &'a Stack,
        consolidation_stack: &'a Stack,
    ) -> anyhow::Result<Self> {
        let (ledger_scope, consolidation_scope) =
            testkit::migrated_scopes(ledger_stack, consolidation_stack).await?;
        let mut plan = ClusterPlan::new(&ledger_scope, &consolidation_scope, "cost");
        // As deployed: info-level logs only (a debug filter from the caller would be measured).
        let info = vec![("RUST_LOG".to_string(), "info".to_string())];
        plan.ledger_env = info.clone();
        plan.consolidation_env = info;
        eprintln!("cost: starting the ledger and the consolidation");
        // The ledger stack's identity provider signs every token (one issuer, as in AWS).
        let cluster = plan.start(ledger_stack).await.context(
            "starting the services (cargo build --release -p ledger -p consolidation --bins; \
             make load does)",
        )?;
        for replica in cluster.ps() {
            eprintln!(
                "cost: {} on 127.0.0.1:{} ({})",
                replica.name, replica.port, replica.log_file
            );
        }
        Ok(Self {
            ledger_stack,
            consolidation_stack,
            ledger_scope,
            consolidation_scope,
            cluster,
        })
    }

    /// The base URL of `service`'s replica (its own port).
    pub fn url(&self, service: Service) -> anyhow::Result<String> {
        let replica = self.replica(service)?;
        Ok(format!("http://127.0.0.1:{}", replica.port))
    }

    /// The process of `service`'s one replica; fails once it has exited or restarted (a CPU
    /// reading of another process would be meaningless).
    fn pid(&self, service: Service) -> anyhow::Result<i32> {
        let replica = self.replica(service)?;
        match replica.pid.filter(|_| replica.restarts == 0) {
            Some(pid) => Ok(pid),
            None => anyhow::bail!(
                "the {} replica exited or restarted: {}",
                service,
                harness::process::tail(std::path::Path::new(&replica.log_file), 30)
            ),
        }
    }

    fn replica(&self, service: Service) -> anyhow::Result<harness::cluster::ReplicaStatus> {
        self.cluster
            .ps()
            .into_iter()
            .find(|r| r.service == service)
            .with_context(|| format!("no {service} replica"))
    }

    /// Runs `phase`, reading every part's CPU time before and after it.
    pub async fn metered<T>(
        &self,
        phase: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, Used)> {
        let before = self.read().await?;
        let started = std::time::Instant::now();
        let value = phase.await?;
        let after = self.read().await?;
        Ok((
            value,
            Used::between(before, after, started.elapsed().as_secs_f64()),
        ))
    }

    /// Every part's CPU time so far (`None` where it cannot be read).
    pub async fn read(&self) -> anyhow::Result<Readings> {
        let tree = |service| -> anyhow::Result<Option<Duration>> {
            Ok(harness::cpu::process_tree(self.pid(service)?))
        };
        let mut readings: Readings = [None; Part::ALL.len()];
        for (reading, part) in readings.iter_mut().zip(Part::ALL) {
            *reading = match part {
                Part::Ledger => tree(Service::Ledger)?,
                Part::Consolidation => tree(Service::Consolidation)?,
                Part::LedgerPostgres => dependency(self.ledger_stack, Dependency::Postgres).await,
                Part::Emulator => dependency(self.ledger_stack, Dependency::Sqs).await,
                Part::ConsolidationPostgres => {
                    dependency(self.consolidation_stack, Dependency::Postgres).await
                }
                Part::Redis => dependency(self.consolidation_stack, Dependency::Redis).await,
                // goose runs on this process's main runtime: its main thread and tokio's
                // default-named workers (`tokio-runtime-w`). The harness's threads (the
                // services' output copied to their logs, the SQS fault proxy) and the trivial
                // handler's are left out.
                Part::Goose => {
                    harness::cpu::threads(|name| name == "load" || name.starts_with("tokio-r"))
                }
            };
        }
        Ok(readings)
    }
}

/// CPU time a dependency of `stack` has used so far.
async fn dependency(stack: &Stack, dependency: Dependency) -> Option<Duration> {
    stack.backend().cpu_time(dependency).await.ok().flatten()
}
