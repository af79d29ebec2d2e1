//! Layer norm over the last dimension as one fused CPU op: one pass per row forward, one
//! backward, giving the input's and both weights' gradients at once.

use super::common::{cast, last_dim, msg, on_float, slice, uninit, Real, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct LayerNormOp {
    eps: f64,
}

struct LayerNormBwd {
    eps: f64,
}

fn row_stats<T: Real>(x: &[T], eps: f64) -> (T, T) {
    let d = cast::<T>(x.len() as f64);
    let mean = x.iter().fold(T::zero(), |a, &v| a + v) / d;
    let var = x
        .iter()
        .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
        / d;
    (mean, (var + cast(eps)).sqrt().recip())
}

fn ln_fwd<T: Real>(
    op: &LayerNormOp,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "layer_norm";
    let (x, g, b) = (
        slice::<T>(name, s1, l1)?,
        slice::<T>(name, s2, l2)?,
        slice::<T>(name, s3, l3)?,
    );
    let d = last_dim(name, l1)?;
    if g.len() != d || b.len() != d {
        return Err(msg(
            name,
            format!("scale/bias of {} for width {d}", g.len()),
        ));
    }
    let mut y = uninit::<T>(x.len());
    y.par_chunks_mut(d * CHUNK_ROWS)
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                let (mean, rstd) = row_stats(xr, op.eps);
                for i in 0..d {
                    yr[i] = (xr[i] - mean) * rstd * g[i] + b[i];
                }
            }
        });
    Ok((T::wrap(y), l1.shape().clone()))
}

/// Output: (R + 2, D): rows 0..R are dx, row R is d(scale), row R + 1 is d(bias).
fn ln_bwd<T: Real>(
    op: &LayerNormBwd,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "layer_norm backward";
    let (x, g, dy) = (
        slice::<T>(name, s1, l1)?,
        slice::<T>(name, s2, l2)?,
        slice::<T>(name, s3, l3)?,
    );
    let d = last_dim(name, l1)?;
    let rows = x.len() / d;
    let mut out = uninit::<T>(x.len() + 2 * d);
    let (dx, _) = out.split_at_mut(x.len());
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(d * CHUNK_ROWS)
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .zip(dy.par_chunks(d * CHUNK_ROWS))
        .map(|((dxc, xc), dyc)| {
            let (mut dg, mut db) = (uninit::<T>(d), uninit::<T>(d));
            for ((dxr, xr), dyr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(dyc.chunks(d)) {
                let (mean, rstd) = row_stats(xr, op.eps);
                // dx = rstd (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)), ĝ = dy · scale.
                let (mut s_g, mut s_gx) = (T::zero(), T::zero());
                for i in 0..d {
                    let xh = (xr[i] - mean) * rstd;
                    let gh = dyr[i] * g[i];
                    s_g = s_g + gh;
                    s_gx = s_gx + gh * xh;
                    dg[i] = dg[i] + dyr[i] * xh;
                    db[i] = db[i] + dyr[i];
                }
                let n = cast::<T>(d as f64);
                let (m_g, m_gx) = (s_g / n, s_gx / n);
                for i in 0..d {
                    let xh = (xr[i] - mean) * rstd;
                    dxr[i] = rstd * (dyr[i] * g[i] - m_g - xh * m_gx);
                }
            }
            (dg, db)
        })
        .collect();
    let tail = &mut out[rows * d..];
    for (dg, db) in &partials {
        for i in 0..d {
            tail[i] = tail[i] + dg[i];
            tail[d + i] = tail[d + i] + db[i];
        }
    }
    Ok((T::wrap(out), Shape::from((rows + 2, d))))
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), ln_fwd(self, s1, l1, s2, l2, s3, l3))
    }
    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = g.elem_count();
        let rows = x.elem_count() / d;
        let packed = x.apply_op3_no_bwd(g, &dy.contiguous()?, &LayerNormBwd { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dg = packed.narrow(0, rows, 1)?.reshape(d)?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dg), Some(db)))
    }
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), ln_bwd(self, s1, l1, s2, l2, s3, l3))
    }
}

/// Layer norm over the last dimension of `x` with `scale` and `bias` of that width.
pub fn layer_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(scale, bias, LayerNormOp { eps })
}
