//! What `sla-under-fire` runs against: two harness stacks (the ledger's and the consolidation's,
//! so that restarting the consolidation's PostgreSQL leaves the ledger's alone, as deployed) and
//! the harness's cluster on them — two supervised replicas of each service behind the nginx
//! gateway, the assembly `harness up` runs.

use std::time::Duration;

use harness::cluster::{Cluster, ClusterSpec, GatewaySpec, RestartPolicy, ServiceTemplate};
use harness::{Scope, ScopeOptions, Service, Stack};

/// The gateway's throttling for this scenario: far above the offered load, because what is
/// measured is the services behind it (the stage default of 500/s would answer 429 to the
/// 500/s pass plus its writes).
const GATEWAY_RATE: u32 = 100_000;
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
        let ledger_scope = ledger_stack
            .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
            .await?;
        let consolidation_scope = consolidation_stack
            .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
            .await?;
        let template = |scope: &Scope| ServiceTemplate {
            database_url: scope.database_url.clone(),
            redis_url: scope.redis_url.clone(),
            // One queue, the ledger stack's.
            sqs_endpoint: ledger_scope.sqs_endpoint.clone(),
            queues: ledger_scope.queues.clone(),
            env: vec![("REDIS_KEY_PREFIX".into(), scope.redis_prefix.clone())],
        };
        let free = harness::backend::native::free_port;
        let pid = std::process::id();
        let spec = ClusterSpec {
            services: [
                (Service::Ledger, template(&ledger_scope)),
                (Service::Consolidation, template(&consolidation_scope)),
            ]
            .into(),
            replicas: 2,
            first_ports: Default::default(),
            gateway: GatewaySpec {
                port: free()?,
                ledger_internal_port: free()?,
                rate_limit: GATEWAY_RATE,
                burst_limit: GATEWAY_RATE,
                dir: harness::paths::harness_dir().join(format!("fire-gateway-{pid}")),
            },
            restart: RestartPolicy {
                initial: RESTART,
                ..RestartPolicy::default()
            },
            logs: (harness::paths::logs_dir(), format!("fire-{pid}")),
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
