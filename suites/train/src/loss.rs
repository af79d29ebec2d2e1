//! The losses of both recipes (facts §3).

use crate::fused::Kernels;
use crate::layers::{Exec, Linear};
use crate::policy::LossBuffers;
use candle_core::{Result, Tensor, D};

/// Mean token cross-entropy over positions whose weight is 1 (padding has weight 0).
/// `logits`: (B, T, V); `targets`: (B, T) u32; `weights`: (B, T) f32.
pub fn caption_xent(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
    kernels: Kernels,
) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let (rows, ids) = (logits.reshape((b * t, v))?, targets.flatten_all()?);
    let nll = if crate::fused::applies(logits, kernels) {
        Some(crate::fused::row_nll(&rows, &ids)?)
    } else if crate::fused::portable_applies(logits, kernels) {
        Some(crate::fused::portable::row_nll(&rows, &ids)?)
    } else {
        None
    };
    if let Some(nll) = nll {
        let weights = weights.flatten_all()?.to_dtype(nll.dtype())?;
        return (nll * &weights)?.sum_all()?.div(&weights.sum_all()?);
    }
    let logp = candle_nn::ops::log_softmax(&rows, D::Minus1)?;
    let picked = logp
        .gather(&targets.reshape((b * t, 1))?, 1)?
        .reshape((b, t))?;
    let weights = weights.to_dtype(picked.dtype())?;
    let total = (picked * &weights)?.sum_all()?;
    let count = weights.sum_all()?;
    total.neg()?.div(&count)
}

/// The caption loss from the decoder's final hidden states: vocabulary head, then the token
/// cross-entropy. What it keeps for the backward pass follows `p.loss`: with
/// [`LossBuffers::Materialized`], f32 logits, their log-softmax and a one-hot target, head and
/// loss as one op ([`crate::fused::portable::head_materialized_nll`]); with [`LossBuffers::Fused`], and fused
/// kernels in a single precision, head and cross-entropy run as one op that holds a single
/// (N, V) buffer, else [`caption_xent`]. candle's composed ops (`--kernels composed`) keep
/// every intermediate whatever the mode.
pub fn caption_loss(
    hidden: &Tensor,
    head: &Linear,
    targets: &Tensor,
    weights: &Tensor,
    p: Exec,
) -> Result<Tensor> {
    if p.loss == LossBuffers::Materialized && p.kernels != Kernels::Composed && head.b.is_none() {
        let (b, t, d) = hidden.dims3()?;
        let nll = crate::fused::portable::head_materialized_nll(
            &hidden.reshape((b * t, d))?,
            &head.w,
            &targets.flatten_all()?,
            p.compute,
        )?;
        let weights = weights.flatten_all()?.to_dtype(nll.dtype())?;
        return (nll * &weights)?.sum_all()?.div(&weights.sum_all()?);
    }
    if crate::fused::applies(hidden, p.kernels) && p.compute == p.master && head.b.is_none() {
        let (b, t, d) = hidden.dims3()?;
        let nll = crate::fused::linear_nll(
            &hidden.reshape((b * t, d))?,
            &head.w,
            &targets.flatten_all()?,
        )?;
        let weights = weights.flatten_all()?.to_dtype(nll.dtype())?;
        return (nll * &weights)?.sum_all()?.div(&weights.sum_all()?);
    }
    caption_xent(
        &head.forward(hidden, p)?.to_dtype(p.master)?,
        targets,
        weights,
        p.kernels,
    )
}

/// Rows scaled to unit L2 norm.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

/// Symmetric softmax InfoNCE: 0.5 (image→text + text→image), temperature exp(`log_temp`).
pub fn info_nce(img: &Tensor, txt: &Tensor, log_temp: &Tensor) -> Result<Tensor> {
    let n = img.dim(0)?;
    crate::macs::record(n * n * img.dim(1)?);
    // Both towers' embeddings in the image side's dtype (f32 master): under mixed precision the
    // text projection comes out in the compute dtype.
    let txt = txt.to_dtype(img.dtype())?;
    let logits = l2_normalize(img)?
        .matmul(&l2_normalize(&txt)?.t()?)?
        .broadcast_mul(&log_temp.exp()?)?;
    let labels = Tensor::arange(0u32, n as u32, img.device())?;
    let i2t = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let t2i = candle_nn::loss::cross_entropy(&logits.t()?, &labels)?;
    (i2t + t2i)? * 0.5
}
