//! Standard errors, confidence intervals, the paired difference and the TOST equivalence
//! test. Everything is closed-form, so results are a pure function of the per-item scores.

use serde::{Deserialize, Serialize};

/// Two-sided 95 % normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Mean, standard error and a 95 % interval of per-item scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation / sqrt(n); 0 for n < 2.
    pub se: f64,
    /// Student-t 95 % interval (df = n - 1); equals the mean for n < 2.
    pub ci95: [f64; 2],
}

/// Summary of `xs` (plain left-to-right sums; the toolkit-exact value is reported apart).
pub fn mean_ci(xs: &[f64]) -> Option<MeanCi> {
    let n = xs.len();
    if n == 0 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let se = if n > 1 {
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt()
    } else {
        0.0
    };
    let half = if n > 1 {
        t_quantile(0.975, (n - 1) as f64) * se
    } else {
        0.0
    };
    Some(MeanCi {
        n,
        mean,
        se,
        ci95: [mean - half, mean + half],
    })
}

/// A paired comparison of two score vectors on the same items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    pub n: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean(b - a).
    pub diff: f64,
    pub se: f64,
    pub ci95: [f64; 2],
    /// Two-sided paired t-test of diff = 0 (infinite when every item moved the same way by
    /// the same amount; JSON writes that as null).
    #[serde(deserialize_with = "null_as_nan")]
    pub t: f64,
    pub p_two_sided: f64,
    /// Items where b scored higher / lower than a.
    pub b_better: usize,
    pub a_better: usize,
    pub equivalence: Tost,
}

/// Two one-sided tests of H0: |diff| >= margin, at alpha = 0.05.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tost {
    pub margin: f64,
    pub alpha: f64,
    /// p of H0: diff <= -margin and of H0: diff >= +margin.
    pub p_lower: f64,
    pub p_upper: f64,
    /// max(p_lower, p_upper).
    pub p: f64,
    /// The 90 % interval; equivalence holds iff it lies inside (-margin, +margin).
    pub ci90: [f64; 2],
    pub equivalent: bool,
}

/// JSON has no infinities or NaN (serde writes them as null): read null back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Paired statistics of `b - a`. `None` if there are no pairs or the margin is not positive.
pub fn paired(a: &[f64], b: &[f64], margin: f64) -> Option<PairedStats> {
    let n = a.len();
    if n == 0 || n != b.len() || margin.is_nan() || margin <= 0.0 || margin.is_infinite() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let m = mean_ci(&d)?;
    let df = (n.max(2) - 1) as f64;
    let (t, p_two) = if m.se > 0.0 {
        let t = m.diff_t(0.0);
        (t, 2.0 * t_sf(t.abs(), df))
    } else if m.mean == 0.0 {
        (0.0, 1.0)
    } else {
        (f64::INFINITY.copysign(m.mean), 0.0)
    };
    let one_sided = |t: f64| if t.is_nan() { 1.0 } else { t_sf(t, df) };
    let (p_lower, p_upper) = if m.se > 0.0 {
        (
            one_sided((m.mean + margin) / m.se),
            one_sided((margin - m.mean) / m.se),
        )
    } else {
        // No spread: the difference is known exactly.
        let inside = m.mean.abs() < margin;
        (
            if inside { 0.0 } else { 1.0 },
            if inside { 0.0 } else { 1.0 },
        )
    };
    let half90 = if n > 1 {
        t_quantile(0.95, df) * m.se
    } else {
        0.0
    };
    let p = p_lower.max(p_upper);
    Some(PairedStats {
        n,
        mean_a: a.iter().sum::<f64>() / n as f64,
        mean_b: b.iter().sum::<f64>() / n as f64,
        diff: m.mean,
        se: m.se,
        ci95: m.ci95,
        t,
        p_two_sided: p_two.min(1.0),
        b_better: d.iter().filter(|x| **x > 0.0).count(),
        a_better: d.iter().filter(|x| **x < 0.0).count(),
        equivalence: Tost {
            margin,
            alpha: 0.05,
            p_lower,
            p_upper,
            p,
            ci90: [m.mean - half90, m.mean + half90],
            equivalent: p < 0.05,
        },
    })
}

impl MeanCi {
    fn diff_t(&self, null: f64) -> f64 {
        (self.mean - null) / self.se
    }
}

/// Upper tail P(T > t) of Student's t with `df` degrees of freedom.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    let x = df / (df + t * t);
    let tail = 0.5 * reg_inc_beta(0.5 * df, 0.5, x);
    if t >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// The p-quantile of Student's t (bisection on the CDF; 200 halvings reach f64 precision).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (-1e3, 1e3);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - t_sf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Regularised incomplete beta I_x(a, b), by its continued fraction (modified Lentz).
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + num * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + num / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~1e-15 relative accuracy).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_distribution_matches_tables() {
        // Textbook critical values.
        assert!(close(t_quantile(0.975, 10.0), 2.228_138_85, 1e-6));
        assert!(close(t_quantile(0.975, 1.0), 12.706_204_7, 1e-5));
        assert!(close(t_quantile(0.95, 30.0), 1.697_260_89, 1e-6));
        assert!(close(t_quantile(0.975, 1e6), Z95, 1e-5));
        assert!(close(t_sf(2.0, 10.0), 0.036_694_017_391_7, 1e-9));
        assert!(close(t_sf(0.0, 5.0), 0.5, 1e-12));
        assert!(close(t_sf(-2.0, 10.0), 1.0 - 0.036_694_017_391_7, 1e-9));
    }

    #[test]
    fn mean_ci_of_bernoulli_scores() {
        let xs: Vec<f64> = (0..100)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let m = mean_ci(&xs).unwrap();
        assert_eq!(m.mean, 0.25);
        let sd = (0.25f64 * 0.75 * 100.0 / 99.0).sqrt();
        assert!(close(m.se, sd / 10.0, 1e-15));
        assert!(m.ci95[0] < 0.25 && m.ci95[1] > 0.25);
        assert_eq!(mean_ci(&[]), None);
    }

    #[test]
    fn tost_decides_equivalence_by_the_90_percent_interval() {
        // Identical systems except for a few flips each way: equivalent at a 2-point margin.
        let a: Vec<f64> = (0..2000)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let mut b = a.clone();
        for i in (0..40).step_by(2) {
            b[i] = 0.0; // a better
            b[i + 1001] = 1.0; // b better
        }
        let p = paired(&a, &b, 0.02).unwrap();
        assert_eq!(p.diff, 0.0);
        assert!(p.equivalence.equivalent, "{p:?}");
        assert!(p.equivalence.ci90[0] > -0.02 && p.equivalence.ci90[1] < 0.02);
        // A real 5-point gap is not equivalent within 2 points, and is significant.
        let c: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| if i % 20 == 1 { 1.0 } else { *x })
            .collect();
        let q = paired(&a, &c, 0.02).unwrap();
        assert!(close(q.diff, 0.05, 1e-12));
        assert!(!q.equivalence.equivalent);
        assert!(q.p_two_sided < 1e-6);
        assert_eq!(paired(&a, &c, 0.0), None);
    }
}
