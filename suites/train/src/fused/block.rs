//! The pre-LN transformer block as one op with a hand-written backward pass:
//!
//! ```text
//! x1 = x  + Attn(LN1(x))        Attn(u) = softmax(s · Q Kᵀ + mask) V · W_out + b_out,
//! y  = x1 + MLP(LN2(x1))                  [Q K V] = u W_qkv + b_qkv
//!                                MLP(u)  = gelu_tanh(u W_fc1 + b_fc1) W_fc2 + b_fc2
//! ```
//!
//! Composed from candle ops, a block is about forty tensors in the forward pass and as many
//! again, each zero-filled then added to, in the backward pass. Here the forward pass makes
//! nine buffers it keeps for the backward pass (normalised inputs, QKV, attention
//! probabilities, the attention output, the GELU output and its derivative), and the backward
//! pass writes every weight gradient straight into its buffer with accumulating matrix products
//! ([`super::grads`]). Products read their operands through strides ([`super::gemm`]): per-head
//! Q, K and V are views of the QKV buffer, transposes are views, bias and residual additions
//! start the destination before the product adds into it. Attention runs one task per
//! (image, head) pair.
//!
//! f32 and f64 on the CPU; the caller hands over a view of the block's weights ([`BlockView`])
//! and falls back to other ops for other dtypes and devices.

use super::gemm::{matmul, Mat, MatMut, Par, SharedMut};
use super::{
    cast, grads, msg, slice, take_once, tensor_of, vmath, Real, CHUNK_ROWS, GELU_C, SQRT_2_OVER_PI,
};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

const OP: &str = "fused transformer block";

/// A view of one block's weights and shape, handed over by its owner (the model code), so
/// that this op does not depend on how the model stores them.
#[derive(Clone, Copy)]
pub struct BlockView<'a> {
    pub ln1_g: &'a Tensor,
    pub ln1_b: &'a Tensor,
    pub qkv_w: &'a Tensor,
    pub qkv_b: Option<&'a Tensor>,
    pub out_w: &'a Tensor,
    pub out_b: Option<&'a Tensor>,
    pub ln2_g: &'a Tensor,
    pub ln2_b: &'a Tensor,
    pub fc1_w: &'a Tensor,
    pub fc1_b: Option<&'a Tensor>,
    pub fc2_w: &'a Tensor,
    pub fc2_b: Option<&'a Tensor>,
    pub heads: usize,
    /// Layer-norm epsilon of both norms.
    pub eps: f64,
}

/// Whether `block` can run as one fused op on `x` (all weights of `x`'s float type, on the CPU,
/// every linear layer with a bias).
pub fn applies(block: &BlockView<'_>, x: &Tensor, k: super::Kernels) -> bool {
    super::applies(x, k)
        && Weights::of(block)
            .map(|w| {
                w.all()
                    .iter()
                    .all(|t| t.dtype() == x.dtype() && t.device().is_cpu())
            })
            .unwrap_or(false)
}

/// One block on `x` (B, T, D) with an optional additive (T, T) attention mask.
///
/// `keep_probs`: keep the (B, H, T, T) attention probabilities for the backward pass (as XLA
/// does without flash attention), or keep only the mask and recompute them there, head by head,
/// with the same arithmetic (so values and gradients are identical either way).
pub fn forward(
    block: &BlockView<'_>,
    x: &Tensor,
    mask: Option<&Tensor>,
    keep_probs: bool,
) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 => forward_t::<f32>(block, x, mask, keep_probs),
        DType::F64 => forward_t::<f64>(block, x, mask, keep_probs),
        d => Err(msg(OP, format!("unsupported dtype {d:?}"))),
    }
}

/// The block's weights, in a fixed order.
#[derive(Clone)]
struct Weights {
    ln1_g: Tensor,
    ln1_b: Tensor,
    qkv_w: Tensor,
    qkv_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
    ln2_g: Tensor,
    ln2_b: Tensor,
    fc1_w: Tensor,
    fc1_b: Tensor,
    fc2_w: Tensor,
    fc2_b: Tensor,
}

impl Weights {
    fn of(b: &BlockView<'_>) -> Option<Self> {
        Some(Weights {
            ln1_g: b.ln1_g.clone(),
            ln1_b: b.ln1_b.clone(),
            qkv_w: b.qkv_w.clone(),
            qkv_b: b.qkv_b?.clone(),
            out_w: b.out_w.clone(),
            out_b: b.out_b?.clone(),
            ln2_g: b.ln2_g.clone(),
            ln2_b: b.ln2_b.clone(),
            fc1_w: b.fc1_w.clone(),
            fc1_b: b.fc1_b?.clone(),
            fc2_w: b.fc2_w.clone(),
            fc2_b: b.fc2_b?.clone(),
        })
    }

    fn all(&self) -> [&Tensor; 12] {
        [
            &self.ln1_g,
            &self.ln1_b,
            &self.qkv_w,
            &self.qkv_b,
            &self.out_w,
            &self.out_b,
            &self.ln2_g,
            &self.ln2_b,
            &self.fc1_w,
            &self.fc1_b,
            &self.fc2_w,
            &self.fc2_b,
        ]
    }

    /// Checks every weight's shape against width `d` and MLP width `f`.
    fn check(&self, d: usize) -> Result<usize> {
        let f = self.fc1_w.dims().get(1).copied().unwrap_or(0);
        let want: [(&str, &Tensor, Vec<usize>); 12] = [
            ("ln1 scale", &self.ln1_g, vec![d]),
            ("ln1 bias", &self.ln1_b, vec![d]),
            ("qkv weight", &self.qkv_w, vec![d, 3 * d]),
            ("qkv bias", &self.qkv_b, vec![3 * d]),
            ("out weight", &self.out_w, vec![d, d]),
            ("out bias", &self.out_b, vec![d]),
            ("ln2 scale", &self.ln2_g, vec![d]),
            ("ln2 bias", &self.ln2_b, vec![d]),
            ("fc1 weight", &self.fc1_w, vec![d, f]),
            ("fc1 bias", &self.fc1_b, vec![f]),
            ("fc2 weight", &self.fc2_w, vec![f, d]),
            ("fc2 bias", &self.fc2_b, vec![d]),
        ];
        for (name, t, dims) in want {
            if t.dims() != dims.as_slice() {
                return Err(msg(
                    OP,
                    format!("{name} has shape {:?}, expected {dims:?}", t.dims()),
                ));
            }
        }
        if f == 0 {
            return Err(msg(OP, "empty MLP"));
        }
        Ok(f)
    }
}

/// The contiguous CPU data of a tensor's storage.
fn cpu<'a, T: Real>(s: &'a Storage, l: &Layout) -> Result<&'a [T]> {
    match s {
        Storage::Cpu(c) => slice::<T>(OP, c, l),
        _ => Err(msg(OP, "tensors must be on the CPU")),
    }
}

/// Runs `f` with the weights' data borrowed.
fn with_weights<T: Real, R>(w: &Weights, f: impl FnOnce(&W<'_, T>) -> Result<R>) -> Result<R> {
    let all = w.all();
    let guards: Vec<_> = all.iter().map(|t| t.storage_and_layout()).collect();
    let s = guards
        .iter()
        .map(|(g, l)| cpu::<T>(g, l))
        .collect::<Result<Vec<_>>>()?;
    f(&W {
        ln1_g: s[0],
        ln1_b: s[1],
        qkv_w: s[2],
        qkv_b: s[3],
        out_w: s[4],
        out_b: s[5],
        ln2_g: s[6],
        ln2_b: s[7],
        fc1_w: s[8],
        fc1_b: s[9],
        fc2_w: s[10],
        fc2_b: s[11],
    })
}

struct W<'a, T> {
    ln1_g: &'a [T],
    ln1_b: &'a [T],
    qkv_w: &'a [T],
    qkv_b: &'a [T],
    out_w: &'a [T],
    out_b: &'a [T],
    ln2_g: &'a [T],
    ln2_b: &'a [T],
    fc1_w: &'a [T],
    fc1_b: &'a [T],
    fc2_w: &'a [T],
    fc2_b: &'a [T],
}

/// Sizes of one call.
#[derive(Clone, Copy, Debug)]
struct Dims {
    /// Images (sequences) in the batch.
    b: usize,
    /// Tokens per sequence.
    n: usize,
    /// Width.
    d: usize,
    /// MLP width.
    f: usize,
    heads: usize,
    eps: f64,
}

impl Dims {
    fn rows(&self) -> usize {
        self.b * self.n
    }
    fn dh(&self) -> usize {
        self.d / self.heads
    }
    fn scale<T: Real>(&self) -> T {
        cast::<T>(1.0 / (self.dh() as f64).sqrt())
    }
}

/// What the forward pass keeps for the backward pass.
struct Saved<T: Real> {
    /// LN1's normalised input before scale and shift (R, D), and 1/σ per row (R).
    xhat1: Vec<T>,
    rstd1: Vec<T>,
    /// [Q K V] (R, 3D).
    qkv: Vec<T>,
    /// Attention probabilities (B, H, T, T) when they are kept (`KEEP` of [`BlockOp`]); when
    /// they are recomputed, the additive (T, T) mask (empty without one). One field for both,
    /// so that what the op holds per block is the same size as before the choice existed.
    probs: Vec<T>,
    /// Attention output before the output projection (R, D).
    attn: Vec<T>,
    xhat2: Vec<T>,
    rstd2: Vec<T>,
    /// GELU output (R, F) and its derivative at the pre-activation.
    act: Vec<T>,
    dact: Vec<T>,
}

/// `KEEP`: whether [`Saved::probs`] holds the probabilities or the mask.
struct BlockOp<T: Real, const KEEP: bool> {
    w: Weights,
    dims: Dims,
    /// The output, computed before the op is attached to the graph; `cpu_fwd` hands it over.
    out: Mutex<Option<Vec<T>>>,
    /// Present until the backward pass has used it.
    saved: Mutex<Option<Saved<T>>>,
}

fn forward_t<T: Real>(
    block: &BlockView<'_>,
    x: &Tensor,
    mask: Option<&Tensor>,
    keep_probs: bool,
) -> Result<Tensor> {
    let w = Weights::of(block).ok_or_else(|| msg(OP, "every linear layer needs a bias"))?;
    let (b, n, d) = x.dims3()?;
    let heads = block.heads;
    if heads == 0 || d % heads != 0 {
        return Err(msg(
            OP,
            format!("width {d} is not divisible by {heads} heads"),
        ));
    }
    let f = w.check(d)?;
    let dims = Dims {
        b,
        n,
        d,
        f,
        heads,
        eps: block.eps,
    };
    let mask = match mask {
        Some(m) => {
            if m.dims() != [n, n] {
                return Err(msg(
                    OP,
                    format!("mask of shape {:?} for {n} tokens", m.dims()),
                ));
            }
            let m = m.to_dtype(x.dtype())?.contiguous()?;
            let (ms, ml) = m.storage_and_layout();
            Some(cpu::<T>(&ms, ml)?.to_vec())
        }
        None => None,
    };
    let dh = d / heads;
    crate::macs::record(b * n * d * (3 * d + d + 2 * f) + 2 * b * heads * n * n * dh);
    let x = x.contiguous()?;
    let train = x.track_op() || w.all().iter().any(|t| t.track_op());
    let (y, saved) = {
        let (xs, xl) = x.storage_and_layout();
        let xv = cpu::<T>(&xs, xl)?;
        with_weights::<T, _>(&w, |wv| {
            Ok(block_forward(xv, wv, dims, mask.as_deref(), keep_probs))
        })?
    };
    let (out, saved) = (Mutex::new(Some(y)), Mutex::new(train.then_some(saved)));
    if keep_probs {
        let op = BlockOp::<T, true> {
            w: w.clone(),
            dims,
            out,
            saved,
        };
        x.apply_op2(&w.ln1_g, op)
    } else {
        let op = BlockOp::<T, false> {
            w: w.clone(),
            dims,
            out,
            saved,
        };
        x.apply_op2(&w.ln1_g, op)
    }
}

impl<T: Real, const KEEP: bool> CustomOp2 for BlockOp<T, KEEP> {
    fn name(&self) -> &'static str {
        "fused-transformer-block"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = take_once(&self.out, OP, "output already taken")?;
        let Dims { b, n, d, .. } = self.dims;
        Ok((T::wrap(y), Shape::from((b, n, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _ln1_g: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = take_once(
            &self.saved,
            OP,
            "backward pass ran twice over one forward pass (its saved activations are freed \
             after the first)",
        )?;
        let dy = dy.contiguous()?;
        let (dx, dln1_g) = {
            let (gs, gl) = dy.storage_and_layout();
            let dyv = cpu::<T>(&gs, gl)?;
            with_weights::<T, _>(&self.w, |wv| {
                block_backward(dyv, wv, &self.w, self.dims, saved, KEEP)
            })?
        };
        let Dims { b, n, d, .. } = self.dims;
        let dx = tensor_of(dx, (b, n, d))?;
        let dln1_g = tensor_of(dln1_g, d)?;
        Ok((x.track_op().then_some(dx), Some(dln1_g)))
    }
}

// ---------------------------------------------------------------------------------------------
// Forward

fn block_forward<T: Real>(
    x: &[T],
    w: &W<'_, T>,
    dm: Dims,
    mask: Option<&[T]>,
    keep_probs: bool,
) -> (Vec<T>, Saved<T>) {
    let Dims {
        b, n, d, f, heads, ..
    } = dm;
    let r = dm.rows();
    let par = Par::all();

    // LN1.
    let mut xhat1 = vec![T::zero(); r * d];
    let mut rstd1 = vec![T::zero(); r];
    let mut xn = vec![T::zero(); r * d];
    layer_norm(x, w.ln1_g, w.ln1_b, dm, &mut xhat1, &mut rstd1, &mut xn);

    // QKV = LN1(x) W_qkv + b_qkv.
    let mut qkv = vec![T::zero(); r * 3 * d];
    fill_rows(&mut qkv, w.qkv_b, None);
    matmul(
        &mut MatMut::new(&mut qkv, r, 3 * d),
        Mat::new(&xn, r, d),
        Mat::new(w.qkv_w, d, 3 * d),
        T::one(),
        true,
        par,
    );

    // Attention, one task per (image, head).
    let mut probs = keep_probs.then(|| vec![T::zero(); b * heads * n * n]);
    let mut attn = vec![T::zero(); r * d];
    attention_forward(&qkv, mask, dm, probs.as_deref_mut(), &mut attn);

    // y = x1 = x + attn W_out + b_out.
    let mut y = vec![T::zero(); r * d];
    fill_rows(&mut y, w.out_b, Some(x));
    matmul(
        &mut MatMut::new(&mut y, r, d),
        Mat::new(&attn, r, d),
        Mat::new(w.out_w, d, d),
        T::one(),
        true,
        par,
    );

    // LN2 of x1, then y = x1 + b_fc2 so the MLP's product adds into it.
    let mut xhat2 = vec![T::zero(); r * d];
    let mut rstd2 = vec![T::zero(); r];
    layer_norm_in_place(
        &mut y, w.ln2_g, w.ln2_b, dm, &mut xhat2, &mut rstd2, &mut xn, w.fc2_b,
    );

    // act = gelu(LN2(x1) W_fc1 + b_fc1), with its derivative for the backward pass.
    let mut act = vec![T::zero(); r * f];
    let mut dact = vec![T::zero(); r * f];
    matmul(
        &mut MatMut::new(&mut act, r, f),
        Mat::new(&xn, r, d),
        Mat::new(w.fc1_w, d, f),
        T::one(),
        false,
        par,
    );
    gelu_in_place(&mut act, &mut dact, w.fc1_b);

    // y += act W_fc2.
    matmul(
        &mut MatMut::new(&mut y, r, d),
        Mat::new(&act, r, f),
        Mat::new(w.fc2_w, f, d),
        T::one(),
        true,
        par,
    );
    drop(xn);
    (
        y,
        Saved {
            xhat1,
            rstd1,
            qkv,
            probs: match probs {
                Some(p) => p,
                None => mask.map(<[T]>::to_vec).unwrap_or_default(),
            },
            attn,
            xhat2,
            rstd2,
            act,
            dact,
        },
    )
}

/// Every row of `dst` set to `row` (plus the same row of `base`).
fn fill_rows<T: Real>(dst: &mut [T], row: &[T], base: Option<&[T]>) {
    let c = row.len();
    match base {
        Some(base) => dst
            .par_chunks_mut(c * CHUNK_ROWS)
            .zip(base.par_chunks(c * CHUNK_ROWS))
            .for_each(|(dc, bc)| {
                for (dr, br) in dc.chunks_mut(c).zip(bc.chunks(c)) {
                    for i in 0..c {
                        dr[i] = br[i] + row[i];
                    }
                }
            }),
        None => dst
            .par_chunks_mut(c * CHUNK_ROWS)
            .for_each(|dc| dc.chunks_mut(c).for_each(|dr| dr.copy_from_slice(row))),
    }
}

/// Normalises one row: writes x̂ and x̂·g + b, returns 1/σ.
#[inline(always)]
fn ln_row<T: Real>(xr: &[T], g: &[T], bias: &[T], eps: f64, xh: &mut [T], xn: &mut [T]) -> T {
    let d = cast::<T>(xr.len() as f64);
    let mean = vmath::sum(xr) / d;
    for (h, &v) in xh.iter_mut().zip(xr) {
        *h = v - mean;
    }
    let rstd = (vmath::dot(xh, xh) / d + cast(eps)).sqrt().recip();
    for (((h, n), &gi), &bi) in xh.iter_mut().zip(xn.iter_mut()).zip(g).zip(bias) {
        *h = *h * rstd;
        *n = *h * gi + bi;
    }
    rstd
}

fn layer_norm<T: Real>(
    x: &[T],
    g: &[T],
    bias: &[T],
    dm: Dims,
    xhat: &mut [T],
    rstd: &mut [T],
    xn: &mut [T],
) {
    let d = dm.d;
    xhat.par_chunks_mut(d * CHUNK_ROWS)
        .zip(xn.par_chunks_mut(d * CHUNK_ROWS))
        .zip(rstd.par_chunks_mut(CHUNK_ROWS))
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .for_each(|(((hc, nc), sc), xc)| ln_rows(xc, g, bias, dm.eps, hc, nc, sc));
}

/// LN of `x`'s rows, then `add` added to each row of `x` in place.
#[allow(clippy::too_many_arguments)]
fn layer_norm_in_place<T: Real>(
    x: &mut [T],
    g: &[T],
    bias: &[T],
    dm: Dims,
    xhat: &mut [T],
    rstd: &mut [T],
    xn: &mut [T],
    add: &[T],
) {
    let d = dm.d;
    xhat.par_chunks_mut(d * CHUNK_ROWS)
        .zip(xn.par_chunks_mut(d * CHUNK_ROWS))
        .zip(rstd.par_chunks_mut(CHUNK_ROWS))
        .zip(x.par_chunks_mut(d * CHUNK_ROWS))
        .for_each(|(((hc, nc), sc), xc)| {
            ln_rows(xc, g, bias, dm.eps, hc, nc, sc);
            add_rows(xc, add);
        });
}

vmath::simd_kernel! {
    /// LN of each row of `xc` into x̂ (`hc`), x̂·g + b (`nc`) and 1/σ (`sc`).
    fn ln_rows<T: Real>(
        xc: &[T],
        g: &[T],
        bias: &[T],
        eps: f64,
        hc: &mut [T],
        nc: &mut [T],
        sc: &mut [T],
    ) {
        let d = g.len();
        for (((hr, nr), s), xr) in hc
            .chunks_mut(d)
            .zip(nc.chunks_mut(d))
            .zip(sc.iter_mut())
            .zip(xc.chunks(d))
        {
            *s = ln_row(xr, g, bias, eps, hr, nr);
        }
    }
}

vmath::simd_kernel! {
    /// Adds `add` to every row of `xc`.
    fn add_rows<T: Real>(xc: &mut [T], add: &[T]) {
        for xr in xc.chunks_mut(add.len()) {
            for (x, &a) in xr.iter_mut().zip(add) {
                *x = *x + a;
            }
        }
    }
}

/// In place: h ← gelu(h + b) row by row, and `dact` ← gelu'(h + b).
///
/// With s = sigmoid(2z), z = k (v + c v³): gelu(v) = v s, gelu'(v) = s + 2 v s (1 − s) k (1 + 3c v²)
/// (the tanh approximation written with one exponential).
fn gelu_in_place<T: Real>(h: &mut [T], dact: &mut [T], bias: &[T]) {
    let f = bias.len();
    h.par_chunks_mut(f * 16)
        .zip(dact.par_chunks_mut(f * 16))
        .for_each(|(hc, dc)| gelu_rows(hc, dc, bias));
}

vmath::simd_kernel! {
    fn gelu_rows<T: Real>(hc: &mut [T], dc: &mut [T], bias: &[T]) {
        let (k, k2, c, c3, one, two) = (
            cast::<T>(SQRT_2_OVER_PI),
            cast::<T>(2.0 * SQRT_2_OVER_PI),
            cast::<T>(GELU_C),
            cast::<T>(3.0 * GELU_C),
            T::one(),
            cast::<T>(2.0),
        );
        let f = bias.len();
        for (hr, dr) in hc.chunks_mut(f).zip(dc.chunks_mut(f)) {
            for ((h, dv), &bi) in hr.iter_mut().zip(dr.iter_mut()).zip(bias) {
                let v = *h + bi;
                let s = one / (one + (-(k2 * v * (one + c * v * v))).fast_exp());
                *h = v * s;
                *dv = s + two * v * s * (one - s) * k * (one + c3 * v * v);
            }
        }
    }
}

/// The probabilities of head `h` of image `bi` into `p` (n × n): softmax(s · q kᵀ + mask).
/// The forward pass and the recomputation in the backward pass both call this, so that a
/// recomputed head is bit-identical to a kept one.
fn head_probs<T: Real>(qkv: &[T], mask: Option<&[T]>, dm: Dims, bi: usize, h: usize, p: &mut [T]) {
    let n = dm.n;
    let [q, k, _] = head_qkv(qkv, dm, bi, h);
    matmul(
        &mut MatMut::new(p, n, n),
        q,
        k.t(),
        dm.scale::<T>(),
        false,
        Par::Seq,
    );
    masked_softmax_rows(p, mask, n);
}

/// Runs `f(task, slot)` for every (image, head) task in parallel; each pool thread gets
/// `per_thread` elements of scratch of its own.
fn for_each_head<T: Real>(dm: Dims, per_thread: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let threads = rayon::current_num_threads().max(1);
    let mut scratch = vec![T::zero(); threads * per_thread];
    let scratch = SharedMut::new(&mut scratch);
    (0..dm.b * dm.heads).into_par_iter().for_each(|task| {
        let slot = rayon::current_thread_index().unwrap_or(0) % threads;
        // SAFETY: each pool thread uses only its own scratch slot, and a task runs to its end on
        // one thread (nothing in it waits on other rayon work).
        let mine = unsafe { scratch.slice(slot * per_thread, per_thread) };
        f(task, mine);
    });
}

/// Attention output of every (image, head) into `attn`; the probabilities go to `probs` when
/// they are kept, else to per-thread scratch.
fn attention_forward<T: Real>(
    qkv: &[T],
    mask: Option<&[T]>,
    dm: Dims,
    probs: Option<&mut [T]>,
    attn: &mut [T],
) {
    let Dims { n, d, heads, .. } = dm;
    let dh = dm.dh();
    let out = SharedMut::new(attn);
    let head = |task: usize, p: &mut [T]| {
        let (bi, h) = (task / heads, task % heads);
        head_probs(qkv, mask, dm, bi, h, p);
        let [_, _, v] = head_qkv(qkv, dm, bi, h);
        // SAFETY: this task alone writes rows bi·n.. of columns h·dh.. (its head's part of its
        // image's output), and `attn` is borrowed for the whole parallel loop.
        unsafe {
            out.matmul(
                bi * n * d + h * dh,
                n,
                dh,
                d,
                Mat::new(p, n, n),
                v,
                T::one(),
                false,
            )
        };
    };
    match probs {
        Some(probs) => probs
            .par_chunks_mut(n * n)
            .enumerate()
            .for_each(|(task, p)| head(task, p)),
        None => for_each_head(dm, n * n, head),
    }
}

vmath::simd_kernel! {
    /// softmax(row + mask row) for each row of an (n, n) score matrix, in place.
    fn masked_softmax_rows<T: Real>(p: &mut [T], mask: Option<&[T]>, n: usize) {
        for (i, row) in p.chunks_mut(n).enumerate() {
            if let Some(m) = mask {
                for (s, &mv) in row.iter_mut().zip(&m[i * n..(i + 1) * n]) {
                    *s = *s + mv;
                }
            }
            vmath::softmax_row(row);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward

/// Returns dx and d(ln1 scale); the other weights' gradients go to [`grads::accumulate`].
/// `keep`: whether `saved.probs` holds the probabilities (else the mask, and they are
/// recomputed).
fn block_backward<T: Real>(
    dy: &[T],
    w: &W<'_, T>,
    wt: &Weights,
    dm: Dims,
    saved: Saved<T>,
    keep: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let Dims { d, f, .. } = dm;
    let r = dm.rows();
    let par = Par::all();
    let Saved {
        xhat1,
        rstd1,
        qkv,
        probs,
        attn,
        xhat2,
        rstd2,
        act,
        dact,
    } = saved;

    // MLP: y = x1 + act W_fc2 + b_fc2.
    grads::accumulate::<T>(OP, &wt.fc2_b, |g| add_colsum(g, dy))?;
    grads::accumulate::<T>(OP, &wt.fc2_w, |g| {
        matmul(
            &mut MatMut::new(g, f, d),
            Mat::new(&act, r, f).t(),
            Mat::new(dy, r, d),
            T::one(),
            true,
            par,
        )
    })?;
    drop(act);
    let mut dh = vec![T::zero(); r * f];
    matmul(
        &mut MatMut::new(&mut dh, r, f),
        Mat::new(dy, r, d),
        Mat::new(w.fc2_w, f, d).t(),
        T::one(),
        false,
        par,
    );
    mul_in_place(&mut dh, &dact);
    drop(dact);
    grads::accumulate::<T>(OP, &wt.fc1_b, |g| add_colsum(g, &dh))?;
    let mut xn = vec![T::zero(); r * d];
    scale_shift(&xhat2, w.ln2_g, w.ln2_b, &mut xn);
    grads::accumulate::<T>(OP, &wt.fc1_w, |g| {
        matmul(
            &mut MatMut::new(g, d, f),
            Mat::new(&xn, r, d).t(),
            Mat::new(&dh, r, f),
            T::one(),
            true,
            par,
        )
    })?;
    // dxn2 = dh W_fc1ᵀ, into xn's buffer (its values were used above).
    matmul(
        &mut MatMut::new(&mut xn, r, d),
        Mat::new(&dh, r, f),
        Mat::new(w.fc1_w, d, f).t(),
        T::one(),
        false,
        par,
    );
    drop(dh);

    // LN2: dx1 = dy + LN2ᵀ(dxn2), written into dx (the op's input gradient, finished below).
    let mut dx = vec![T::zero(); r * d];
    let (dg2, db2) = layer_norm_backward(&xn, &xhat2, &rstd2, w.ln2_g, d, &mut dx, Some(dy));
    grads::accumulate::<T>(OP, &wt.ln2_g, |g| add(g, &dg2))?;
    grads::accumulate::<T>(OP, &wt.ln2_b, |g| add(g, &db2))?;
    drop((xhat2, rstd2));

    // Output projection: x1 = x + attn W_out + b_out.
    grads::accumulate::<T>(OP, &wt.out_b, |g| add_colsum(g, &dx))?;
    grads::accumulate::<T>(OP, &wt.out_w, |g| {
        matmul(
            &mut MatMut::new(g, d, d),
            Mat::new(&attn, r, d).t(),
            Mat::new(&dx, r, d),
            T::one(),
            true,
            par,
        )
    })?;
    drop(attn);
    // d attn, into xn's buffer.
    matmul(
        &mut MatMut::new(&mut xn, r, d),
        Mat::new(&dx, r, d),
        Mat::new(w.out_w, d, d).t(),
        T::one(),
        false,
        par,
    );

    // Attention.
    let mut dqkv = vec![T::zero(); r * 3 * d];
    if keep {
        attention_backward(&qkv, Some(probs), None, &xn, dm, &mut dqkv);
    } else {
        let mask = (!probs.is_empty()).then_some(&probs[..]);
        attention_backward(&qkv, None, mask, &xn, dm, &mut dqkv);
        drop(probs);
    }
    drop(qkv);

    // QKV projection of LN1(x).
    grads::accumulate::<T>(OP, &wt.qkv_b, |g| add_colsum(g, &dqkv))?;
    scale_shift(&xhat1, w.ln1_g, w.ln1_b, &mut xn);
    grads::accumulate::<T>(OP, &wt.qkv_w, |g| {
        matmul(
            &mut MatMut::new(g, d, 3 * d),
            Mat::new(&xn, r, d).t(),
            Mat::new(&dqkv, r, 3 * d),
            T::one(),
            true,
            par,
        )
    })?;
    matmul(
        &mut MatMut::new(&mut xn, r, d),
        Mat::new(&dqkv, r, 3 * d),
        Mat::new(w.qkv_w, d, 3 * d).t(),
        T::one(),
        false,
        par,
    );
    drop(dqkv);

    // LN1: dx += LN1ᵀ(dxn1).
    let (dg1, db1) = layer_norm_backward(&xn, &xhat1, &rstd1, w.ln1_g, d, &mut dx, None);
    grads::accumulate::<T>(OP, &wt.ln1_b, |g| add(g, &db1))?;
    Ok((dx, dg1))
}

fn add<T: Real>(acc: &mut [T], v: &[T]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a = *a + b;
    }
}

fn mul_in_place<T: Real>(x: &mut [T], by: &[T]) {
    x.par_chunks_mut(1 << 14)
        .zip(by.par_chunks(1 << 14))
        .for_each(|(xc, bc)| mul_chunk(xc, bc));
}

vmath::simd_kernel! {
    fn mul_chunk<T: Real>(xc: &mut [T], bc: &[T]) {
        for (a, &b) in xc.iter_mut().zip(bc) {
            *a = *a * b;
        }
    }
}

/// out = x̂ · g + b, row by row.
fn scale_shift<T: Real>(xhat: &[T], g: &[T], bias: &[T], out: &mut [T]) {
    let d = g.len();
    out.par_chunks_mut(d * CHUNK_ROWS)
        .zip(xhat.par_chunks(d * CHUNK_ROWS))
        .for_each(|(oc, hc)| scale_shift_rows(oc, hc, g, bias));
}

vmath::simd_kernel! {
    fn scale_shift_rows<T: Real>(oc: &mut [T], hc: &[T], g: &[T], bias: &[T]) {
        for (or, hr) in oc.chunks_mut(g.len()).zip(hc.chunks(g.len())) {
            for (((o, &h), &gi), &bi) in or.iter_mut().zip(hr).zip(g).zip(bias) {
                *o = h * gi + bi;
            }
        }
    }
}

/// acc[j] += Σ_i m[i, j] for a row-major `m` with `acc.len()` columns. Columns are split
/// between threads; each column is summed in row order, so the result does not depend on them.
fn add_colsum<T: Real>(acc: &mut [T], m: &[T]) {
    let c = acc.len();
    const COLS: usize = 128;
    acc.par_chunks_mut(COLS)
        .enumerate()
        .for_each(|(blk, a)| colsum_block(a, m, c, blk * COLS));
}

vmath::simd_kernel! {
    /// a[j] += Σ_i m[i, j0 + j] over the rows of a row-major `m` with `c` columns.
    fn colsum_block<T: Real>(a: &mut [T], m: &[T], c: usize, j0: usize) {
        let w = a.len();
        for row in m.chunks(c) {
            for (x, &v) in a.iter_mut().zip(&row[j0..j0 + w]) {
                *x = *x + v;
            }
        }
    }
}

/// Layer-norm backward from the normalised input x̂ and 1/σ: with ĝ = dxn · g,
/// dx = 1/σ (ĝ − mean(ĝ) − x̂ mean(ĝ x̂)), written as `base + dx` when a base is given and added
/// into `dx` otherwise. Returns the scale's and bias's gradients, summed over rows in a fixed
/// order.
fn layer_norm_backward<T: Real>(
    dxn: &[T],
    xhat: &[T],
    rstd: &[T],
    g: &[T],
    d: usize,
    dx: &mut [T],
    base: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    let partials: Vec<(Vec<T>, Vec<T>)> = dx
        .par_chunks_mut(d * CHUNK_ROWS)
        .enumerate()
        .map(|(c, dxc)| {
            let rows = c * CHUNK_ROWS..c * CHUNK_ROWS + dxc.len() / d;
            let span = rows.start * d..rows.end * d;
            let base = base.map(|b| &b[span.clone()]);
            ln_backward_rows(&dxn[span.clone()], &xhat[span], &rstd[rows], g, dxc, base)
        })
        .collect();
    let (mut dg, mut db) = (vec![T::zero(); d], vec![T::zero(); d]);
    for (pg, pb) in &partials {
        add(&mut dg, pg);
        add(&mut db, pb);
    }
    (dg, db)
}

/// The query, key and value of head `h` of image `bi`: (n, dh) views into the packed QKV rows.
fn head_qkv<T: Real>(qkv: &[T], dm: Dims, bi: usize, h: usize) -> [Mat<'_, T>; 3] {
    let Dims { n, d, .. } = dm;
    let dh = dm.dh();
    let base = bi * n * 3 * d + h * dh;
    [0, d, 2 * d].map(|off| Mat::strided(qkv, base + off, n, dh, 3 * d, 1))
}

/// Per (image, head): dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)) (written over P),
/// dQ = s · dS K, dK = s · dSᵀ Q, all into `dqkv`. P is the kept probabilities or, when none
/// were kept, recomputed from Q, K and the mask.
fn attention_backward<T: Real>(
    qkv: &[T],
    probs: Option<Vec<T>>,
    mask: Option<&[T]>,
    dattn: &[T],
    dm: Dims,
    dqkv: &mut [T],
) {
    let Dims { n, d, heads, .. } = dm;
    let dh = dm.dh();
    let scale = dm.scale::<T>();
    let out = SharedMut::new(dqkv);
    // `p` holds this head's probabilities on entry; `dp` is scratch.
    let head = |task: usize, p: &mut [T], dp: &mut [T]| {
        let (bi, h) = (task / heads, task % heads);
        // The same offset locates this head's q, k and v gradients in `dqkv`.
        let base = bi * n * 3 * d + h * dh;
        let [q, k, v] = head_qkv(qkv, dm, bi, h);
        let d_o = Mat::strided(dattn, bi * n * d + h * dh, n, dh, d, 1);
        // SAFETY: this task alone writes its head's columns of its image's rows of `dqkv`.
        unsafe {
            out.matmul(
                base + 2 * d,
                n,
                dh,
                3 * d,
                Mat::new(p, n, n).t(),
                d_o,
                T::one(),
                false,
            );
            matmul(
                &mut MatMut::new(dp, n, n),
                d_o,
                v.t(),
                T::one(),
                false,
                Par::Seq,
            );
            softmax_grad_rows(p, dp, n);
            out.matmul(base, n, dh, 3 * d, Mat::new(p, n, n), k, scale, false);
            out.matmul(
                base + d,
                n,
                dh,
                3 * d,
                Mat::new(p, n, n).t(),
                q,
                scale,
                false,
            );
        }
    };
    match probs {
        Some(mut probs) => for_each_head_with(dm, &mut probs, n * n, head),
        None => for_each_head(dm, 2 * n * n, |task, slot: &mut [T]| {
            let (p, dp) = slot.split_at_mut(n * n);
            head_probs(qkv, mask, dm, task / heads, task % heads, p);
            head(task, p, dp);
        }),
    }
}

/// As [`for_each_head`], each task also getting its own (n × n) chunk of `probs`.
fn for_each_head_with<T: Real>(
    dm: Dims,
    probs: &mut [T],
    per_thread: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    let mut scratch = vec![T::zero(); threads * per_thread];
    let scratch = SharedMut::new(&mut scratch);
    probs
        .par_chunks_mut(dm.n * dm.n)
        .enumerate()
        .for_each(|(task, p)| {
            let slot = rayon::current_thread_index().unwrap_or(0) % threads;
            // SAFETY: as in `for_each_head`.
            let dp = unsafe { scratch.slice(slot * per_thread, per_thread) };
            f(task, p, dp);
        });
}

vmath::simd_kernel! {
    /// Row by row, in place: p ← p ⊙ (dp − Σ dp ⊙ p), the softmax's input gradient.
    fn softmax_grad_rows<T: Real>(p: &mut [T], dp: &[T], n: usize) {
        for (pr, gr) in p.chunks_mut(n).zip(dp.chunks(n)) {
            let dot = vmath::dot(pr, gr);
            for (x, &y) in pr.iter_mut().zip(gr.iter()) {
                *x = *x * (y - dot);
            }
        }
    }
}

vmath::simd_kernel! {
    /// Layer-norm backward over a chunk of rows (see [`layer_norm_backward`]); returns the
    /// chunk's parts of the scale's and bias's gradients.
    fn ln_backward_rows<T: Real>(
        dxn: &[T],
        xhat: &[T],
        rstd: &[T],
        g: &[T],
        dx: &mut [T],
        base: Option<&[T]>,
    ) -> (Vec<T>, Vec<T>) {
        let d = g.len();
        let nd = cast::<T>(d as f64);
        let (mut dg, mut db, mut gh) = (vec![T::zero(); d], vec![T::zero(); d], vec![T::zero(); d]);
        for (i, dxr) in dx.chunks_mut(d).enumerate() {
            let gr = &dxn[i * d..(i + 1) * d];
            let hr = &xhat[i * d..(i + 1) * d];
            for j in 0..d {
                gh[j] = gr[j] * g[j];
                dg[j] = dg[j] + gr[j] * hr[j];
                db[j] = db[j] + gr[j];
            }
            let (m_g, m_gh, rs) = (vmath::sum(&gh) / nd, vmath::dot(&gh, hr) / nd, rstd[i]);
            match base {
                Some(base) => {
                    let br = &base[i * d..(i + 1) * d];
                    for j in 0..d {
                        dxr[j] = br[j] + rs * (gh[j] - m_g - hr[j] * m_gh);
                    }
                }
                None => {
                    for j in 0..d {
                        dxr[j] = dxr[j] + rs * (gh[j] - m_g - hr[j] * m_gh);
                    }
                }
            }
        }
        (dg, db)
    }
}
