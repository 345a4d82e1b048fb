//! Pure numbers: medians, percentiles of samples, and the peak search's rule.

/// The median of `v` (the lower middle for an even count); `None` if empty.
pub fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}

/// The nearest-rank `p`th percentile (0 < p ≤ 100) of `v`; `None` if empty.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

/// The largest value of `v`.
pub fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().max_by(f64::total_cmp)
}

/// The peak search: raise the number of clients step by step while
/// requests/s keep growing. `rates` are the requests/s measured so far at the
/// steps taken, in order. Returns whether to go on to the next step: only if
/// the last step grew the best rate so far by at least `min_growth` (0.05 =
/// 5 %). The peak is then the step with the best rate ([`peak_index`]).
pub fn keep_raising(rates: &[f64], min_growth: f64) -> bool {
    match rates {
        [] | [_] => true,
        [before @ .., last] => {
            let best = before.iter().copied().fold(f64::MIN, f64::max);
            *last >= best * (1.0 + min_growth)
        }
    }
}

/// Index of the highest rate (the first of equals).
pub fn peak_index(rates: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &r) in rates.iter().enumerate() {
        if best.is_none_or(|b| r > rates[b]) {
            best = Some(i);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.1), Some(1.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
        assert_eq!(max(&[1.0, 7.0, 3.0]), Some(7.0));
    }

    #[test]
    fn peak_search_stops_when_growth_stops() {
        assert!(keep_raising(&[], 0.05));
        assert!(keep_raising(&[100.0], 0.05));
        assert!(keep_raising(&[100.0, 200.0], 0.05));
        // Less than 5 % better than the best so far: stop.
        assert!(!keep_raising(&[100.0, 200.0, 209.0], 0.05));
        assert!(keep_raising(&[100.0, 200.0, 211.0], 0.05));
        // A drop stops, and the peak is the best step, not the last.
        assert!(!keep_raising(&[100.0, 200.0, 150.0], 0.05));
        assert_eq!(peak_index(&[100.0, 200.0, 150.0]), Some(1));
        assert_eq!(peak_index(&[5.0, 5.0]), Some(0));
        assert_eq!(peak_index(&[]), None);
    }
}
