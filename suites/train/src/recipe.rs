//! The two training recipes as models that turn a batch into a loss.

use crate::config::{ModelConfig, TEMPERATURE_INIT};
use crate::data::{keep_indices, Batch};
use crate::decoder::{DecoderV1, DecoderV2};
use crate::layers::Exec;
use crate::loss::{caption_loss, info_nce};
use crate::params::{retain_grads, Module, ParamStore};
use crate::text_encoder::TextEncoder;
use crate::vit::{RematTape, VisionTransformer, VitOutput};
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The recipe type is the reference crate's, shared by the whole workspace.
pub use ovbench_reference::Recipe;

/// The loss of one step and its parts (as scalars on the device).
pub struct Loss {
    pub total: Tensor,
    pub caption: Tensor,
    pub contrastive: Option<Tensor>,
    /// Present when the image encoder recomputes its activations in the backward pass.
    pub remat: Option<RematTape>,
}

/// A loss's values on the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossValues {
    pub total: f64,
    pub caption: f64,
    pub contrastive: Option<f64>,
}

impl Loss {
    /// Copies the scalars to the host (a device sync on GPUs).
    pub fn values(&self) -> Result<LossValues> {
        let host =
            |t: &Tensor| -> Result<f64> { t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>() };
        Ok(LossValues {
            total: host(&self.total)?,
            caption: host(&self.caption)?,
            contrastive: self.contrastive.as_ref().map(host).transpose()?,
        })
    }
}

/// Activation recomputation, per module as the released recipe sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Remat {
    /// Keep every activation.
    #[default]
    None,
    /// Recompute the image encoder block by block (`remat='full'`); the decoder keeps its activations.
    Full,
}

impl FromStr for Remat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(Remat::None),
            "full" => Ok(Remat::Full),
            _ => Err(format!("unknown remat '{s}' (expected full or none)")),
        }
    }
}

/// Loss weights of the released recipes (facts §3).
pub const CONTRASTIVE_WEIGHT: f64 = 1.0;
pub const CAPTION_WEIGHT: f64 = 2.0;

/// OpenVision (v1): ViT + text encoder + v1 decoder + learnable temperature.
pub struct OpenVision {
    pub vit: VisionTransformer,
    pub text: TextEncoder,
    pub decoder: DecoderV1,
    pub log_temp: Tensor,
}

/// OpenVision 2: ViT + v2 decoder over a random subset of patch tokens.
pub struct OpenVision2 {
    pub vit: VisionTransformer,
    pub decoder: DecoderV2,
    pub keep: usize,
}

/// Either recipe's model with its parameters.
pub enum Model {
    Ov1(OpenVision),
    Ov2(OpenVision2),
}

pub struct Built {
    pub model: Model,
    pub params: ParamStore,
}

/// Builds `recipe` at `cfg` with weights drawn from `seed`. The image encoder is built first
/// from the same seed in both recipes, so both start from identical encoder weights.
pub fn build(
    recipe: Recipe,
    cfg: &ModelConfig,
    seed: u64,
    device: &candle_core::Device,
) -> Result<Built> {
    build_with(recipe, cfg, ParamStore::new(seed, device))
}

/// Builds into a given store (f64 weights for gradient checks, shape-only for counting).
pub fn build_with(recipe: Recipe, cfg: &ModelConfig, mut ps: ParamStore) -> Result<Built> {
    let vd = cfg.vision;
    let vit = ps.in_module(Module::ImageEncoder, |ps| {
        ps.scoped("image_encoder", |ps| {
            VisionTransformer::new(ps, vd, cfg.model.patch, cfg.resolution)
        })
    })?;
    let model = match recipe {
        Recipe::Ov1 => {
            let td = cfg.text_encoder.dims;
            let text = ps.in_module(Module::TextEncoder, |ps| {
                ps.scoped("text_encoder", |ps| TextEncoder::new(ps, td, vd.width))
            })?;
            let decoder = ps.in_module(Module::TextDecoder, |ps| {
                ps.scoped("text_decoder", |ps| {
                    DecoderV1::new(ps, cfg.v1_decoder.dims, vd.width, td.width)
                })
            })?;
            let log_temp = ps.in_module(Module::Temperature, |ps| {
                ps.constant("log_temperature", 1, TEMPERATURE_INIT.ln() as f32)
            })?;
            Model::Ov1(OpenVision {
                vit,
                text,
                decoder,
                log_temp,
            })
        }
        Recipe::Ov2 => {
            for p in ps
                .params
                .iter_mut()
                .filter(|p| p.name.starts_with("image_encoder.norm."))
            {
                p.in_objective = false;
            }
            let decoder = ps.in_module(Module::TextDecoder, |ps| {
                ps.scoped("text_decoder", |ps| {
                    DecoderV2::new(ps, cfg.v2_decoder.dims, vd.width, cfg.v2_attention)
                })
            })?;
            Model::Ov2(OpenVision2 {
                vit,
                decoder,
                keep: cfg.kept_tokens(),
            })
        }
    };
    Ok(Built { model, params: ps })
}

/// Runs the encoder with or without recomputation.
fn encode(
    vit: &VisionTransformer,
    images: &Tensor,
    p: Exec,
    pooled: bool,
    remat: Remat,
) -> Result<(VitOutput, Option<RematTape>)> {
    match remat {
        Remat::None => Ok((vit.forward(images, p, pooled)?, None)),
        Remat::Full => {
            let (out, tape) = vit.forward_remat(images, p, pooled)?;
            Ok((out, Some(tape)))
        }
    }
}

impl OpenVision {
    pub fn loss(&self, batch: &Batch, p: Exec, remat: Remat) -> Result<Loss> {
        let (img, tape) = encode(&self.vit, &batch.images, p, true, remat)?;
        let alt = self.text.forward(&batch.alt_text, p)?;
        let sent = self.text.forward(&batch.sentence, p)?;
        // Dual contrastive: image vs alt-text and image vs one caption sentence, averaged.
        let pooled = img.pooled.as_ref().expect("pooled was asked for");
        let c_alt = info_nce(pooled, &alt.pooled, &self.log_temp)?;
        let c_sent = info_nce(pooled, &sent.pooled, &self.log_temp)?;
        let contrastive = ((c_alt + c_sent)? * 0.5)?;
        // The decoder sees the alt-text tokens without the pooled [CLS] (79 of 80).
        let t = alt.tokens.dim(1)?;
        let alt_tokens = alt.tokens.narrow(1, 0, t - 1)?;
        let hidden = self.decoder.hidden(&img.patches, &alt_tokens, p)?;
        let caption = caption_loss(
            &hidden,
            &self.decoder.head,
            &batch.v1_targets,
            &batch.v1_weights,
            p,
        )?;
        let total = ((&contrastive * CONTRASTIVE_WEIGHT)? + (&caption * CAPTION_WEIGHT)?)?;
        Ok(Loss {
            total,
            caption,
            contrastive: Some(contrastive),
            remat: tape,
        })
    }
}

impl OpenVision2 {
    /// `mask_seed` draws the kept token subset of every image.
    pub fn loss(&self, batch: &Batch, p: Exec, mask_seed: u64, remat: Remat) -> Result<Loss> {
        let (img, tape) = encode(&self.vit, &batch.images, p, false, remat)?;
        let kept = self.select(&img.patches, mask_seed)?;
        let hidden = self.decoder.hidden(&kept, &batch.v2_input, p)?;
        let caption = caption_loss(
            &hidden,
            &self.decoder.head,
            &batch.v2_targets,
            &batch.v2_weights,
            p,
        )?;
        Ok(Loss {
            total: (&caption * CAPTION_WEIGHT)?,
            caption,
            contrastive: None,
            remat: tape,
        })
    }

    /// Gathers the kept patch tokens: (B, N, D) -> (B, K, D).
    pub fn select(&self, patches: &Tensor, mask_seed: u64) -> Result<Tensor> {
        let (b, n, d) = patches.dims3()?;
        let idx: Vec<u32> = keep_indices(b, n, self.keep, mask_seed)
            .into_iter()
            .enumerate()
            .flat_map(|(i, row)| row.into_iter().map(move |j| (i * n) as u32 + j))
            .collect();
        let idx = Tensor::from_vec(idx, b * self.keep, patches.device())?;
        patches
            .reshape((b * n, d))?
            .index_select(&idx, 0)?
            .reshape((b, self.keep, d))
    }
}

impl Model {
    /// The loss without recomputation.
    pub fn loss(&self, batch: &Batch, p: Exec, mask_seed: u64) -> Result<Loss> {
        self.loss_with(batch, p, mask_seed, Remat::None)
    }

    pub fn loss_with(
        &self,
        batch: &Batch,
        p: Exec,
        mask_seed: u64,
        remat: Remat,
    ) -> Result<Loss> {
        match self {
            Model::Ov1(m) => m.loss(batch, p, remat),
            Model::Ov2(m) => m.loss(batch, p, mask_seed, remat),
        }
    }

    /// The gradients of every parameter in `params`, detached: backprop through the loss, then
    /// through the encoder's recomputed part if any. Consumes the loss so that its activations
    /// are freed as soon as its backward pass is done (read its values first, with
    /// [`Loss::values`]); a remat step then holds only checkpoints and one recomputed block.
    pub fn backward(&self, loss: Loss, params: &ParamStore) -> Result<GradStore> {
        let Loss {
            total,
            caption,
            contrastive,
            remat,
        } = loss;
        drop((caption, contrastive));
        let mut keep = params.var_ids();
        if let Some(tape) = &remat {
            keep.insert(tape.leaf_id());
        }
        let mut grads = retain_grads(crate::fused::grads::backward(&total)?, &keep);
        drop(total);
        if let Some(tape) = remat {
            keep.remove(&tape.leaf_id());
            self.vit().backward_remat(tape, &mut grads, &keep)?;
        }
        Ok(grads)
    }

    pub fn vit(&self) -> &VisionTransformer {
        match self {
            Model::Ov1(m) => &m.vit,
            Model::Ov2(m) => &m.vit,
        }
    }
}
