//! The OpenVision (v1) text encoder (facts §2.2): 80 tokens, bidirectional, learnable
//! positions, a final LayerNorm, pooling on the last token (the appended \[CLS\]) and a
//! projection to the image embedding width for the contrastive loss.

use crate::config::{StackDims, TEXT_LEN, VOCAB};
use crate::layers::{Exec, LayerNorm, Linear, Stack, StackTape};
use crate::params::{retain_grads, ParamStore};
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, TensorId};
use std::collections::HashSet;

pub struct TextEncoder {
    pub embed: Tensor,
    pub pos: Tensor,
    pub blocks: Stack,
    pub norm: LayerNorm,
    pub proj: Linear,
    pub width: usize,
}

pub struct TextOutput {
    /// Projected last-token embedding: (B, image width).
    pub pooled: Tensor,
    /// All token states after the final norm: (B, 80, W).
    pub tokens: Tensor,
}

impl TextEncoder {
    pub fn new(ps: &mut ParamStore, d: StackDims, image_width: usize) -> Result<Self> {
        Ok(TextEncoder {
            embed: ps.normal("embed", (VOCAB, d.width), 0.02)?,
            pos: ps.normal("pos", (TEXT_LEN, d.width), 0.01)?,
            blocks: Stack::new(ps, "blocks", d)?,
            norm: LayerNorm::new(ps, "norm", d.width)?,
            proj: Linear::new(ps, "proj", d.width, image_width, false)?,
            width: d.width,
        })
    }

    /// Token embeddings plus learned positions, the input of the first block: (B, T, W).
    fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.width))?
            .broadcast_add(&self.pos.narrow(0, 0, t)?)
    }

    /// The final norm, pooling and projection from the last block's output.
    fn outputs(&self, x: &Tensor, p: Exec) -> Result<TextOutput> {
        let t = x.dim(1)?;
        let x = self.norm.forward(x, p)?;
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(TextOutput {
            pooled: self.proj.forward(&last, p)?,
            tokens: x,
        })
    }

    /// `ids`: (B, 80) u32.
    pub fn forward(&self, ids: &Tensor, p: Exec) -> Result<TextOutput> {
        let x = self.embed_tokens(ids)?;
        self.outputs(&self.blocks.forward(&x, None, p)?, p)
    }

    /// Forward with full activation recomputation of the blocks (`remat='full'` of the
    /// released text tower): keeps only each block's input. [`TextEncoder::backward_remat`]
    /// finishes the backward pass.
    pub fn forward_remat(&self, ids: &Tensor, p: Exec) -> Result<(TextOutput, TextTape)> {
        // Detached here, so that the embedding's graph is freed before the blocks run.
        let x0 = self.embed_tokens(ids)?.detach();
        let stack = self.blocks.forward_remat(&x0, None, p)?;
        drop(x0);
        let out = self.outputs(stack.output(), p)?;
        Ok((
            out,
            TextTape {
                ids: ids.clone(),
                stack,
            },
        ))
    }

    /// Recomputes the blocks last to first from the gradient of the tape's leaf in `grads`
    /// and adds the tower's parameter gradients (those of `keep`) to `grads`.
    pub fn backward_remat(
        &self,
        tape: TextTape,
        grads: &mut GradStore,
        keep: &HashSet<TensorId>,
    ) -> Result<()> {
        let Some(g) = grads.remove(tape.stack.output()) else {
            return Ok(());
        };
        let TextTape { ids, stack } = tape;
        let g = self.blocks.backward_remat(stack, g, grads, keep)?;
        let x0 = self.embed_tokens(&ids)?;
        grads.extend(retain_grads(
            crate::fused::grads::backward(&(x0 * &g)?.sum_all()?)?,
            keep,
        ))
    }
}

/// What a recomputing forward pass of the text tower keeps for its backward pass.
pub struct TextTape {
    ids: Tensor,
    stack: StackTape,
}

impl TextTape {
    /// The id of the last block's output, whose gradient starts the recomputation.
    pub fn leaf_id(&self) -> TensorId {
        self.stack.leaf_id()
    }

    /// Bytes the checkpoints hold.
    pub fn bytes(&self) -> usize {
        self.stack.bytes()
    }
}
