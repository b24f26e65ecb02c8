//! What the soak runs against: migrated scopes on its stack, the queues' retention shortened,
//! and the harness's cluster with one replica of each service behind the gateway, each with
//! the soak's shortened windows.

use anyhow::Context;
use harness::cluster::{Cluster, ClusterSpec, GatewaySpec, RestartPolicy, ServiceTemplate};
use harness::{Scope, ScopeOptions, Service, Stack};

use super::args::SoakArgs;

/// The gateway's throttling: far above the soak's rate (what is watched is the services).
const GATEWAY_RATE: u32 = 100_000;

/// The scopes and the cluster.
pub struct Platform {
    pub ledger_scope: Scope,
    pub consolidation_scope: Scope,
    pub cluster: Cluster,
}

impl Platform {
    pub async fn start(stack: &Stack, args: &SoakArgs) -> anyhow::Result<Self> {
        let ledger_scope = stack
            .scope_with(ScopeOptions::default().with_migrations(&ledger::MIGRATOR))
            .await?;
        let consolidation_scope = stack
            .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
            .await?;
        let queues = ledger_scope.queues.clone();
        set_queue_retention(&ledger_scope.sqs(), &queues, args.sqs_retention_seconds).await?;
        let mut consolidation_env = args.consolidation_env();
        consolidation_env.push((
            "REDIS_KEY_PREFIX".into(),
            consolidation_scope.redis_prefix.clone(),
        ));
        let template = |scope: &Scope, env| ServiceTemplate {
            database_url: scope.database_url.clone(),
            redis_url: scope.redis_url.clone(),
            sqs_endpoint: scope.sqs_endpoint.clone(),
            queues: queues.clone(),
            env,
        };
        let free = harness::backend::native::free_port;
        let pid = std::process::id();
        let spec = ClusterSpec {
            services: [
                (Service::Ledger, template(&ledger_scope, args.ledger_env())),
                (
                    Service::Consolidation,
                    template(&consolidation_scope, consolidation_env),
                ),
            ]
            .into(),
            replicas: 1,
            first_ports: Default::default(),
            gateway: GatewaySpec {
                port: free()?,
                ledger_internal_port: free()?,
                rate_limit: GATEWAY_RATE,
                burst_limit: GATEWAY_RATE,
                dir: harness::paths::harness_dir().join(format!("soak-gateway-{pid}")),
            },
            restart: RestartPolicy::default(),
            logs: (harness::paths::logs_dir(), format!("soak-{pid}")),
        };
        eprintln!("soak: starting the ledger and the consolidation behind the gateway");
        let cluster = Cluster::start(stack, spec)
            .await
            .context("starting the services (cargo build --release --bins; make soak does)")?;
        for replica in cluster.ps() {
            eprintln!("soak: {} ({})", replica.name, replica.log_file);
        }
        Ok(Self {
            ledger_scope,
            consolidation_scope,
            cluster,
        })
    }
}

/// Shortens the retention of both queues, so that what the consolidation is told
/// (`SQS_*_RETENTION_SECONDS`) is what SQS does.
async fn set_queue_retention(
    sqs: &aws_sdk_sqs::Client,
    queues: &harness::sqs::QueuePair,
    seconds: u64,
) -> anyhow::Result<()> {
    for url in [&queues.url, &queues.dlq_url] {
        sqs.set_queue_attributes()
            .queue_url(url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::MessageRetentionPeriod,
                seconds.to_string(),
            )
            .send()
            .await
            .with_context(|| format!("setting the retention of {url}"))?;
    }
    Ok(())
}
