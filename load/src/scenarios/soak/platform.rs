//! What the soak runs against: migrated scopes on its stack, the queues' retention shortened,
//! and the harness's cluster (testkit's plan) with one replica of each service behind the
//! gateway, not throttling, each with the soak's shortened windows.

use anyhow::Context;
use harness::cluster::Cluster;
use harness::{Scope, Stack};
use testkit::ClusterPlan;

use super::args::SoakArgs;

/// The scopes and the cluster.
pub struct Platform {
    pub ledger_scope: Scope,
    pub consolidation_scope: Scope,
    pub cluster: Cluster,
}

impl Platform {
    pub async fn start(stack: &Stack, args: &SoakArgs) -> anyhow::Result<Self> {
        let (ledger_scope, consolidation_scope) = testkit::migrated_scopes(stack, stack).await?;
        set_queue_retention(
            &ledger_scope.sqs(),
            &ledger_scope.queues,
            args.sqs_retention_seconds,
        )
        .await?;
        let mut plan = ClusterPlan::new(&ledger_scope, &consolidation_scope, "soak");
        plan.ledger_env = args.ledger_env();
        plan.consolidation_env = args.consolidation_env();
        let spec = plan.spec()?;
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
