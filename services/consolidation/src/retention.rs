//! Retention of the dedup records: `processed_events` rows older than
//! `PROCESSED_EVENTS_RETENTION_DAYS` are deleted in small batches, off the hot path. The
//! configuration check (`config::check_retention`) guarantees they outlive every replay.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement: short transactions that never hold the consumer up.
pub const BATCH: i64 = 1000;

/// Deletes one batch of expired dedup records; returns how many.
pub async fn prune_once(pool: &PgPool, retention_days: u16) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM processed_events WHERE event_id IN ( \
           SELECT event_id FROM processed_events \
           WHERE processed_at < now() - make_interval(days => $1) LIMIT $2)",
    )
    .bind(i32::from(retention_days))
    .bind(BATCH)
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Prunes until `shutdown`: batch after batch while there is work, then once a minute.
pub async fn run(pool: PgPool, retention_days: u16, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let pause = match prune_once(&pool, retention_days).await {
            Ok(n) if n == BATCH as u64 => Duration::from_millis(100),
            Ok(_) => Duration::from_secs(60),
            Err(e) => {
                tracing::warn!(error = %e, "pruning dedup records failed");
                Duration::from_secs(60)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => {}
        }
    }
}
