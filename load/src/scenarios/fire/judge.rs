//! The judge of `sla-under-fire`: the samples cut into rows (whole pass, each fault window,
//! outside the windows) and the figures with their bounds.

use std::collections::BTreeMap;

use serde::Serialize;

use super::books::Books;
use super::sampler::{Pass, ReadSample};
use crate::kit::report::Figure;
use crate::kit::stats::{back_filled, percentile};
use crate::kit::writer::WriteSummary;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub rate: usize,
    pub window: String,
    /// Seconds covered.
    pub seconds: f64,
    pub reads: usize,
    pub read_failures: usize,
    pub read_failure_pct: f64,
    /// Reads answered stale while PostgreSQL was unavailable.
    pub stale_reads: usize,
    /// Failed reads by status (0: no answer).
    pub failure_statuses: BTreeMap<u16, usize>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p99_co_ms: f64,
    pub writes: WriteSummary,
    pub lag_entries: usize,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
}

/// Which samples (by time) a row covers.
pub type Selector<'a> = Box<dyn Fn(f64) -> bool + 'a>;

pub const WHOLE: &str = "whole pass";
pub const OUTSIDE: &str = "outside fault windows";

pub fn rows(pass: &Pass, lags: &[(f64, f64)]) -> Vec<Row> {
    let interval_ms = pass.users as f64 / pass.rate as f64 * 1000.0;
    let in_pass = |at: f64| (pass.start..pass.end).contains(&at);
    let outside = |at: f64| in_pass(at) && !pass.windows.iter().any(|w| w.contains(at));
    let mut selections: Vec<(String, f64, Selector<'_>)> =
        vec![(WHOLE.to_string(), pass.end - pass.start, Box::new(in_pass))];
    for window in &pass.windows {
        selections.push((
            window.fault.label().to_string(),
            window.end - window.start,
            Box::new(move |at| window.contains(at)),
        ));
    }
    let windowed: f64 = pass.windows.iter().map(|w| w.end - w.start).sum();
    selections.push((
        OUTSIDE.to_string(),
        pass.end - pass.start - windowed,
        Box::new(outside),
    ));
    selections
        .into_iter()
        .map(|(window, seconds, select)| {
            let reads: Vec<&ReadSample> = pass.reads.iter().filter(|r| select(r.at)).collect();
            let mut latencies: Vec<f64> = reads.iter().map(|r| r.latency_ms).collect();
            latencies.sort_by(f64::total_cmp);
            let co = back_filled(&latencies, interval_ms);
            let mut failure_statuses = BTreeMap::new();
            for r in reads.iter().filter(|r| !r.ok) {
                *failure_statuses.entry(r.status).or_insert(0) += 1;
            }
            let read_failures = failure_statuses.values().sum();
            let mut lag: Vec<f64> = lags
                .iter()
                .filter(|(at, _)| select(*at))
                .map(|(_, l)| *l)
                .collect();
            lag.sort_by(f64::total_cmp);
            Row {
                rate: pass.rate,
                window,
                seconds,
                reads: reads.len(),
                read_failures,
                read_failure_pct: if reads.is_empty() {
                    0.0
                } else {
                    read_failures as f64 * 100.0 / reads.len() as f64
                },
                stale_reads: reads.iter().filter(|r| r.stale).count(),
                failure_statuses,
                p50_ms: percentile(&latencies, 0.50),
                p95_ms: percentile(&latencies, 0.95),
                p99_ms: percentile(&latencies, 0.99),
                p99_co_ms: percentile(&co, 0.99),
                writes: WriteSummary::of(pass.writes.iter().filter(|w| select(w.at))),
                lag_entries: lag.len(),
                lag_p50_ms: percentile(&lag, 0.50),
                lag_p99_ms: percentile(&lag, 0.99),
            }
        })
        .collect()
}

pub fn figures(passes: &[Pass], rows: &[Row], books: &Books, write_rate: usize) -> Vec<Figure> {
    let mut figures = Vec::new();
    let name = "sla-under-fire";
    for pass in passes {
        let rate = pass.rate;
        let row = |window: &str| rows.iter().find(|r| r.rate == rate && r.window == window);
        if let Some(whole) = row(WHOLE) {
            figures.push(
                Figure::new(
                    name,
                    &format!("{rate}/s: failed reads (goal 0 %)"),
                    whole.read_failure_pct,
                    "%",
                )
                .bound(whole.read_failures == 0 && whole.reads > 0),
            );
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: reads answered stale (ADR 0015)"),
                whole.stale_reads as f64,
                "reads",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: read p99, whole pass"),
                whole.p99_ms,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: read p99 CO back-filled, whole"),
                whole.p99_co_ms,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: goose's own CO p99 (busiest kind)"),
                pass.goose_p99_co,
                "ms",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: writes at {}/s failed", write_rate),
                whole.writes.failed as f64,
                "POSTs",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: write retries"),
                whole.writes.retries as f64,
                "retries",
            ));
            figures.push(Figure::new(
                name,
                &format!("{rate}/s: e2e lag p99, whole pass"),
                whole.lag_p99_ms,
                "ms",
            ));
        }
        if let Some(outside) = row(OUTSIDE) {
            figures.push(
                Figure::new(
                    name,
                    &format!("{rate}/s: read p99 outside faults (goal 50 ms)"),
                    outside.p99_ms,
                    "ms",
                )
                .bound(outside.p99_ms <= 50.0),
            );
        }
    }
    figures.push(
        Figure::new(
            name,
            "invariant: merchant-days differing (goal 0)",
            books.differing_count as f64,
            "",
        )
        .bound(books.differing_count == 0),
    );
    figures.push(
        Figure::new(
            name,
            "invariant: accepted writes lost (goal 0)",
            books.accepted_missing as f64,
            "",
        )
        .bound(books.accepted_missing == 0 && books.duplicates == 0),
    );
    figures
}
