//! Retention of the dedup records: `processed_events` rows older than
//! `PROCESSED_EVENTS_RETENTION_SECONDS` are deleted in small batches, off the hot path, by the
//! shared pruner (`cashflow_platform::retention`). The configuration check
//! (`config::check_retention`) guarantees they outlive every replay and every copy of an event
//! SQS may still deliver. `daily_balances` is never pruned: it is the books.

use std::time::Duration;

use cashflow_platform::retention::Rule;
use sqlx::PgPool;

/// The rule for `processed_events` (served by the `processed_events_by_age` index).
pub fn rule(window: Duration) -> Rule {
    Rule {
        table: "processed_events",
        expired: "processed_at < now() - make_interval(secs => $1)",
        window,
    }
}

/// Deletes one batch of expired dedup records; returns how many.
pub async fn prune_once(pool: &PgPool, window: Duration) -> Result<u64, sqlx::Error> {
    cashflow_platform::retention::prune_once(pool, &rule(window)).await
}
