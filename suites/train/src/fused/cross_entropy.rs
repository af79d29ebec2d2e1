//! Token cross-entropy, −log softmax(logits)[target] per row, as one fused CPU op; and the
//! vocabulary head with its cross-entropy as one op that holds a single (N, V) buffer.

use super::common::{
    cpu_data, last_dim, msg, on_float, slice, take_once, tensor_of, uninit, Real, CHUNK_ROWS,
};
use super::{gemm, grads, vmath};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

struct RowNll;
struct RowNllBwd;

fn targets<'a>(op: &str, s: &'a CpuStorage, l: &Layout, rows: usize) -> Result<&'a [u32]> {
    let CpuStorage::U32(v) = s else {
        return Err(msg(op, "targets must be u32"));
    };
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| msg(op, "targets must be contiguous"))?;
    if b - a != rows {
        return Err(msg(op, format!("{} targets for {rows} rows", b - a)));
    }
    Ok(&v[a..b])
}

fn log_sum_exp<T: Real>(row: &[T]) -> T {
    let max = row.iter().fold(T::neg_infinity(), |a, &v| a.max(v));
    let sum = row.iter().fold(T::zero(), |a, &v| a + (v - max).exp());
    max + sum.ln()
}

fn nll_fwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "cross-entropy";
    let x = slice::<T>(name, s1, l1)?;
    let v = last_dim(name, l1)?;
    let rows = x.len() / v;
    let t = targets(name, s2, l2, rows)?;
    if let Some(bad) = t.iter().find(|&&i| i as usize >= v) {
        return Err(msg(
            name,
            format!("target {bad} outside a vocabulary of {v}"),
        ));
    }
    let mut out = uninit::<T>(rows);
    out.par_chunks_mut(CHUNK_ROWS)
        .zip(x.par_chunks(v * CHUNK_ROWS))
        .zip(t.par_chunks(CHUNK_ROWS))
        .for_each(|((oc, xc), tc)| {
            for ((o, xr), &ti) in oc.iter_mut().zip(xc.chunks(v)).zip(tc) {
                *o = log_sum_exp(xr) - xr[ti as usize];
            }
        });
    Ok((T::wrap(out), Shape::from(rows)))
}

/// d/dlogits = g_row (softmax − one-hot(target)), written straight into the one output.
fn nll_bwd<T: Real>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let name = "cross-entropy backward";
    let x = slice::<T>(name, s1, l1)?;
    let v = last_dim(name, l1)?;
    let rows = x.len() / v;
    let t = targets(name, s2, l2, rows)?;
    let g = slice::<T>(name, s3, l3)?;
    let mut dx = uninit::<T>(x.len());
    dx.par_chunks_mut(v * CHUNK_ROWS)
        .zip(x.par_chunks(v * CHUNK_ROWS))
        .zip(t.par_chunks(CHUNK_ROWS).zip(g.par_chunks(CHUNK_ROWS)))
        .for_each(|((dc, xc), (tc, gc))| {
            for (((dr, xr), &ti), &gi) in dc.chunks_mut(v).zip(xc.chunks(v)).zip(tc).zip(gc) {
                let lse = log_sum_exp(xr);
                for (d, &xv) in dr.iter_mut().zip(xr) {
                    *d = gi * (xv - lse).exp();
                }
                dr[ti as usize] = dr[ti as usize] - gi;
            }
        });
    Ok((T::wrap(dx), l1.shape().clone()))
}

impl CustomOp2 for RowNll {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        on_float!(s1, self.name(), nll_fwd(s1, l1, s2, l2))
    }
    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _nll: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = logits.apply_op3_no_bwd(targets, &g.contiguous()?, &RowNllBwd)?;
        Ok((Some(dx), None))
    }
}

impl CustomOp3 for RowNllBwd {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-backward"
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
        on_float!(s1, self.name(), nll_bwd(s1, l1, s2, l2, s3, l3))
    }
}

/// −log softmax(logits)\[target\] for every row: `logits` (N, V), `targets` (N) u32 → (N).
pub fn row_nll(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, RowNll)
}

// ---------------------------------------------------------------------------------------------
// Vocabulary head and cross-entropy in one: −log softmax(h W)[target] per row. The forward pass
// computes the logits into one (N, V) buffer and turns each row, in place, into
// d nll/d logits = softmax − one-hot(target) (one exponential per logit); that buffer is the only
// full-size tensor, and the backward pass reads it twice through matrix products. The weight's
// gradient goes to [`grads`].

const HEAD: &str = "fused head + cross-entropy";

struct LinearNll<T: Real> {
    w: Tensor,
    /// Per-row losses, handed over by `cpu_fwd`.
    nll: Mutex<Option<Vec<T>>>,
    /// d nll_row / d logits: (N, V).
    dlogits: Mutex<Option<Vec<T>>>,
    vocab: usize,
}

impl<T: Real> CustomOp3 for LinearNll<T> {
    fn name(&self) -> &'static str {
        "fused-head-cross-entropy"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let nll = take_once(&self.nll, HEAD, "output already taken")?;
        let n = nll.len();
        Ok((T::wrap(nll), Shape::from(n)))
    }
    fn bwd(
        &self,
        h: &Tensor,
        _w: &Tensor,
        _targets: &Tensor,
        _nll: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let p = take_once(
            &self.dlogits,
            HEAD,
            "backward pass ran twice over one forward pass",
        )?;
        let (h, g) = (h.contiguous()?, g.contiguous()?);
        let (n, d) = h.dims2()?;
        let v = self.vocab;
        let par = gemm::Par::all();
        let (hs, hl) = h.storage_and_layout();
        let (gs, gl) = g.storage_and_layout();
        let (ws, wl) = self.w.storage_and_layout();
        let (hv, gv, wv) = (
            cpu_data::<T>(HEAD, &hs, hl)?,
            cpu_data::<T>(HEAD, &gs, gl)?,
            cpu_data::<T>(HEAD, &ws, wl)?,
        );
        // dh = diag(g) P Wᵀ.
        let mut dh = vec![T::zero(); n * d];
        gemm::matmul(
            &mut gemm::MatMut::new(&mut dh, n, d),
            gemm::Mat::new(&p, n, v),
            gemm::Mat::new(wv, d, v).t(),
            T::one(),
            false,
            par,
        );
        scale_rows(&mut dh, gv, d);
        // dW = (diag(g) h)ᵀ P.
        let mut hg = hv.to_vec();
        scale_rows(&mut hg, gv, d);
        grads::accumulate::<T>(HEAD, &self.w, |acc| {
            gemm::matmul(
                &mut gemm::MatMut::new(acc, d, v),
                gemm::Mat::new(&hg, n, d).t(),
                gemm::Mat::new(&p, n, v),
                T::one(),
                true,
                par,
            )
        })?;
        Ok((Some(tensor_of(dh, (n, d))?), None, None))
    }
}

vmath::simd_kernel! {
    /// One row of logits in, −log softmax(row)[t] out; the row becomes softmax − one-hot(t).
    fn nll_row<T: Real>(row: &mut [T], t: usize) -> T {
        let picked = row[t];
        let m = vmath::max(row);
        let total = vmath::exp_shifted(row, m);
        vmath::scale(row, total.recip());
        row[t] = row[t] - T::one();
        m + total.ln() - picked
    }
}

fn scale_rows<T: Real>(m: &mut [T], by: &[T], cols: usize) {
    for (row, &s) in m.chunks_mut(cols).zip(by) {
        vmath::scale(row, s);
    }
}

/// −log softmax(`h` `w`)\[target\] per row: `h` (N, D), `w` (D, V), `targets` (N) u32 → (N).
/// Holds one (N, V) buffer (the logits' gradient) between the passes.
pub fn linear_nll(h: &Tensor, w: &Tensor, targets: &Tensor) -> Result<Tensor> {
    match h.dtype() {
        DType::F32 => linear_nll_t::<f32>(h, w, targets),
        DType::F64 => linear_nll_t::<f64>(h, w, targets),
        d => Err(msg(HEAD, format!("unsupported dtype {d:?}"))),
    }
}

fn linear_nll_t<T: Real>(h: &Tensor, w: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, d) = h.dims2()?;
    let (dw, v) = w.dims2()?;
    if dw != d || w.dtype() != h.dtype() || v == 0 {
        return Err(msg(
            HEAD,
            format!(
                "weights {:?} {:?} for hidden states {:?} {:?}",
                w.dims(),
                w.dtype(),
                h.dims(),
                h.dtype()
            ),
        ));
    }
    crate::macs::record(n * d * v);
    let (h, w, targets) = (h.contiguous()?, w.contiguous()?, targets.contiguous()?);
    let mut p = vec![T::zero(); n * v];
    let mut nll = vec![T::zero(); n];
    {
        let (hs, hl) = h.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (ts, tl) = targets.storage_and_layout();
        let hv = cpu_data::<T>(HEAD, &hs, hl)?;
        let wv = cpu_data::<T>(HEAD, &ws, wl)?;
        let tv = match &*ts {
            candle_core::Storage::Cpu(c) => self::targets(HEAD, c, tl, n)?,
            _ => return Err(msg(HEAD, "targets must be on the CPU")),
        };
        if let Some(bad) = tv.iter().find(|&&i| i as usize >= v) {
            return Err(msg(
                HEAD,
                format!("target {bad} outside a vocabulary of {v}"),
            ));
        }
        gemm::matmul(
            &mut gemm::MatMut::new(&mut p, n, v),
            gemm::Mat::new(hv, n, d),
            gemm::Mat::new(wv, d, v),
            T::one(),
            false,
            gemm::Par::all(),
        );
        p.par_chunks_mut(v)
            .zip(nll.par_iter_mut())
            .zip(tv.par_iter())
            .for_each(|((row, out), &t)| *out = nll_row(row, t as usize));
    }
    let op = LinearNll {
        w: w.clone(),
        nll: Mutex::new(Some(nll)),
        dlogits: Mutex::new(Some(p)),
        vocab: v,
    };
    h.apply_op3(&w, &targets, op)
}
