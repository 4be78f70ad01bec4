//! Small statistics for benchmark figures: percentiles of a sample and the spread of runs.

/// The `p`-th percentile (0–100) of `sorted` by the nearest-rank method, `None` when empty.
///
/// Nearest rank returns a value that was really observed, so a p99 over 100 samples is the
/// 99th smallest and a max is never invented by interpolation.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Sorts samples in place so [`percentile`] can read them (NaN last).
pub fn sort(samples: &mut [f64]) {
    samples.sort_by(|a, b| a.total_cmp(b));
}

/// Median, min and max of one figure measured over several runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Median of the runs (mean of the two middle ones for an even count).
    pub median: f64,
    /// Smallest run.
    pub min: f64,
    /// Largest run.
    pub max: f64,
}

impl Spread {
    /// The spread of `runs`, `None` when there are none.
    pub fn of(runs: &[f64]) -> Option<Self> {
        let mut sorted = runs.to_vec();
        sort(&mut sorted);
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    /// `median (min–max)` with `digits` decimals, for a markdown cell.
    pub fn cell(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// Median/min/max of runs as a markdown cell, or `n/a` when no run produced the figure.
pub fn cell(runs: &[f64], digits: usize) -> String {
    Spread::of(runs).map_or_else(|| "n/a".to_owned(), |s| s.cell(digits))
}

/// `a / b` of two medians as `0.93×`, or `n/a` when either is missing or `b` is zero.
pub fn ratio(a: &[f64], b: &[f64]) -> String {
    match (Spread::of(a), Spread::of(b)) {
        (Some(a), Some(b)) if b.median != 0.0 => format!("{:.2}×", a.median / b.median),
        _ => "n/a".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to_hundred() -> Vec<f64> {
        (1..=100).map(f64::from).collect()
    }

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred_are_the_ranks_themselves() {
        let v = one_to_hundred();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
    }

    #[test]
    fn a_p99_of_few_samples_is_their_maximum() {
        let v = [1.0, 2.0, 3.0, 40.0];
        assert_eq!(percentile(&v, 99.0), Some(40.0));
        assert_eq!(percentile(&v, 50.0), Some(2.0));
    }

    #[test]
    fn no_samples_have_no_percentile() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(cell(&[], 1), "n/a");
    }

    #[test]
    fn sorting_puts_nan_last_so_it_never_becomes_a_low_percentile() {
        let mut v = vec![3.0, f64::NAN, 1.0, 2.0];
        sort(&mut v);
        assert_eq!(&v[..3], &[1.0, 2.0, 3.0]);
        assert!(v[3].is_nan());
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 2.5,
                min: 1.0,
                max: 4.0
            }
        );
        assert_eq!(Spread::of(&[5.0, 1.0, 9.0]).unwrap().median, 5.0);
    }

    #[test]
    fn a_ratio_compares_medians_and_refuses_a_zero_baseline() {
        assert_eq!(ratio(&[9.0, 10.0, 11.0], &[4.0, 5.0, 6.0]), "2.00×");
        assert_eq!(ratio(&[1.0], &[0.0]), "n/a");
        assert_eq!(cell(&[3.0, 1.0, 2.0], 1), "2.0 (1.0–3.0)");
    }
}
