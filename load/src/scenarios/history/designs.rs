//! The two opening-balance reads, both run here against PostgreSQL alone: today's (ADR 0010,
//! the period totals, the consolidation's own statement) and the old one (ADR 3, the sum of
//! every earlier day, superseded; this scenario's own SQL, kept only to measure against).
//! `EXPLAIN (ANALYZE, BUFFERS)` of each statement of a read, and whole reads of one day timed
//! with each design, checking that both find the same opening balance.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use consolidation::balances;
use sqlx::Row;
use sqlx::postgres::{PgArguments, Postgres};

use super::seed::{MERCHANTS, merchant};
use crate::kit::report::Figure;

/// ADR 3's opening balance of day `$2` for merchant `$1`: (balance, as_of, currency). Work that
/// grows with the merchant's history.
pub const OPENING_FROM_EVERY_DAY: &str = "SELECT COALESCE(sum(credits_minor - debits_minor) \
       FILTER (WHERE business_date < $2), 0)::int8, \
     max(last_applied_at) FILTER (WHERE business_date < $2), min(currency)::text \
     FROM daily_balances WHERE merchant_id = $1";

/// An opening-balance read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Design {
    /// ADR 3's, superseded.
    Old,
    /// ADR 0010's, the consolidation's.
    New,
}

impl Design {
    pub const BOTH: [Self; 2] = [Self::Old, Self::New];

    pub fn label(self) -> &'static str {
        match self {
            Self::Old => "old",
            Self::New => "new",
        }
    }

    fn opening_sql(self) -> &'static str {
        match self {
            Self::Old => OPENING_FROM_EVERY_DAY,
            Self::New => balances::OPENING_FROM_PERIOD_TOTALS,
        }
    }
}

/// A read's statements: the opening balance by a design, or the day rows.
#[derive(Debug, Clone, Copy)]
enum Part {
    Opening(Design),
    DayRows,
}

/// `sql` (one of `part`'s statements, perhaps under EXPLAIN) with its parameters for
/// `merchant` from `from` to `to`.
fn statement<'q>(
    sql: &'q str,
    merchant: &str,
    part: Part,
    from: time::Date,
    to: time::Date,
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    let query = sqlx::query(sql).bind(merchant.to_string()).bind(from);
    match part {
        Part::Opening(Design::New) => query
            .bind(balances::year_start(from))
            .bind(balances::month_start(from)),
        Part::Opening(Design::Old) => query,
        Part::DayRows => query.bind(to),
    }
}

fn sql(part: Part) -> &'static str {
    match part {
        Part::Opening(design) => design.opening_sql(),
        Part::DayRows => balances::DAY_ROWS,
    }
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of both statements of a balance read (one day, 3 days ago) and
/// a report read (the last 7 days), for each design and length, after a warm-up execution. The
/// text plans go to `out`; the figures are the shared buffers each read touches (hit + read,
/// the planner's work, steady from run to run) and the median execution time of 5.
pub async fn explain_reads(
    pool: &sqlx::PgPool,
    lengths: &[i64],
    today: time::Date,
    out: &mut String,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for (what, from, to) in [
        (
            "balance",
            today - time::Duration::days(3),
            today - time::Duration::days(3),
        ),
        ("report", today - time::Duration::days(6), today),
    ] {
        for &length in lengths {
            let m = merchant(length, 0);
            for design in Design::BOTH {
                let (mut buffers, mut millis) = (0.0, 0.0);
                for (label, part) in [
                    ("opening", Part::Opening(design)),
                    ("day rows", Part::DayRows),
                ] {
                    let plain = sql(part);
                    statement(plain, &m, part, from, to).fetch_all(pool).await?;
                    let text = format!("EXPLAIN (ANALYZE, BUFFERS) {plain}");
                    let lines = statement(&text, &m, part, from, to).fetch_all(pool).await?;
                    let design = design.label();
                    let _ = writeln!(
                        out,
                        "== {what} {from}..{to}, {length} days, {design} read: {label}"
                    );
                    for line in lines {
                        let _ = writeln!(out, "{}", line.try_get::<String, _>(0)?);
                    }
                    let _ = writeln!(out);
                    let json = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {plain}");
                    let mut times = Vec::new();
                    let mut touched = 0.0;
                    for _ in 0..5 {
                        let row = statement(&json, &m, part, from, to).fetch_one(pool).await?;
                        let plan: serde_json::Value = row.try_get(0)?;
                        let top = &plan[0];
                        touched = top["Plan"]["Shared Hit Blocks"].as_f64().unwrap_or(0.0)
                            + top["Plan"]["Shared Read Blocks"].as_f64().unwrap_or(0.0);
                        times.push(top["Execution Time"].as_f64().unwrap_or(f64::NAN));
                    }
                    times.sort_by(f64::total_cmp);
                    buffers += touched;
                    millis += times[times.len() / 2];
                }
                let name = format!("{what}, {length} d, {} read", design.label());
                figures.push(Figure::new(
                    "history-plan",
                    &format!("{name}: buffers"),
                    buffers,
                    "blocks",
                ));
                figures.push(Figure::new(
                    "history-plan",
                    &format!("{name}: execution"),
                    millis,
                    "ms",
                ));
            }
        }
    }
    Ok(figures)
}

/// One whole read of `day` (both statements) by `design`; returns the opening balance.
async fn read_day(
    pool: &sqlx::PgPool,
    merchant: &str,
    day: time::Date,
    design: Design,
) -> anyhow::Result<i64> {
    let part = Part::Opening(design);
    let opening = statement(sql(part), merchant, part, day, day)
        .fetch_one(pool)
        .await?;
    statement(balances::DAY_ROWS, merchant, Part::DayRows, day, day)
        .fetch_all(pool)
        .await?;
    Ok(opening.try_get(0)?)
}

/// Times whole reads of one day with each design directly against PostgreSQL, 300 times each per
/// length, alternating: p50 and p99 in ms. Fails when the two designs disagree on an opening
/// balance.
pub async fn time_reads(
    pool: &sqlx::PgPool,
    lengths: &[i64],
    today: time::Date,
) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &length in lengths {
        let mut samples: HashMap<Design, Vec<Duration>> = HashMap::new();
        for i in 0..300 {
            let m = merchant(length, i % MERCHANTS);
            let mut openings = Vec::new();
            for design in Design::BOTH {
                let started = Instant::now();
                openings.push(read_day(pool, &m, today, design).await?);
                samples.entry(design).or_default().push(started.elapsed());
            }
            anyhow::ensure!(
                openings[0] == openings[1],
                "the old and the new read disagree on {m}'s opening balance of {today}: {openings:?}"
            );
        }
        for design in Design::BOTH {
            let mut times = samples.remove(&design).unwrap_or_default();
            times.sort();
            let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
            for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
                figures.push(Figure::new(
                    "history-sql",
                    &format!("{} read, one day, {length} d: {label}", design.label()),
                    at(q).as_secs_f64() * 1000.0,
                    "ms",
                ));
            }
        }
    }
    Ok(figures)
}
