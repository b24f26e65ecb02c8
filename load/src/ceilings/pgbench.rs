//! pgbench running the ledger's own insert: the write rate PostgreSQL allows on this machine now,
//! the ceiling of `ledger-writes`.

use anyhow::Context;

use crate::kit::report::Figure;

/// The ledger's insert (entry + outbox row in one statement), as pgbench runs it. A space
/// follows every colon of the JSON: pgbench would read `:null` as a variable.
const PGBENCH_SCRIPT: &str = r#"\set amount random(1, 1000000)
WITH entry AS (
  INSERT INTO entries (id, merchant_id, kind, amount_minor, currency, business_date,
    description, category, reverses_entry_id, recorded_at)
  VALUES (gen_random_uuid(), 'pgbench', 'credit', :amount, 'BRL', CURRENT_DATE, 'pgbench', NULL, NULL, now())
  RETURNING id, seq, merchant_id, kind, amount_minor, currency, business_date,
    description, category, reverses_entry_id, recorded_at),
event AS (
  INSERT INTO outbox (event_id, event_type, payload, traceparent)
  VALUES (gen_random_uuid(), 'entry.recorded.v1',
  '{"event_type": "entry.recorded.v1", "event_id": "018f0000-0000-7000-8000-000000000000", "entry_id": "018f0000-0000-7000-8000-000000000001", "merchant_id": "pgbench", "kind": "credit", "amount_minor": 100, "currency": "BRL", "business_date": "2026-11-24", "recorded_at": "2026-11-24T13:05:10.123Z", "reverses_entry_id": null}',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'))
SELECT * FROM entry;
"#;

/// pgbench: transactions per second of the ledger's statement with `clients` clients.
pub async fn pgbench(database_url: &str, clients: usize, seconds: usize) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("load-pgbench-{}.sql", std::process::id()));
    std::fs::write(&script, PGBENCH_SCRIPT)?;
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(database_url)
        .output()
        .await
        .context("running pgbench (apt-get install -y postgresql-client-15)")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .find(|l| l.starts_with("tps ="))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{text}"))
}

/// pgbench with 16 clients on the database `database_url` (the ledger's), pushed to `figures`.
pub async fn measure(
    database_url: &str,
    seconds: usize,
    figures: &mut Vec<Figure>,
) -> anyhow::Result<f64> {
    let rate = pgbench(database_url, 16, seconds).await?;
    figures.push(Figure::new(
        "ceilings",
        "pgbench, ledger statement, 16 clients",
        rate,
        "tx/s",
    ));
    Ok(rate)
}
