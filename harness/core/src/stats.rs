//! Robust summaries of repeated measurements, kept apart from reporting.
//!
//! Timings on shared machines are skewed and heavy-tailed, so the centre is the median
//! and intervals come from a seeded percentile bootstrap: the same samples always give
//! the same interval.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Bootstrap resamples used for every interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Fixed seed so that intervals are a pure function of the samples.
pub const BOOTSTRAP_SEED: u64 = 0x0b0e_5eed;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// Median absolute deviation from the median (unscaled).
    pub mad: f64,
    /// 95 % percentile-bootstrap interval of the median.
    pub ci95: [f64; 2],
}

impl Summary {
    /// Summarises `xs`; None when empty or when any value is not finite.
    pub fn of(xs: &[f64]) -> Option<Summary> {
        if xs.is_empty() || xs.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let med = median(xs);
        let dev: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
        Some(Summary {
            n,
            median: med,
            mean,
            stddev: var.sqrt(),
            min: xs.iter().cloned().fold(f64::INFINITY, f64::min),
            max: xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            mad: median(&dev),
            ci95: bootstrap_ci(xs, median, 0.95),
        })
    }

    /// Relative spread: MAD over median (0 when the median is 0).
    pub fn rel_mad(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            self.mad / self.median.abs()
        }
    }
}

/// Median of a non-empty slice (mean of the two middle values for even lengths).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Linear-interpolated quantile (type 7) of sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let h = (n - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Percentile-bootstrap interval of `stat` over `xs` at confidence `level`.
pub fn bootstrap_ci(xs: &[f64], stat: fn(&[f64]) -> f64, level: f64) -> [f64; 2] {
    if xs.len() < 2 {
        let v = stat(xs);
        return [v, v];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(BOOTSTRAP_SEED);
    let mut buf = vec![0.0; xs.len()];
    let mut stats: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for b in buf.iter_mut() {
                *b = xs[rng.random_range(0..xs.len())];
            }
            stat(&buf)
        })
        .collect();
    stats.sort_by(|a, b| a.total_cmp(b));
    let alpha = (1.0 - level) / 2.0;
    [
        quantile_sorted(&stats, alpha),
        quantile_sorted(&stats, 1.0 - alpha),
    ]
}

/// Ratio of medians `median(a) / median(b)` with a 95 % bootstrap interval,
/// resampling both groups independently.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    pub value: f64,
    pub ci95: [f64; 2],
}

pub fn ratio_of_medians(a: &[f64], b: &[f64], seed: u64) -> Option<Ratio> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mb = median(b);
    if mb == 0.0 {
        return None;
    }
    let value = median(a) / mb;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            for x in ra.iter_mut() {
                *x = a[rng.random_range(0..a.len())];
            }
            for x in rb.iter_mut() {
                *x = b[rng.random_range(0..b.len())];
            }
            median(&ra) / median(&rb)
        })
        .filter(|r| r.is_finite())
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(|x, y| x.total_cmp(y));
    Some(Ratio {
        value,
        ci95: [
            quantile_sorted(&ratios, 0.025),
            quantile_sorted(&ratios, 0.975),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mad, 1.0);
        assert!(s.ci95[0] <= 3.0 && s.ci95[1] >= 3.0);
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn bootstrap_is_deterministic() {
        let xs: Vec<f64> = (0..20).map(|i| (i * 7 % 13) as f64).collect();
        assert_eq!(Summary::of(&xs), Summary::of(&xs));
    }

    #[test]
    fn ratio_interval_contains_point_estimate() {
        let a = [2.0, 2.1, 1.9, 2.05, 1.95];
        let b = [1.0, 1.05, 0.95, 1.02, 0.98];
        let r = ratio_of_medians(&a, &b, 1).unwrap();
        assert!((r.value - 2.0).abs() < 1e-12);
        assert!(r.ci95[0] <= r.value && r.value <= r.ci95[1]);
        assert!(r.ci95[0] > 1.7 && r.ci95[1] < 2.3);
    }
}
