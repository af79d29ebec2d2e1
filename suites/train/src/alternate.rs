//! Timing with the recipes' steps alternated: one model per recipe is built and every
//! (recipe, execution) lane takes one step in turn (A B A B ...), so that a drift of the
//! machine's speed falls on every lane alike. Each round also times what the released loop
//! adds around the step: the three global L2 norms every step computes (gradients,
//! parameters, updates; `src/main_clip.py` 487-491, `src/main_openvision2.py` 296-300), and,
//! with OpenVision's model, the forward passes of its periodic zero-shot evaluation (image
//! encoder per image, text tower per 80-token prompt).
//!
//! Lanes of one recipe share its model and, where their optimizer settings agree, its
//! optimizer: a lane's steps also move the weights the others see, which does not change what
//! a step costs. Memory is read from the first step of each lane (the peak over the live bytes
//! before it), not from the alternation.

use crate::config::ModelConfig;
use crate::data::Batch;
use crate::optim::{AdamW, AdamWState};
use crate::params::ParamStore;
use crate::policy::{Execution, OptimizerExec, PolicyName};
use crate::recipe::{build, Built, Model, Recipe, RecipeExec};
use crate::step::{Progress, StepConfig, StepError, StepSample};
use candle_core::{DType, Device, Tensor};
use ovbench_harness::{alloc, clock};
use serde::{Deserialize, Serialize};

/// One (recipe, execution) to time, and the policies it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub recipe: Recipe,
    pub execution: Execution,
    pub policies: Vec<PolicyName>,
}

/// A lane's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneRun {
    pub lane: Lane,
    pub samples: Vec<StepSample>,
    /// Seconds of the three global L2 norms, per measured step.
    pub norms_s: Vec<f64>,
    /// Peaks of the lane's first step over the live bytes before it (the counting allocator):
    /// forward pass and whole step.
    pub forward_over_start_bytes: u64,
    pub step_over_start_bytes: u64,
    pub notes: Vec<String>,
}

/// The zero-shot evaluation's unit costs, from OpenVision's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalCosts {
    /// Seconds per image of the image encoder's forward pass (pooled output), per round.
    pub image_s: Vec<f64>,
    /// Seconds per 80-token text of the text tower's forward pass, per round.
    pub text_s: Vec<f64>,
}

pub struct Session {
    pub lanes: Vec<LaneRun>,
    pub eval: Option<EvalCosts>,
}

struct LaneState {
    lane: Lane,
    exec: RecipeExec,
    model: usize,
    opt: usize,
    run: LaneRun,
    steps: usize,
}

struct DeviceSync<'a>(&'a Device);
impl clock::Sync for DeviceSync<'_> {
    fn synchronize(&self) {
        let _ = self.0.synchronize();
    }
}

/// Σ x² of every tensor, as one number (f32 data summed in f64).
fn sum_squares<'a>(ts: impl Iterator<Item = &'a Tensor>) -> Result<f64, candle_core::Error> {
    let mut total = 0.0;
    for t in ts {
        total += t
            .to_dtype(DType::F32)?
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(total)
}

/// The released loop's three global norms: of the gradients, the parameters and the updates.
/// The in-place optimizer keeps no update tree, so the third pass reads the parameters again
/// (a tree of the same size).
fn global_norms(
    params: &ParamStore,
    grads: &candle_core::backprop::GradStore,
) -> Result<f64, candle_core::Error> {
    let g = sum_squares(
        params
            .params
            .iter()
            .filter_map(|p| grads.get(p.var.as_tensor())),
    )?;
    let p = sum_squares(params.params.iter().map(|p| p.var.as_tensor()))?;
    let u = sum_squares(params.params.iter().map(|p| p.var.as_tensor()))?;
    Ok(g.sqrt() + p.sqrt() + u.sqrt())
}

/// Runs `warmup` then `steps` rounds; in each round every lane takes one step, then (when
/// `eval` and OpenVision is among the lanes) the evaluation's forward passes are timed.
/// `cfg` gives the model, resolution, batch, seed, kernels and device; `policy_mode`: whether
/// the lanes run as the policies do (texts as one batch, portable ops off f32).
pub fn run(
    cfg: &StepConfig,
    lanes: &[Lane],
    eval: bool,
    progress: &mut dyn Progress,
) -> Result<Session, StepError> {
    let mcfg: ModelConfig = cfg.validate().map_err(StepError::Config)?;
    for lane in lanes {
        let lane_cfg = StepConfig {
            recipes: vec![lane.recipe],
            policy: lane.policies[0],
            ..cfg.clone()
        };
        crate::footprint::refuse_beyond_host_memory(&lane_cfg, &mcfg).map_err(StepError::Config)?;
    }
    let device = cfg.device.open().map_err(StepError::Device)?;
    let sync = DeviceSync(&device);
    let ce = |recipe: Recipe| {
        move |source| StepError::Candle {
            recipe: recipe.key(),
            source,
        }
    };
    let mut models: Vec<(Recipe, Built)> = Vec::new();
    let mut opts: Vec<(Recipe, OptimizerExec, AdamW)> = Vec::new();
    let mut states = Vec::new();
    for lane in lanes {
        let r = lane.recipe;
        let m = match models.iter().position(|(x, _)| *x == r) {
            Some(i) => i,
            None => {
                models.push((r, build(r, &mcfg, cfg.seed, &device).map_err(ce(r))?));
                models.len() - 1
            }
        };
        let o = match opts
            .iter()
            .position(|(x, oe, _)| *x == r && *oe == lane.execution.optimizer)
        {
            Some(i) => i,
            None => {
                let (c, st) = AdamWState::from_policy(cfg.optimizer.lr, &lane.execution.optimizer);
                let opt = AdamW::with_state(&models[m].1.params.params, c, st).map_err(ce(r))?;
                opts.push((r, lane.execution.optimizer, opt));
                opts.len() - 1
            }
        };
        let (mut exec, mut notes) =
            RecipeExec::from_execution(&lane.execution, cfg.kernels, cfg.device);
        let policy_mode = lane.policies.iter().any(|p| *p != PolicyName::Ovbench);
        exec.text_one_batch = policy_mode;
        if policy_mode {
            exec = exec.portable_off_f32();
        } else {
            notes.clear();
        }
        notes.extend(opts[o].2.notes.iter().cloned());
        states.push(LaneState {
            lane: lane.clone(),
            exec,
            model: m,
            opt: o,
            run: LaneRun {
                lane: lane.clone(),
                samples: Vec::new(),
                norms_s: Vec::new(),
                forward_over_start_bytes: 0,
                step_over_start_bytes: 0,
                notes,
            },
            steps: 0,
        });
    }
    let batch = Batch::synthetic(
        cfg.batch,
        cfg.resolution,
        &cfg.text_lengths,
        cfg.seed ^ 0xda7a,
        &device,
    )
    .map_err(ce(lanes[0].recipe))?;
    let ov1 = states
        .iter()
        .position(|s| s.lane.recipe == Recipe::Ov1)
        .filter(|_| eval);
    let mut costs = ov1.map(|_| EvalCosts {
        image_s: Vec::new(),
        text_s: Vec::new(),
    });
    progress.begin(
        &format!(
            "{} at {} px: {} lanes alternated",
            cfg.model,
            cfg.resolution,
            states.len()
        ),
        ((cfg.warmup + cfg.steps) * states.len()) as u64,
    );
    for round in 0..cfg.warmup + cfg.steps {
        let measured = round >= cfg.warmup;
        for st in states.iter_mut() {
            let r = st.lane.recipe;
            let first = st.steps == 0;
            let built = &models[st.model].1;
            let opt = &mut opts[st.opt].2;
            let mask_seed = cfg
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(st.steps as u64);
            let start = alloc::snapshot().current_bytes;
            alloc::reset_peak();
            let (loss, fwd) =
                clock::timed(&sync, || built.model.loss_with(&batch, &st.exec, mask_seed));
            let loss = loss.map_err(ce(r))?;
            let values = loss.values().map_err(ce(r))?;
            if first {
                st.run.forward_over_start_bytes =
                    alloc::snapshot().peak_bytes.saturating_sub(start);
            }
            let (grads, bwd) = clock::timed(&sync, || built.model.backward(loss, &built.params));
            let grads = grads.map_err(ce(r))?;
            let (res, optim) = clock::timed(&sync, || opt.step(&built.params.params, &grads));
            res.map_err(|source| StepError::Optim {
                recipe: r.key(),
                source,
            })?;
            let (norms, norm_t) = clock::timed(&sync, || global_norms(&built.params, &grads));
            norms.map_err(ce(r))?;
            drop(grads);
            if first {
                st.run.step_over_start_bytes = alloc::snapshot().peak_bytes.saturating_sub(start);
            }
            if !values.total.is_finite() {
                return Err(StepError::NonFinite {
                    recipe: r.key(),
                    step: st.steps,
                    loss: values.total,
                });
            }
            let secs = (fwd + bwd + optim).as_secs_f64();
            let lane: Vec<&str> = st.lane.policies.iter().map(|p| p.key()).collect();
            progress.advance(&format!(
                "{} ({}): {}",
                r.label(),
                lane.join(", "),
                ovbench_harness::progress::step_note(!measured, secs, values.total)
            ));
            if measured {
                st.run.samples.push(StepSample {
                    step: st.steps,
                    forward_s: fwd.as_secs_f64(),
                    backward_s: bwd.as_secs_f64(),
                    optimizer_s: optim.as_secs_f64(),
                    total_s: secs,
                    loss: values.total,
                    caption_loss: values.caption,
                    contrastive_loss: values.contrastive,
                });
                st.run.norms_s.push(norm_t.as_secs_f64());
            }
            st.steps += 1;
        }
        if let (Some(i), Some(c)) = (ov1, costs.as_mut()) {
            let st = &states[i];
            if let Model::Ov1(m) = &models[st.model].1.model {
                let (out, ti) = clock::timed(&sync, || {
                    m.vit.forward(&batch.images, st.exec.image_encoder, true)
                });
                out.map_err(ce(Recipe::Ov1))?;
                let (out, tt) = clock::timed(&sync, || {
                    m.text.forward(&batch.alt_text, st.exec.text_encoder)
                });
                out.map_err(ce(Recipe::Ov1))?;
                if measured {
                    c.image_s.push(ti.as_secs_f64() / cfg.batch as f64);
                    c.text_s.push(tt.as_secs_f64() / cfg.batch as f64);
                }
            }
        }
    }
    progress.end();
    Ok(Session {
        lanes: states.into_iter().map(|s| s.run).collect(),
        eval: costs,
    })
}

/// The evaluations of OpenVision's released loop in one stage, counted as the loop counts them
/// (`src/helpers/utils.py` 209-238 `itstime(step, every, total, first=False, last=True)`), plus
/// the one after the stage's last step (`src/main_clip.py` 757).
pub fn evals_in_stage(total_steps: u64, every: u64) -> u64 {
    if every == 0 {
        return 1;
    }
    let close = |s: u64| (s.abs_diff(total_steps) as f64) < 0.25 * every as f64;
    let periodic = (1..=total_steps / every)
        .map(|k| k * every)
        .filter(|&s| !close(s) && s != total_steps)
        .count() as u64;
    periodic + 1 + 1
}

/// The evaluation interval in steps at a stage's global batch: `log_steps = int(2000 //
/// batch_factor)` (`src/configs/openvision.py` 307) with batch = 16,384 · batch_factor (:271).
pub fn eval_interval(global_batch: u64) -> u64 {
    let factor = global_batch as f64 / 16_384.0;
    (2000.0 / factor).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 12.81 B samples at 32,768 (390,981 steps, every 1,000): 390 periodic, the last step, the
    /// final one; 1.025 B at 16,384 (62,557 steps, every 2,000): 31 + 1 + 1.
    #[test]
    fn evaluations_per_stage_follow_the_released_loop() {
        assert_eq!(eval_interval(32_768), 1000);
        assert_eq!(eval_interval(16_384), 2000);
        assert_eq!(eval_interval(8_192), 4000);
        assert_eq!(evals_in_stage(12_811_670_000 / 32_768, 1000), 392);
        assert_eq!(evals_in_stage(1_024_933_600 / 16_384, 2000), 33);
        // A periodic step within a quarter interval of the last is dropped.
        assert_eq!(evals_in_stage(2100, 1000), 1 + 1 + 1);
        assert_eq!(evals_in_stage(2000, 1000), 1 + 1 + 1);
    }
}
