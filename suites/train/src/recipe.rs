//! The two training recipes as models that turn a batch into a loss.

use crate::config::{ModelConfig, TEMPERATURE_INIT};
use crate::data::{keep_indices, Batch};
use crate::decoder::{DecoderV1, DecoderV2};
use crate::device::{DTypeArg, DeviceArg};
use crate::fused::Kernels;
use crate::layers::Exec;
use crate::loss::{caption_loss, info_nce};
use crate::params::{retain_grads, Module, ParamStore};
use crate::policy::{AttentionProbs, Execution, LossBuffers, ModuleExec};
use crate::text_encoder::{TextEncoder, TextOutput, TextTape};
use crate::vit::{RematTape, VisionTransformer, VitOutput};
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The recipe type is the reference crate's, shared by the whole workspace.
pub use ovbench_reference::Recipe;

/// The loss of one step and its parts (as scalars on the device).
pub struct Loss {
    pub total: Tensor,
    pub caption: Tensor,
    pub contrastive: Option<Tensor>,
    /// What the recomputing modules kept, in the order they ran: the image encoder's tape when
    /// it recomputes its activations in the backward pass, the text tower's (alt-text, then
    /// sentence) when it does.
    pub remat: Vec<Tape>,
}

/// The checkpoints of one recomputing module's forward pass.
pub enum Tape {
    Image(RematTape),
    Text(TextTape),
}

impl Tape {
    fn leaf_id(&self) -> candle_core::TensorId {
        match self {
            Tape::Image(t) => t.leaf_id(),
            Tape::Text(t) => t.leaf_id(),
        }
    }
}

/// How one recipe's forward pass runs, module by module: the execution context of each
/// module and whether the encoders recompute their activations (resolved from a policy's
/// [`crate::policy::Execution`] by the step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipeExec {
    pub image_encoder: Exec,
    pub text_encoder: Exec,
    pub decoder: Exec,
    pub head: Exec,
    pub image_remat: bool,
    pub text_remat: bool,
    /// OpenVision's alt-text and caption sentence through the text tower as one 2B batch, as
    /// the released code runs them (`src/main_clip.py` 411, `src/models/two_towers.py` 80),
    /// rather than as two passes of B (ovbench's replay before policies).
    pub text_one_batch: bool,
}

impl RecipeExec {
    /// Every module in `p`, nothing recomputed.
    pub fn uniform(p: Exec) -> Self {
        RecipeExec {
            image_encoder: p,
            text_encoder: p,
            decoder: p,
            head: p,
            image_remat: false,
            text_remat: false,
            text_one_batch: false,
        }
    }

    /// The contexts a policy's execution asks for, with `kernels` on `device`, and a note for
    /// every field the engine ran otherwise or through other ops than the fused CPU kernels.
    pub fn from_execution(
        e: &Execution,
        kernels: Kernels,
        device: DeviceArg,
    ) -> (RecipeExec, Vec<String>) {
        let mut notes = Vec::new();
        let ctx = |m: &ModuleExec| Exec {
            compute: m.compute.dtype(),
            master: DType::F32,
            kernels,
            attention: e.attention_probs,
            loss: e.loss_buffers,
        };
        let text = e.modules.text_encoder.unwrap_or(e.modules.image_encoder);
        let mut named = vec![("image encoder", e.modules.image_encoder)];
        if let Some(t) = e.modules.text_encoder {
            named.push(("text tower", t));
        }
        named.extend([("decoder", e.modules.decoder), ("head", e.modules.head)]);
        for (name, m) in &named {
            if m.params != DTypeArg::F32 {
                notes.push(format!(
                    "{name}: {} master weights are not supported; ran with f32 master weights",
                    m.params.name()
                ));
            }
        }
        for (name, m) in [("decoder", e.modules.decoder), ("head", e.modules.head)] {
            if m.recompute {
                notes.push(format!(
                    "{name}: recomputation is supported for the image encoder and the text tower \
                     only; the {name} ran without it"
                ));
            }
        }
        let reduced: Vec<String> = named
            .iter()
            .filter(|(n, m)| *n != "head" && m.compute != DTypeArg::F32)
            .map(|(n, m)| format!("{n} ({})", m.compute.name()))
            .collect();
        match kernels {
            Kernels::Composed => {
                notes.push(
                    "--kernels composed: candle's composed ops keep every intermediate, so \
                     attention probabilities and the loss's log-probabilities are kept whatever \
                     attention_probs and loss_buffers say"
                        .into(),
                );
            }
            Kernels::Fused | Kernels::Portable => {
                let attention = match e.attention_probs {
                    AttentionProbs::Keep => {
                        "attention keeps its probabilities in the compute dtype (portable \
                         attention op fused/portable.rs::attention_keep)"
                    }
                    AttentionProbs::Recompute => {
                        "attention recomputes its scores and probabilities in the backward pass \
                         (fused/portable.rs::recompute)"
                    }
                };
                let portable = if kernels == Kernels::Portable || device != DeviceArg::Cpu {
                    named
                        .iter()
                        .filter(|(n, _)| *n != "head")
                        .map(|(n, _)| n.to_string())
                        .collect::<Vec<_>>()
                } else {
                    reduced.clone()
                };
                if !portable.is_empty() {
                    notes.push(format!(
                        "{}: the fused CPU kernels run f32 only, so these modules ran the portable \
                         ops (fused/portable.rs: single-op layer norm, softmax and biased dense \
                         layers; GELU and casts as candle's ops); {attention}",
                        portable.join(", ")
                    ));
                }
                let fused_f32 = named.iter().any(|(n, m)| {
                    *n != "head" && m.compute == DTypeArg::F32 && !portable.contains(&n.to_string())
                });
                if fused_f32 && e.attention_probs == AttentionProbs::Recompute {
                    notes.push(
                        "f32 modules: the fused CPU transformer block keeps only its mask and \
                         recomputes the attention probabilities head by head in its backward pass"
                            .into(),
                    );
                }
                if e.loss_buffers == LossBuffers::Materialized {
                    notes.push(
                        "loss: f32 logits, their log-softmax and a one-hot target are built and \
                         kept until the head's backward pass (device-generic op \
                         fused/portable.rs::head_materialized_nll; the fused head is not used)"
                            .into(),
                    );
                }
            }
        }
        let x = RecipeExec {
            image_encoder: ctx(&e.modules.image_encoder),
            text_encoder: ctx(&text),
            decoder: ctx(&e.modules.decoder),
            head: ctx(&e.modules.head),
            image_remat: e.modules.image_encoder.recompute,
            text_remat: text.recompute && e.modules.text_encoder.is_some(),
            text_one_batch: true,
        };
        (x, notes)
    }

    /// Under fused kernels, the modules that do not compute in f32 run every op as the
    /// portable ops (layer norm included), as the policies run them; `ovbench` keeps the
    /// fused layer norm there (its behaviour before policies).
    pub fn portable_off_f32(self) -> Self {
        let port = |e: Exec| {
            if e.kernels == Kernels::Fused && e.compute != DType::F32 && e.compute != DType::F64 {
                e.with_kernels(Kernels::Portable)
            } else {
                e
            }
        };
        RecipeExec {
            image_encoder: port(self.image_encoder),
            text_encoder: port(self.text_encoder),
            decoder: port(self.decoder),
            head: port(self.head),
            ..self
        }
    }

    /// The same, the image encoder recomputed under `Remat::Full`.
    pub fn with_remat(self, remat: Remat) -> Self {
        RecipeExec {
            image_remat: remat == Remat::Full,
            ..self
        }
    }
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
    remat: bool,
    tapes: &mut Vec<Tape>,
) -> Result<VitOutput> {
    if !remat {
        return vit.forward(images, p, pooled);
    }
    let (out, tape) = vit.forward_remat(images, p, pooled)?;
    tapes.push(Tape::Image(tape));
    Ok(out)
}

/// Runs the text tower with or without recomputation.
fn encode_text(
    text: &TextEncoder,
    ids: &Tensor,
    p: Exec,
    remat: bool,
    tapes: &mut Vec<Tape>,
) -> Result<TextOutput> {
    if !remat {
        return text.forward(ids, p);
    }
    let (out, tape) = text.forward_remat(ids, p)?;
    tapes.push(Tape::Text(tape));
    Ok(out)
}

impl OpenVision {
    pub fn loss(&self, batch: &Batch, x: &RecipeExec) -> Result<Loss> {
        let mut tapes = Vec::new();
        let img = encode(
            &self.vit,
            &batch.images,
            x.image_encoder,
            true,
            x.image_remat,
            &mut tapes,
        )?;
        let te = x.text_encoder;
        let (alt, sent) = if x.text_one_batch {
            let ids = Tensor::cat(&[&batch.alt_text, &batch.sentence], 0)?;
            let both = encode_text(&self.text, &ids, te, x.text_remat, &mut tapes)?;
            let b = batch.alt_text.dim(0)?;
            let half = |i: usize| -> Result<TextOutput> {
                Ok(TextOutput {
                    pooled: both.pooled.narrow(0, i * b, b)?,
                    tokens: both.tokens.narrow(0, i * b, b)?,
                })
            };
            (half(0)?, half(1)?)
        } else {
            let alt = encode_text(&self.text, &batch.alt_text, te, x.text_remat, &mut tapes)?;
            let sent = encode_text(&self.text, &batch.sentence, te, x.text_remat, &mut tapes)?;
            (alt, sent)
        };
        // Dual contrastive: image vs alt-text and image vs one caption sentence, averaged.
        let pooled = img.pooled.as_ref().expect("pooled was asked for");
        let c_alt = info_nce(pooled, &alt.pooled, &self.log_temp)?;
        let c_sent = info_nce(pooled, &sent.pooled, &self.log_temp)?;
        let contrastive = ((c_alt + c_sent)? * 0.5)?;
        // The decoder sees the alt-text tokens without the pooled [CLS] (79 of 80).
        let t = alt.tokens.dim(1)?;
        let alt_tokens = alt.tokens.narrow(1, 0, t - 1)?;
        let hidden = self.decoder.hidden(&img.patches, &alt_tokens, x.decoder)?;
        let caption = caption_loss(
            &hidden,
            &self.decoder.head,
            &batch.v1_targets,
            &batch.v1_weights,
            x.head,
        )?;
        let total = ((&contrastive * CONTRASTIVE_WEIGHT)? + (&caption * CAPTION_WEIGHT)?)?;
        Ok(Loss {
            total,
            caption,
            contrastive: Some(contrastive),
            remat: tapes,
        })
    }
}

impl OpenVision2 {
    /// `mask_seed` draws the kept token subset of every image.
    pub fn loss(&self, batch: &Batch, x: &RecipeExec, mask_seed: u64) -> Result<Loss> {
        let mut tapes = Vec::new();
        let img = encode(
            &self.vit,
            &batch.images,
            x.image_encoder,
            false,
            x.image_remat,
            &mut tapes,
        )?;
        let kept = self.select(&img.patches, mask_seed)?;
        let hidden = self.decoder.hidden(&kept, &batch.v2_input, x.decoder)?;
        let caption = caption_loss(
            &hidden,
            &self.decoder.head,
            &batch.v2_targets,
            &batch.v2_weights,
            x.head,
        )?;
        Ok(Loss {
            total: (&caption * CAPTION_WEIGHT)?,
            caption,
            contrastive: None,
            remat: tapes,
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
    /// The loss with every module in `p`, nothing recomputed.
    pub fn loss(&self, batch: &Batch, p: Exec, mask_seed: u64) -> Result<Loss> {
        self.loss_with(batch, &RecipeExec::uniform(p), mask_seed)
    }

    pub fn loss_with(&self, batch: &Batch, x: &RecipeExec, mask_seed: u64) -> Result<Loss> {
        match self {
            Model::Ov1(m) => m.loss(batch, x),
            Model::Ov2(m) => m.loss(batch, x, mask_seed),
        }
    }

    /// The gradients of every parameter in `params`, detached: backprop through the loss, then
    /// through each recomputed module, last first. Consumes the loss so that its activations
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
        for tape in &remat {
            keep.insert(tape.leaf_id());
        }
        let mut grads = retain_grads(crate::fused::grads::backward(&total)?, &keep);
        drop(total);
        for tape in &remat {
            keep.remove(&tape.leaf_id());
        }
        for tape in remat.into_iter().rev() {
            match (tape, self) {
                (Tape::Image(t), _) => self.vit().backward_remat(t, &mut grads, &keep)?,
                (Tape::Text(t), Model::Ov1(m)) => m.text.backward_remat(t, &mut grads, &keep)?,
                (Tape::Text(_), Model::Ov2(_)) => {
                    return Err(candle_core::Error::Msg(
                        "OpenVision 2 has no text tower to recompute".into(),
                    ))
                }
            }
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
