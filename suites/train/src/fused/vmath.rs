//! Vectorisable element-wise math for the fused kernels: an f32 exponential in plain arithmetic
//! (libm's `expf` is a scalar call that stops the compiler from vectorising the loops around
//! it), reductions over eight independent lanes (a single running sum is a serial chain), and
//! `simd_kernel!`, which compiles a kernel for AVX2 too and runs that build where the CPU has
//! it.
//!
//! Results do not depend on which path runs: Rust never contracts `a * b + c` into an FMA on
//! its own, so the AVX2 and baseline builds of a body round identically.

use super::Real;

/// Defines a kernel function whose body is compiled twice, for the baseline CPU and for AVX2,
/// and which runs the AVX2 build where this CPU has it. Helpers called from the body must be
/// `#[inline(always)]` to be compiled into each build.
macro_rules! simd_kernel {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident<$T:ident: Real>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
        $body:block
    ) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$T: Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body<$T: Real>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<$T: Real>($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_kernel;

/// exp(x) in f32 to within about 2 ulp (Cephes' `expf`: Cody–Waite range reduction and a
/// degree-6 polynomial); 0 below −87.3, so additive masks give exact zeros; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LO: f32 = -87.336_55;
    const HI: f32 = 88.0;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LO, HI);
    let n = (xc * LOG2E + ROUND) - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * z + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) << 23) as u32);
    if x < LO {
        0.0
    } else {
        y * scale
    }
}

const LANES: usize = 8;

/// Σ xs over eight lanes (fixed order, so deterministic).
#[inline(always)]
pub fn sum<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i] + c[i];
        }
    }
    let mut s = tail.iter().fold(T::zero(), |a, &v| a + v);
    for a in acc {
        s = s + a;
    }
    s
}

/// Σ a·b over eight lanes.
#[inline(always)]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] = acc[i] + x[i] * y[i];
        }
    }
    let mut s = ta.iter().zip(tb).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for v in acc {
        s = s + v;
    }
    s
}

/// max of xs (−∞ for none) over eight lanes; NaN if any element is NaN.
#[inline(always)]
pub fn max<T: Real>(xs: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut nan = false;
    for c in chunks {
        for i in 0..LANES {
            nan |= c[i].is_nan();
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = T::neg_infinity();
    for &v in tail.iter().chain(acc.iter()) {
        nan |= v.is_nan();
        m = if v > m { v } else { m };
    }
    if nan {
        T::nan()
    } else {
        m
    }
}

/// In place: x ← exp(x − shift); returns the sum of the results.
#[inline(always)]
pub fn exp_shifted<T: Real>(xs: &mut [T], shift: T) -> T {
    for v in xs.iter_mut() {
        *v = (*v - shift).fast_exp();
    }
    sum(xs)
}

/// In place: x ← x · s.
#[inline(always)]
pub fn scale<T: Real>(xs: &mut [T], s: T) {
    for v in xs.iter_mut() {
        *v = *v * s;
    }
}

/// A softmax over one row, in place.
#[inline(always)]
pub fn softmax_row<T: Real>(row: &mut [T]) {
    let m = max(row);
    let total = exp_shifted(row, m);
    scale(row, total.recip());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_over_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(
            worst < 3.0 * f32::EPSILON as f64,
            "worst relative error {worst}"
        );
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-1e9), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(1e9).is_finite());
    }

    #[test]
    fn lane_reductions_match_plain_ones() {
        let xs: Vec<f64> = (0..37).map(|i| ((i * 13 % 7) as f64 - 3.0) * 0.5).collect();
        let ys: Vec<f64> = (0..37).map(|i| (i as f64).sin()).collect();
        assert!((sum(&xs) - xs.iter().sum::<f64>()).abs() < 1e-12);
        let d: f64 = xs.iter().zip(&ys).map(|(a, b)| a * b).sum();
        assert!((dot(&xs, &ys) - d).abs() < 1e-12);
        assert_eq!(max(&xs), 1.5);
        assert_eq!(max::<f64>(&[]), f64::NEG_INFINITY);
        assert!(max(&[1.0, f64::NAN, 2.0]).is_nan());
        let mut row = vec![1.0f32, 2.0, 3.0, -1e9];
        softmax_row(&mut row);
        let want = [0.090_030_57f32, 0.244_728_48, 0.665_240_9, 0.0];
        for (a, b) in row.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
