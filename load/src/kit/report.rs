//! Figures: a one-screen table on stdout and a JSON summary under `target/load/`.

use std::path::PathBuf;

use serde::Serialize;

/// One measured figure, with the ceiling it is compared with when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Scenario (`sla`, `capacity`, ...).
    pub scenario: String,
    /// What was measured.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The ceiling's name and value, measured in the same run.
    pub ceiling: Option<(String, f64)>,
    /// Whether the scenario's own bound held (`None`: no bound).
    pub passed: Option<bool>,
}

impl Figure {
    /// A figure without ceiling or bound.
    pub fn new(scenario: &str, name: &str, value: f64, unit: &str) -> Self {
        Self {
            scenario: scenario.into(),
            name: name.into(),
            value,
            unit: unit.into(),
            ceiling: None,
            passed: None,
        }
    }

    /// Compares with a ceiling.
    pub fn against(mut self, ceiling: &str, value: f64) -> Self {
        self.ceiling = Some((ceiling.into(), value));
        self
    }

    /// Records whether a bound held.
    pub fn bound(mut self, passed: bool) -> Self {
        self.passed = Some(passed);
        self
    }
}

/// Where reports go: `target/load/`.
pub fn dir() -> PathBuf {
    let dir = harness::paths::target_dir().join("load");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Prints the table and writes `target/load/<name>.json`.
pub fn publish(name: &str, figures: &[Figure]) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<14} {:<44} {:>14} {:<10} {:>9}  bound",
        "scenario", "figure", "value", "unit", "ratio"
    );
    for f in figures {
        let ratio = f
            .ceiling
            .as_ref()
            .filter(|(_, c)| *c > 0.0)
            .map_or_else(String::new, |(_, c)| format!("{:.2}x", f.value / c));
        let bound = match f.passed {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<14} {:<44} {:>14.1} {:<10} {:>9}  {}",
            f.scenario, f.name, f.value, f.unit, ratio, bound
        );
        if let Some((ceiling, value)) = &f.ceiling {
            println!("{:<14}   vs {:<41} {:>14.1}", "", ceiling, value);
        }
    }
    let path = dir().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(figures)?)?;
    println!(
        "\nJSON summary: {}   HTML reports: {}/*.html",
        path.display(),
        dir().display()
    );
    Ok(())
}
