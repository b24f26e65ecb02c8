//! The samples of a soak: one series per thing watched, its unit (which sets its resolution)
//! and, once judged, its verdict; and how a value reads in its unit.

use std::collections::BTreeMap;

use serde::Serialize;

/// The unit of a series, which also sets its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Rows,
    Bytes,
    Count,
    /// A backlog: its resolution is one second of writes.
    Backlog,
}

/// Whether a series is judged, and the verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Drawn, never judged (the books, the load itself), with the same medians for reading.
    Drawn {
        note: &'static str,
        middle: f64,
        last: f64,
        growth: f64,
    },
    /// Too few samples after the windows elapsed.
    NotJudged { reason: String },
    /// Flat or shrinking.
    Flat { middle: f64, last: f64, growth: f64 },
    /// Its last third grew by 5 % or more over its middle third.
    Growing { middle: f64, last: f64, growth: f64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub unit: Unit,
    /// Why it is drawn but not judged, if it is not.
    pub drawn_only: Option<&'static str>,
    /// (seconds since the load started, value).
    pub points: Vec<(f64, f64)>,
    pub verdict: Option<Verdict>,
}

/// Every series by name, in a stable order.
#[derive(Debug, Default)]
pub struct Samples {
    pub series: BTreeMap<String, Series>,
}

impl Samples {
    pub fn push(&mut self, name: &str, unit: Unit, at: f64, value: f64) {
        self.series
            .entry(name.to_string())
            .or_insert_with(|| Series {
                name: name.to_string(),
                unit,
                drawn_only: None,
                points: Vec::new(),
                verdict: None,
            })
            .points
            .push((at, value));
    }

    pub fn push_books(&mut self, name: &str, unit: Unit, at: f64, value: f64) {
        self.push(name, unit, at, value);
        if let Some(series) = self.series.get_mut(name) {
            series.drawn_only = Some("books: grow by design");
        }
    }
}

pub fn human(value: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes if value.abs() >= 1024.0 * 1024.0 => {
            format!("{:.2} MiB", value / 1024.0 / 1024.0)
        }
        Unit::Bytes if value.abs() >= 1024.0 => format!("{:.1} KiB", value / 1024.0),
        _ if value.fract().abs() > f64::EPSILON && value.abs() < 100.0 => format!("{value:.1}"),
        _ => format!("{value:.0}"),
    }
}

/// A growth as a signed percentage; "from 0" when the middle third's median was 0.
pub fn percent(growth: f64) -> String {
    if growth.is_finite() {
        format!("{:+.1} %", growth * 100.0)
    } else {
        "from 0".to_string()
    }
}
