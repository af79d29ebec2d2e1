//! Softmax over the last dimension, with an optional additive (Tq, Tk) mask, as one fused CPU
//! op whose backward pass reads only its output.

use super::common::{last_dim, msg, on_float, slice, uninit, Real, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct Softmax;
struct MaskedSoftmax;
struct SoftmaxBwd;

fn softmax_rows<T: Real>(x: &[T], mask: Option<&[T]>, d: usize, y: &mut [T]) {
    let tq = mask.map(|m| m.len() / d).unwrap_or(1);
    y.par_chunks_mut(d * CHUNK_ROWS)
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .enumerate()
        .for_each(|(c, (yc, xc))| {
            for (r, (yr, xr)) in yc.chunks_mut(d).zip(xc.chunks(d)).enumerate() {
                match mask {
                    Some(m) => {
                        let row = (c * CHUNK_ROWS + r) % tq;
                        let mr = &m[row * d..(row + 1) * d];
                        for i in 0..d {
                            yr[i] = xr[i] + mr[i];
                        }
                    }
                    None => yr.copy_from_slice(xr),
                }
                let max = yr.iter().fold(T::neg_infinity(), |a, &v| a.max(v));
                let mut sum = T::zero();
                for v in yr.iter_mut() {
                    *v = (*v - max).exp();
                    sum = sum + *v;
                }
                let inv = sum.recip();
                for v in yr.iter_mut() {
                    *v = *v * inv;
                }
            }
        });
}

fn softmax_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    mask: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let name = "softmax";
    let x = slice::<T>(name, s1, l1)?;
    let d = last_dim(name, l1)?;
    let mask = match mask {
        Some((s, l)) => {
            let m = slice::<T>(name, s, l)?;
            let dims = l.dims();
            let tq = x.len() / d;
            if dims.len() != 2 || dims[1] != d || dims[0] == 0 || tq % dims[0] != 0 {
                return Err(msg(
                    name,
                    format!("mask {dims:?} does not fit scores {:?}", l1.dims()),
                ));
            }
            Some(m)
        }
        None => None,
    };
    let mut y = uninit::<T>(x.len());
    softmax_rows(x, mask, d, &mut y);
    Ok((T::wrap(y), l1.shape().clone()))
}

/// dx = y (dy - Σ dy·y), row by row.
fn softmax_bwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "softmax backward";
    let (y, dy) = (slice::<T>(name, s1, l1)?, slice::<T>(name, s2, l2)?);
    let d = last_dim(name, l1)?;
    let mut dx = uninit::<T>(y.len());
    dx.par_chunks_mut(d * CHUNK_ROWS)
        .zip(y.par_chunks(d * CHUNK_ROWS))
        .zip(dy.par_chunks(d * CHUNK_ROWS))
        .for_each(|((dxc, yc), dyc)| {
            for ((dxr, yr), dyr) in dxc.chunks_mut(d).zip(yc.chunks(d)).zip(dyc.chunks(d)) {
                let dot = yr.iter().zip(dyr).fold(T::zero(), |a, (&y, &g)| a + y * g);
                for i in 0..d {
                    dxr[i] = yr[i] * (dyr[i] - dot);
                }
            }
        });
    Ok((T::wrap(dx), l1.shape().clone()))
}

fn softmax_grad(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    y.apply_op2_no_bwd(&dy.contiguous()?, &SoftmaxBwd)
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        on_float!(s, self.name(), softmax_fwd(s, l, None))
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(softmax_grad(y, dy)?))
    }
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "fused-masked-softmax"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), softmax_fwd(s1, l1, Some((s2, l2))))
    }
    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The mask is a constant: no gradient.
        Ok((Some(softmax_grad(y, dy)?), None))
    }
}

impl CustomOp2 for SoftmaxBwd {
    fn name(&self) -> &'static str {
        "fused-softmax-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), softmax_bwd(s1, l1, s2, l2))
    }
}

/// softmax(x + mask) over the last dimension; `mask` (Tq, Tk) is added to every (Tq, Tk)
/// slice of `x` (…, Tq, Tk) and gets no gradient.
pub fn softmax(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let x = x.contiguous()?;
    match mask {
        Some(m) => x.apply_op2(&m.to_dtype(x.dtype())?.contiguous()?, MaskedSoftmax),
        None => x.apply_op1(Softmax),
    }
}
