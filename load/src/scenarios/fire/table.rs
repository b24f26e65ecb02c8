//! The `sla-under-fire` table: one row per pass and window, in Markdown, and the invariant.

use super::books::Books;
use super::judge::Row;

fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

pub fn markdown(rows: &[Row], books: &Books, write_rate: usize, merchants: usize) -> String {
    let mut out = format!(
        "sla-under-fire: 2 replicas of each service behind nginx; reads (balances 4 : reports 1) \
         at each pass's rate, writes at {}/s over {} merchants, all through the gateway. Latencies \
         in ms; CO = back-filled for coordinated omission; stale = answered with the last \
         invalidated answer while PostgreSQL was unavailable (ADR 0015); lag = ledger commit → balance applied.\n\n",
        write_rate, merchants
    );
    out.push_str(
        "| reads/s | window | s | reads | failed | stale | p50 | p95 | p99 | p99 CO | writes | failed | retries (POSTs retried) | write p99 | lag p50 | lag p99 |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let failed = if r.read_failures == 0 {
            "0".to_string()
        } else {
            let statuses: Vec<String> = r
                .failure_statuses
                .iter()
                .map(|(s, n)| {
                    if *s == 0 {
                        format!("{n}× no answer")
                    } else {
                        format!("{n}× {s}")
                    }
                })
                .collect();
            format!(
                "{} ({:.2} %: {})",
                r.read_failures,
                r.read_failure_pct,
                statuses.join(", ")
            )
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            r.rate,
            r.window,
            r.seconds,
            r.reads,
            failed,
            r.stale_reads,
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.p99_ms),
            ms(r.p99_co_ms),
            r.writes.writes,
            r.writes.failed,
            r.writes.retries,
            r.writes.retried,
            ms(r.writes.p99_ms),
            ms(r.lag_p50_ms),
            ms(r.lag_p99_ms),
        ));
    }
    out.push_str(&format!(
        "\nInvariant after the drain ({:.0} s), through the gateway: {} merchant-days compared, {} \
         differ; {} accepted writes missing from the ledger; {} entries listed twice; {} entries \
         recorded without a 201 (client gave up). {}\n",
        books.drained_after_s,
        books.merchant_days,
        books.differing_count,
        books.accepted_missing,
        books.duplicates,
        books.recorded_without_201,
        if books.holds() { "HOLDS" } else { "BROKEN" }
    ));
    for d in &books.differing {
        out.push_str(&format!("  differs: {d}\n"));
    }
    out
}
