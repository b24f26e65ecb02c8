//! The sampler: what the soak watches, every few seconds — each service process's memory, file
//! descriptors, sockets and PostgreSQL connections; every table's rows and bytes in both
//! databases; the backlogs (unpublished outbox rows, the queue's depth); Redis's memory, keys
//! and clients.

use std::time::{Duration, Instant};

use anyhow::Context;
use harness::cluster::Cluster;
use sqlx::PgPool;

use super::series::{Samples, Unit, human};

/// A service of the soak: its one replica in the cluster, and its database.
pub struct Service {
    pub label: &'static str,
    pub database: String,
}

impl Service {
    /// The process of its replica; fails once it has exited or restarted (a soak that crashed
    /// a service failed, whatever the series show).
    pub fn pid(&self, cluster: &Cluster) -> anyhow::Result<i32> {
        let name = format!("{}-1", self.label);
        let replica = cluster
            .ps()
            .into_iter()
            .find(|r| r.name == name)
            .with_context(|| format!("no replica {name}"))?;
        match replica.pid.filter(|_| replica.restarts == 0) {
            Some(pid) => Ok(pid),
            None => anyhow::bail!(
                "the {} exited ({}): {}",
                self.label,
                replica
                    .last_exit
                    .map_or_else(|| "no exit status".to_string(), |e| e.status),
                harness::process::tail(std::path::Path::new(&replica.log_file), 30)
            ),
        }
    }
}

/// RSS in bytes, open file descriptors, and how many of them are sockets.
pub fn process_figures(pid: i32) -> anyhow::Result<(f64, f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")?;
    let (mut fds, mut sockets) = (0.0, 0.0);
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        fds += 1.0;
        if std::fs::read_link(entry.path())
            .is_ok_and(|link| link.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1.0;
        }
    }
    Ok((rss_kib * 1024.0, fds, sockets))
}

/// Row count and total size (heap, indexes, TOAST) of every table of a database.
pub async fn table_figures(pool: &PgPool) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let tables: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
         WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut figures = Vec::with_capacity(tables.len());
    for (table, bytes) in tables {
        // Names come from the catalogue; quote_ident-style quoting keeps them names.
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{}\"",
            table.replace('"', "\"\"")
        ))
        .fetch_one(pool)
        .await?;
        figures.push((table, rows, bytes));
    }
    Ok(figures)
}

/// A field of Redis's `INFO`.
pub fn info_field(info: &str, field: &str) -> Option<f64> {
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
}

/// What the sampler reads from.
pub struct Sampler<'a> {
    pub cluster: &'a Cluster,
    pub ledger: Service,
    pub consolidation: Service,
    pub ledger_pool: PgPool,
    pub consolidation_pool: PgPool,
    pub redis: redis::aio::MultiplexedConnection,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub started: Instant,
}

/// The sampler's own connections are left out of the services' counts by this name.
pub const SAMPLER: &str = "soak-sampler";

impl Sampler<'_> {
    pub async fn sample(&mut self, samples: &mut Samples) -> anyhow::Result<()> {
        let at = self.started.elapsed().as_secs_f64();
        for service in [&self.ledger, &self.consolidation] {
            let (rss, fds, sockets) = process_figures(service.pid(self.cluster)?)?;
            samples.push(&format!("{} RSS", service.label), Unit::Bytes, at, rss);
            samples.push(&format!("{} open fds", service.label), Unit::Count, at, fds);
            samples.push(
                &format!("{} sockets", service.label),
                Unit::Count,
                at,
                sockets,
            );
        }
        let connections: Vec<(String, i64)> = sqlx::query_as(
            "SELECT datname::text, count(*) FROM pg_stat_activity \
             WHERE datname = ANY($1) AND application_name <> $2 GROUP BY 1",
        )
        .bind(vec![
            self.ledger.database.clone(),
            self.consolidation.database.clone(),
        ])
        .bind(SAMPLER)
        .fetch_all(&self.ledger_pool)
        .await?;
        for service in [&self.ledger, &self.consolidation] {
            let count = connections
                .iter()
                .find(|(db, _)| *db == service.database)
                .map_or(0, |(_, n)| *n);
            samples.push(
                &format!("{} PG connections", service.label),
                Unit::Count,
                at,
                count as f64,
            );
        }
        for (db, pool) in [
            ("ledger", &self.ledger_pool),
            ("consolidation", &self.consolidation_pool),
        ] {
            for (table, rows, bytes) in table_figures(pool).await? {
                let name = format!("{db}.{table}");
                if table == "entries" {
                    samples.push_books(&format!("{name} rows"), Unit::Rows, at, rows as f64);
                    samples.push_books(&format!("{name} bytes"), Unit::Bytes, at, bytes as f64);
                    if rows > 0 {
                        samples.push(
                            &format!("{name} bytes per row"),
                            Unit::Bytes,
                            at,
                            bytes as f64 / rows as f64,
                        );
                    }
                } else {
                    samples.push(&format!("{name} rows"), Unit::Rows, at, rows as f64);
                    samples.push(&format!("{name} bytes"), Unit::Bytes, at, bytes as f64);
                }
            }
        }
        let backlog: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.ledger_pool)
                .await?;
        samples.push(
            "outbox backlog (unpublished)",
            Unit::Backlog,
            at,
            backlog as f64,
        );
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(
                aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            )
            .send()
            .await
            .context("reading the queue's depth")?
            .attributes
            .unwrap_or_default();
        let depth: f64 = attributes
            .values()
            .filter_map(|v| v.parse::<f64>().ok())
            .sum();
        samples.push("SQS queue depth", Unit::Backlog, at, depth);
        let memory: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.redis)
            .await?;
        let clients: String = redis::cmd("INFO")
            .arg("clients")
            .query_async(&mut self.redis)
            .await?;
        let keys: i64 = redis::cmd("DBSIZE").query_async(&mut self.redis).await?;
        samples.push(
            "redis used_memory",
            Unit::Bytes,
            at,
            info_field(&memory, "used_memory").unwrap_or(f64::NAN),
        );
        samples.push("redis keys", Unit::Count, at, keys as f64);
        samples.push(
            "redis clients",
            Unit::Count,
            at,
            info_field(&clients, "connected_clients").unwrap_or(f64::NAN),
        );
        Ok(())
    }
}

pub async fn sampler_pool(url: &str) -> anyhow::Result<PgPool> {
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options.application_name(SAMPLER))
        .await?)
}

pub fn print_progress(samples: &Samples) {
    let pick = |name: &str| {
        samples
            .series
            .get(name)
            .and_then(|s| s.points.last().map(|(t, v)| (*t, human(*v, s.unit))))
    };
    let at = pick("ledger RSS").map_or(0.0, |(t, _)| t);
    let show = [
        "ledger RSS",
        "consolidation RSS",
        "ledger.idempotency_keys rows",
        "ledger.outbox rows",
        "consolidation.processed_events rows",
        "redis used_memory",
        "outbox backlog (unpublished)",
    ]
    .iter()
    .filter_map(|name| pick(name).map(|(_, v)| format!("{name} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    eprintln!("soak: {at:>5.0} s  {show}");
}
