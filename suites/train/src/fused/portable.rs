//! Layer norm, (masked) softmax, the biased dense layer and the token cross-entropy as single
//! ops on any device, for where the fused CPU kernels do not run (CUDA).
//!
//! candle's composed ops leave every intermediate in the autograd graph until the backward pass:
//! four more full-size tensors per softmax, five per layer norm and the product before the bias
//! of every dense layer, which on a GPU is much of a step's memory (the attention probabilities
//! alone are (B, H, T, T) per layer). Here each forward pass is composed from candle's own
//! storage kernels (the ones its tensor ops run, on the CPU and on CUDA) inside one op, so its
//! temporaries are freed before it returns and the graph keeps only the inputs and the output. The backward pass is composed from tensor ops and
//! recomputes what it needs. Being generic over the storage, the same code runs in the CPU
//! tests (`--kernels portable`) as on the GPU.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::op::{Add, Div, Exp, Log, Mul, ReduceOp, Sqr, Sqrt, Sub};
use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};

/// The layouts of a row-wise op over the last dimension of `shape`: the contiguous full
/// layout, the contiguous (…, 1) layout of a per-row value, and that value broadcast to full.
struct Rows {
    shape: Shape,
    last: usize,
    full: Layout,
    row: Layout,
    row_bcast: Layout,
}

impl Rows {
    fn of(shape: &Shape) -> Result<Rows> {
        let last = shape
            .rank()
            .checked_sub(1)
            .ok_or_else(|| candle_core::Error::Msg("portable row op on a scalar".into()).bt())?;
        let mut dims = shape.dims().to_vec();
        dims[last] = 1;
        let row = Layout::contiguous(dims);
        Ok(Rows {
            shape: shape.clone(),
            last,
            full: Layout::contiguous(shape.clone()),
            row_bcast: row.broadcast_as(shape.clone())?,
            row,
        })
    }
    fn width(&self) -> usize {
        self.shape.dims()[self.last]
    }
}

/// The row maxima of `z` and exp(z − max), the shared start of softmax and log-sum-exp.
fn shifted_exp<S: BackendStorage>(z: &S, zl: &Layout, r: &Rows) -> Result<(S, S)> {
    let max = z.reduce_op(ReduceOp::Max, zl, &[r.last])?;
    let e = z
        .binary_impl::<Sub>(&max, zl, &r.row_bcast)?
        .unary_impl::<Exp>(&r.full)?;
    Ok((max, e))
}

/// softmax(x + mask) over the last dimension; the mask is broadcast to x's shape.
fn softmax_fwd<S: BackendStorage>(
    x: &S,
    xl: &Layout,
    mask: Option<(&S, &Layout)>,
) -> Result<(S, Shape)> {
    let r = Rows::of(xl.shape())?;
    let masked;
    let (z, zl) = match mask {
        Some((m, ml)) => {
            masked = x.binary_impl::<Add>(m, xl, &ml.broadcast_as(r.shape.clone())?)?;
            (&masked, &r.full)
        }
        None => (x, xl),
    };
    let (_, e) = shifted_exp(z, zl, &r)?;
    let sum = e.reduce_op(ReduceOp::Sum, &r.full, &[r.last])?;
    Ok((e.binary_impl::<Div>(&sum, &r.full, &r.row_bcast)?, r.shape))
}

/// (x - mean) / sqrt(var + eps) * scale + bias over the last dimension.
fn layer_norm_fwd<S: BackendStorage>(
    eps: f64,
    (x, xl): (&S, &Layout),
    (g, gl): (&S, &Layout),
    (b, bl): (&S, &Layout),
) -> Result<(S, Shape)> {
    let r = Rows::of(xl.shape())?;
    let inv_d = 1.0 / r.width() as f64;
    let mean = x
        .reduce_op(ReduceOp::Sum, xl, &[r.last])?
        .affine(&r.row, inv_d, 0.0)?;
    let xc = x.binary_impl::<Sub>(&mean, xl, &r.row_bcast)?;
    let std = xc
        .unary_impl::<Sqr>(&r.full)?
        .reduce_op(ReduceOp::Sum, &r.full, &[r.last])?
        .affine(&r.row, inv_d, eps)?
        .unary_impl::<Sqrt>(&r.row)?;
    let xn = xc.binary_impl::<Div>(&std, &r.full, &r.row_bcast)?;
    drop(xc);
    let y = xn.binary_impl::<Mul>(g, &r.full, &gl.broadcast_as(r.shape.clone())?)?;
    drop(xn);
    let y = y.binary_impl::<Add>(b, &r.full, &bl.broadcast_as(r.shape.clone())?)?;
    Ok((y, r.shape))
}

/// x W + b for x (m, k), W (k, n), b (n): the product is made by the same storage call as
/// `Tensor::matmul` on these layouts, and the bias added in place of a second kept tensor.
fn linear_fwd<S: BackendStorage>(
    (x, xl): (&S, &Layout),
    (w, wl): (&S, &Layout),
    (b, bl): (&S, &Layout),
) -> Result<(S, Shape)> {
    let (m, k) = xl.shape().dims2()?;
    let (k2, n) = wl.shape().dims2()?;
    if k != k2 || bl.shape().elem_count() != n {
        candle_core::bail!(
            "portable linear: shapes {:?} x {:?} + {:?} do not fit",
            xl.shape(),
            wl.shape(),
            bl.shape()
        );
    }
    let y = x.matmul(w, (1, m, n, k), xl, wl)?;
    let shape = Shape::from((m, n));
    let y = y.binary_impl::<Add>(
        b,
        &Layout::contiguous(shape.clone()),
        &bl.broadcast_as(shape.clone())?,
    )?;
    Ok((y, shape))
}

/// Per-row negative log-likelihood of `targets` (N, 1) under the logits (N, V):
/// logsumexp(row) − row[target], without keeping the log-probabilities.
fn row_nll_fwd<S: BackendStorage>(
    (x, xl): (&S, &Layout),
    (t, tl): (&S, &Layout),
) -> Result<(S, Shape)> {
    let r = Rows::of(xl.shape())?;
    let (n, _) = xl.shape().dims2()?;
    if tl.shape().dims() != [n, 1] {
        candle_core::bail!(
            "portable cross-entropy: targets {:?} for logits {:?}",
            tl.shape(),
            xl.shape()
        );
    }
    let (max, e) = shifted_exp(x, xl, &r)?;
    let lse = e
        .reduce_op(ReduceOp::Sum, &r.full, &[1])?
        .unary_impl::<Log>(&r.row)?
        .binary_impl::<Add>(&max, &r.row, &r.row)?;
    drop(e);
    let picked = x.gather(xl, t, tl, 1)?;
    Ok((
        lse.binary_impl::<Sub>(&picked, &r.row, &r.row)?,
        r.row.shape().clone(),
    ))
}

/// dx = y (dy - Σ dy y), over the last dimension.
fn softmax_grad(y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let s = (dy * y)?.sum_keepdim(D::Minus1)?;
    Ok(dy.broadcast_sub(&s)?.mul(y)?.detach())
}

struct Softmax;
struct MaskedSoftmax;
struct Linear;
struct RowNll;
struct LayerNorm {
    eps: f64,
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "portable-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        softmax_fwd(s, l, None)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        softmax_fwd(s, l, None)
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(softmax_grad(y, dy)?))
    }
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "portable-masked-softmax"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        softmax_fwd(s1, l1, Some((s2, l2)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        softmax_fwd(s1, l1, Some((s2, l2)))
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

impl CustomOp2 for RowNll {
    fn name(&self) -> &'static str {
        "portable-row-nll"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        row_nll_fwd((s1, l1), (s2, l2))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        row_nll_fwd((s1, l1), (s2, l2))
    }
    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _nll: &Tensor,
        dnll: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // (softmax − one-hot) × dnll, row by row. candle's fused softmax has no backward pass,
        // which is of no matter here: nothing differentiates this one.
        let p = candle_nn::ops::softmax_last_dim(&logits.detach())?;
        let d = dnll.detach();
        let g = p.broadcast_mul(&d)?;
        drop(p);
        let g = g.scatter_add(&targets.detach(), &d.neg()?, 1)?;
        Ok((Some(g.detach()), None))
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "portable-linear"
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
        linear_fwd((s1, l1), (s2, l2), (s3, l3))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        linear_fwd((s1, l1), (s2, l2), (s3, l3))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dx = dy.matmul(&w.t()?)?;
        let dw = x.t()?.matmul(dy)?;
        let db = dy.sum(0)?;
        Ok((Some(dx.detach()), Some(dw.detach()), Some(db.detach())))
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "portable-layer-norm"
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
        layer_norm_fwd(self.eps, (s1, l1), (s2, l2), (s3, l3))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        layer_norm_fwd(self.eps, (s1, l1), (s2, l2), (s3, l3))
    }
    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        // Recomputes x̂ and 1/σ rather than keeping them from the forward pass.
        let d = g.elem_count();
        let rows = x.elem_count() / d;
        let xc = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let rstd = (xc.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        let xhat = xc.broadcast_mul(&rstd)?;
        drop(xc);
        let dg = (dy * &xhat)?.reshape((rows, d))?.sum(0)?;
        let db = dy.reshape((rows, d))?.sum(0)?;
        let gy = dy.broadcast_mul(g)?;
        let m1 = gy.mean_keepdim(D::Minus1)?;
        let m2 = (&gy * &xhat)?.mean_keepdim(D::Minus1)?;
        let dx = gy
            .broadcast_sub(&m1)?
            .sub(&xhat.broadcast_mul(&m2)?)?
            .broadcast_mul(&rstd)?;
        Ok((Some(dx.detach()), Some(dg.detach()), Some(db.detach())))
    }
}

/// `f(x)`, keeping only `x` and the result for the backward pass, which runs `f` again on `x`
/// and differentiates that (activation recomputation for one weightless function: whatever
/// `f` computes on the way is freed as soon as the forward pass has its result). `f` must not
/// read any tensor that needs a gradient other than its argument.
pub fn recompute(
    x: &Tensor,
    f: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    let y = f(&x.detach())?;
    x.apply_op2(&y, Recompute { f: Box::new(f) })
}

type TensorFn = Box<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

struct Recompute {
    f: TensorFn,
}

/// The op's value: a copy of its second argument (the result computed without a graph).
fn copy_of<S>(s: &S, l: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    // SAFETY: every element of `dst` is written by the strided copy below.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok((dst, l.shape().clone()))
}

impl CustomOp2 for Recompute {
    fn name(&self) -> &'static str {
        "recompute"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_of(s2, l2)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_of(s2, l2)
    }
    fn bwd(
        &self,
        x: &Tensor,
        _value: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let xv = candle_core::Var::from_tensor(&x.detach())?;
        let y = (self.f)(xv.as_tensor())?;
        let grads = (y * dy.detach())?.sum_all()?.backward()?;
        let dx = grads.get(xv.as_tensor()).ok_or_else(|| {
            candle_core::Error::Msg("recompute: no gradient reached the input".into()).bt()
        })?;
        Ok((Some(dx.detach()), None))
    }
}

/// The op's value is its second argument, computed without a graph; its backward pass reads
/// what `saved` holds and frees it.
struct Saved<S> {
    name: &'static str,
    saved: std::sync::Mutex<Option<S>>,
    bwd: fn(&Tensor, S, &Tensor) -> Result<Tensor>,
}

impl<S: Send> CustomOp2 for Saved<S> {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_of(s2, l2)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_of(s2, l2)
    }
    fn bwd(
        &self,
        x: &Tensor,
        _value: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = super::take_once(
            &self.saved,
            self.name,
            "backward pass ran twice over one forward pass (its saved buffers are freed after the first)",
        )?;
        Ok((
            Some((self.bwd)(&x.detach(), saved, &dy.detach())?.detach()),
            None,
        ))
    }
}

/// The packed (B, T, 3D) projections as per-head (B, H, T, dh) queries (already scaled by
/// 1/√dh), keys and values.
fn heads_of(qkv: &Tensor, heads: usize) -> Result<(Tensor, Tensor, Tensor, f64)> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let dh = d / heads;
    let split = |i: usize| -> Result<Tensor> {
        qkv.narrow(2, i * d, d)?
            .reshape((b, t, heads, dh))?
            .transpose(1, 2)?
            .contiguous()
    };
    let scale = 1.0 / (dh as f64).sqrt();
    Ok(((split(0)? * scale)?, split(1)?, split(2)?, scale))
}

/// Attention that keeps its probabilities: softmax(q kᵀ / √dh + mask) v from the packed (B, T,
/// 3D) projections to the merged (B, T, D) output, as [`crate::layers`] composes it (scores in
/// the compute dtype, softmax in `master`), keeping only the (B, H, T, T) probabilities, in the
/// compute dtype, for the backward pass (what XLA keeps without flash attention), besides the
/// projections the graph already holds.
pub fn attention_keep(
    qkv: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
    master: DType,
) -> Result<Tensor> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let (probs, y) = {
        let (q, k, v, _) = heads_of(&qkv.detach(), heads)?;
        let scores = q.matmul(&k.t()?)?.to_dtype(master)?;
        let probs = softmax(&scores, mask)?.to_dtype(v.dtype())?;
        drop(scores);
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        (probs, y)
    };
    let op = Saved {
        name: "portable-attention-kept-probabilities",
        saved: std::sync::Mutex::new(Some((probs, heads, master))),
        bwd: attention_keep_bwd,
    };
    qkv.apply_op2(&y, op)
}

/// dV = Pᵀ dO, dP = dO Vᵀ, dS = P (dP − Σ dP P) in `master`, dQ = s dS K, dK = dSᵀ (s Q).
fn attention_keep_bwd(
    qkv: &Tensor,
    (p, heads, master): (Tensor, usize, DType),
    dy: &Tensor,
) -> Result<Tensor> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let dh = d / heads;
    let (q, k, v, scale) = heads_of(qkv, heads)?;
    let d_o = dy
        .to_dtype(v.dtype())?
        .reshape((b, t, heads, dh))?
        .transpose(1, 2)?
        .contiguous()?;
    let dv = p.t()?.matmul(&d_o)?;
    let dp = d_o.matmul(&v.t()?)?.to_dtype(master)?;
    drop((d_o, v));
    let pm = p.to_dtype(master)?;
    drop(p);
    let ds = softmax_grad(&pm, &dp)?.to_dtype(q.dtype())?;
    drop((pm, dp));
    let dq = (ds.matmul(&k)? * scale)?;
    let dk = ds.t()?.matmul(&q)?;
    let merge = |x: Tensor| x.transpose(1, 2)?.reshape((b, t, d));
    Tensor::cat(&[merge(dq)?, merge(dk)?, merge(dv)?], 2)
}

/// The vocabulary head with the caption loss as the released JAX code builds it
/// (`losses/common.py` 232-240): the f32 logits h W (N, V), their log-softmax and a one-hot of
/// the targets, each (N, V) f32, are materialised and kept for the backward pass, which frees
/// them; returns the per-row −Σ one-hot · log p, (N). `h` (N, D) and `w` (D, V) are cast to
/// `compute` for the product. The backward pass gives h's and W's gradients directly, so no
/// (N, V) gradient outlives it.
pub fn head_materialized_nll(
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    compute: DType,
) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    let v = w.dim(1)?;
    let t = targets.to_dtype(DType::U32)?.reshape((n, 1))?;
    let (kept, nll) = {
        let logits = h
            .detach()
            .to_dtype(compute)?
            .matmul(&w.detach().to_dtype(compute)?)?
            .to_dtype(DType::F32)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let one_hot = Tensor::zeros((n, v), DType::F32, h.device())?.scatter_add(
            &t,
            &Tensor::ones((n, 1), DType::F32, h.device())?,
            1,
        )?;
        let nll = (&one_hot * &logp)?.sum(1)?.neg()?.to_dtype(h.dtype())?;
        ((logits, logp, one_hot), nll)
    };
    crate::macs::record(n * h.dim(1)? * v);
    let op = HeadMaterialized {
        saved: std::sync::Mutex::new(Some(kept)),
        compute,
    };
    h.apply_op3(w, &nll, op)
}

type HeadBuffers = (Tensor, Tensor, Tensor);

struct HeadMaterialized {
    /// Logits, log-softmax, one-hot: kept until the backward pass.
    saved: std::sync::Mutex<Option<HeadBuffers>>,
    compute: DType,
}

impl CustomOp3 for HeadMaterialized {
    fn name(&self) -> &'static str {
        "materialized-head-cross-entropy"
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        copy_of(s3, l3)
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        copy_of(s3, l3)
    }
    fn bwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        _value: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (logits, logp, one_hot) = super::take_once(
            &self.saved,
            "materialized head + cross-entropy",
            "backward pass ran twice over one forward pass (its buffers are freed after the first)",
        )?;
        drop(logits);
        // d nll / d logits = g (exp(log p) − one-hot), row by row.
        let p = logp.exp()?;
        drop(logp);
        let diff = (p - one_hot)?;
        let dl = diff
            .broadcast_mul(&g.detach().to_dtype(DType::F32)?.unsqueeze(1)?)?
            .to_dtype(self.compute)?;
        drop(diff);
        let (h, w) = (h.detach(), w.detach());
        let dh = dl
            .matmul(&w.to_dtype(self.compute)?.t()?)?
            .to_dtype(h.dtype())?;
        let dw = h
            .to_dtype(self.compute)?
            .t()?
            .matmul(&dl)?
            .to_dtype(w.dtype())?;
        Ok((Some(dh), Some(dw), None))
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

/// Negative log-likelihood per row of `logits` (N, V) for `targets` (N) u32, as (N).
pub fn row_nll(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let n = targets.elem_count();
    let t = targets.to_dtype(candle_core::DType::U32)?.reshape((n, 1))?;
    logits.contiguous()?.apply_op2(&t, RowNll)?.reshape(n)
}

/// `x W + b` for `x` (m, k), `w` (k, n), `b` (n), all of one dtype; the graph keeps only the
/// inputs and the result.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)
}

/// Layer norm over the last dimension of `x` with `scale` and `bias` of that width.
pub fn layer_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&scale.contiguous()?, &bias.contiguous()?, LayerNorm { eps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        // A fixed, seed-dependent pattern: no RNG state shared between tests.
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| (((i as u64 + 1) * (seed * 2 + 1) * 2654435761) % 1000) as f64 / 250.0 - 2.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn composed_ln(x: &Tensor, g: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let xc = x
            .broadcast_sub(&x.mean_keepdim(D::Minus1).unwrap())
            .unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(g)
            .unwrap()
            .broadcast_add(b)
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Forward and every gradient against candle's composed ops, in f64.
    #[test]
    fn layer_norm_matches_composed_ops() {
        let x = Var::from_tensor(&randn(&[2, 3, 7], 1)).unwrap();
        let g = Var::from_tensor(&(randn(&[7], 2) * 0.5).unwrap()).unwrap();
        let b = Var::from_tensor(&randn(&[7], 3)).unwrap();
        let w = randn(&[2, 3, 7], 4);
        let ours = layer_norm(&x, &g, &b, 1e-5).unwrap();
        let theirs = composed_ln(&x, &g, &b, 1e-5);
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let go = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = (theirs * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &g, &b] {
            let (a, c) = (go.get(v).unwrap(), gt.get(v).unwrap());
            assert!(max_diff(a, c) < 1e-10, "{a} vs {c}");
        }
    }

    #[test]
    fn linear_matches_composed_ops() {
        let x = Var::from_tensor(&randn(&[6, 5], 8)).unwrap();
        let w = Var::from_tensor(&randn(&[5, 3], 9)).unwrap();
        let b = Var::from_tensor(&randn(&[3], 10)).unwrap();
        let r = randn(&[6, 3], 11);
        let ours = linear(&x, &w, &b).unwrap();
        let theirs = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let go = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = (theirs * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in [&x, &w, &b] {
            assert!(max_diff(go.get(v).unwrap(), gt.get(v).unwrap()) < 1e-12);
        }
        let bad = linear(&x, &w.t().unwrap(), &b).unwrap_err().to_string();
        assert!(bad.contains("do not fit"), "{bad}");
    }

    #[test]
    fn row_nll_matches_composed_ops() {
        let x = Var::from_tensor(&(randn(&[4, 9], 12) * 3.0).unwrap()).unwrap();
        let t = Tensor::new(&[0u32, 8, 3, 3], &Device::Cpu).unwrap();
        let r = randn(&[4], 13);
        let ours = row_nll(&x, &t).unwrap();
        let logp = candle_nn::ops::log_softmax(&x, D::Minus1).unwrap();
        let theirs = logp
            .gather(&t.reshape((4, 1)).unwrap(), 1)
            .unwrap()
            .reshape(4)
            .unwrap()
            .neg()
            .unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-12);
        let go = (ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gt = (theirs * &r)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_diff(go.get(&x).unwrap(), gt.get(&x).unwrap()) < 1e-12);
    }

    #[test]
    fn masked_softmax_matches_composed_ops() {
        let x = Var::from_tensor(&randn(&[2, 3, 5, 5], 5)).unwrap();
        let mask = crate::layers::mask_from(5, |i, j| j <= i, DType::F64, &Device::Cpu).unwrap();
        let w = randn(&[2, 3, 5, 5], 6);
        for m in [None, Some(&mask)] {
            let ours = softmax(&x, m).unwrap();
            let z = match m {
                Some(m) => x.broadcast_add(m).unwrap(),
                None => x.as_tensor().clone(),
            };
            let theirs = candle_nn::ops::softmax(&z, D::Minus1).unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let go = (ours * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gt = (theirs * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            assert!(max_diff(go.get(&x).unwrap(), gt.get(&x).unwrap()) < 1e-12);
        }
    }
}
