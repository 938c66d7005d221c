//! [`Stats`]: the summary of a few repeated measurements, and [`median`], the one median
//! every report of pupil uses.

use serde::Serialize;

/// The median of `values`: the middle value of an odd count, the mean of the two middle
/// values of an even count (the statistician's median, as numpy's and R's); `None` for none.
/// NaNs sort last, as `f64::total_cmp` orders them.
///
/// ```
/// use pupil::runner::median;
/// assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
/// assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
/// assert_eq!(median(&[]), None);
/// ```
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    median_of_sorted(&sorted)
}

fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Repeated measurements of one quantity (tokens per second, or seconds): the [`median`]
/// (the headline number, robust to one disturbed run on a shared machine), spread, and the
/// raw samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// The median.
    pub median: f64,
    /// The mean.
    pub mean: f64,
    /// Sample standard deviation (0 for a single run), as llama-bench's `±`.
    pub stddev: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Every sample, in the order measured.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Tokens per second of runs that each processed `n_tokens` in the given seconds; `None`
    /// for no runs.
    ///
    /// ```
    /// use pupil::runner::Stats;
    /// let s = Stats::from_secs(128, &[1.0, 0.5, 2.0]).unwrap();
    /// assert_eq!((s.median, s.min, s.max), (128.0, 64.0, 256.0));
    /// ```
    pub fn from_secs(n_tokens: usize, secs: &[f64]) -> Option<Stats> {
        let samples: Vec<f64> = secs.iter().map(|&s| n_tokens as f64 / s.max(f64::MIN_POSITIVE)).collect();
        Stats::from_samples(samples)
    }

    /// Stats of samples; `None` if there are none.
    pub fn from_samples(samples: Vec<f64>) -> Option<Stats> {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let median = median_of_sorted(&sorted)?;
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Some(Stats { median, mean, stddev: var.sqrt(), min: sorted[0], max: sorted[n - 1], samples })
    }
}

#[cfg(test)]
mod tests {
    use super::{Stats, median};

    #[test]
    fn median_of_an_even_count_is_the_middle_mean() {
        let s = Stats::from_samples(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!((s.stddev - 1.290_994).abs() < 1e-6);
        assert_eq!(s.samples, [4.0, 1.0, 3.0, 2.0]);
        // Not the upper middle value, which `pupil compare` used to report.
        assert_eq!(median(&[10.0, 20.0]), Some(15.0));
    }

    #[test]
    fn no_runs_no_stats() {
        assert!(Stats::from_samples(Vec::new()).is_none());
        assert_eq!(Stats::from_secs(1, &[2.0]).unwrap().stddev, 0.0);
    }
}
