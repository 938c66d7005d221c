//! [`Stats`]: the summary of a few repeated timings, as tokens per second.

use serde::Serialize;

/// Tokens per second over the repetitions of one test: median (the headline number, robust
/// to one disturbed run on a shared machine), spread, and the raw samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Median tokens per second.
    pub median: f64,
    /// Mean tokens per second.
    pub mean: f64,
    /// Sample standard deviation (0 for a single run), as llama-bench's `±`.
    pub stddev: f64,
    /// Slowest run.
    pub min: f64,
    /// Fastest run.
    pub max: f64,
    /// Every run, in the order measured.
    pub samples: Vec<f64>,
}

impl Stats {
    /// Stats of runs that each processed `n_tokens` in the given seconds; `None` for no runs.
    ///
    /// ```
    /// use pupil::bench::Stats;
    /// let s = Stats::from_secs(128, &[1.0, 0.5, 2.0]).unwrap();
    /// assert_eq!((s.median, s.min, s.max), (128.0, 64.0, 256.0));
    /// ```
    pub fn from_secs(n_tokens: usize, secs: &[f64]) -> Option<Stats> {
        let samples: Vec<f64> = secs.iter().map(|&s| n_tokens as f64 / s.max(f64::MIN_POSITIVE)).collect();
        Stats::from_samples(samples)
    }

    /// Stats of tokens-per-second samples; `None` if there are none.
    pub fn from_samples(samples: Vec<f64>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Some(Stats { median, mean, stddev: var.sqrt(), min: sorted[0], max: sorted[n - 1], samples })
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn median_of_an_even_count_is_the_middle_mean() {
        let s = Stats::from_samples(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!((s.stddev - 1.290_994).abs() < 1e-6);
        assert_eq!(s.samples, [4.0, 1.0, 3.0, 2.0]);
    }

    #[test]
    fn no_runs_no_stats() {
        assert!(Stats::from_samples(Vec::new()).is_none());
        assert_eq!(Stats::from_secs(1, &[2.0]).unwrap().stddev, 0.0);
    }
}
