//! Both services as supervised replicas behind the nginx gateway ([`harness::cluster`], the
//! assembly `harness up` runs), on the scopes of a test or a load run: what the load suite's
//! fire and soak runs start instead of putting processes together by hand. The services run as
//! their own processes (release or debug binaries next to the running executable).

use std::collections::BTreeMap;

use harness::cluster::{Cluster, ClusterSpec, GatewaySpec, RestartPolicy, ServiceTemplate};
use harness::{Scope, ScopeOptions, Service, Stack};

/// A scope on each stack with its service's migrations applied, the ledger's then the
/// consolidation's: what a [`ClusterPlan`] runs on. The two stacks may be one.
pub async fn migrated_scopes(
    ledger: &Stack,
    consolidation: &Stack,
) -> anyhow::Result<(Scope, Scope)> {
    let ledger_scope = ledger
        .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
        .await?;
    let consolidation_scope = consolidation
        .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
        .await?;
    Ok((ledger_scope, consolidation_scope))
}

/// What to start: the scopes the services run on, how many replicas, and what else they are told.
#[derive(Debug, Clone)]
pub struct ClusterPlan<'a> {
    /// The ledger's scope: its database, and the queue pair both services use.
    pub ledger: &'a Scope,
    /// The consolidation's scope: its database and Redis key prefix.
    pub consolidation: &'a Scope,
    /// Replicas of each service.
    pub replicas: u16,
    /// More settings for the ledger's replicas.
    pub ledger_env: Vec<(String, String)>,
    /// More settings for the consolidation's replicas (its Redis key prefix is set already).
    pub consolidation_env: Vec<(String, String)>,
    /// The gateway's steady requests per second and burst (high by default: not under test).
    pub rate_limit: u32,
    /// Requests above the rate allowed at once.
    pub burst_limit: u32,
    /// Names the run's folders and log files (`fire`, `soak`).
    pub name: String,
}

impl<'a> ClusterPlan<'a> {
    /// One replica of each service on these scopes, the gateway not throttling.
    pub fn new(ledger: &'a Scope, consolidation: &'a Scope, name: &str) -> Self {
        Self {
            ledger,
            consolidation,
            replicas: 1,
            ledger_env: Vec::new(),
            consolidation_env: Vec::new(),
            rate_limit: 100_000,
            burst_limit: 100_000,
            name: name.to_string(),
        }
    }

    /// The cluster's specification: free ports, the gateway's folder and the logs under the
    /// harness's folders, named after the plan and this process.
    pub fn spec(&self) -> anyhow::Result<ClusterSpec> {
        let port = harness::backend::native::free_port;
        let mut consolidation_env = vec![(
            "REDIS_KEY_PREFIX".to_string(),
            self.consolidation.redis_prefix.clone(),
        )];
        consolidation_env.extend(self.consolidation_env.iter().cloned());
        let tag = format!("{}-{}", self.name, std::process::id());
        Ok(ClusterSpec {
            services: BTreeMap::from([
                (
                    Service::Ledger,
                    ServiceTemplate::on_scopes(self.ledger, self.ledger, self.ledger_env.clone()),
                ),
                (
                    Service::Consolidation,
                    ServiceTemplate::on_scopes(self.consolidation, self.ledger, consolidation_env),
                ),
            ]),
            replicas: self.replicas,
            first_ports: BTreeMap::new(),
            gateway: GatewaySpec {
                port: port()?,
                ledger_internal_port: port()?,
                rate_limit: self.rate_limit,
                burst_limit: self.burst_limit,
                dir: harness::paths::harness_dir().join(format!("{tag}-gateway")),
            },
            restart: RestartPolicy::default(),
            logs: (harness::paths::logs_dir(), tag),
        })
    }

    /// Starts the replicas and the gateway; `stack`'s identity provider signs the tokens they
    /// trust. Stop it with [`Cluster::shutdown`].
    pub async fn start(&self, stack: &Stack) -> anyhow::Result<Cluster> {
        Cluster::start(stack, self.spec()?).await
    }
}
