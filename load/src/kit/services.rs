//! The services' configurations for the scenarios that run one in this process.

use std::time::Duration;

/// A consolidation on the scope's database that does not consume: Redis on (with the key prefix
/// `name` of its own) or refused at once (nothing listens on port 1).
pub fn consolidation_config(
    stack: &harness::Stack,
    scope: &harness::Scope,
    cache: bool,
    name: &str,
) -> consolidation::Config {
    consolidation::Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        redis_url: if cache {
            scope.redis_url.clone()
        } else {
            "redis://127.0.0.1:1".into()
        },
        redis_prefix: format!("{}{name}:", scope.redis_prefix),
        cache_ttl: Duration::from_secs(600),
        cache_stale_if_error: Duration::from_secs(600),
        redis: Default::default(),
        queue_url: scope.queues.url.clone(),
        dlq_url: scope.queues.dlq_url.clone(),
        sqs: cashflow_platform::sqs::SqsSettings {
            endpoint_url: Some(scope.sqs_endpoint.clone()),
            region: scope.aws_region.clone(),
        },
        auth: cashflow_platform::auth::AuthConfig {
            issuer: stack.identity().issuer().to_string(),
            audience: stack.identity().audience().to_string(),
            jwks_uri: Some(stack.identity().jwks_uri()),
            leeway: Duration::from_secs(30),
            keys: Default::default(),
        },
        consumer: consolidation::config::ConsumerConfig {
            enabled: false,
            ..Default::default()
        },
        report_max_days: 366,
        default_currency: cashflow_contracts::Currency::BRL,
        deadlines: Default::default(),
        reconcile: Default::default(),
        processed_events_retention: consolidation::config::DEFAULT_PROCESSED_EVENTS_RETENTION,
        retention: Default::default(),
    }
}
