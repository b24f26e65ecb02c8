//! Retention: rows that outlived their window are deleted in small batches, off the hot path.
//!
//! Each [`Rule`] names a table and the SQL condition that makes a row expired. One statement
//! deletes at most [`BATCH`] rows, chosen with `FOR UPDATE SKIP LOCKED`: a row that live traffic
//! holds is skipped (and pruned on a later pass), so pruning never makes a request wait on a
//! lock, and each statement is its own short transaction. The rows are addressed by `ctid`
//! through `= ANY(ARRAY(...))`, which PostgreSQL executes as a TID scan (an `IN (SELECT ...)`
//! may be planned as a join over the whole table).
//!
//! The task exports `<service>_retention_pruned_rows_total{table}` and, sampled after every
//! pass, `<service>_table_bytes{table}` (heap, indexes and TOAST) and
//! `<service>_table_rows_estimate{table}` (the planner's estimate: a `count(*)` would itself be
//! a scan that grows with the table).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement: a few milliseconds of work, never a long transaction.
pub const BATCH: i64 = 1000;

/// What expires in one table.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The table (a trusted constant, never user input).
    pub table: &'static str,
    /// The SQL condition of an expired row, where `$1` is the window in seconds
    /// (`double precision`), e.g. `created_at < now() - make_interval(secs => $1)`. An index
    /// should serve it.
    pub expired: &'static str,
    /// How long a row is kept.
    pub window: Duration,
}

impl Rule {
    fn delete_statement(&self) -> String {
        format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY( \
               SELECT ctid FROM {table} WHERE {expired} LIMIT $2 FOR UPDATE SKIP LOCKED))",
            table = self.table,
            expired = self.expired
        )
    }
}

/// The label of the retention metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    /// The table's name.
    pub table: String,
}

/// Rows pruned and table sizes, by table.
#[derive(Debug, Clone, Default)]
pub struct RetentionMetrics {
    /// `retention_pruned_rows{table}`.
    pub pruned: Family<TableLabel, Counter>,
    /// `table_bytes{table}`.
    pub bytes: Family<TableLabel, Gauge>,
    /// `table_rows_estimate{table}`.
    pub rows: Family<TableLabel, Gauge>,
}

impl RetentionMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "retention_pruned_rows",
            "Rows deleted because their retention window elapsed",
            metrics.pruned.clone(),
        );
        registry.register(
            "table_bytes",
            "Size of a table with its indexes and TOAST",
            metrics.bytes.clone(),
        );
        registry.register(
            "table_rows_estimate",
            "Rows in a table, as estimated by PostgreSQL's statistics",
            metrics.rows.clone(),
        );
        metrics
    }

    fn label(table: &str) -> TableLabel {
        TableLabel {
            table: table.to_string(),
        }
    }
}

/// Deletes one batch of `rule`'s expired rows; returns how many.
pub async fn prune_once(pool: &PgPool, rule: &Rule) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(&rule.delete_statement())
        .bind(rule.window.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected())
}

/// Samples the size gauges of `tables`.
pub async fn sample_sizes(
    pool: &PgPool,
    tables: &[&str],
    metrics: &RetentionMetrics,
) -> Result<(), sqlx::Error> {
    let names: Vec<String> = tables.iter().map(|t| (*t).to_string()).collect();
    let sizes: Vec<(String, i64, f32)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid), c.reltuples \
         FROM pg_class c WHERE c.relkind = 'r' AND c.relname = ANY($1) \
           AND c.relnamespace = to_regnamespace(current_schema())::oid",
    )
    .bind(&names)
    .fetch_all(pool)
    .await?;
    for (table, bytes, rows) in sizes {
        let label = RetentionMetrics::label(&table);
        metrics.bytes.get_or_create(&label).set(bytes);
        // -1 means "never analysed".
        metrics.rows.get_or_create(&label).set(rows.max(0.0) as i64);
    }
    Ok(())
}

/// Prunes every rule until `shutdown`: batch after batch while a table has expired rows (with a
/// short pause, so a backlog is worked off without monopolising a connection), then a pass every
/// `idle` interval.
pub async fn run(
    pool: PgPool,
    rules: Vec<Rule>,
    idle: Duration,
    metrics: RetentionMetrics,
    shutdown: CancellationToken,
) {
    let tables: Vec<&str> = rules.iter().map(|r| r.table).collect();
    while !shutdown.is_cancelled() {
        let mut more = false;
        for rule in &rules {
            match prune_once(&pool, rule).await {
                Ok(n) => {
                    metrics
                        .pruned
                        .get_or_create(&RetentionMetrics::label(rule.table))
                        .inc_by(n);
                    more |= n == BATCH as u64;
                }
                Err(e) => tracing::warn!(table = rule.table, error = %e, "pruning failed"),
            }
        }
        if let Err(e) = sample_sizes(&pool, &tables, &metrics).await {
            tracing::debug!(error = %e, "sampling table sizes failed");
        }
        let pause = if more {
            Duration::from_millis(100)
        } else {
            idle
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => {}
        }
    }
}
