//! Export of a step's starting point, so that another implementation (the torch engine,
//! engines/torch) can load the exact same weights and inputs and check that it computes the
//! same function.
//!
//! Per recipe, `DIR/<ov1|ov2>/` gets:
//! - `params.safetensors`: every trainable tensor as the step builds it from the seed, named as
//!   in [`ParamStore`](crate::params::ParamStore) (`image_encoder.blocks.block0.attn.qkv.w`, ...), f32, candle's layout
//!   (a Linear's `w` is (in, out));
//! - `batch.safetensors`: the synthetic batch of the step runner (`images` f32; token ids and
//!   targets as i64; weights f32) and `keep_step<k>` (B, K) i64, the patch indices OpenVision 2
//!   keeps at step k, for every step the runner would take (warm-up included; at least 0 and 1;
//!   present for both recipes, OpenVision ignores them);
//! - `meta.json` (`ovbench.export/1`): the configuration, each parameter's shape, module,
//!   weight-decay flag, whether the objective reaches it and the L2 norm of its step-0
//!   gradient, and the losses as ovbench computes them: step 0 from the exported weights, and
//!   step 1 after one AdamW update on the same batch (`forward_only`: step 0 only, no
//!   gradients, for the large configurations).
//!
//! The batch and mask seeds are derived exactly as [`crate::step::run`] derives them (a test
//! checks that the exported step-0 loss equals the step runner's first loss).

use crate::config::ModelConfig;
use crate::data::{keep_indices, Batch};
use crate::optim::AdamW;
use crate::params::Module;
use crate::recipe::{build, Recipe, RecipeExec};
use crate::step::StepConfig;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Schema of `meta.json`.
pub const EXPORT_SCHEMA: &str = "ovbench.export/1";

/// The seed of the step runner's batch.
pub fn batch_seed(seed: u64) -> u64 {
    seed ^ 0xda7a
}

/// The seed of the step runner's OpenVision 2 mask at `step` (warm-up steps included).
pub fn mask_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(step as u64)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportedParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub module: Module,
    pub decay: bool,
    pub in_objective: bool,
    /// L2 norm of the step-0 gradient (None when the objective does not reach it).
    pub grad_norm: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportedLoss {
    pub step: usize,
    pub mask_seed: u64,
    pub total: f64,
    pub caption: f64,
    pub contrastive: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExportMeta {
    pub schema: String,
    pub recipe: Recipe,
    pub config: StepConfig,
    pub model_config: ModelConfig,
    pub batch_seed: u64,
    /// Kept patch tokens per image (OpenVision 2; also what `keep_step*` hold).
    pub kept_tokens: usize,
    pub params_total: usize,
    pub params: Vec<ExportedParam>,
    /// Step 0 (exported weights) and step 1 (after one AdamW update).
    pub losses: Vec<ExportedLoss>,
}

/// What was written for one recipe.
#[derive(Debug, Clone)]
pub struct Exported {
    pub recipe: Recipe,
    pub dir: PathBuf,
    pub meta: ExportMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    #[error("optimizer: {0}")]
    Optim(#[from] crate::optim::OptimError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes every recipe of `cfg` under `dir` (see the module docs).
pub fn export(
    cfg: &StepConfig,
    dir: &Path,
    forward_only: bool,
) -> Result<Vec<Exported>, ExportError> {
    let mcfg = cfg.validate().map_err(ExportError::Config)?;
    if cfg.policy != crate::policy::PolicyName::Ovbench {
        // The PyTorch side (scripts/torch_step.py) replays ovbench's own policy only.
        return Err(ExportError::Config(format!(
            "--export-init replays the ovbench policy only (got --policy {})",
            cfg.policy
        )));
    }
    let device = cfg.device.open().map_err(ExportError::Device)?;
    cfg.recipes
        .iter()
        .map(|&r| export_recipe(cfg, &mcfg, r, &device, &dir.join(r.key()), forward_only))
        .collect()
}

fn keep_tensor(
    rows: usize,
    seed: u64,
    mcfg: &ModelConfig,
    step: usize,
    device: &Device,
) -> Result<Tensor, ExportError> {
    let idx = keep_indices(
        rows,
        mcfg.patches(),
        mcfg.kept_tokens(),
        mask_seed(seed, step),
    );
    let flat: Vec<i64> = idx.into_iter().flatten().map(i64::from).collect();
    Ok(Tensor::from_vec(flat, (rows, mcfg.kept_tokens()), device)?)
}

/// The batch tensors as `batch.safetensors` holds them (token ids as i64).
fn input_tensors(batch: &Batch) -> Result<HashMap<String, Tensor>, ExportError> {
    let ids = |t: &Tensor| t.to_dtype(DType::I64);
    Ok([
        ("images", batch.images.clone()),
        ("caption", ids(&batch.caption)?),
        ("alt_text", ids(&batch.alt_text)?),
        ("sentence", ids(&batch.sentence)?),
        ("v2_input", ids(&batch.v2_input)?),
        ("v2_targets", ids(&batch.v2_targets)?),
        ("v2_weights", batch.v2_weights.clone()),
        ("v1_targets", ids(&batch.v1_targets)?),
        ("v1_weights", batch.v1_weights.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// Writes the step runner's inputs for another engine: the synthetic batch of `rows` images
/// (the batch seed of `cfg`; with `rows = cfg.batch` exactly the candle engine's batch) and
/// `keep_step<k>` for the first `steps` steps (the candle engine's mask seeds). Several ranks
/// each take their rows of one such global batch.
pub fn write_inputs(
    cfg: &StepConfig,
    mcfg: &ModelConfig,
    rows: usize,
    steps: usize,
    path: &Path,
) -> Result<(), ExportError> {
    let device = Device::Cpu;
    let batch = Batch::synthetic(
        rows,
        cfg.resolution,
        &cfg.text_lengths,
        batch_seed(cfg.seed),
        &device,
    )?;
    let mut inputs = input_tensors(&batch)?;
    for step in 0..steps {
        inputs.insert(
            format!("keep_step{step}"),
            keep_tensor(rows, cfg.seed, mcfg, step, &device)?,
        );
    }
    candle_core::safetensors::save(&inputs, path)?;
    Ok(())
}

fn export_recipe(
    cfg: &StepConfig,
    mcfg: &ModelConfig,
    recipe: Recipe,
    device: &Device,
    dir: &Path,
    forward_only: bool,
) -> Result<Exported, ExportError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // The ovbench policy (checked by `export`): every module in --dtype, --remat on the encoder.
    let (mut exec, _) = RecipeExec::from_execution(
        cfg.resolved_policy().execution(recipe),
        cfg.kernels,
        cfg.device,
    );
    exec.text_one_batch = false;
    let built = build(recipe, mcfg, cfg.seed, device)?;
    let params = &built.params;
    let batch = Batch::synthetic(
        cfg.batch,
        cfg.resolution,
        &cfg.text_lengths,
        batch_seed(cfg.seed),
        device,
    )?;

    // Weights before any update.
    let weights: HashMap<String, Tensor> = params
        .params
        .iter()
        .map(|p| Ok((p.name.clone(), p.var.as_tensor().to_dtype(DType::F32)?)))
        .collect::<candle_core::Result<_>>()?;
    candle_core::safetensors::save(&weights, dir.join("params.safetensors"))?;
    drop(weights);

    let mut inputs = input_tensors(&batch)?;
    for step in 0..(cfg.warmup + cfg.steps).max(2) {
        inputs.insert(
            format!("keep_step{step}"),
            keep_tensor(cfg.batch, cfg.seed, mcfg, step, device)?,
        );
    }
    candle_core::safetensors::save(&inputs, dir.join("batch.safetensors"))?;
    drop(inputs);

    // Step 0: loss and gradients from the exported weights, then one AdamW update.
    let mut losses = Vec::new();
    let seed0 = mask_seed(cfg.seed, 0);
    let loss = built.model.loss_with(&batch, &exec, seed0)?;
    let v = loss.values()?;
    losses.push(ExportedLoss {
        step: 0,
        mask_seed: seed0,
        total: v.total,
        caption: v.caption,
        contrastive: v.contrastive,
    });
    let param = |p: &crate::params::Param, grad_norm| ExportedParam {
        name: p.name.clone(),
        shape: p.var.dims().to_vec(),
        module: p.module,
        decay: p.decay,
        in_objective: p.in_objective,
        grad_norm,
    };
    if forward_only {
        drop(loss);
        let exported = params.params.iter().map(|p| param(p, None)).collect();
        return finish(cfg, mcfg, recipe, dir, params, exported, losses);
    }
    let grads = built.model.backward(loss, params)?;
    let mut exported = Vec::with_capacity(params.params.len());
    for p in &params.params {
        let grad_norm = match grads.get(p.var.as_tensor()) {
            Some(g) if p.in_objective => Some(
                g.to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?
                    .sqrt(),
            ),
            _ => None,
        };
        exported.push(param(p, grad_norm));
    }
    let mut opt = AdamW::new(&params.params, cfg.optimizer)?;
    opt.step(&params.params, &grads)?;
    drop(grads);
    // Step 1: the loss after the update, same batch, the next mask.
    let seed1 = mask_seed(cfg.seed, 1);
    let v = built.model.loss_with(&batch, &exec, seed1)?.values()?;
    losses.push(ExportedLoss {
        step: 1,
        mask_seed: seed1,
        total: v.total,
        caption: v.caption,
        contrastive: v.contrastive,
    });
    finish(cfg, mcfg, recipe, dir, params, exported, losses)
}

fn finish(
    cfg: &StepConfig,
    mcfg: &ModelConfig,
    recipe: Recipe,
    dir: &Path,
    params: &crate::params::ParamStore,
    exported: Vec<ExportedParam>,
    losses: Vec<ExportedLoss>,
) -> Result<Exported, ExportError> {
    let meta = ExportMeta {
        schema: EXPORT_SCHEMA.into(),
        recipe,
        config: cfg.clone(),
        model_config: mcfg.clone(),
        batch_seed: batch_seed(cfg.seed),
        kept_tokens: mcfg.kept_tokens(),
        params_total: params.total(),
        params: exported,
        losses,
    };
    let path = dir.join("meta.json");
    let text = serde_json::to_string_pretty(&meta).expect("the meta serialises");
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(Exported {
        recipe,
        dir: dir.to_path_buf(),
        meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{run, Silent};

    fn tiny() -> StepConfig {
        StepConfig {
            model: "Ti/16".parse().unwrap(),
            resolution: 32,
            batch: 2,
            steps: 1,
            warmup: 1,
            threads: 1,
            ..StepConfig::small()
        }
    }

    /// Files exist; names and shapes match the ParamStore; the recorded step-0 loss is the
    /// step runner's first loss (same weights, batch and mask seeds).
    #[test]
    fn export_matches_the_param_store_and_the_step_runner() {
        let cfg = tiny();
        let dir = tempfile_dir();
        let out = export(&cfg, &dir, false).unwrap();
        let rec = run(&cfg, &mut Silent).unwrap();
        let mcfg = cfg.validate().unwrap();
        for e in &out {
            for f in ["params.safetensors", "batch.safetensors", "meta.json"] {
                assert!(e.dir.join(f).is_file(), "{f} missing for {:?}", e.recipe);
            }
            let built = build(e.recipe, &mcfg, cfg.seed, &Device::Cpu).unwrap();
            let loaded =
                candle_core::safetensors::load(e.dir.join("params.safetensors"), &Device::Cpu)
                    .unwrap();
            assert_eq!(loaded.len(), built.params.params.len());
            assert_eq!(e.meta.params.len(), built.params.params.len());
            for (p, m) in built.params.params.iter().zip(&e.meta.params) {
                assert_eq!(p.name, m.name);
                let t = &loaded[&p.name];
                assert_eq!(t.dims(), p.var.dims(), "{}", p.name);
                assert_eq!(m.shape, p.var.dims());
                let diff = (t - p.var.as_tensor())
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert_eq!(diff, 0.0, "{} differs from a fresh build", p.name);
                assert_eq!(m.grad_norm.is_some(), p.in_objective, "{}", p.name);
            }
            assert_eq!(e.meta.params_total, built.params.total());
            let batch =
                candle_core::safetensors::load(e.dir.join("batch.safetensors"), &Device::Cpu)
                    .unwrap();
            assert_eq!(batch["images"].dims(), &[2, 3, 32, 32]);
            assert_eq!(batch["keep_step0"].dims(), &[2, mcfg.kept_tokens()]);
            assert!(batch.contains_key("keep_step1"));
            assert_eq!(batch["v2_input"].dtype(), DType::I64);
            let run = rec.runs.iter().find(|r| r.recipe == e.recipe).unwrap();
            let l0 = e.meta.losses[0].total;
            assert!(l0.is_finite());
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs();
            assert!(
                close(l0, run.warmup_losses[0]),
                "{:?}: {l0} vs {}",
                e.recipe,
                run.warmup_losses[0]
            );
            // Step 1 of the export is the runner's first measured step.
            let l1 = e.meta.losses[1].total;
            assert!(
                close(l1, run.samples[0].loss),
                "{:?}: {l1} vs {}",
                e.recipe,
                run.samples[0].loss
            );
            assert_ne!(l0, l1, "the update changed nothing");
            let meta: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.dir.join("meta.json")).unwrap())
                    .unwrap();
            assert_eq!(meta["schema"], EXPORT_SCHEMA);
            assert_eq!(meta["params_total"], e.meta.params_total);
            assert_eq!(meta["losses"][0]["total"], l0);
            assert_eq!(meta["params"][0]["name"], "image_encoder.patch_embed.w");
        }
        // Forward only: the same step-0 loss, no gradients, no step 1.
        let fwd = export(&cfg, &dir.join("fwd"), true).unwrap();
        for (e, full) in fwd.iter().zip(&out) {
            assert_eq!(e.meta.losses.len(), 1);
            assert_eq!(e.meta.losses[0], full.meta.losses[0]);
            assert!(e.meta.params.iter().all(|p| p.grad_norm.is_none()));
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ovbench-export-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
