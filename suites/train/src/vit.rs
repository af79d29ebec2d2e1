//! The ViT image encoder of both recipes (facts §2.1): linear patch embedding, CLS token,
//! fixed 2-D sin-cos position embedding, pre-LN blocks, mean pooling over patch tokens
//! followed by a final LayerNorm. Patch tokens go to the decoder without CLS and without
//! the final norm, as the released code feeds `encoded[:, 1:]`.

use crate::config::StackDims;
use crate::layers::{Exec, LayerNorm, Linear, Stack, StackTape};
use crate::params::{retain_grads, ParamStore};
use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, TensorId};
use std::collections::HashSet;

pub struct VisionTransformer {
    pub patch: usize,
    pub width: usize,
    pub patch_embed: Linear,
    pub cls: Tensor,
    /// Fixed, not trained.
    pub posemb: Tensor,
    pub blocks: Stack,
    pub norm: LayerNorm,
}

/// Output of the encoder.
pub struct VitOutput {
    /// LN(mean of patch tokens): (B, D); computed only when asked for.
    pub pooled: Option<Tensor>,
    /// Patch tokens after the last block, CLS excluded, un-normalised: (B, N, D).
    pub patches: Tensor,
}

impl VisionTransformer {
    pub fn new(ps: &mut ParamStore, d: StackDims, patch: usize, resolution: usize) -> Result<Self> {
        let side = resolution / patch;
        let fan_in = patch * patch * 3;
        Ok(VisionTransformer {
            patch,
            width: d.width,
            patch_embed: Linear::with_std(
                ps,
                "patch_embed",
                fan_in,
                d.width,
                true,
                (1.0 / fan_in as f64).sqrt(),
            )?,
            cls: ps.constant("cls", (1, 1, d.width), 0.0)?,
            posemb: sincos_2d(side, side, d.width, ps.device())?,
            blocks: Stack::new(ps, "blocks", d)?,
            norm: LayerNorm::new(ps, "norm", d.width)?,
        })
    }

    /// Tokens entering the first block, [CLS; patch embeddings + position embedding]:
    /// (B, 1 + N, D).
    pub fn embed(&self, images: &Tensor, p: Exec) -> Result<Tensor> {
        let (b, c, h, w) = images.dims4()?;
        let (gh, gw, ps) = (h / self.patch, w / self.patch, self.patch);
        let n = gh * gw;
        // (B, C, gh, p, gw, p) -> (B, gh, gw, p, p, C): each patch flattened row-major with channels last.
        let patches = images
            .to_dtype(p.master)?
            .reshape((b, c, gh, ps, gw, ps))?
            .permute((0, 2, 4, 3, 5, 1))?
            .contiguous()?
            .reshape((b, n, ps * ps * c))?;
        let x = self
            .patch_embed
            .forward(&patches, p)?
            .to_dtype(p.master)?
            .broadcast_add(&self.posemb.to_dtype(p.master)?)?;
        let cls = self
            .cls
            .to_dtype(p.master)?
            .broadcast_as((b, 1, self.width))?;
        Tensor::cat(&[&cls, &x], 1)
    }

    /// Pooled embedding and patch tokens from the last block's output.
    fn outputs(&self, x: &Tensor, pooled: bool, p: Exec) -> Result<VitOutput> {
        let n = x.dim(1)? - 1;
        let patches = x.narrow(1, 1, n)?;
        let pooled = if pooled {
            Some(self.norm.forward(&patches.mean(1)?, p)?)
        } else {
            None
        };
        Ok(VitOutput { pooled, patches })
    }

    /// `images`: (B, 3, H, W), normalised pixels. `pooled`: whether to compute the pooled
    /// embedding (OpenVision 2's objective never uses it).
    pub fn forward(&self, images: &Tensor, p: Exec, pooled: bool) -> Result<VitOutput> {
        let x = self.blocks.forward(&self.embed(images, p)?, None, p)?;
        self.outputs(&x, pooled, p)
    }

    /// Forward with full activation recomputation (`remat='full'` of the released recipe):
    /// keeps only each block's input; the loss graph starts at the last block's output.
    /// [`VisionTransformer::backward_remat`] finishes the backward pass.
    pub fn forward_remat(
        &self,
        images: &Tensor,
        p: Exec,
        pooled: bool,
    ) -> Result<(VitOutput, RematTape)> {
        // Detached here, so that the embedding's graph is freed before the blocks run.
        let x0 = self.embed(images, p)?.detach();
        let stack = self.blocks.forward_remat(&x0, None, p)?;
        drop(x0);
        let out = self.outputs(stack.output(), pooled, p)?;
        Ok((
            out,
            RematTape {
                images: images.clone(),
                stack,
                precision: p,
            },
        ))
    }

    /// Recomputes each block from its checkpoint, last to first, and adds the encoder's
    /// parameter gradients to `grads` (which must come from the loss's backward pass and hold
    /// the gradient of the tape's leaf). Only the gradients of `keep` are retained, detached,
    /// so that each recomputed block's activations are freed before the next one is built.
    pub fn backward_remat(
        &self,
        tape: RematTape,
        grads: &mut GradStore,
        keep: &HashSet<TensorId>,
    ) -> Result<()> {
        let Some(g) = grads.remove(tape.stack.output()) else {
            return Ok(());
        };
        let RematTape {
            images,
            stack,
            precision: p,
        } = tape;
        let g = self.blocks.backward_remat(stack, g, grads, keep)?;
        let x0 = self.embed(&images, p)?;
        grads.extend(retain_grads(
            crate::fused::grads::backward(&(x0 * &g)?.sum_all()?)?,
            keep,
        ))
    }
}

/// What a recomputing forward pass of the image encoder keeps for its backward pass.
pub struct RematTape {
    images: Tensor,
    stack: StackTape,
    precision: Exec,
}

impl RematTape {
    /// The id of the last block's output, whose gradient starts the recomputation.
    pub fn leaf_id(&self) -> TensorId {
        self.stack.leaf_id()
    }

    /// Bytes the checkpoints hold.
    pub fn bytes(&self) -> usize {
        self.stack.bytes()
    }
}

/// Fixed 2-D sin-cos position embedding: [sin(x ω), cos(x ω), sin(y ω), cos(y ω)]
/// with ω_i = 1 / 10000^(i / (D/4 - 1)), shape (H·W, D).
pub fn sincos_2d(h: usize, w: usize, width: usize, device: &Device) -> Result<Tensor> {
    assert!(
        width % 4 == 0,
        "sin-cos embedding needs a width divisible by 4"
    );
    let q = width / 4;
    let omega: Vec<f64> = (0..q)
        .map(|i| {
            let frac = if q > 1 {
                i as f64 / (q - 1) as f64
            } else {
                0.0
            };
            1.0 / 10000f64.powf(frac)
        })
        .collect();
    let mut data = Vec::with_capacity(h * w * width);
    for y in 0..h {
        for x in 0..w {
            for f in [f64::sin, f64::cos] {
                data.extend(omega.iter().map(|o| f(x as f64 * o) as f32));
            }
            for f in [f64::sin, f64::cos] {
                data.extend(omega.iter().map(|o| f(y as f64 * o) as f32));
            }
        }
    }
    Tensor::from_vec(data, (h * w, width), device)
}
