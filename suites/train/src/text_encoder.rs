//! The OpenVision (v1) text encoder (facts §2.2): 80 tokens, bidirectional, learnable
//! positions, a final LayerNorm, pooling on the last token (the appended \[CLS\]) and a
//! projection to the image embedding width for the contrastive loss.

use crate::config::{StackDims, TEXT_LEN, VOCAB};
use crate::layers::{LayerNorm, Linear, Exec, Stack};
use crate::params::ParamStore;
use candle_core::{Result, Tensor};

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

    /// `ids`: (B, 80) u32.
    pub fn forward(&self, ids: &Tensor, p: Exec) -> Result<TextOutput> {
        let (b, t) = ids.dims2()?;
        let x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.width))?
            .broadcast_add(&self.pos.narrow(0, 0, t)?)?;
        let x = self.norm.forward(&self.blocks.forward(&x, None, p)?, p)?;
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(TextOutput {
            pooled: self.proj.forward(&last, p)?,
            tokens: x,
        })
    }
}
