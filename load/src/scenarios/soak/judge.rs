//! The judge: after the windows have elapsed, a series keeps growing when the median of its last
//! third exceeds the median of its middle third by 5 % or more, and by more than its resolution.

use super::series::{Series, Unit, Verdict, human, percent};

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The thirds of the judged part: `(start, middle third's start, last third's start)`.
pub fn thirds(warm_up: f64, end: f64) -> (f64, f64, f64) {
    let third = (end - warm_up) / 3.0;
    (warm_up, warm_up + third, warm_up + 2.0 * third)
}

pub fn judge(series: &Series, warm_up: f64, end: f64, write_rate: f64) -> Verdict {
    let (_, middle_start, last_start) = thirds(warm_up, end);
    let mut middle: Vec<f64> = series
        .points
        .iter()
        .filter(|(t, _)| *t >= middle_start && *t < last_start)
        .map(|(_, v)| *v)
        .collect();
    let mut last: Vec<f64> = series
        .points
        .iter()
        .filter(|(t, _)| *t >= last_start)
        .map(|(_, v)| *v)
        .collect();
    if end <= warm_up || middle.len() < 2 || last.len() < 2 {
        return Verdict::NotJudged {
            reason: format!(
                "the run ({end:.0} s) leaves too few samples after the windows elapse \
                 ({warm_up:.0} s)"
            ),
        };
    }
    let (middle, last) = (median(&mut middle), median(&mut last));
    let growth = if middle.abs() > f64::EPSILON {
        (last - middle) / middle
    } else if last > middle {
        f64::INFINITY
    } else {
        0.0
    };
    if let Some(note) = series.drawn_only {
        return Verdict::Drawn {
            note,
            middle,
            last,
            growth,
        };
    }
    let resolution = match series.unit {
        Unit::Rows | Unit::Count => 1.0,
        Unit::Bytes => 8192.0,
        Unit::Backlog => write_rate.max(1.0),
    };
    if growth >= 0.05 && last - middle > resolution {
        Verdict::Growing {
            middle,
            last,
            growth,
        }
    } else {
        Verdict::Flat {
            middle,
            last,
            growth,
        }
    }
}

/// Prints one line per series; returns the names of those growing and of those not judged.
pub fn print_verdicts(ordered: &[&Series]) -> (Vec<String>, Vec<String>) {
    println!(
        "{:<44} {:>14} {:>14} {:>9}  verdict",
        "series", "middle third", "last third", "growth"
    );
    let mut growing = Vec::new();
    let mut not_judged = Vec::new();
    for s in ordered {
        match &s.verdict {
            Some(Verdict::Flat {
                middle,
                last,
                growth,
            }) => println!(
                "{:<44} {:>14} {:>14} {:>9}  flat",
                s.name,
                human(*middle, s.unit),
                human(*last, s.unit),
                percent(*growth)
            ),
            Some(Verdict::Growing {
                middle,
                last,
                growth,
            }) => {
                println!(
                    "{:<44} {:>14} {:>14} {:>9}  GROWING",
                    s.name,
                    human(*middle, s.unit),
                    human(*last, s.unit),
                    percent(*growth)
                );
                growing.push(s.name.clone());
            }
            Some(Verdict::Drawn {
                note,
                middle,
                last,
                growth,
            }) => println!(
                "{:<44} {:>14} {:>14} {:>9}  {note}",
                s.name,
                human(*middle, s.unit),
                human(*last, s.unit),
                percent(*growth)
            ),
            Some(Verdict::NotJudged { reason }) => {
                println!("{:<44} not judged: {reason}", s.name);
                not_judged.push(s.name.clone());
            }
            None => {}
        }
    }
    (growing, not_judged)
}
