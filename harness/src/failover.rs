//! Managed-store failovers, which a kill or a network fault does not reproduce (issue 30):
//!
//! - [`postgres_read_only`]: what an Aurora writer being demoted looks like to its clients. Its
//!   sessions are terminated, and new ones are read-only, so writes fail with SQLSTATE 25006
//!   (`cannot execute INSERT in a read-only transaction`). Done with
//!   `ALTER DATABASE … SET default_transaction_read_only` and `pg_terminate_backend`, on one
//!   database only, so tests sharing the server never see it.
//! - recovery mode (SQLSTATE 57P03) is a network fault, [`crate::NetFault::PgRecovering`]: the
//!   proxy answers the startup as a recovering server does.
//! - [`redis_read_only`]: an ElastiCache primary being demoted answers every write with
//!   `READONLY You can't write against a read only replica.` Done with `REPLICAOF` towards an
//!   address where nothing listens (the server keeps its data and refuses writes), and
//!   `REPLICAOF NO ONE` to promote it back. This is server-wide: only on a stack of the test's
//!   own (or a `harness up` of one's own), never the shared one.
//!
//! Both work on every backend: they speak the dependencies' own protocols.

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;

/// Makes the database of `database_url` read-only for every new session (or writable again),
/// then terminates its sessions but this one, as a failover does: clients reconnect and find
/// the new state.
pub async fn postgres_read_only(database_url: &str, read_only: bool) -> anyhow::Result<()> {
    // One connection (a pool of one: its executor's future is Send for the control server's
    // tasks, which a `&mut PgConnection`'s is not), so the session setting below holds.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .context("connecting to PostgreSQL to fail it over")?;
    // This session may be one of the read-only ones (healing): it writes the catalog.
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&pool)
        .await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&pool)
        .await?;
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    let statement = if read_only {
        format!("ALTER DATABASE {quoted} SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE {quoted} RESET default_transaction_read_only")
    };
    sqlx::raw_sql(&statement)
        .execute(&pool)
        .await
        .with_context(|| statement.clone())?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&pool)
    .await
    .context("terminating the database's sessions")?;
    pool.close().await;
    tracing::info!(%database, read_only, "PostgreSQL failover");
    Ok(())
}

/// Demotes the Redis of `redis_url` to a replica of an address where nothing listens (writes
/// answer `READONLY`), or promotes it back (`REPLICAOF NO ONE`).
pub async fn redis_read_only(redis_url: &str, read_only: bool) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url).context("Redis URL")?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis to fail it over")?;
    let mut command = redis::cmd("REPLICAOF");
    if read_only {
        // Port 1 (tcpmux) is never served: the replica keeps trying, and keeps its data.
        command.arg("127.0.0.1").arg(1);
    } else {
        command.arg("NO").arg("ONE");
    }
    let _: String = command
        .query_async(&mut connection)
        .await
        .context("REPLICAOF")?;
    tracing::info!(read_only, "Redis failover");
    Ok(())
}
