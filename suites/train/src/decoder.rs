//! The two caption decoders (facts §2.3).
//!
//! v1 (CLIPS-style): a prefix-LM over [projected image patch tokens; projected alt-text
//! encoder tokens; 128 learnable queries]; logits on the query positions.
//! v2: a single pre-LN stack over [projected kept image tokens; caption embeddings shifted
//! by one], no text position embedding, final LN and a bias-free vocabulary head.

use crate::config::{PrefixAttention, StackDims, V1_QUERIES, VOCAB};
use crate::layers::{mask_from, Exec, LayerNorm, Linear, Stack};
use crate::params::ParamStore;
use candle_core::{Result, Tensor};

pub struct DecoderV1 {
    pub img_proj: Linear,
    pub txt_proj: Linear,
    pub queries: Tensor,
    pub blocks: Stack,
    pub norm: LayerNorm,
    pub head: Linear,
    pub width: usize,
}

impl DecoderV1 {
    pub fn new(
        ps: &mut ParamStore,
        d: StackDims,
        image_width: usize,
        text_width: usize,
    ) -> Result<Self> {
        Ok(DecoderV1 {
            img_proj: Linear::new(ps, "img_proj", image_width, d.width, true)?,
            txt_proj: Linear::new(ps, "txt_proj", text_width, d.width, true)?,
            queries: ps.normal("queries", (V1_QUERIES, d.width), 0.02)?,
            blocks: Stack::new(ps, "blocks", d)?,
            norm: LayerNorm::new(ps, "norm", d.width)?,
            head: Linear::new(ps, "head", d.width, VOCAB, false)?,
            width: d.width,
        })
    }

    /// `img`: (B, N, Dimg) patch tokens; `alt`: (B, La, Wtxt) alt-text tokens.
    /// Returns logits (B, 128, V) on the learnable query positions.
    pub fn forward(&self, img: &Tensor, alt: &Tensor, p: Exec) -> Result<Tensor> {
        self.head
            .forward(&self.hidden(img, alt, p)?, p)?
            .to_dtype(p.master)
    }

    /// The normalised hidden states (B, 128, D) that the vocabulary head reads.
    pub fn hidden(&self, img: &Tensor, alt: &Tensor, p: Exec) -> Result<Tensor> {
        let b = img.dim(0)?;
        let img = self.img_proj.forward(img, p)?.to_dtype(p.master)?;
        let alt = self.txt_proj.forward(alt, p)?.to_dtype(p.master)?;
        let q = self
            .queries
            .unsqueeze(0)?
            .broadcast_as((b, V1_QUERIES, self.width))?;
        let x = Tensor::cat(&[&img, &alt, &q], 1)?;
        let prefix = img.dim(1)? + alt.dim(1)?;
        let t = prefix + V1_QUERIES;
        // Prefix bidirectional; queries causal among themselves and see the whole prefix.
        let mask = mask_from(
            t,
            |i, j| j < prefix || (i >= prefix && j <= i),
            p.master,
            x.device(),
        )?;
        let x = self.blocks.forward(&x, Some(&mask), p)?;
        self.norm.forward(&x.narrow(1, prefix, V1_QUERIES)?, p)
    }
}

pub struct DecoderV2 {
    pub img_proj: Linear,
    pub embed: Tensor,
    pub blocks: Stack,
    pub norm: LayerNorm,
    pub head: Linear,
    pub width: usize,
    pub attention: PrefixAttention,
}

impl DecoderV2 {
    pub fn new(
        ps: &mut ParamStore,
        d: StackDims,
        image_width: usize,
        attention: PrefixAttention,
    ) -> Result<Self> {
        Ok(DecoderV2 {
            img_proj: Linear::new(ps, "img_proj", image_width, d.width, false)?,
            embed: ps.normal("embed", (VOCAB, d.width), 0.02)?,
            blocks: Stack::new(ps, "blocks", d)?,
            norm: LayerNorm::new(ps, "norm", d.width)?,
            head: Linear::new(ps, "head", d.width, VOCAB, false)?,
            width: d.width,
            attention,
        })
    }

    /// `kept`: (B, K, Dimg) kept image tokens; `text_in`: (B, L) u32 caption ids without the last.
    /// Returns logits (B, L, V) on the text positions.
    pub fn forward(&self, kept: &Tensor, text_in: &Tensor, p: Exec) -> Result<Tensor> {
        self.head
            .forward(&self.hidden(kept, text_in, p)?, p)?
            .to_dtype(p.master)
    }

    /// The normalised hidden states (B, L, D) that the vocabulary head reads.
    pub fn hidden(&self, kept: &Tensor, text_in: &Tensor, p: Exec) -> Result<Tensor> {
        let (b, l) = text_in.dims2()?;
        let k = kept.dim(1)?;
        let img = self.img_proj.forward(kept, p)?.to_dtype(p.master)?;
        let txt = self
            .embed
            .index_select(&text_in.flatten_all()?, 0)?
            .reshape((b, l, self.width))?;
        let x = Tensor::cat(&[&img, &txt], 1)?;
        let t = k + l;
        let mask = match self.attention {
            PrefixAttention::Causal => mask_from(t, |i, j| j <= i, p.master, x.device())?,
            PrefixAttention::Prefix => mask_from(t, |i, j| j < k || j <= i, p.master, x.device())?,
        };
        let x = self.blocks.forward(&x, Some(&mask), p)?;
        self.norm.forward(&x.narrow(1, k, l)?, p)
    }
}
