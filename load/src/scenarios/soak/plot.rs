//! The soak's pictures: every series as a small chart of its own (SVG), and every sample as CSV.

use std::path::Path;

use anyhow::Context;

use super::judge::thirds;
use super::series::{Series, Verdict, human, percent};

/// Where a series goes in the tables and the plot: each process's figures, Redis, the backlogs,
/// then the tables of each database.
pub fn rank(name: &str) -> (u8, String) {
    let group = if name.starts_with("ledger ") {
        0
    } else if name.starts_with("consolidation ") {
        1
    } else if name.starts_with("redis ") {
        2
    } else if name.contains("backlog") || name.starts_with("SQS") || name.starts_with("load:") {
        3
    } else if name.starts_with("ledger.") {
        4
    } else {
        5
    };
    (group, name.to_string())
}

/// Draws every series as a small chart of its own (its own scale, so that a slow growth of a
/// small series shows), the judged thirds shaded, the verdict in the caption.
pub fn plot(
    path: &Path,
    series: &[&Series],
    warm_up: f64,
    end: f64,
    title: &[String],
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    const COLUMNS: usize = 4;
    const HEADER: u32 = 80;
    let rows = series.len().div_ceil(COLUMNS).max(1);
    let root = SVGBackend::new(path, (1600, HEADER + 230 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    for (i, line) in title.iter().enumerate() {
        let size = if i == 0 { 18 } else { 13 };
        header.draw_text(
            line,
            &("sans-serif", size).into_text_style(&header),
            (12, 8 + 22 * i32::try_from(i).unwrap_or(0)),
        )?;
    }
    let cells = body.split_evenly((rows, COLUMNS));
    let minutes = end > 300.0;
    let (_, middle_start, last_start) = thirds(warm_up, end);
    for (cell, s) in cells.iter().zip(series) {
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        let (low, high) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, v)| {
                (lo.min(*v), hi.max(*v))
            });
        let (low, high) = if low.is_finite() {
            let pad = ((high - low) * 0.1).max(high.abs() * 0.02).max(1.0);
            ((low - pad).max(0.0), high + pad)
        } else {
            (0.0, 1.0)
        };
        let (verdict, colour) = match &s.verdict {
            Some(Verdict::Drawn { note, growth, .. }) => {
                (format!("{note} ({})", percent(*growth)), BLACK.mix(0.5))
            }
            Some(Verdict::NotJudged { .. }) | None => ("not judged".to_string(), BLACK.mix(0.5)),
            Some(Verdict::Flat { growth, .. }) => {
                (format!("flat ({})", percent(*growth)), BLUE.mix(1.0))
            }
            Some(Verdict::Growing { growth, .. }) => {
                (format!("GROWING ({})", percent(*growth)), RED.mix(1.0))
            }
        };
        let unit = s.unit;
        let mut chart = ChartBuilder::on(cell)
            .caption(format!("{} — {verdict}", s.name), ("sans-serif", 13))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..end.max(1.0), low..high)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t| {
                if minutes {
                    format!("{:.0} min", t / 60.0)
                } else {
                    format!("{t:.0} s")
                }
            })
            .y_label_formatter(&|v| human(*v, unit))
            .label_style(("sans-serif", 10))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        if end > warm_up {
            chart.draw_series([
                Rectangle::new(
                    [(middle_start, low), (last_start, high)],
                    BLUE.mix(0.06).filled(),
                ),
                Rectangle::new([(last_start, low), (end, high)], BLUE.mix(0.12).filled()),
            ])?;
        }
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(warm_up.min(end), low), (warm_up.min(end), high)],
            BLACK.mix(0.6).stroke_width(2),
        )))?;
        chart.draw_series(LineSeries::new(finite, colour.stroke_width(2)))?;
    }
    root.present()?;
    Ok(())
}

/// Writes every sample as CSV: `seconds,series,value`.
pub fn write_csv(path: &Path, series: &[&Series]) -> anyhow::Result<()> {
    let mut csv = String::from("seconds,series,value\n");
    for s in series {
        for (t, v) in &s.points {
            csv.push_str(&format!("{t:.1},{},{v}\n", s.name));
        }
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}
