//! What `sla-under-fire` runs against: two harness stacks (the ledger's and the consolidation's,
//! so that restarting the consolidation's PostgreSQL leaves the ledger's alone, as deployed) and
//! the harness's cluster on them (testkit's plan) — two supervised replicas of each service
//! behind the nginx gateway, the assembly `harness up` runs, the gateway not throttling: what is
//! measured is the services behind it.

use std::time::Duration;

use harness::cluster::{Cluster, RestartPolicy};
use harness::{Scope, Stack};
use testkit::ClusterPlan;

/// How long a killed replica stays down before the cluster starts it again (its first
/// back-off).
pub const RESTART: Duration = Duration::from_secs(2);

/// The two stacks, their scopes and the cluster.
pub struct Platform<'a> {
    pub ledger_stack: &'a Stack,
    pub consolidation_stack: &'a Stack,
    pub ledger_scope: Scope,
    pub consolidation_scope: Scope,
    pub cluster: Cluster,
}

impl<'a> Platform<'a> {
    /// Migrated scopes on each stack, then the cluster: two replicas of each service, then the
    /// gateway in front of them.
    pub async fn start(
        ledger_stack: &'a Stack,
        consolidation_stack: &'a Stack,
    ) -> anyhow::Result<Self> {
        let (ledger_scope, consolidation_scope) =
            testkit::migrated_scopes(ledger_stack, consolidation_stack).await?;
        let mut plan = ClusterPlan::new(&ledger_scope, &consolidation_scope, "fire");
        plan.replicas = 2;
        let mut spec = plan.spec()?;
        spec.restart = RestartPolicy {
            initial: RESTART,
            ..RestartPolicy::default()
        };
        eprintln!("sla-under-fire: starting 2 replicas of each service behind the gateway");
        // The ledger stack's identity provider signs every token (one issuer, as in AWS).
        let cluster = Cluster::start(ledger_stack, spec).await?;
        for replica in cluster.ps() {
            eprintln!(
                "sla-under-fire: {} on 127.0.0.1:{} ({})",
                replica.name, replica.port, replica.log_file
            );
        }
        eprintln!(
            "sla-under-fire: gateway {} (nginx, access log {})",
            cluster.gateway_url(),
            cluster.access_log().await.display()
        );
        Ok(Self {
            ledger_stack,
            consolidation_stack,
            ledger_scope,
            consolidation_scope,
            cluster,
        })
    }

    /// The one entry point.
    pub fn gateway_url(&self) -> String {
        self.cluster.gateway_url().to_string()
    }
}
