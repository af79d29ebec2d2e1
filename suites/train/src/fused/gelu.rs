//! GELU with the tanh approximation (candle's `gelu`) as one fused CPU op, written with one
//! exponential.

use super::common::{cast, on_float, slice, uninit, Real};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct Gelu;
struct GeluBwd;

pub(crate) const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
pub(crate) const GELU_C: f64 = 0.044_715;

// With s = sigmoid(2z), z = k (x + c x³): gelu = ½ x (1 + tanh z) = x s, written with one exp
// (cheaper than tanh).
fn gelu_fwd<T: Real>(s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>("gelu", s, l)?;
    let (k2, c, one) = (cast::<T>(2.0 * SQRT_2_OVER_PI), cast::<T>(GELU_C), T::one());
    let mut y = uninit::<T>(x.len());
    y.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o = v / (one + (-(k2 * v * (one + c * v * v))).exp());
            }
        });
    Ok((T::wrap(y), l.shape().clone()))
}

/// d gelu/dx = ½(1 + t) + ½ x (1 − t²) k (1 + 3c x²) with t = tanh z = 2s − 1,
/// i.e. s + 2 x s (1 − s) k (1 + 3c x²).
fn gelu_bwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "gelu backward";
    let (x, dy) = (slice::<T>(name, s1, l1)?, slice::<T>(name, s2, l2)?);
    let (k, k2, c, c3, one, two) = (
        cast::<T>(SQRT_2_OVER_PI),
        cast::<T>(2.0 * SQRT_2_OVER_PI),
        cast::<T>(GELU_C),
        cast::<T>(3.0 * GELU_C),
        T::one(),
        cast::<T>(2.0),
    );
    let mut dx = uninit::<T>(x.len());
    dx.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .zip(dy.par_chunks(4096))
        .for_each(|((oc, xc), gc)| {
            for ((o, &v), &g) in oc.iter_mut().zip(xc).zip(gc) {
                let s = one / (one + (-(k2 * v * (one + c * v * v))).exp());
                *o = g * (s + two * v * s * (one - s) * k * (one + c3 * v * v));
            }
        });
    Ok((T::wrap(dx), l1.shape().clone()))
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        on_float!(s, self.name(), gelu_fwd(s, l))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &GeluBwd)?))
    }
}

impl CustomOp2 for GeluBwd {
    fn name(&self) -> &'static str {
        "fused-gelu-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), gelu_bwd(s1, l1, s2, l2))
    }
}

/// GELU with the tanh approximation, as candle's `Tensor::gelu`.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}
