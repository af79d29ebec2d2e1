//! `ovbench repro`: measure what the paper's efficiency claims need and judge each claim, under
//! each execution policy asked for (by default `released` and `matched-bf16`).
//!
//! The plan: (1) FLOPs per image from the analytic model at the paper's own settings; (2) at
//! every CLIPA stage, the steps of every (recipe, execution) the policies need, alternated
//! A B A B in one session (alternate.rs), with the released loop's per-step global norms and
//! OpenVision's periodic zero-shot evaluation timed beside them; two projections to
//! device-hours and hours on the paper's chips, each with its OV2 / OV1 ratio and interval:
//! the steps alone (what Chrono's core-hours count) and wall-clock with the loop's periodic
//! work; (3) memory from the analytic model (footprint.rs) at the paper's per-chip batches,
//! checked against the counting allocator's peaks at the measured batch, and the largest
//! batch under the cap. Every verdict comes from `ovbench_reference::judge`.

use crate::alternate::{self, EvalCosts, Lane};
use crate::config::{ModelConfig, ModelName, PrefixAttention};
use crate::device::{DTypeArg, DeviceArg};
use crate::flops::{forward_flops, V1_TEXT_PASSES};
use crate::footprint::{self, Setting};
use crate::policy::{PolicyName, ResolvedPolicy};
use crate::recipe::{Recipe, Remat};
use crate::step::{Progress, StepConfig, StepError};
use ovbench_harness::stats::{median, quantile_sorted, BOOTSTRAP_RESAMPLES};
use ovbench_reference::{self as reference, judge, metric, Judgement, Measured, Verdict};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Text-encoder passes per image under which the analytic model lands within 2 % of all four
/// Table 3 figures. The replay executes two (alt-text and one caption sentence); counting both
/// puts OpenVision 4 % above Table 3, counting one puts all four within 1 %. An inference
/// about how the paper counted, not a published rule.
pub const TABLE3_TEXT_PASSES: usize = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Ti/16 at the token counts of L/14's stages (84 -> 96 px, 224 -> 256 px): minutes on a CPU.
    Small,
    /// L/14, 84 -> 224 px.
    L14_224,
    /// So400m/14, 84 -> 224 -> 384 px.
    So400m384,
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Preset::Small),
            "l14-224" => Ok(Preset::L14_224),
            "so400m-384" => Ok(Preset::So400m384),
            _ => Err(format!(
                "unknown preset '{s}' (expected small, l14-224 or so400m-384)"
            )),
        }
    }
}

impl Preset {
    /// The paper's setting the preset speaks to: (backbone as the reference names it, final px).
    fn target(self) -> (&'static str, u32) {
        match self {
            Preset::Small | Preset::L14_224 => ("L/14", 224),
            Preset::So400m384 => ("SoViT-400M/14", 384),
        }
    }

    /// The model measured, and the resolution it runs for a paper stage resolution.
    fn measured(self, stage_res: u32) -> (ModelName, usize) {
        match self {
            // Same patch grid as L/14 at that stage: 84/14 = 6 -> 6·16 = 96 px.
            Preset::Small => (
                "Ti/16".parse().expect("valid"),
                (stage_res as usize / 14) * 16,
            ),
            Preset::L14_224 => ("L/14".parse().expect("valid"), patch_grid(stage_res)),
            Preset::So400m384 => ("So400m/14".parse().expect("valid"), patch_grid(stage_res)),
        }
    }
}

/// The pixels a stride-14 patch embedding with VALID padding actually sees: 384 px gives a
/// 27 × 27 grid (378 px), as SoViT-400M/14 at 384 px runs in the released models.
fn patch_grid(res: u32) -> usize {
    (res as usize / 14) * 14
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReproConfig {
    pub preset: Preset,
    pub device: DeviceArg,
    /// Policies every claim is judged under.
    pub policies: Vec<PolicyName>,
    /// Compute dtype and image-encoder recomputation of the `ovbench` policy (others set
    /// their own per module).
    pub dtype: DTypeArg,
    pub remat: Remat,
    pub seed: u64,
    /// Measured rounds per stage (each round steps every lane once).
    pub steps: usize,
    pub warmup: usize,
    /// Per-device batch of the measured steps.
    pub batch: usize,
    /// Per-device memory cap for the fits/OOM claims and the largest batch.
    pub mem_cap_bytes: u64,
    pub threads: usize,
    pub ew_threads: usize,
    pub kernels: crate::fused::Kernels,
    /// Time OpenVision's periodic zero-shot evaluation (the wall-clock projection).
    pub eval_loop: bool,
    /// The engine of every step (reports made before engines existed ran candle).
    #[serde(default)]
    pub engine: crate::engine::EngineKind,
    #[serde(default)]
    pub compile: bool,
    /// Processes per step (torch engine): the per-device batch is `batch`.
    #[serde(default = "one")]
    pub nproc: usize,
}

fn one() -> usize {
    1
}

impl ReproConfig {
    pub fn new(preset: Preset) -> Self {
        ReproConfig {
            preset,
            device: DeviceArg::Cpu,
            policies: vec![PolicyName::Released, PolicyName::MatchedBf16],
            dtype: DTypeArg::F32,
            remat: Remat::Full,
            seed: 0,
            steps: 3,
            warmup: 1,
            batch: 2,
            mem_cap_bytes: 32 * 1_000_000_000,
            threads: 0,
            ew_threads: 1,
            kernels: crate::fused::Kernels::Fused,
            eval_loop: true,
            engine: crate::engine::EngineKind::Candle,
            compile: false,
            nproc: 1,
        }
    }

    /// Checks every argument before any work; the error names the argument and its bounds.
    pub fn validate(&self) -> Result<(), String> {
        use crate::step::{MAX_BATCH, MAX_PROCESSES, MAX_STEPS};
        use ovbench_harness::limits::{threads, within};
        within("--batch", self.batch as u64, 2, MAX_BATCH, "")
            .map_err(|e| format!("{e} (OpenVision's contrastive loss needs negatives)"))?;
        within("--steps", self.steps as u64, 1, MAX_STEPS, "")?;
        within("--warmup", self.warmup as u64, 0, MAX_STEPS, "")?;
        within("--nproc", self.nproc as u64, 1, MAX_PROCESSES, "")?;
        within("--mem-cap", self.mem_cap_bytes, 1, u64::MAX, "")?;
        threads("--threads", self.threads)?;
        threads("--ew-threads", self.ew_threads)?;
        if self.policies.is_empty() {
            return Err("--policy names no policy".into());
        }
        Ok(())
    }

    /// The step configuration of one stage (model, resolution, keep ratio), as policy `p` runs.
    fn step_config(&self, model: ModelName, res: usize, keep: f64, p: PolicyName) -> StepConfig {
        let ovbench = p == PolicyName::Ovbench;
        StepConfig {
            model,
            resolution: res,
            batch: self.batch,
            keep_ratio: keep,
            steps: self.steps,
            warmup: self.warmup,
            seed: self.seed,
            dtype: if ovbench { self.dtype } else { DTypeArg::F32 },
            remat: if ovbench { self.remat } else { Remat::None },
            device: self.device,
            threads: self.threads,
            ew_threads: self.ew_threads,
            kernels: self.kernels,
            policy: p,
            engine: self.engine,
            compile: self.compile,
            nproc: self.nproc,
            ..StepConfig::small()
        }
    }
}

/// The OpenVision evaluations the released loop runs, with their sizes.
pub struct EvalWork;

impl EvalWork {
    /// Images per evaluation: ImageNet validation (50,000), COCO val (5,000), Flickr30k test
    /// (1,000).
    pub const IMAGES: u64 = 50_000 + 5_000 + 1_000;
    /// 80-token texts per evaluation: 1,000 classes x 81 templates (the default "clip_paper"
    /// list, `src/evaluators/proj/image_text/discriminative_classifier.py` 192,
    /// `prompt_engineering_constants.py` 18-100), COCO's 25,010 and Flickr30k's 5,000 captions.
    pub const TEXTS: u64 = 1_000 * 81 + 25_010 + 5_000;
    pub const NOTE: &'static str = "periodic evaluation: ImageNet zero-shot (50,000 images, 1,000 classes x 81 prompts; src/configs/openvision.py:319-329), COCO and Flickr30k retrieval (5,000 images / 25,010 captions and 1,000 / 5,000: dataset sizes from TFDS, assumption); every int(2000 // batch_factor) steps (src/configs/openvision.py:307) and after each stage (src/main_clip.py:757); OpenVision only (src/main_openvision2.py:389-436 runs none); the blocking checkpoint wait every 1,000 steps (src/main_clip.py:727) is not timed (it depends on storage)";
}

/// One lane at one stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LaneStage {
    pub recipe: Recipe,
    pub policies: Vec<PolicyName>,
    /// Seconds per image of each measured step.
    pub seconds_per_image: Vec<f64>,
    /// Seconds of the three global norms of each measured step.
    pub norms_s: Vec<f64>,
    /// Training GFLOP/s achieved at the median step (3 x forward FLOPs).
    pub achieved_gflops: f64,
    /// Peaks of the lane's first step over the live bytes before it (counting allocator) and
    /// as the memory model predicts them (over the persistent state).
    pub allocator_forward_bytes: u64,
    pub allocator_step_bytes: u64,
    pub model_forward_bytes: u64,
    pub model_step_bytes: u64,
    pub notes: Vec<String>,
}

/// One stage of the curriculum as measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageMeasurement {
    pub stage: u32,
    pub paper_resolution: u32,
    pub measured_model: ModelName,
    pub measured_resolution: usize,
    pub samples: u64,
    pub paper_global_batch: u64,
    /// Optimizer steps of the stage at the paper's global batch.
    pub paper_steps: u64,
    /// OpenVision's evaluation interval in steps, and how many the stage runs.
    pub eval_interval: u64,
    pub evals: u64,
    pub measured_batch: usize,
    pub keep_ratio: f64,
    pub lanes: Vec<LaneStage>,
    /// OpenVision's evaluation forward passes, when timed.
    pub eval: Option<EvalCosts>,
    pub caveats: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProjectionKind {
    /// The steps with their global norms: the device time Chrono's core-hours count.
    StepsAlone,
    /// Plus OpenVision's periodic evaluation: the wall-clock reading.
    WithLoop,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Projection {
    pub kind: ProjectionKind,
    pub ov1_device_hours: f64,
    pub ov2_device_hours: f64,
    pub chips: u32,
    pub ov1_hours_on_chips: f64,
    pub ov2_hours_on_chips: f64,
    pub ratio: f64,
    /// 95 % bootstrap interval; None when a stage has a single sample.
    pub ratio_ci95: Option<[f64; 2]>,
    /// Why no interval could be formed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
}

/// The memory model's answers under one policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyMemory {
    pub cap_bytes: u64,
    /// (per-chip batch, predicted OV1 step peak, predicted OV2 step peak), bytes.
    pub predictions: Vec<(usize, u64, u64)>,
    pub ov1_max_batch_under_cap: usize,
    pub ov2_max_batch_under_cap: usize,
}

/// Every claim judged under one policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyResult {
    pub policy: ResolvedPolicy,
    pub steps_alone: Projection,
    pub with_loop: Projection,
    pub memory: PolicyMemory,
    pub judgements: Vec<Judgement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReproReport {
    pub config: ReproConfig,
    pub target_backbone: String,
    pub target_resolution: u32,
    pub flops: Vec<FlopCheck>,
    pub stages: Vec<StageMeasurement>,
    pub policies: Vec<PolicyResult>,
    /// Which reading a reviewer should prefer, per kind of claim, and why.
    pub preference: Vec<String>,
    pub caveats: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Reference(#[from] ovbench_reference::ReferenceError),
    #[error("memory model: {0}")]
    Memory(#[from] crate::footprint::FootprintError),
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlopCheck {
    pub backbone: String,
    pub resolution: u32,
    pub recipe: Recipe,
    /// Table 3 convention (one text-encoder pass), GFLOPs.
    pub gflops_table3_convention: f64,
    /// As the replay executes it (two text-encoder passes), GFLOPs.
    pub gflops_executed: f64,
}

fn model_for(backbone: &str) -> ModelName {
    match backbone {
        "SoViT-400M/14" => "So400m/14".parse().expect("valid"),
        _ => "L/14".parse().expect("valid"),
    }
}

/// Analytic FLOPs at the paper's four Table 3 settings.
pub fn flop_checks() -> Vec<FlopCheck> {
    let mut out = Vec::new();
    for (backbone, res) in [("L/14", 224u32), ("SoViT-400M/14", 384)] {
        let cfg = ModelConfig::new(
            model_for(backbone),
            patch_grid(res),
            0.35,
            PrefixAttention::Causal,
        )
        .expect("paper settings on the patch grid are valid");
        for recipe in [Recipe::Ov1, Recipe::Ov2] {
            out.push(FlopCheck {
                backbone: backbone.into(),
                resolution: res,
                recipe,
                gflops_table3_convention: forward_flops(recipe, &cfg, 1, TABLE3_TEXT_PASSES)
                    .total()
                    / 1e9,
                gflops_executed: forward_flops(recipe, &cfg, 1, V1_TEXT_PASSES).total() / 1e9,
            });
        }
    }
    out
}

/// The (recipe, execution) lanes the policies need: one per distinct execution, with the
/// policies it stands for.
fn lanes(resolved: &[ResolvedPolicy]) -> Vec<Lane> {
    let mut out: Vec<Lane> = Vec::new();
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        for p in resolved {
            let e = *p.execution(recipe);
            let ovbench = p.name == PolicyName::Ovbench;
            match out.iter_mut().find(|l| {
                l.recipe == recipe
                    && l.execution == e
                    && l.policies
                        .iter()
                        .all(|q| (*q == PolicyName::Ovbench) == ovbench)
            }) {
                Some(l) => l.policies.push(p.name),
                None => out.push(Lane {
                    recipe,
                    execution: e,
                    policies: vec![p.name],
                }),
            }
        }
    }
    out
}

fn lane_of(stage: &StageMeasurement, recipe: Recipe, p: PolicyName) -> Option<&LaneStage> {
    stage
        .lanes
        .iter()
        .find(|l| l.recipe == recipe && l.policies.contains(&p))
}

/// Device-seconds of the whole schedule for one recipe under policy `p`, from per-stage
/// samples drawn by `pick` (medians for the point, resamples for the bootstrap).
fn device_seconds(
    stages: &[StageMeasurement],
    recipe: Recipe,
    p: PolicyName,
    chips: u32,
    with_loop: bool,
    pick: &mut dyn FnMut(&[f64]) -> f64,
) -> f64 {
    let mut total = 0.0;
    for s in stages {
        let Some(l) = lane_of(s, recipe, p) else {
            continue;
        };
        // Each step: every image once, and the three norms on every chip.
        total += s.samples as f64 * pick(&l.seconds_per_image)
            + s.paper_steps as f64 * chips as f64 * pick(&l.norms_s);
        if with_loop && recipe == Recipe::Ov1 {
            if let Some(e) = &s.eval {
                total += s.evals as f64
                    * (EvalWork::IMAGES as f64 * pick(&e.image_s)
                        + EvalWork::TEXTS as f64 * pick(&e.text_s));
            }
        }
    }
    total
}

impl ReproReport {
    /// The full-schedule device-hours of one recipe under policy `p`, computed from each
    /// measured round alone: round i takes the i-th sample of every stage's lists.
    pub fn round_device_hours(
        &self,
        p: PolicyName,
        recipe: Recipe,
        kind: ProjectionKind,
    ) -> Vec<f64> {
        let rounds = self
            .stages
            .iter()
            .filter_map(|s| lane_of(s, recipe, p))
            .map(|l| l.seconds_per_image.len())
            .min()
            .unwrap_or(0);
        let with_loop = kind == ProjectionKind::WithLoop;
        let chips = self
            .policies
            .iter()
            .find(|r| r.policy.name == p)
            .map(|r| r.steps_alone.chips)
            .unwrap_or(1);
        (0..rounds)
            .map(|i| {
                let mut nth = |xs: &[f64]| xs.get(i).or(xs.last()).copied().unwrap_or(0.0);
                device_seconds(&self.stages, recipe, p, chips, with_loop, &mut nth) / 3600.0
            })
            .collect()
    }
}

/// The ratio of projected hours with a seeded bootstrap over every sample list.
fn project(
    stages: &[StageMeasurement],
    p: PolicyName,
    chips: u32,
    kind: ProjectionKind,
    seed: u64,
) -> Projection {
    let with_loop = kind == ProjectionKind::WithLoop;
    let mut med = |xs: &[f64]| if xs.is_empty() { 0.0 } else { median(xs) };
    let h1 = device_seconds(stages, Recipe::Ov1, p, chips, with_loop, &mut med) / 3600.0;
    let h2 = device_seconds(stages, Recipe::Ov2, p, chips, with_loop, &mut med) / 3600.0;
    let single = stages.iter().any(|s| {
        s.lanes
            .iter()
            .filter(|l| l.policies.contains(&p))
            .any(|l| l.seconds_per_image.len() < 2)
    });
    let (ci, inconclusive) = if single {
        (
            None,
            Some(
                "a single measured step per stage and recipe: no interval can be formed (use --steps 2 or more)"
                    .to_string(),
            ),
        )
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let mut resample = |xs: &[f64]| -> f64 {
            if xs.is_empty() {
                return 0.0;
            }
            let v: Vec<f64> = (0..xs.len())
                .map(|_| xs[rng.random_range(0..xs.len())])
                .collect();
            median(&v)
        };
        let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
            .map(|_| {
                let a = device_seconds(stages, Recipe::Ov1, p, chips, with_loop, &mut resample);
                let b = device_seconds(stages, Recipe::Ov2, p, chips, with_loop, &mut resample);
                b / a
            })
            .collect();
        ratios.sort_by(|x, y| x.total_cmp(y));
        (
            Some([
                quantile_sorted(&ratios, 0.025),
                quantile_sorted(&ratios, 0.975),
            ]),
            None,
        )
    };
    Projection {
        kind,
        ov1_device_hours: h1,
        ov2_device_hours: h2,
        chips,
        ov1_hours_on_chips: h1 / chips as f64,
        ov2_hours_on_chips: h2 / chips as f64,
        ratio: h2 / h1,
        ratio_ci95: ci,
        inconclusive,
    }
}

/// Runs the preset and judges every claim under every policy.
pub fn run(cfg: &ReproConfig, progress: &mut dyn Progress) -> Result<ReproReport, ReproError> {
    cfg.validate().map_err(ReproError::Config)?;
    let (backbone, final_res) = cfg.preset.target();
    let mut caveats = vec![format!(
        "measured on {} with --kernels {}, engine {}{}{}",
        cfg.device,
        crate::records::key(&cfg.kernels),
        cfg.engine,
        if cfg.compile { " (compiled)" } else { "" },
        if cfg.nproc > 1 {
            format!(" x {} processes", cfg.nproc)
        } else {
            String::new()
        }
    )];
    if cfg.engine != crate::engine::EngineKind::Candle {
        caveats.push(
            "engine torch: each lane's steps run in one child process, the lanes in turn (not \
             alternated step by step); the released loop's global norms and OpenVision's \
             periodic evaluation are not timed, so the with-the-loop projection equals the steps \
             alone; memory per lane is the engine's own peak"
                .into(),
        );
    }
    if cfg.preset == Preset::Small {
        caveats.push(
            "small preset: Ti/16 at the patch counts of L/14's stages stands in for L/14".into(),
        );
    }
    // Stages: OV1 and OV2 share resolutions and samples up to the final resolution.
    let plan1 = reference::clipa_plan(Recipe::Ov1, backbone, final_res)?;
    let plan2 = reference::clipa_plan(Recipe::Ov2, backbone, final_res)?;
    let resolved: Vec<ResolvedPolicy> = cfg
        .policies
        .iter()
        .map(|&p| {
            cfg.step_config("Ti/16".parse().expect("valid"), 32, 0.35, p)
                .resolved_policy()
        })
        .collect();
    let lanes = lanes(&resolved);
    let mut stages = Vec::new();
    for (s1, s2) in plan1.iter().zip(&plan2) {
        let (model, res) = cfg.preset.measured(s2.resolution);
        let scfg = cfg.step_config(model, res, s2.keep_ratio, cfg.policies[0]);
        let mcfg = scfg.validate().map_err(ReproError::Config)?;
        let session = match cfg.engine {
            crate::engine::EngineKind::Candle => {
                alternate::run(&scfg, &lanes, cfg.eval_loop, progress)?
            }
            _ => engine_session(&scfg, &lanes, progress)?,
        };
        let mut lane_stages = Vec::new();
        for run in &session.lanes {
            let l = &run.lane;
            let ovbench = l.policies.contains(&PolicyName::Ovbench);
            let f = footprint::predict(&Setting {
                recipe: l.recipe,
                cfg: &mcfg,
                batch: cfg.batch,
                exec: &l.execution,
                kernels: cfg.kernels,
                text_one_batch: !ovbench,
                portable_off_f32: !ovbench,
                threads: footprint::kernel_threads(),
            })
            .ok();
            let per_image: Vec<f64> = run
                .samples
                .iter()
                .map(|x| x.total_s / cfg.batch as f64)
                .collect();
            let flops = 3.0 * forward_flops(l.recipe, &mcfg, cfg.batch, V1_TEXT_PASSES).total();
            let med = if per_image.is_empty() {
                f64::NAN
            } else {
                median(&per_image)
            };
            lane_stages.push(LaneStage {
                recipe: l.recipe,
                policies: l.policies.clone(),
                achieved_gflops: flops / med / 1e9,
                seconds_per_image: per_image,
                norms_s: run.norms_s.clone(),
                allocator_forward_bytes: run.forward_over_start_bytes,
                allocator_step_bytes: run.step_over_start_bytes,
                model_forward_bytes: f
                    .as_ref()
                    .map(|f| f.forward.bytes - f.persistent_bytes)
                    .unwrap_or(0),
                model_step_bytes: f
                    .as_ref()
                    .map(|f| f.step.bytes - f.persistent_bytes)
                    .unwrap_or(0),
                notes: run.notes.clone(),
            });
        }
        let mut sc: Vec<String> = s1.caveats.iter().chain(&s2.caveats).cloned().collect();
        if s1.samples != s2.samples {
            sc.push(format!(
                "OV1 and OV2 samples differ at this stage ({} vs {}); OV2's used",
                s1.samples, s2.samples
            ));
        }
        sc.push(format!(
            "per-device batch {} instead of {} (global {} on 256 chips); time scaled per image",
            cfg.batch,
            s2.global_batch / 256,
            s2.global_batch
        ));
        let paper_steps = s2.samples / s2.global_batch;
        let interval = alternate::eval_interval(s2.global_batch);
        stages.push(StageMeasurement {
            stage: s2.stage,
            paper_resolution: s2.resolution,
            measured_model: model,
            measured_resolution: res,
            samples: s2.samples,
            paper_global_batch: s2.global_batch,
            paper_steps,
            eval_interval: interval,
            evals: alternate::evals_in_stage(paper_steps, interval),
            measured_batch: cfg.batch,
            keep_ratio: s2.keep_ratio,
            lanes: lane_stages,
            eval: session.eval,
            caveats: sc,
        });
    }
    // Each claim carries the caveats that bear on it: the loop's note goes to the wall-clock
    // projection only (and to the report's own list).
    let claim_caveats = caveats.clone();
    if cfg.eval_loop {
        caveats.push(EvalWork::NOTE.into());
    }
    let claims = reference::claims()?;
    let chips = claims
        .iter()
        .find(|c| c.metric == metric::SCHEDULE_TIME_RATIO_OV2_OV1 && c.setting.backbone == backbone)
        .and_then(|c| c.setting.chips)
        .unwrap_or(256);
    let flops = flop_checks();
    let mut per_chip: Vec<usize> = claims
        .iter()
        .filter(|c| c.setting.backbone == backbone)
        .filter_map(|c| c.setting.per_chip_batch.map(|b| b as usize))
        .collect();
    per_chip.sort();
    per_chip.dedup();
    let (model, res) = cfg.preset.measured(final_res);
    let keep = plan2.last().map(|s| s.keep_ratio).unwrap_or(0.35);
    let mut policies = Vec::new();
    for p in &resolved {
        let scfg = cfg.step_config(model, res, keep, p.name);
        let mcfg = scfg.validate().map_err(ReproError::Config)?;
        let ovbench = p.name == PolicyName::Ovbench;
        let setting = |recipe: Recipe, batch: usize| Setting {
            recipe,
            cfg: &mcfg,
            batch,
            exec: p.execution(recipe),
            kernels: cfg.kernels,
            text_one_batch: !ovbench,
            portable_off_f32: !ovbench,
            threads: footprint::kernel_threads(),
        };
        let predict = |r: Recipe, b: usize| -> Result<u64, ReproError> {
            Ok(footprint::predict(&setting(r, b))?.step.bytes)
        };
        let mut predictions = Vec::new();
        for &b in &per_chip {
            predictions.push((b, predict(Recipe::Ov1, b)?, predict(Recipe::Ov2, b)?));
        }
        let memory = PolicyMemory {
            cap_bytes: cfg.mem_cap_bytes,
            ov1_max_batch_under_cap: footprint::max_batch_under(
                &setting(Recipe::Ov1, 2),
                cfg.mem_cap_bytes,
                1 << 14,
            )?,
            ov2_max_batch_under_cap: footprint::max_batch_under(
                &setting(Recipe::Ov2, 1),
                cfg.mem_cap_bytes,
                1 << 14,
            )?,
            predictions,
        };
        let steps_alone = project(&stages, p.name, chips, ProjectionKind::StepsAlone, cfg.seed);
        let with_loop = project(&stages, p.name, chips, ProjectionKind::WithLoop, cfg.seed);
        let mut pc = claim_caveats.clone();
        pc.push(format!("policy {}", p.name));
        let judgements = judge_claims(
            cfg,
            backbone,
            &flops,
            [&steps_alone, &with_loop],
            &memory,
            &pc,
        )?;
        policies.push(PolicyResult {
            policy: p.clone(),
            steps_alone,
            with_loop,
            memory,
            judgements,
        });
    }
    let preference = preference(&stages, &cfg.policies);
    Ok(ReproReport {
        config: cfg.clone(),
        target_backbone: backbone.into(),
        target_resolution: final_res,
        flops,
        stages,
        policies,
        preference,
        caveats,
    })
}

/// The lanes of one stage on an out-of-process engine: each lane's warm-up and steps as one
/// `step` run of its recipe under its first policy, the lanes in turn.
fn engine_session(
    scfg: &StepConfig,
    lanes: &[Lane],
    progress: &mut dyn Progress,
) -> Result<alternate::Session, ReproError> {
    let mut out = Vec::new();
    for lane in lanes {
        let cfg = StepConfig {
            recipes: vec![lane.recipe],
            policy: lane.policies[0],
            ..scfg.clone()
        };
        let rec = crate::step::run(&cfg, progress)?;
        if let Some(f) = rec.failed.first() {
            return Err(ReproError::Config(format!(
                "engine {}: {} at batch {} did not fit: {}",
                cfg.engine,
                f.recipe.label(),
                f.batch,
                f.error
            )));
        }
        let run = rec.runs.into_iter().next().ok_or_else(|| {
            ReproError::Config(format!("engine {}: no run came back", cfg.engine))
        })?;
        let peak = run
            .gpu
            .as_ref()
            .and_then(|g| g.allocator.used_peak_bytes)
            .unwrap_or(run.memory.peak_over_baseline_bytes);
        out.push(alternate::LaneRun {
            lane: lane.clone(),
            samples: run.samples,
            norms_s: Vec::new(),
            forward_over_start_bytes: run.memory.forward_peak_over_baseline_bytes,
            step_over_start_bytes: peak,
            notes: run.notes,
        });
    }
    Ok(alternate::Session {
        lanes: out,
        eval: None,
    })
}

/// Why a reviewer should prefer one reading over the other, from what this run measured.
fn preference(stages: &[StageMeasurement], policies: &[PolicyName]) -> Vec<String> {
    let mut out = Vec::new();
    let has = |p| policies.contains(&p);
    if has(PolicyName::Released) && (has(PolicyName::MatchedBf16) || has(PolicyName::MatchedF32)) {
        out.push(
            "memory: prefer `released`, what the released scripts set per recipe (OpenVision in \
             bf16, scripts/project/openvision/train.sh:71-73; OpenVision 2 in f32, \
             scripts/project/openvision2/train.sh:123); read `matched` instead if the paper's \
             memory runs computed both recipes alike (the W&B run names say fp32 for both, \
             scripts/project/openvision/train.sh:41 and openvision2/train.sh:73)."
                .into(),
        );
        // The same recipe measured in both dtypes tells what bf16 costs on this device.
        let speed = |recipe: Recipe, p: PolicyName| -> Option<f64> {
            let v: Vec<f64> = stages
                .iter()
                .filter_map(|s| lane_of(s, recipe, p).map(|l| l.achieved_gflops))
                .filter(|x| x.is_finite())
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let matched = if has(PolicyName::MatchedBf16) {
            PolicyName::MatchedBf16
        } else {
            PolicyName::MatchedF32
        };
        if let (Some(f32s), Some(other)) = (
            speed(Recipe::Ov2, PolicyName::Released),
            speed(Recipe::Ov2, matched),
        ) {
            out.push(format!(
                "time: OpenVision 2 ran at {f32s:.1} training GFLOP/s under `released` (f32) and \
                 {other:.1} under `{matched}` on this device: where these differ, `released` \
                 times each recipe in a different precision and its ratio carries the device's \
                 precision speed-up or penalty; `{matched}` times both alike, so prefer it for \
                 the recipes' time ratio on a device whose bf16 speed is not the TPU's, and \
                 `released` on hardware where bf16 runs natively and fast."
            ));
        }
    }
    out
}

fn judge_claims(
    cfg: &ReproConfig,
    backbone: &str,
    flops: &[FlopCheck],
    projections: [&Projection; 2],
    memory: &PolicyMemory,
    caveats: &[String],
) -> Result<Vec<Judgement>, ReproError> {
    let claims = reference::claims()?;
    let same_model = cfg.preset != Preset::Small;
    let with = |m: Measured| caveats.iter().fold(m, |m, c| m.caveat(c.clone()));
    let predicted = |n: usize| -> Option<(u64, u64)> {
        memory
            .predictions
            .iter()
            .find(|(b, _, _)| *b == n)
            .map(|(_, a, b)| (*a, *b))
    };
    let mut out = Vec::new();
    for claim in claims {
        let b = claim.setting.backbone.as_str();
        let flop = |r: Recipe| {
            flops
                .iter()
                .find(|f| f.backbone == b && f.recipe == r)
                .map(|f| f.gflops_table3_convention)
        };
        let flop_caveat = "Table 3 convention: one 80-token text-encoder pass per image (the replay executes two)";
        if claim.metric == metric::SCHEDULE_TIME_RATIO_OV2_OV1 && b == backbone {
            for p in projections {
                let what = match p.kind {
                    ProjectionKind::StepsAlone => {
                        "projection: device time of the steps alone (what Chrono's core-hours count)"
                    }
                    ProjectionKind::WithLoop => {
                        "projection: wall-clock, with OpenVision's periodic evaluation at the released intervals"
                    }
                };
                let mut m = match p.ratio_ci95 {
                    Some([lo, hi]) => with(Measured::with_interval(p.ratio, lo, hi)),
                    None => with(Measured::point(p.ratio)),
                }
                .caveat(what);
                if p.kind == ProjectionKind::WithLoop && cfg.eval_loop {
                    m = m.caveat(EvalWork::NOTE);
                }
                let mut j = judge(claim, &m);
                if let Some(why) = &p.inconclusive {
                    j.verdict = Verdict::Inconclusive;
                    j.reason = format!("{why}. {}", j.reason);
                }
                if !same_model {
                    // Ti/16's vocabulary head and text tower weigh far more against its encoder
                    // than L/14's do: its ratio says nothing for or against the paper's.
                    j.verdict = Verdict::Inconclusive;
                    j.reason = format!(
                        "the small preset's Ti/16 stands in for the paper's backbone, whose ratio \
                         it does not measure. {}",
                        j.reason
                    );
                }
                out.push(j);
            }
            continue;
        }
        let measured: Option<Measured> = match claim.metric.as_str() {
            metric::FLOPS_PER_IMAGE_OV1 => {
                flop(Recipe::Ov1).map(|v| Measured::point(v).caveat(flop_caveat))
            }
            metric::FLOPS_PER_IMAGE_OV2 => flop(Recipe::Ov2).map(Measured::point),
            metric::FLOPS_PER_IMAGE_RATIO_OV2_OV1 => flop(Recipe::Ov2)
                .zip(flop(Recipe::Ov1))
                .map(|(a, b)| Measured::point(a / b).caveat(flop_caveat)),
            _ if b != backbone => None,
            metric::PEAK_MEMORY_RATIO_OV2_OV1 if same_model => claim
                .setting
                .per_chip_batch
                .and_then(|n| predicted(n as usize).map(|x| (n, x)))
                .map(|(n, (a, b))| {
                    with(Measured::point(b as f64 / a as f64)).caveat(format!(
                        "memory model (footprint.rs) of the replay at per-chip batch {n}, checked against the allocator at batch {}",
                        cfg.batch
                    ))
                }),
            metric::PEAK_MEMORY_GROWTH_OV2 if same_model => claim
                .setting
                .per_chip_batch
                .zip(claim.setting.reference_global_batch)
                .and_then(|(n, refg)| {
                    let chips = claim.setting.chips.unwrap_or(32) as u64;
                    let n0 = (refg / chips) as usize;
                    Some((predicted(n as usize)?.1, predicted(n0)?.1))
                })
                .map(|(a, b)| with(Measured::point(a as f64 / b as f64)).caveat("memory model (footprint.rs) of the replay")),
            metric::FITS_OV1_AT_BATCH | metric::FITS_OV2_AT_BATCH if same_model => {
                claim.setting.per_chip_batch.and_then(|n| {
                    let (a, b) = predicted(n as usize)?;
                    let peak = if claim.metric == metric::FITS_OV1_AT_BATCH { a } else { b };
                    Some(with(Measured::fits(peak <= memory.cap_bytes)).caveat(format!(
                        "memory model: predicted peak {peak} B at per-chip batch {n} against a cap of {} B",
                        memory.cap_bytes
                    )))
                })
            }
            _ => None,
        };
        out.push(match measured {
            Some(m) => judge(claim, &m),
            None => {
                let mut j = judge(claim, &Measured::default());
                j.verdict = Verdict::Inconclusive;
                j.reason = if b != backbone {
                    format!("not measured by this preset (it measures {backbone})")
                } else {
                    "not measured by the small preset: it needs the paper's backbone".into()
                };
                j
            }
        });
    }
    Ok(out)
}

fn q(x: &Option<ovbench_reference::Quantity>) -> String {
    match x {
        Some(ovbench_reference::Quantity::Number(v)) => format!("{v:.4}"),
        Some(ovbench_reference::Quantity::Fits(true)) => "fits".into(),
        Some(ovbench_reference::Quantity::Fits(false)) => "out of memory".into(),
        None => "-".into(),
    }
}

fn projection_line(p: &Projection) -> String {
    let what = match p.kind {
        ProjectionKind::StepsAlone => "steps alone (device time)",
        ProjectionKind::WithLoop => "with the loop's periodic evaluation (wall-clock)",
    };
    let iv = match (p.ratio_ci95, &p.inconclusive) {
        (Some([lo, hi]), _) => format!("[{lo:.3}, {hi:.3}]"),
        (None, Some(why)) => format!("(no interval: {why})"),
        (None, None) => String::new(),
    };
    format!(
        "- {what}: OpenVision {:.3e} device-hours ({:.3e} h on {} chips), OpenVision 2 {:.3e} ({:.3e} h); OV2 / OV1 {:.3} {iv}\n",
        p.ov1_device_hours, p.ov1_hours_on_chips, p.chips, p.ov2_device_hours, p.ov2_hours_on_chips, p.ratio
    )
}

/// The claim tables (one per policy) as markdown.
pub fn to_markdown(r: &ReproReport) -> String {
    let mut s = format!(
        "# ovbench repro: preset {:?} ({} at {} px), policies {}\n",
        r.config.preset,
        r.target_backbone,
        r.target_resolution,
        r.config
            .policies
            .iter()
            .map(|p| p.key())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for p in &r.policies {
        s.push_str(&format!(
            "\n## Policy `{}`: {}\n\n| claim | published | measured | 95 % interval | band | verdict | reason |\n|---|---|---|---|---|---|---|\n",
            p.policy.name, p.policy.description
        ));
        for j in &p.judgements {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | **{}** | {} |\n",
                j.claim_id,
                q(&j.published),
                q(&j.measured),
                j.interval
                    .map(|i| format!("[{:.4}, {:.4}]", i.lo, i.hi))
                    .unwrap_or_else(|| "-".into()),
                j.band
                    .map(|b| format!("[{:.4}, {:.4}]", b.lo, b.hi))
                    .unwrap_or_else(|| "-".into()),
                j.verdict,
                j.reason.replace('|', "/"),
            ));
        }
        s.push_str("\nProjected schedule:\n");
        s.push_str(&projection_line(&p.steps_alone));
        s.push_str(&projection_line(&p.with_loop));
        let m = &p.memory;
        s.push_str(&format!(
            "\nMemory model (per chip): {}; largest batch under {:.1} GB: OpenVision {}, OpenVision 2 {}.\n",
            m.predictions
                .iter()
                .map(|(b, a, c)| format!("batch {b}: OV1 {:.2} GB, OV2 {:.2} GB", *a as f64 / 1e9, *c as f64 / 1e9))
                .collect::<Vec<_>>()
                .join("; "),
            m.cap_bytes as f64 / 1e9,
            m.ov1_max_batch_under_cap,
            m.ov2_max_batch_under_cap
        ));
    }
    s.push_str("\n## Stages\n\n| stage | px | lane | policies | s / image (median) | norms s / step | GFLOP/s | allocator fwd / step over start | model fwd / step |\n|---|---|---|---|---|---|---|---|---|\n");
    let mut evals = Vec::new();
    for st in &r.stages {
        for l in &st.lanes {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.4} | {:.4} | {:.1} | {:.3} / {:.3} GB | {:.3} / {:.3} GB |\n",
                st.stage,
                st.measured_resolution,
                l.recipe.label(),
                l.policies.iter().map(|p| p.key()).collect::<Vec<_>>().join(", "),
                if l.seconds_per_image.is_empty() { f64::NAN } else { median(&l.seconds_per_image) },
                if l.norms_s.is_empty() { f64::NAN } else { median(&l.norms_s) },
                l.achieved_gflops,
                l.allocator_forward_bytes as f64 / 1e9,
                l.allocator_step_bytes as f64 / 1e9,
                l.model_forward_bytes as f64 / 1e9,
                l.model_step_bytes as f64 / 1e9,
            ));
        }
        if let Some(e) = &st.eval {
            evals.push(format!(
                "- stage {}: OpenVision evaluates every {} steps, {} times; its forward passes take {:.4} s per image and {:.4} s per text here\n",
                st.stage,
                st.eval_interval,
                st.evals,
                if e.image_s.is_empty() { f64::NAN } else { median(&e.image_s) },
                if e.text_s.is_empty() { f64::NAN } else { median(&e.text_s) },
            ));
        }
    }
    if !evals.is_empty() {
        s.push('\n');
        for e in evals {
            s.push_str(&e);
        }
    }
    if !r.preference.is_empty() {
        s.push_str("\n## Which reading to prefer\n\n");
        for p in &r.preference {
            s.push_str(&format!("- {p}\n"));
        }
    }
    s.push_str("\n## Caveats\n\n");
    for c in &r.caveats {
        s.push_str(&format!("- {c}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counting convention that lands all four Table 3 figures within 2 %.
    #[test]
    fn flop_model_lands_within_two_percent_of_table_3() {
        let published = [
            ("L/14", Recipe::Ov1, 271.75),
            ("L/14", Recipe::Ov2, 208.90),
            ("SoViT-400M/14", Recipe::Ov1, 1636.75),
            ("SoViT-400M/14", Recipe::Ov2, 1017.74),
        ];
        let checks = flop_checks();
        for (b, r, p) in published {
            let c = checks
                .iter()
                .find(|c| c.backbone == b && c.recipe == r)
                .unwrap();
            let rel = c.gflops_table3_convention / p - 1.0;
            assert!(
                rel.abs() < 0.02,
                "{b} {r:?}: {} vs {p} ({:+.2} %)",
                c.gflops_table3_convention,
                100.0 * rel
            );
        }
    }
}

#[cfg(test)]
mod projection_tests {
    use super::*;

    fn stage(samples: u64, ov1: f64, ov2: f64, n: usize) -> StageMeasurement {
        let lane = |recipe, t: f64| LaneStage {
            recipe,
            policies: vec![PolicyName::Released],
            seconds_per_image: (0..n).map(|i| t * (0.99 + 0.01 * i as f64)).collect(),
            norms_s: vec![0.0; n],
            achieved_gflops: 1.0,
            allocator_forward_bytes: 0,
            allocator_step_bytes: 0,
            model_forward_bytes: 0,
            model_step_bytes: 0,
            notes: vec![],
        };
        StageMeasurement {
            stage: 1,
            paper_resolution: 84,
            measured_model: "Ti/16".parse().unwrap(),
            measured_resolution: 96,
            samples,
            paper_global_batch: 32768,
            paper_steps: samples / 32768,
            eval_interval: 1000,
            evals: 2,
            measured_batch: 2,
            keep_ratio: 0.35,
            lanes: vec![lane(Recipe::Ov1, ov1), lane(Recipe::Ov2, ov2)],
            eval: Some(EvalCosts {
                image_s: vec![1.0; n],
                text_s: vec![0.0; n],
            }),
            caveats: vec![],
        }
    }

    /// Hours are samples-weighted per-image times; the loop adds OpenVision's evaluations only;
    /// the interval holds the point.
    #[test]
    fn projections_weight_stages_and_add_the_loop_to_openvision() {
        let st = [stage(3600, 1.0, 0.5, 3), stage(7200, 2.0, 1.0, 3)];
        let p = project(&st, PolicyName::Released, 4, ProjectionKind::StepsAlone, 0);
        assert!((p.ov1_device_hours - (3600.0 + 14400.0) / 3600.0).abs() < 1e-9);
        assert!((p.ov2_hours_on_chips - p.ov2_device_hours / 4.0).abs() < 1e-12);
        assert!((p.ratio - 0.5).abs() < 1e-12);
        let [lo, hi] = p.ratio_ci95.unwrap();
        assert!(lo <= 0.5 && hi >= 0.5 && hi - lo < 0.05);
        let w = project(&st, PolicyName::Released, 4, ProjectionKind::WithLoop, 0);
        // Two evaluations per stage of EvalWork::IMAGES images at 1 s each, OpenVision only.
        let extra = 2.0 * 2.0 * EvalWork::IMAGES as f64 / 3600.0;
        assert!((w.ov1_device_hours - p.ov1_device_hours - extra).abs() < 1e-6);
        assert_eq!(w.ov2_device_hours, p.ov2_device_hours);
        assert!(w.ratio < p.ratio);
    }

    /// One sample per stage and recipe: no interval, and the reason says so.
    #[test]
    fn a_single_sample_gives_no_interval() {
        let st = [stage(3600, 1.0, 0.5, 1)];
        let p = project(&st, PolicyName::Released, 4, ProjectionKind::StepsAlone, 0);
        assert!(p.ratio_ci95.is_none());
        assert!(p.inconclusive.as_deref().unwrap().contains("single"));
    }

    /// Lanes: one per distinct execution; released and matched-bf16 share OpenVision's.
    #[test]
    fn lanes_share_identical_executions() {
        let r: Vec<ResolvedPolicy> = [PolicyName::Released, PolicyName::MatchedBf16]
            .into_iter()
            .map(|p| {
                StepConfig {
                    policy: p,
                    ..StepConfig::small()
                }
                .resolved_policy()
            })
            .collect();
        let l = lanes(&r);
        assert_eq!(l.len(), 3, "{l:?}");
        let ov1: Vec<_> = l.iter().filter(|x| x.recipe == Recipe::Ov1).collect();
        assert_eq!(ov1.len(), 1);
        assert_eq!(
            ov1[0].policies,
            [PolicyName::Released, PolicyName::MatchedBf16]
        );
    }
}
