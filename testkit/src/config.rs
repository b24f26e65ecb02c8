//! Each service's configuration for a test, built once: in-process on ephemeral ports, on a
//! harness [`Scope`], trusting an emulated identity provider, with the short poll and retry
//! intervals a test wants. Callers adjust fields after (a proxy's URL, more pollers, a
//! reconciler); what is not set here is the service's default.

use std::time::Duration;

use cashflow_platform::auth::AuthConfig;
use cashflow_platform::sqs::SqsSettings;
use harness::Scope;

/// A ledger on `scope` (its database and queue pair), trusting `auth`: the outbox relay polls
/// every 50 ms when idle.
pub fn ledger_config(scope: &Scope, auth: AuthConfig) -> ledger::Config {
    ledger::Config {
        listen: any_port(),
        internal_listen: any_port(),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        queue_url: scope.queues.url.clone(),
        sqs: sqs(scope),
        auth,
        entries: Default::default(),
        max_body_bytes: 16 * 1024,
        replay: Default::default(),
        relay: ledger::config::RelayConfig {
            idle_poll: Duration::from_millis(50),
            ..Default::default()
        },
        deadlines: Default::default(),
        retention: Default::default(),
        write_batch: Default::default(),
    }
}

/// A consolidation on `scope` (its database and Redis prefix) consuming the queue pair of
/// `queues` (the ledger's scope; the same scope in a consolidation-only test), trusting `auth`:
/// two pollers with 1 s long-polls, retries of 1 s doubling to at most 4 s, and no periodic
/// reconciler.
pub fn consolidation_config(
    scope: &Scope,
    queues: &Scope,
    auth: AuthConfig,
) -> consolidation::Config {
    consolidation::Config {
        listen: any_port(),
        database_url: scope.database_url.clone(),
        database_max_connections: 10,
        redis_url: scope.redis_url.clone(),
        redis_prefix: scope.redis_prefix.clone(),
        cache_ttl: Duration::from_secs(600),
        cache_stale_if_error: Duration::from_secs(600),
        redis: Default::default(),
        queue_url: queues.queues.url.clone(),
        dlq_url: queues.queues.dlq_url.clone(),
        sqs: sqs(queues),
        auth,
        consumer: consolidation::config::ConsumerConfig {
            concurrency: 2,
            wait_seconds: 1,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(4),
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

/// The SQS endpoint and region of `scope`'s stack.
pub fn sqs(scope: &Scope) -> SqsSettings {
    SqsSettings {
        endpoint_url: Some(scope.sqs_endpoint.clone()),
        region: scope.aws_region.clone(),
    }
}

fn any_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}
