//! Fused CPU kernels with their own backward passes: the whole pre-LN transformer block
//! ([`block`]), layer norm, (masked) softmax, GELU and the vocabulary head with its token
//! cross-entropy.
//!
//! candle composes these from element-wise ops, and its backward pass composes their
//! derivatives again: a layer norm backward is about fifteen passes over memory, each a new
//! tensor, and every op's gradient starts as a zero-filled tensor that is then added to. Here
//! each forward is one pass per row and each backward one more; the transformer block is one op
//! whose backward pass adds its weights' gradients straight into their buffers ([`grads`]);
//! matrix products read operands in place through strides ([`gemm`]); the head never holds more
//! than one (N, V) buffer. Element-wise loops are vectorisable, with a polynomial exponential
//! and AVX2 builds where the CPU has them ([`vmath`]).
//!
//! Which kernels run is a per-thread setting ([`with_kernels`]), fused by default, so that the
//! model code stays the same and a step can be replayed with candle's composed ops to compare.
//! Fused kernels cover f32 and f64 on the CPU. Elsewhere (CUDA) layer norm, softmax, dense
//! layers and the token cross-entropy run as device-generic single ops ([`portable`]) and the
//! rest takes candle's composed ops (no CUDA kernels of ovbench's own for them yet).
//!
//! Work is split over rows (or columns, or attention heads) with rayon in fixed-size chunks
//! whose partial sums are added in chunk order, so results do not depend on thread scheduling.

use candle_core::backend::BackendStorage;
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Error, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::str::FromStr;
use std::sync::Mutex;

pub mod block;
pub mod gemm;
pub mod grads;
pub mod portable;
pub mod vmath;

/// Which implementation of layer norm, softmax, GELU and cross-entropy the models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// This module's fused CPU kernels (composed ops where they do not apply).
    #[default]
    Fused,
    /// candle's composed ops everywhere.
    Composed,
    /// Device-generic single ops ([`portable`]) for layer norm, softmax, dense layers and the
    /// token cross-entropy, attention recomputed in the backward pass, composed ops for the
    /// rest: what `fused` runs on CUDA, selectable on the CPU to test and measure it there.
    Portable,
}

impl Kernels {
    /// Records made before the setting existed ran composed ops.
    pub fn composed() -> Self {
        Kernels::Composed
    }
}

impl FromStr for Kernels {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fused" => Ok(Kernels::Fused),
            "composed" => Ok(Kernels::Composed),
            "portable" => Ok(Kernels::Portable),
            _ => Err(format!(
                "unknown kernels '{s}' (expected fused, composed or portable)"
            )),
        }
    }
}

thread_local! {
    static KERNELS: Cell<Kernels> = const { Cell::new(Kernels::Fused) };
}

/// The kernels that model code on this thread uses.
pub fn kernels() -> Kernels {
    KERNELS.with(Cell::get)
}

/// Runs `f` with `k` as this thread's kernels, then restores the previous setting.
pub fn with_kernels<T>(k: Kernels, f: impl FnOnce() -> T) -> T {
    let prev = KERNELS.with(|c| c.replace(k));
    let out = f();
    KERNELS.with(|c| c.set(prev));
    out
}

/// Whether the fused kernel applies to `t`.
pub fn applies(t: &Tensor) -> bool {
    kernels() == Kernels::Fused
        && t.device().is_cpu()
        && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Whether the device-generic single ops ([`portable`]) apply to `t`: always with
/// `portable`, and with `fused` wherever the fused CPU kernels do not (CUDA, other dtypes).
pub fn portable_applies(t: &Tensor) -> bool {
    match kernels() {
        Kernels::Portable => true,
        Kernels::Fused => !applies(t),
        Kernels::Composed => false,
    }
}

/// Rows per parallel task.
const CHUNK_ROWS: usize = 64;

/// The float types the fused kernels run in: f32 for training, f64 for gradient checks.
pub trait Real: num_traits::Float + num_traits::FromPrimitive + Send + Sync + 'static {
    fn of(s: &CpuStorage) -> Option<&Vec<Self>>;
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<Self>>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// exp, vectorisable in f32 ([`vmath::exp_f32`]), libm's in f64 (gradient checks).
    fn fast_exp(self) -> Self;
}

/// A CPU tensor that owns `v` (no copy).
fn tensor_of<T: Real>(v: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    cpu_tensor(T::wrap(v), shape)
}

/// A CPU tensor owning the f32 or f64 storage `s`.
fn cpu_tensor(s: CpuStorage, shape: impl Into<Shape>) -> Result<Tensor> {
    let dev = candle_core::Device::Cpu;
    match s {
        CpuStorage::F32(v) => Tensor::from_vec(v, shape, &dev),
        CpuStorage::F64(v) => Tensor::from_vec(v, shape, &dev),
        other => Err(msg(
            "fused",
            format!("unsupported dtype {:?}", other.dtype()),
        )),
    }
}

impl Real for f32 {
    fn of(s: &CpuStorage) -> Option<&Vec<f32>> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<f32>> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    #[inline(always)]
    fn fast_exp(self) -> f32 {
        vmath::exp_f32(self)
    }
}

impl Real for f64 {
    fn of(s: &CpuStorage) -> Option<&Vec<f64>> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<f64>> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
}

/// Takes what a custom op stored for one later use (its output for `cpu_fwd`, or the buffers its
/// backward pass reads); `gone` says why it may already be taken.
fn take_once<V>(slot: &Mutex<Option<V>>, op: &str, gone: &str) -> Result<V> {
    slot.lock()
        .map_err(|_| msg(op, "state lock poisoned by an earlier panic"))?
        .take()
        .ok_or_else(|| msg(op, gone))
}

fn msg(op: &str, what: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{op}: {what}"))
}

/// The contiguous elements of a storage, or an error naming the op.
fn slice<'a, T: Real>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let v = T::of(s).ok_or_else(|| msg(op, format!("unsupported dtype {:?}", s.dtype())))?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| msg(op, "input must be contiguous"))?;
    Ok(&v[a..b])
}

fn last_dim(op: &str, l: &Layout) -> Result<usize> {
    l.dims()
        .last()
        .copied()
        .filter(|&d| d > 0)
        .ok_or_else(|| msg(op, "needs a non-empty last dimension"))
}

fn uninit<T: Real>(n: usize) -> Vec<T> {
    vec![T::zero(); n]
}

fn cast<T: Real>(x: f64) -> T {
    T::from_f64(x).expect("finite constant")
}

/// Dispatches a generic kernel on the storage's float type.
macro_rules! on_float {
    ($s:expr, $op:expr, $f:ident ( $($arg:expr),* )) => {
        match $s.dtype() {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F64 => $f::<f64>($($arg),*),
            d => Err(msg($op, format!("unsupported dtype {d:?}"))),
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Layer norm

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

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension, with an optional additive (Tq, Tk) mask

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

// ---------------------------------------------------------------------------------------------
// GELU, tanh approximation (candle's `gelu`)

struct Gelu;
struct GeluBwd;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

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

// ---------------------------------------------------------------------------------------------
// Token cross-entropy: per-row −log softmax(logits)[target]

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

/// The contiguous CPU data of a tensor's storage.
fn cpu_data<'a, T: Real>(op: &str, s: &'a candle_core::Storage, l: &Layout) -> Result<&'a [T]> {
    match s {
        candle_core::Storage::Cpu(c) => slice::<T>(op, c, l),
        _ => Err(msg(op, "tensors must be on the CPU")),
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
