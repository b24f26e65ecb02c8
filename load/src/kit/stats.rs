//! Latency arithmetic on per-request samples: percentiles, and the back-fill for coordinated
//! omission at an intended interval.

/// The `q` quantile (0..=1) of `sorted` by nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The latencies `latencies_ms` plus those of the requests a user would have sent meanwhile had
/// it not been waiting: a request that took `L` while the user meant to send one every
/// `interval_ms` hides requests that would have waited `L - interval`, `L - 2 interval`, ...
/// (HdrHistogram's `recordValueWithExpectedInterval`). Sorted.
pub fn back_filled(latencies_ms: &[f64], interval_ms: f64) -> Vec<f64> {
    let mut all = Vec::with_capacity(latencies_ms.len());
    for &latency in latencies_ms {
        all.push(latency);
        if interval_ms > 0.0 {
            let mut missed = latency - interval_ms;
            while missed > 1e-9 {
                all.push(missed);
                missed -= interval_ms;
            }
        }
    }
    all.sort_by(f64::total_cmp);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&values, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((percentile(&values, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((percentile(&values, 1.0) - 100.0).abs() < f64::EPSILON);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn a_stall_hides_the_requests_it_delayed() {
        // One 1-second stall with a 100 ms cadence hides 9 requests (900, 800, ... 100 ms).
        let filled = back_filled(&[5.0, 1000.0], 100.0);
        assert_eq!(filled.len(), 2 + 9);
        assert!((filled[filled.len() - 2] - 900.0).abs() < 1e-9);
        assert_eq!(back_filled(&[5.0, 50.0], 100.0).len(), 2);
    }
}
