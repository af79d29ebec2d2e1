//! `ovbench step`: warm-up steps, then measured steps of each recipe, with time split into
//! forward, backward and optimizer, and host memory from the counting allocator.

use crate::config::{ModelConfig, ModelName, PrefixAttention};
use crate::data::{Batch, TextLengths};
use crate::device::{DTypeArg, DeviceArg};
use crate::engine::{EngineKind, RecipeOutcome};
use crate::flops::{forward_flops, FlopBreakdown, V1_TEXT_PASSES};
use crate::fused::Kernels;
use crate::optim::{AdamW, AdamWConfig, AdamWState};
use crate::params::Module;
use crate::policy::{self, OvbenchKnobs, PolicyName, ResolvedPolicy};
use crate::recipe::{build, Recipe, RecipeExec, Remat};
use candle_core::Device;
use ovbench_harness::{alloc, clock, probe, stats, Summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything that determines a step run. Stored whole in the record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepConfig {
    pub model: ModelName,
    pub resolution: usize,
    pub batch: usize,
    pub keep_ratio: f64,
    pub v2_attention: PrefixAttention,
    pub recipes: Vec<Recipe>,
    pub steps: usize,
    pub warmup: usize,
    pub seed: u64,
    pub dtype: DTypeArg,
    pub device: DeviceArg,
    pub optimizer: AdamWConfig,
    pub text_lengths: TextLengths,
    /// Activation recomputation of the image encoder.
    #[serde(default)]
    pub remat: Remat,
    /// CPU threads for matrix products (0: one per available CPU).
    #[serde(default)]
    pub threads: usize,
    /// CPU threads for element-wise kernels (candle's spinning barrier pool; 0: all CPUs).
    #[serde(default)]
    pub ew_threads: usize,
    /// Layer norm, softmax, GELU and cross-entropy: fused kernels or candle's composed ops.
    #[serde(default = "Kernels::composed")]
    pub kernels: Kernels,
    /// What runs the step: candle (in process) or torch (a child process); records made
    /// before engines existed are candle's.
    #[serde(default)]
    pub engine: EngineKind,
    /// torch.compile (torch engine only).
    #[serde(default)]
    pub compile: bool,
    /// Processes (devices) under torchrun, each with `batch` images (torch engine only).
    #[serde(default = "one")]
    pub nproc: usize,
    /// `--mem-cap`: a recipe whose GPU allocator peak exceeds it is recorded as out of memory
    /// (None: no cap). Records made before the field existed state the cap only in `runs[].gpu`.
    #[serde(default)]
    pub mem_cap_bytes: Option<u64>,
    /// Interval of the NVML memory sampler on GPU runs, in milliseconds.
    #[serde(default = "default_nvml_interval_ms")]
    pub nvml_interval_ms: f64,
    /// The execution policy (`--policy`); `dtype` and `remat` above belong to `ovbench`'s.
    /// Records made before the field existed ran `ovbench`.
    #[serde(default = "PolicyName::legacy")]
    pub policy: PolicyName,
}

fn default_nvml_interval_ms() -> f64 {
    1.0
}

fn one() -> usize {
    1
}

/// Bounds far beyond any real run (the paper's largest per-chip batch is 256, its largest
/// resolution 384 px) that keep arithmetic on them from overflowing.
pub const MAX_BATCH: u64 = 1 << 16;
pub const MAX_STEPS: u64 = 1_000_000;
pub const MAX_RESOLUTION: u64 = 8192;
pub const MAX_PROCESSES: u64 = 4096;

impl StepConfig {
    /// The small default: Ti/16 at 112 px, batch 8, 5 measured steps after 1 warm-up.
    pub fn small() -> Self {
        StepConfig {
            model: "Ti/16".parse().expect("valid"),
            resolution: 112,
            batch: 8,
            keep_ratio: 0.35,
            v2_attention: PrefixAttention::Causal,
            recipes: vec![Recipe::Ov1, Recipe::Ov2],
            steps: 5,
            warmup: 1,
            seed: 0,
            dtype: DTypeArg::F32,
            device: DeviceArg::Cpu,
            optimizer: AdamWConfig::default(),
            text_lengths: TextLengths::default(),
            remat: Remat::None,
            threads: 0,
            ew_threads: 1,
            kernels: Kernels::Fused,
            engine: EngineKind::Candle,
            compile: false,
            nproc: 1,
            mem_cap_bytes: None,
            nvml_interval_ms: default_nvml_interval_ms(),
            policy: PolicyName::Ovbench,
        }
    }

    /// The policy resolved for both recipes (the `ovbench` preset from this configuration's
    /// `dtype`, `remat`, `kernels`, device and optimizer).
    pub fn resolved_policy(&self) -> ResolvedPolicy {
        policy::resolve(
            self.policy,
            &OvbenchKnobs {
                dtype: self.dtype,
                remat: self.remat,
                kernels: self.kernels,
                device: self.device,
                optimizer: self.optimizer,
            },
        )
    }

    /// Checks every argument, before any work: the error names the argument and its bounds.
    pub fn validate(&self) -> Result<ModelConfig, String> {
        use ovbench_harness::limits::{threads, within};
        within("--batch", self.batch as u64, 1, MAX_BATCH, "")?;
        within("--steps", self.steps as u64, 1, MAX_STEPS, "")?;
        within("--warmup", self.warmup as u64, 0, MAX_STEPS, "")?;
        within("--res", self.resolution as u64, 1, MAX_RESOLUTION, "")?;
        within("--nproc", self.nproc as u64, 1, MAX_PROCESSES, "")?;
        threads("--threads", self.threads)?;
        threads("--ew-threads", self.ew_threads)?;
        if !(self.nvml_interval_ms > 0.0 && self.nvml_interval_ms <= 60_000.0) {
            return Err("--nvml-interval-ms must be a number of milliseconds in (0, 60000]".into());
        }
        if self.mem_cap_bytes == Some(0) {
            return Err("--mem-cap must be more than 0 bytes".into());
        }
        if self.policy != PolicyName::Ovbench
            && (self.dtype != DTypeArg::F32 || self.remat != Remat::None)
        {
            return Err(format!(
                "--dtype and --remat set the ovbench policy; --policy {} sets precision and \
                 recomputation per recipe and module (see docs/policies-and-memory.md)",
                self.policy
            ));
        }
        if self.recipes.is_empty() {
            return Err("--recipe selects no recipe".into());
        }
        crate::engine::validate(self)?;
        if self.recipes.contains(&Recipe::Ov1) && self.batch * self.nproc < 2 {
            return Err(
                "--batch must be at least 2 for OpenVision: the contrastive loss needs negatives"
                    .into(),
            );
        }
        ModelConfig::new(
            self.model,
            self.resolution,
            self.keep_ratio,
            self.v2_attention,
        )
        .map_err(|e| format!("--model/--res/--keep: {e}"))
    }
}

/// One measured step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepSample {
    pub step: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    pub total_s: f64,
    pub loss: f64,
    pub caption_loss: f64,
    pub contrastive_loss: Option<f64>,
}

/// Host memory of one recipe's run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostMemory {
    /// Whether the counting allocator was installed (false: the counts below are zero).
    pub allocator_active: bool,
    /// Live bytes before the model was built.
    pub baseline_bytes: u64,
    /// Highest live bytes from model build to the last step (exact, deterministic).
    pub peak_bytes: u64,
    /// `peak_bytes - baseline_bytes`: what this recipe's training needs.
    pub peak_over_baseline_bytes: u64,
    /// The highest peak over the baseline during a forward pass (the saved activations are all
    /// alive at its end); the backward pass's gradients can set the step's peak instead. 0 in
    /// records made before it was measured.
    #[serde(default)]
    pub forward_peak_over_baseline_bytes: u64,
    pub params_bytes: u64,
    pub grads_bytes: u64,
    pub optimizer_bytes: u64,
    /// Peak live bytes minus the persistent state (parameters, optimizer state) and baseline:
    /// activations, gradients and temporaries at their high point.
    pub transient_peak_bytes: u64,
    /// Kernel peak RSS over this run (VmHWM after a reset), if the OS allows.
    pub rss_peak_bytes: Option<u64>,
    /// Allocations made during the measured steps, per step.
    pub allocations_per_step: u64,
    /// Bytes allocated during the measured steps, per step; 0 in records made before it was
    /// counted.
    #[serde(default)]
    pub allocated_bytes_per_step: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub step_s: Summary,
    pub forward_s: Summary,
    pub backward_s: Summary,
    pub optimizer_s: Summary,
    pub images_per_s: f64,
    /// Training FLOPs (3 × forward) per second at the median step time.
    pub achieved_flops_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecipeRun {
    pub recipe: Recipe,
    pub label: String,
    pub params_by_module: BTreeMap<Module, usize>,
    pub params_total: usize,
    pub kept_tokens: Option<usize>,
    /// Forward FLOPs per image by module (see flops.rs for the counting rule).
    pub forward_flops_per_image: FlopBreakdown,
    pub forward_flops_per_image_total: f64,
    pub training_flops_per_image: f64,
    pub warmup_losses: Vec<f64>,
    pub samples: Vec<StepSample>,
    pub summary: RunSummary,
    pub memory: HostMemory,
    /// GPU memory views and device facts (CUDA runs only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gpu: Option<crate::gpu_memory::GpuMemory>,
    /// Pairings that are not documented, and other caveats.
    pub notes: Vec<String>,
    /// The torch engine's versions, execution, per-rank samples and memory views (absent for
    /// the candle engine).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine: Option<crate::engine::torch::EngineRun>,
}

/// A recipe that did not complete: `status` is "oom" when a device allocation failed or the
/// allocator peak exceeded `--mem-cap`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedRun {
    pub recipe: Recipe,
    pub batch: usize,
    pub status: String,
    pub error: String,
}

/// OpenVision 2 / OpenVision ratios with 95 % bootstrap intervals where samples exist.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratios {
    pub step_time: Option<stats::Ratio>,
    pub forward_time: Option<stats::Ratio>,
    pub backward_time: Option<stats::Ratio>,
    pub peak_memory: f64,
    pub transient_memory: f64,
    pub params: f64,
    pub forward_flops: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub config: StepConfig,
    pub model_config: ModelConfig,
    pub runs: Vec<RecipeRun>,
    pub ratios_ov2_over_ov1: Option<Ratios>,
    /// Order in which the recipes ran (sequential, so their memory peaks do not mix).
    pub order: Vec<Recipe>,
    /// Process settings that change timings.
    pub runtime: Runtime,
    /// Recipes recorded as out of memory instead of failing the run.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failed: Vec<FailedRun>,
    /// The execution policy, fully resolved for both recipes, with the source of every field
    /// (absent from records made before policies existed: they ran `ovbench`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub policy: Option<ResolvedPolicy>,
}

/// How the process ran: thread counts actually used and allocator behaviour.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runtime {
    pub threads: usize,
    pub ew_threads: Option<usize>,
    /// glibc malloc keeps freed memory for reuse (see harness alloc::retain_freed_memory).
    pub malloc_retains_freed_memory: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{recipe}: {source}")]
    Candle {
        recipe: &'static str,
        source: candle_core::Error,
    },
    #[error("{recipe}: {source}")]
    Optim {
        recipe: &'static str,
        source: crate::optim::OptimError,
    },
    /// A child engine failed (its message names the engine and carries its stderr's tail).
    #[error("{0}")]
    Engine(String),
    #[error("{recipe}: loss became {loss} at step {step}")]
    NonFinite {
        recipe: &'static str,
        step: usize,
        loss: f64,
    },
}

pub use ovbench_harness::progress::{Progress, Silent};

struct DeviceSync<'a>(&'a Device);
impl clock::Sync for DeviceSync<'_> {
    fn synchronize(&self) {
        let _ = self.0.synchronize();
    }
}

/// Runs every selected recipe of `cfg` in turn.
pub fn run(cfg: &StepConfig, progress: &mut dyn Progress) -> Result<StepRecord, StepError> {
    let model_cfg = cfg.validate().map_err(StepError::Config)?;
    crate::footprint::refuse_beyond_host_memory(cfg, &model_cfg).map_err(StepError::Config)?;
    let resolved = cfg.resolved_policy();
    let mut engine = crate::engine::for_config(cfg)?;
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for &recipe in &cfg.recipes {
        match engine.run_recipe(cfg, &model_cfg, &resolved, recipe, progress)? {
            RecipeOutcome::Done(run) => runs.push(run),
            RecipeOutcome::Failed(f) => failed.push(f),
        }
    }
    let ratios = ratios(&runs, cfg.seed);
    Ok(StepRecord {
        config: cfg.clone(),
        model_config: model_cfg,
        order: cfg.recipes.clone(),
        runs,
        ratios_ov2_over_ov1: ratios,
        failed,
        policy: Some(resolved),
        runtime: Runtime {
            threads: candle_core::utils::get_num_threads(),
            ew_threads: std::env::var("CANDLE_NUM_THREADS")
                .ok()
                .and_then(|s| s.parse().ok()),
            malloc_retains_freed_memory: alloc::malloc_retains(),
        },
    })
}

/// One recipe on the candle engine (crate::engine::candle wraps it).
pub(crate) fn run_recipe(
    cfg: &StepConfig,
    mcfg: &ModelConfig,
    resolved: &ResolvedPolicy,
    recipe: Recipe,
    device: &Device,
    progress: &mut dyn Progress,
) -> Result<RecipeRun, StepError> {
    let key = recipe.key();
    let ce = |source| StepError::Candle {
        recipe: key,
        source,
    };
    let sync = DeviceSync(device);
    let execution = resolved.execution(recipe);
    let (mut exec, mut engine_notes) =
        RecipeExec::from_execution(execution, cfg.kernels, cfg.device);
    // ovbench's own replay runs OpenVision's two texts as two passes (the CI baseline's).
    exec.text_one_batch = cfg.policy != PolicyName::Ovbench;
    if cfg.policy != PolicyName::Ovbench {
        exec = exec.portable_off_f32();
    }
    if exec.text_one_batch && recipe == Recipe::Ov1 {
        engine_notes.push(
            "text tower: alt-text and caption sentence as one 2B batch, as the released code \
             runs them (src/main_clip.py:411, src/models/two_towers.py:80)"
                .into(),
        );
    }

    // Give the previous recipe's retained heap back so it does not count in this one's RSS.
    alloc::release_freed_memory();
    let baseline = alloc::snapshot().current_bytes;
    alloc::reset_peak();
    let rss_reset = probe::reset_rss_peak();
    let gpu_probe = crate::gpu_memory::GpuProbe::start(
        device,
        std::time::Duration::from_secs_f64(cfg.nvml_interval_ms / 1e3),
        cfg.mem_cap_bytes,
    );

    let built = build(recipe, mcfg, cfg.seed, device).map_err(ce)?;
    let params = &built.params;
    let o = &execution.optimizer;
    let (adamw, state) = AdamWState::from_policy(cfg.optimizer.lr, o);
    let mut opt = AdamW::with_state(&params.params, adamw, state).map_err(ce)?;
    // The same batch for every step (data loading is not what is measured), drawn from the seed.
    let batch = Batch::synthetic(
        cfg.batch,
        cfg.resolution,
        &cfg.text_lengths,
        cfg.seed ^ 0xda7a,
        device,
    )
    .map_err(ce)?;

    progress.begin(recipe.label(), (cfg.warmup + cfg.steps) as u64);
    let mut warmup_losses = Vec::new();
    let mut samples = Vec::new();
    let mut grads_bytes = 0u64;
    let mut peak = PeakMarks::default();
    let mut forward_peak = 0u64;
    let mut calls_at_measure = 0u64;
    let mut bytes_at_measure = 0u64;
    for step in 0..cfg.warmup + cfg.steps {
        let measured = step >= cfg.warmup;
        if step == cfg.warmup {
            let s = alloc::snapshot();
            calls_at_measure = s.calls;
            bytes_at_measure = s.allocated_bytes;
        }
        let mask_seed = cfg
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(step as u64);
        // The forward pass's own high point: the peak so far is folded into `peak`, then the
        // counter restarts at the live bytes.
        peak.fold();
        let (loss, fwd) = clock::timed(&sync, || built.model.loss_with(&batch, &exec, mask_seed));
        let loss = loss.map_err(ce)?;
        // Read before the backward pass, which consumes the loss to free its activations.
        let values = loss.values().map_err(ce)?;
        forward_peak = forward_peak.max(peak.fold());
        let (grads, bwd) = clock::timed(&sync, || built.model.backward(loss, params));
        let grads = grads.map_err(ce)?;
        if step == 0 {
            grads_bytes = params
                .params
                .iter()
                .filter_map(|p| grads.get(p.var.as_tensor()))
                .map(|g| (g.elem_count() * g.dtype().size_in_bytes()) as u64)
                .sum();
        }
        let (res, optim) = clock::timed(&sync, || opt.step(&params.params, &grads));
        res.map_err(|source| StepError::Optim {
            recipe: key,
            source,
        })?;
        drop(grads);
        let total = values.total;
        if !total.is_finite() {
            return Err(StepError::NonFinite {
                recipe: key,
                step,
                loss: total,
            });
        }
        let secs = (fwd + bwd + optim).as_secs_f64();
        progress.advance(&ovbench_harness::progress::step_note(
            !measured, secs, total,
        ));
        if measured {
            samples.push(StepSample {
                step,
                forward_s: fwd.as_secs_f64(),
                backward_s: bwd.as_secs_f64(),
                optimizer_s: optim.as_secs_f64(),
                total_s: secs,
                loss: total,
                caption_loss: values.caption,
                contrastive_loss: values.contrastive,
            });
        } else {
            warmup_losses.push(total);
        }
    }
    progress.end();
    peak.fold();
    let snap = alloc::snapshot();
    let gpu = gpu_probe.map(crate::gpu_memory::GpuProbe::finish);
    let params_bytes = params.bytes() as u64;
    let optimizer_bytes = opt.state_bytes() as u64;
    let peak_over = peak.max.saturating_sub(baseline);
    let memory = HostMemory {
        allocator_active: alloc::is_active(),
        baseline_bytes: baseline,
        peak_bytes: peak.max,
        peak_over_baseline_bytes: peak_over,
        forward_peak_over_baseline_bytes: forward_peak.saturating_sub(baseline),
        params_bytes,
        grads_bytes,
        optimizer_bytes,
        transient_peak_bytes: peak_over.saturating_sub(params_bytes + optimizer_bytes),
        rss_peak_bytes: if rss_reset {
            probe::rss().map(|r| r.peak_bytes)
        } else {
            None
        },
        allocations_per_step: (snap.calls - calls_at_measure) / cfg.steps as u64,
        allocated_bytes_per_step: (snap.allocated_bytes - bytes_at_measure) / cfg.steps as u64,
    };

    let col = |f: fn(&StepSample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
    let step_s = Summary::of(&col(|s| s.total_s)).expect("at least one finite sample");
    let flops = forward_flops(recipe, mcfg, cfg.batch, V1_TEXT_PASSES);
    let training = 3.0 * flops.total();
    let summary = RunSummary {
        forward_s: Summary::of(&col(|s| s.forward_s)).expect("samples"),
        backward_s: Summary::of(&col(|s| s.backward_s)).expect("samples"),
        optimizer_s: Summary::of(&col(|s| s.optimizer_s)).expect("samples"),
        images_per_s: cfg.batch as f64 / step_s.median,
        achieved_flops_per_s: training * cfg.batch as f64 / step_s.median,
        step_s,
    };
    let mut notes = Vec::new();
    match recipe {
        Recipe::Ov1 => {
            notes.extend(mcfg.text_encoder.note.clone());
            notes.extend(mcfg.v1_decoder.note.clone());
        }
        Recipe::Ov2 => notes.extend(mcfg.v2_decoder.note.clone()),
    }
    notes.extend(opt.notes.iter().cloned());
    if cfg.policy != PolicyName::Ovbench {
        notes.extend(engine_notes);
    } else if cfg.device == DeviceArg::Cpu && cfg.dtype != DTypeArg::F32 {
        notes.push(format!(
            "{} matmuls on CPU run through candle's generic kernels",
            cfg.dtype.name()
        ));
    }
    if cfg.policy == PolicyName::Ovbench
        && (cfg.kernels == Kernels::Portable
            || (cfg.kernels == Kernels::Fused
                && (cfg.device != DeviceArg::Cpu || cfg.dtype != DTypeArg::F32)))
    {
        notes.push(
            "portable ops where the fused CPU kernels do not apply: layer norm, softmax, biased \
             dense layers and the token cross-entropy as single device-generic ops, attention \
             scores and probabilities recomputed in the backward pass; GELU and the rest are \
             candle's composed ops"
                .into(),
        );
    }
    Ok(RecipeRun {
        recipe,
        label: recipe.label().to_string(),
        params_by_module: params.counts(),
        params_total: params.total(),
        kept_tokens: (recipe == Recipe::Ov2).then(|| mcfg.kept_tokens()),
        forward_flops_per_image: flops,
        forward_flops_per_image_total: flops.total(),
        training_flops_per_image: training,
        warmup_losses,
        samples,
        summary,
        memory,
        gpu,
        notes,
        engine: None,
    })
}

/// Peaks of consecutive regions from the counting allocator, and the largest of them all.
#[derive(Default)]
struct PeakMarks {
    max: u64,
}

impl PeakMarks {
    /// The peak since the last mark; starts the next region at the live bytes.
    fn fold(&mut self) -> u64 {
        let p = alloc::snapshot().peak_bytes;
        self.max = self.max.max(p);
        alloc::reset_peak();
        p
    }
}

fn ratios(runs: &[RecipeRun], seed: u64) -> Option<Ratios> {
    let v1 = runs.iter().find(|r| r.recipe == Recipe::Ov1)?;
    let v2 = runs.iter().find(|r| r.recipe == Recipe::Ov2)?;
    let col = |r: &RecipeRun, f: fn(&StepSample) -> f64| -> Vec<f64> {
        r.samples.iter().map(f).collect()
    };
    let ratio = |f: fn(&StepSample) -> f64| stats::ratio_of_medians(&col(v2, f), &col(v1, f), seed);
    let div = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
    // The torch engine on a GPU: its device allocator's peak (host memory is just its RSS).
    let peaks = |r: &RecipeRun| -> (u64, u64) {
        match (&r.engine, &r.gpu) {
            (Some(_), Some(g)) => {
                let p = g.allocator.used_peak_bytes.unwrap_or(0);
                (
                    p,
                    p.saturating_sub(r.memory.params_bytes + r.memory.optimizer_bytes),
                )
            }
            _ => (
                r.memory.peak_over_baseline_bytes,
                r.memory.transient_peak_bytes,
            ),
        }
    };
    Some(Ratios {
        step_time: ratio(|s| s.total_s),
        forward_time: ratio(|s| s.forward_s),
        backward_time: ratio(|s| s.backward_s),
        peak_memory: div(peaks(v2).0 as f64, peaks(v1).0 as f64),
        transient_memory: div(peaks(v2).1 as f64, peaks(v1).1 as f64),
        params: div(v2.params_total as f64, v1.params_total as f64),
        forward_flops: div(
            v2.forward_flops_per_image_total,
            v1.forward_flops_per_image_total,
        ),
    })
}
