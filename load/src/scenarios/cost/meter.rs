//! The meter: each part's CPU time read before and after a phase ([`super::platform::Platform::metered`]), and the figures
//! of a phase in µs of CPU per request ([`phase_figures`]).

use std::time::Duration;

use super::SCENARIO;
use crate::kit::goose::Run;
use crate::kit::report::Figure;

/// The CPU-per-request unit of every figure.
pub const UNIT: &str = "µs CPU/req";

/// A process (or process tree) whose CPU time is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Ledger,
    LedgerPostgres,
    Emulator,
    Consolidation,
    ConsolidationPostgres,
    Redis,
    /// This process's main runtime: goose.
    Goose,
}

/// Each part's CPU time so far, in the order of [`Part::ALL`].
pub type Readings = [Option<Duration>; Part::ALL.len()];

impl Part {
    pub const ALL: [Part; 7] = [
        Part::Ledger,
        Part::LedgerPostgres,
        Part::Emulator,
        Part::Consolidation,
        Part::ConsolidationPostgres,
        Part::Redis,
        Part::Goose,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Part::Ledger => "ledger",
            Part::LedgerPostgres => "ledger's PostgreSQL",
            Part::Emulator => "SQS emulator",
            Part::Consolidation => "consolidation",
            Part::ConsolidationPostgres => "consolidation's PostgreSQL",
            Part::Redis => "Redis",
            Part::Goose => "goose (load generator)",
        }
    }

    /// The service side: everything but the generator.
    fn serves(self) -> bool {
        self != Part::Goose
    }
}

/// CPU used by each part over a phase.
pub struct Used {
    pub seconds: f64,
    parts: Readings,
}

impl Used {
    /// What each part used between two readings `seconds` apart.
    pub fn between(before: Readings, after: Readings, seconds: f64) -> Self {
        let mut parts: Readings = [None; Part::ALL.len()];
        for (used, (b, a)) in parts.iter_mut().zip(before.into_iter().zip(after)) {
            *used = b.zip(a).map(|(b, a)| a.saturating_sub(b));
        }
        Self { seconds, parts }
    }

    pub fn of(&self, part: Part) -> Option<Duration> {
        self.parts[Part::ALL.iter().position(|p| *p == part)?]
    }

    /// Microseconds of CPU per request of `part`.
    pub fn per_request(&self, part: Part, requests: usize) -> Option<f64> {
        Some(self.of(part)?.as_secs_f64() * 1e6 / requests.max(1) as f64)
    }

    /// The platform's microseconds per request: every part of `parts` but goose and the SQS
    /// emulator (in AWS the queue does not run on the platform's machines).
    pub fn platform_per_request(&self, requests: usize, parts: &[Part]) -> f64 {
        self.platform_micros(parts) / requests.max(1) as f64
    }

    /// The platform's microseconds in all over the phase (see [`Used::platform_per_request`]).
    pub fn platform_micros(&self, parts: &[Part]) -> f64 {
        parts
            .iter()
            .filter(|p| p.serves() && **p != Part::Emulator)
            .filter_map(|p| self.per_request(*p, 1))
            .sum()
    }

    /// The service side's microseconds per request: every part of `parts` but goose.
    pub fn served_per_request(&self, requests: usize, parts: &[Part]) -> f64 {
        parts
            .iter()
            .filter(|p| p.serves())
            .filter_map(|p| self.per_request(*p, requests))
            .sum()
    }
}

/// Each part's background CPU over an idle phase, in % of a core.
pub fn idle_figures(idle: &Used) -> Vec<Figure> {
    Part::ALL
        .into_iter()
        .filter_map(|part| {
            Some(Figure::new(
                SCENARIO,
                &format!("idle: {}", part.label()),
                idle.of(part)?.as_secs_f64() / idle.seconds * 100.0,
                "% of a core",
            ))
        })
        .collect()
}

/// Figures of one phase: the rate, each part's CPU per request, and the service side's sum.
pub fn phase_figures(phase: &str, used: &Used, run: &Run, parts: &[Part]) -> Vec<Figure> {
    let mut figures = vec![Figure::new(
        SCENARIO,
        &format!("{phase}: requests at a fixed rate"),
        run.rate,
        "req/s",
    )];
    for &part in parts {
        if let Some(us) = used.per_request(part, run.requests) {
            figures.push(Figure::new(
                SCENARIO,
                &format!("{phase}: {}", part.label()),
                us,
                UNIT,
            ));
        }
    }
    if parts.iter().any(|p| p.serves()) {
        figures.push(Figure::new(
            SCENARIO,
            &format!("{phase}: service side in all"),
            used.served_per_request(run.requests, parts),
            UNIT,
        ));
    }
    if run.failures > 0 {
        figures.push(Figure::new(
            SCENARIO,
            &format!("{phase}: failed requests"),
            run.failures as f64,
            "",
        ));
    }
    figures
}
