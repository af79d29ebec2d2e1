//! Transformer building blocks, written from composed candle ops that all carry gradients
//! (candle 0.11's fused `layer_norm` and `softmax_last_dim` silently drop them). On the CPU in
//! f32 and f64 a whole [`Block`] runs as one fused op instead ([`fused::block`]), with the same
//! weights and the same result to rounding; elsewhere layer norm, softmax and biased dense
//! layers run as device-generic single ops ([`fused::portable`]) unless `--kernels composed`.
//! Which of these runs is decided by the [`Exec`] passed down every forward pass.

use crate::config::{StackDims, LN_EPS};
use crate::fused::{self, Kernels};
use crate::macs;
use crate::params::{retain_grads, ParamStore};
use crate::policy::{AttentionProbs, LossBuffers};
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, TensorId, Var, D};
use std::collections::HashSet;

/// The execution context of a forward pass, passed down explicitly (no thread-local or global
/// setting): weights, norms, softmax and losses run in `master` (f32; f64 in gradient checks),
/// matmuls in `compute` (f32, bf16 or f16), with the `kernels` chosen; `attention` says
/// whether attention keeps its probabilities for the backward pass, `loss` what the caption
/// loss keeps (see [`crate::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exec {
    pub compute: DType,
    pub master: DType,
    pub kernels: Kernels,
    pub attention: AttentionProbs,
    pub loss: LossBuffers,
}

impl Exec {
    /// f32 with the fused CPU kernels, as the default step runs (the fused block keeps the
    /// attention probabilities, the fused head keeps one (N, V) buffer).
    pub const F32: Exec = Exec {
        compute: DType::F32,
        master: DType::F32,
        kernels: Kernels::Fused,
        attention: AttentionProbs::Keep,
        loss: LossBuffers::Fused,
    };
    pub const F64: Exec = Exec {
        compute: DType::F64,
        master: DType::F64,
        kernels: Kernels::Fused,
        attention: AttentionProbs::Keep,
        loss: LossBuffers::Fused,
    };

    /// The same context with other kernels.
    pub fn with_kernels(self, kernels: Kernels) -> Exec {
        Exec { kernels, ..self }
    }

    /// The same context with another compute dtype.
    pub fn with_compute(self, compute: DType) -> Exec {
        Exec { compute, ..self }
    }

    fn cast(&self, t: &Tensor) -> Result<Tensor> {
        if t.dtype() == self.compute {
            Ok(t.clone())
        } else {
            t.to_dtype(self.compute)
        }
    }
}

/// Matrix product of `x` (.., in) with `w` (in, out), in the compute precision, counted.
pub fn matmul_2d(x: &Tensor, w: &Tensor, p: Exec) -> Result<Tensor> {
    dense(x, w, None, p)
}

/// `x W (+ b)` in the compute precision, counted; product and bias as one op where the portable
/// ops apply ([`fused::portable::linear`]).
fn dense(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Exec) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().expect("rank >= 1");
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let out = w.dim(1)?;
    macs::record(rows * k * out);
    let (x2, w) = (p.cast(x)?.reshape((rows, k))?, p.cast(w)?);
    let mut shape = dims;
    *shape.last_mut().unwrap() = out;
    match b {
        Some(b) if fused::portable_applies(x, p.kernels) => {
            fused::portable::linear(&x2, &w, &p.cast(b)?)?.reshape(shape)
        }
        Some(b) => x2.matmul(&w)?.reshape(shape)?.broadcast_add(&p.cast(b)?),
        None => x2.matmul(&w)?.reshape(shape),
    }
}

/// Dense layer `y = x W (+ b)`, W stored as (in, out) so no transpose is needed.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Linear {
    pub fn new(
        ps: &mut ParamStore,
        name: &str,
        inp: usize,
        out: usize,
        bias: bool,
    ) -> Result<Self> {
        Self::with_std(ps, name, inp, out, bias, 0.02)
    }

    pub fn with_std(
        ps: &mut ParamStore,
        name: &str,
        inp: usize,
        out: usize,
        bias: bool,
        std: f64,
    ) -> Result<Self> {
        ps.scoped(name, |ps| {
            let w = ps.kernel("w", (inp, out), std)?;
            let b = if bias {
                Some(ps.constant("b", out, 0.0)?)
            } else {
                None
            };
            Ok(Linear { w, b })
        })
    }

    pub fn forward(&self, x: &Tensor, p: Exec) -> Result<Tensor> {
        dense(x, &self.w, self.b.as_ref(), p)
    }
}

/// Layer norm over the last dimension, computed in f32.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl LayerNorm {
    pub fn new(ps: &mut ParamStore, name: &str, dim: usize) -> Result<Self> {
        ps.scoped(name, |ps| {
            Ok(LayerNorm {
                gamma: ps.constant("scale", dim, 1.0)?,
                beta: ps.constant("bias", dim, 0.0)?,
            })
        })
    }

    /// Computed in the weights' dtype (the master), whatever `x`'s.
    pub fn forward(&self, x: &Tensor, p: Exec) -> Result<Tensor> {
        let x = x.to_dtype(self.gamma.dtype())?;
        if fused::applies(&x, p.kernels) {
            return fused::layer_norm(&x, &self.gamma, &self.beta, LN_EPS);
        }
        if fused::portable_applies(&x, p.kernels) {
            return fused::portable::layer_norm(&x, &self.gamma, &self.beta, LN_EPS);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        xn.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)
    }
}

/// Additive attention mask, (T, T): 0 where attention is allowed, a large negative elsewhere.
pub fn mask_from(
    t: usize,
    allowed: impl Fn(usize, usize) -> bool,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let data: Vec<f32> = (0..t * t)
        .map(|k| if allowed(k / t, k % t) { 0.0 } else { -1e9 })
        .collect();
    Tensor::from_vec(data, (t, t), device)?.to_dtype(dtype)
}

/// Multi-head self-attention with a fused QKV projection.
#[derive(Debug, Clone)]
pub struct Attention {
    pub qkv: Linear,
    pub out: Linear,
    pub heads: usize,
}

impl Attention {
    pub fn new(ps: &mut ParamStore, name: &str, width: usize, heads: usize) -> Result<Self> {
        ps.scoped(name, |ps| {
            Ok(Attention {
                qkv: Linear::new(ps, "qkv", width, 3 * width, true)?,
                out: Linear::new(ps, "out", width, width, true)?,
                heads,
            })
        })
    }

    /// `x`: (B, T, D); `mask`: optional additive (T, T).
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, p: Exec) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let h = self.heads;
        macs::record(2 * b * h * t * t * (d / h));
        let qkv = self.qkv.forward(x, p)?;
        let y = if fused::portable_applies(&qkv, p.kernels) {
            // Where the fused CPU kernels do not run (CUDA, bf16): the (B, H, T, T) scores and
            // probabilities are recomputed in the backward pass, or only the probabilities
            // are kept, in the compute dtype.
            match p.attention {
                AttentionProbs::Recompute => {
                    let mask = mask.cloned();
                    fused::portable::recompute(&qkv, move |qkv| {
                        attention_core(qkv, mask.as_ref(), h, p, fused::portable::softmax)
                    })?
                }
                AttentionProbs::Keep => fused::portable::attention_keep(&qkv, mask, h, p.master)?,
            }
        } else {
            attention_core(&qkv, mask, h, p, |scores, mask| {
                if fused::applies(scores, p.kernels) {
                    fused::softmax(scores, mask)
                } else {
                    let scores = match mask {
                        Some(m) => scores.broadcast_add(m)?,
                        None => scores.clone(),
                    };
                    candle_nn::ops::softmax(&scores, D::Minus1)
                }
            })?
        };
        self.out.forward(&y, p)
    }
}

/// softmax(q kᵀ / √dh + mask) v over `heads` heads, from the packed (B, T, 3D) projections to
/// the merged (B, T, D) output. No weights: all of attention that scales with T².
fn attention_core(
    qkv: &Tensor,
    mask: Option<&Tensor>,
    heads: usize,
    p: Exec,
    softmax: impl Fn(&Tensor, Option<&Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, t, d3) = qkv.dims3()?;
    let d = d3 / 3;
    let dh = d / heads;
    let split = |i: usize| -> Result<Tensor> {
        qkv.narrow(2, i * d, d)?
            .reshape((b, t, heads, dh))?
            .transpose(1, 2)?
            .contiguous()
    };
    let q = (split(0)? * (1.0 / (dh as f64).sqrt()))?;
    let k = split(1)?;
    let v = split(2)?;
    let scores = q.matmul(&k.t()?)?.to_dtype(p.master)?;
    let att = softmax(&scores, mask)?.to_dtype(v.dtype())?;
    att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))
}

/// Two-layer GELU MLP.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Mlp {
    pub fn new(ps: &mut ParamStore, name: &str, width: usize, hidden: usize) -> Result<Self> {
        ps.scoped(name, |ps| {
            Ok(Mlp {
                fc1: Linear::new(ps, "fc1", width, hidden, true)?,
                fc2: Linear::new(ps, "fc2", hidden, width, true)?,
            })
        })
    }

    pub fn forward(&self, x: &Tensor, p: Exec) -> Result<Tensor> {
        let h = self.fc1.forward(x, p)?;
        let h = if fused::applies(&h, p.kernels) {
            fused::gelu(&h)?
        } else {
            h.gelu()?
        };
        self.fc2.forward(&h, p)
    }
}

/// Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x)).
#[derive(Debug, Clone)]
pub struct Block {
    pub ln1: LayerNorm,
    pub attn: Attention,
    pub ln2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    pub fn new(ps: &mut ParamStore, name: &str, d: StackDims) -> Result<Self> {
        ps.scoped(name, |ps| {
            Ok(Block {
                ln1: LayerNorm::new(ps, "ln1", d.width)?,
                attn: Attention::new(ps, "attn", d.width, d.heads)?,
                ln2: LayerNorm::new(ps, "ln2", d.width)?,
                mlp: Mlp::new(ps, "mlp", d.width, d.mlp_dim)?,
            })
        })
    }

    /// The view of the weights that the fused block op reads.
    pub fn view(&self) -> fused::block::BlockView<'_> {
        fused::block::BlockView {
            ln1_g: &self.ln1.gamma,
            ln1_b: &self.ln1.beta,
            qkv_w: &self.attn.qkv.w,
            qkv_b: self.attn.qkv.b.as_ref(),
            out_w: &self.attn.out.w,
            out_b: self.attn.out.b.as_ref(),
            ln2_g: &self.ln2.gamma,
            ln2_b: &self.ln2.beta,
            fc1_w: &self.mlp.fc1.w,
            fc1_b: self.mlp.fc1.b.as_ref(),
            fc2_w: &self.mlp.fc2.w,
            fc2_b: self.mlp.fc2.b.as_ref(),
            heads: self.attn.heads,
            eps: LN_EPS,
        }
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, p: Exec) -> Result<Tensor> {
        let view = self.view();
        if p.compute == p.master
            && x.dtype() == p.master
            && fused::block::applies(&view, x, p.kernels)
        {
            let keep = p.attention == AttentionProbs::Keep;
            return fused::block::forward(&view, x, mask, keep);
        }
        let x = (x + self
            .attn
            .forward(&self.ln1.forward(x, p)?, mask, p)?
            .to_dtype(p.master)?)?;
        let y = self
            .mlp
            .forward(&self.ln2.forward(&x, p)?, p)?
            .to_dtype(p.master)?;
        x + y
    }
}

/// A stack of pre-LN blocks (no final norm: each model adds its own where the paper puts it).
#[derive(Debug, Clone)]
pub struct Stack {
    pub blocks: Vec<Block>,
}

impl Stack {
    pub fn new(ps: &mut ParamStore, name: &str, d: StackDims) -> Result<Self> {
        ps.scoped(name, |ps| {
            let blocks = (0..d.depth)
                .map(|i| Block::new(ps, &format!("block{i}"), d))
                .collect::<Result<_>>()?;
            Ok(Stack { blocks })
        })
    }

    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, p: Exec) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward(&x, mask, p)?;
        }
        Ok(x)
    }
}

/// What a recomputing stack keeps for its backward pass: the input of every block, detached,
/// and the leaf that starts the rest of the forward graph.
pub struct StackTape {
    checkpoints: Vec<Tensor>,
    leaf: Var,
    mask: Option<Tensor>,
    exec: Exec,
}

impl StackTape {
    /// The id of the last block's output, whose gradient starts the recomputation.
    pub fn leaf_id(&self) -> TensorId {
        self.leaf.as_tensor().id()
    }

    /// The last block's output, as the rest of the forward pass reads it.
    pub fn output(&self) -> &Tensor {
        self.leaf.as_tensor()
    }

    /// Bytes the checkpoints hold.
    pub fn bytes(&self) -> usize {
        self.checkpoints
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}

impl Stack {
    /// Forward with full activation recomputation (`remat='full'`): `x` is detached, each
    /// block's input is kept and its output detached, which drops its graph and with it every
    /// intermediate. [`Stack::backward_remat`] finishes the backward pass.
    pub fn forward_remat(&self, x: &Tensor, mask: Option<&Tensor>, p: Exec) -> Result<StackTape> {
        let mut x = x.detach();
        let mut checkpoints = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            checkpoints.push(x.clone());
            x = b.forward(&x, mask, p)?.detach();
        }
        Ok(StackTape {
            checkpoints,
            leaf: Var::from_tensor(&x)?,
            mask: mask.cloned(),
            exec: p,
        })
    }

    /// Recomputes each block from its checkpoint, last to first, starting from `g`, the
    /// gradient of the tape's leaf; adds the blocks' parameter gradients to `grads` (only those
    /// of `keep`, detached, so that each recomputed block's activations are freed before the
    /// next one is built) and returns the gradient of the stack's input.
    pub fn backward_remat(
        &self,
        tape: StackTape,
        mut g: Tensor,
        grads: &mut GradStore,
        keep: &HashSet<TensorId>,
    ) -> Result<Tensor> {
        let StackTape {
            mut checkpoints,
            leaf,
            mask,
            exec: p,
        } = tape;
        drop(leaf);
        for block in self.blocks.iter().rev() {
            let x = checkpoints.pop().expect("one checkpoint per block");
            let xv = Var::from_tensor(&x)?;
            drop(x);
            let out = block.forward(xv.as_tensor(), mask.as_ref(), p)?;
            // d/dθ Σ(out · g) is the vector-Jacobian product of this block.
            let mut gs = crate::fused::grads::backward(&(out * &g)?.sum_all()?)?;
            g = gs.remove(xv.as_tensor()).ok_or_else(|| {
                candle_core::Error::Msg("remat: no gradient reached a block input".into())
            })?;
            grads.extend(retain_grads(gs, keep))?;
        }
        Ok(g)
    }
}
