//! `ovbench repro`: measure what the paper's efficiency claims need and judge each claim.
//!
//! The plan: (1) FLOPs per image from the analytic model at the paper's own settings;
//! (2) the step of both recipes at every CLIPA stage, per-image time weighted by the samples
//! of each stage, projected to device-hours and hours on the paper's chip count; (3) a memory
//! model fitted at two batches and evaluated at the paper's per-chip batch, and the largest
//! batch under a memory cap. Every verdict comes from `ovbench_reference::judge`.

use crate::config::{ModelConfig, ModelName, PrefixAttention};
use crate::device::{DTypeArg, DeviceArg};
use crate::flops::{forward_flops, V1_TEXT_PASSES};
use crate::memory::{search_max_batch, BatchSearch, MemoryModel, MemoryPoint, Probe};
use crate::recipe::{Recipe, Remat};
use crate::step::{self, Progress, RecipeRun, StepConfig, StepError, StepRecord};
use ovbench_harness::stats::{median, BOOTSTRAP_RESAMPLES};
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
    pub dtype: DTypeArg,
    pub seed: u64,
    pub steps: usize,
    pub warmup: usize,
    /// Per-device batch of the timed steps; memory is also measured at twice this batch.
    pub batch: usize,
    pub remat: Remat,
    /// Per-device memory cap for the fits/OOM claims and the max-batch search.
    pub mem_cap_bytes: u64,
    /// Real steps of the max-batch search go up to this batch, no further.
    pub confirm_limit: usize,
    pub threads: usize,
    pub ew_threads: usize,
    /// Reports made before the setting existed ran the default, fused.
    #[serde(default)]
    pub kernels: crate::fused::Kernels,
}

impl ReproConfig {
    pub fn new(preset: Preset) -> Self {
        ReproConfig {
            preset,
            device: DeviceArg::Cpu,
            dtype: DTypeArg::F32,
            seed: 0,
            steps: 3,
            warmup: 1,
            batch: 2,
            remat: Remat::Full,
            mem_cap_bytes: 32 * 1_000_000_000,
            confirm_limit: 8,
            threads: 0,
            ew_threads: 1,
            kernels: crate::fused::Kernels::Fused,
        }
    }
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
    pub measured_batch: usize,
    pub keep_ratio: f64,
    /// Seconds per image of each measured step, per recipe.
    pub ov1_seconds_per_image: Vec<f64>,
    pub ov2_seconds_per_image: Vec<f64>,
    pub caveats: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Projection {
    pub ov1_device_hours: f64,
    pub ov2_device_hours: f64,
    pub chips: u32,
    pub ov1_hours_on_chips: f64,
    pub ov2_hours_on_chips: f64,
    pub ratio: f64,
    pub ratio_ci95: [f64; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryFindings {
    pub ov1: MemoryModel,
    pub ov2: MemoryModel,
    pub cap_bytes: u64,
    pub ov1_max_batch_under_cap: usize,
    pub ov2_max_batch_under_cap: usize,
    /// Real-step searches for the largest batch under the cap, started at the model's
    /// prediction and bounded by `--confirm-limit`.
    pub ov1_search: BatchSearch,
    pub ov2_search: BatchSearch,
    pub confirmation_note: String,
    /// (per-chip batch, predicted OV1 bytes, predicted OV2 bytes).
    pub predictions: Vec<(usize, f64, f64)>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReproReport {
    pub config: ReproConfig,
    pub target_backbone: String,
    pub target_resolution: u32,
    pub flops: Vec<FlopCheck>,
    pub stages: Vec<StageMeasurement>,
    pub projection: Projection,
    pub memory: MemoryFindings,
    pub judgements: Vec<Judgement>,
    pub caveats: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Reference(#[from] ovbench_reference::ReferenceError),
    #[error("memory model: {0}")]
    Memory(#[from] crate::memory::MemoryModelError),
    #[error("{0}")]
    Config(String),
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

fn step_config(
    cfg: &ReproConfig,
    model: ModelName,
    res: usize,
    batch: usize,
    keep: f64,
    steps: usize,
    warmup: usize,
) -> StepConfig {
    StepConfig {
        model,
        resolution: res,
        batch,
        keep_ratio: keep,
        steps,
        warmup,
        seed: cfg.seed,
        dtype: cfg.dtype,
        device: cfg.device,
        remat: cfg.remat,
        threads: cfg.threads,
        ew_threads: cfg.ew_threads,
        kernels: cfg.kernels,
        ..StepConfig::small()
    }
}

/// Peak memory of a run on its device: the GPU pool's allocator peak on CUDA, the counting
/// allocator's peak over the process baseline on the host.
fn device_peak(r: &RecipeRun) -> u64 {
    r.gpu
        .as_ref()
        .and_then(|g| g.allocator.used_peak_bytes)
        .unwrap_or(r.memory.peak_over_baseline_bytes)
}

fn memory_point(rec: &StepRecord, recipe: Recipe) -> Option<MemoryPoint> {
    let r = rec.runs.iter().find(|r| r.recipe == recipe)?;
    // The forward pass's own peak is measured by the host allocator only.
    let forward = (r.gpu.is_none() && r.memory.forward_peak_over_baseline_bytes > 0)
        .then_some(r.memory.forward_peak_over_baseline_bytes);
    Some(MemoryPoint {
        batch: rec.config.batch,
        peak_bytes: device_peak(r),
        persistent_bytes: r.memory.params_bytes + r.memory.optimizer_bytes,
        forward_peak_bytes: forward,
    })
}

/// Ratio of projected hours with a seeded bootstrap over the steps of every stage.
fn project(stages: &[StageMeasurement], chips: u32, seed: u64) -> Projection {
    let hours = |per_image: &dyn Fn(&StageMeasurement) -> f64| -> f64 {
        stages
            .iter()
            .map(|s| s.samples as f64 * per_image(s))
            .sum::<f64>()
            / 3600.0
    };
    let h1 = hours(&|s| median(&s.ov1_seconds_per_image));
    let h2 = hours(&|s| median(&s.ov2_seconds_per_image));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut resample = |xs: &[f64]| -> f64 {
        let v: Vec<f64> = (0..xs.len())
            .map(|_| xs[rng.random_range(0..xs.len())])
            .collect();
        median(&v)
    };
    let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let (mut a, mut b) = (0.0, 0.0);
            for s in stages {
                a += s.samples as f64 * resample(&s.ov1_seconds_per_image);
                b += s.samples as f64 * resample(&s.ov2_seconds_per_image);
            }
            b / a
        })
        .collect();
    ratios.sort_by(|x, y| x.total_cmp(y));
    let q = |p: f64| ovbench_harness::stats::quantile_sorted(&ratios, p);
    Projection {
        ov1_device_hours: h1,
        ov2_device_hours: h2,
        chips,
        ov1_hours_on_chips: h1 / chips as f64,
        ov2_hours_on_chips: h2 / chips as f64,
        ratio: h2 / h1,
        ratio_ci95: [q(0.025), q(0.975)],
    }
}

/// Runs the preset and judges every claim.
pub fn run(cfg: &ReproConfig, progress: &mut dyn Progress) -> Result<ReproReport, ReproError> {
    if cfg.batch < 2 {
        return Err(ReproError::Config(
            "--batch must be at least 2 (OpenVision's contrastive loss needs negatives)".into(),
        ));
    }
    let (backbone, final_res) = cfg.preset.target();
    let mut caveats = vec![format!(
        "measured on {} in {}",
        cfg.device,
        cfg.dtype.name()
    )];
    if cfg.preset == Preset::Small {
        caveats.push(
            "small preset: Ti/16 at the patch counts of L/14's stages stands in for L/14".into(),
        );
    }
    // Stages: OV1 and OV2 share resolutions and samples up to the final resolution.
    let plan1 = reference::clipa_plan(Recipe::Ov1, backbone, final_res)?;
    let plan2 = reference::clipa_plan(Recipe::Ov2, backbone, final_res)?;
    let mut stages = Vec::new();
    let mut last_record = None;
    for (s1, s2) in plan1.iter().zip(&plan2) {
        let (model, res) = cfg.preset.measured(s2.resolution);
        let rec = step::run(
            &step_config(
                cfg,
                model,
                res,
                cfg.batch,
                s2.keep_ratio,
                cfg.steps,
                cfg.warmup,
            ),
            progress,
        )?;
        let per_image = |r: Recipe| -> Vec<f64> {
            rec.runs
                .iter()
                .find(|x| x.recipe == r)
                .map(|x| {
                    x.samples
                        .iter()
                        .map(|s| s.total_s / cfg.batch as f64)
                        .collect()
                })
                .unwrap_or_default()
        };
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
        stages.push(StageMeasurement {
            stage: s2.stage,
            paper_resolution: s2.resolution,
            measured_model: model,
            measured_resolution: res,
            samples: s2.samples,
            paper_global_batch: s2.global_batch,
            measured_batch: cfg.batch,
            keep_ratio: s2.keep_ratio,
            ov1_seconds_per_image: per_image(Recipe::Ov1),
            ov2_seconds_per_image: per_image(Recipe::Ov2),
            caveats: sc,
        });
        last_record = Some(rec);
    }
    let last = last_record.ok_or_else(|| ReproError::Config("the schedule has no stage".into()))?;
    let claims = reference::claims()?;
    let chips = claims
        .iter()
        .find(|c| c.metric == metric::SCHEDULE_TIME_RATIO_OV2_OV1 && c.setting.backbone == backbone)
        .and_then(|c| c.setting.chips)
        .unwrap_or(256);
    let projection = project(&stages, chips, cfg.seed);

    // Memory: the final stage's run gives one batch; a second batch gives the slope.
    let (model, res) = cfg.preset.measured(final_res);
    let keep = plan2.last().map(|s| s.keep_ratio).unwrap_or(0.35);
    let second = step::run(
        &step_config(cfg, model, res, 2 * cfg.batch, keep, 1, 0),
        progress,
    )?;
    let fit = |r: Recipe| -> Result<MemoryModel, ReproError> {
        let pts: Vec<MemoryPoint> = [memory_point(&last, r), memory_point(&second, r)]
            .into_iter()
            .flatten()
            .collect();
        Ok(MemoryModel::fit(&pts)?)
    };
    let (m1, m2) = (fit(Recipe::Ov1)?, fit(Recipe::Ov2)?);
    let (max1, max2) = (
        m1.max_batch_under(cfg.mem_cap_bytes),
        m2.max_batch_under(cfg.mem_cap_bytes),
    );
    // Real steps bisect the boundary, starting where the model puts it.
    let mut search = |recipe: Recipe, guess: usize| -> Result<BatchSearch, ReproError> {
        let min = if recipe == Recipe::Ov1 { 2 } else { 1 };
        search_max_batch(guess, min, cfg.confirm_limit, |b| {
            let mut sc = step_config(cfg, model, res, b, keep, 1, 0);
            sc.recipes = vec![recipe];
            let rec = step::run(&sc, progress)?;
            let peak = rec.runs.first().map(device_peak);
            Ok(Probe {
                batch: b,
                peak_bytes: peak,
                fits: peak.is_some_and(|p| p <= cfg.mem_cap_bytes),
            })
        })
    };
    let ov1_search = search(Recipe::Ov1, max1)?;
    let ov2_search = search(Recipe::Ov2, max2)?;
    let describe = |name: &str, s: &BatchSearch| match (s.max_fit, s.min_fail) {
        (Some(a), Some(b)) => format!("{name}: real steps fit at {a}, not at {b}"),
        (Some(a), None) => {
            format!(
                "{name}: real steps fit up to the --confirm-limit {a}; larger batches not tried"
            )
        }
        (None, _) => format!("{name}: no batch fits in real steps"),
    };
    let confirmation_note = format!(
        "{}; {} ({} + {} steps)",
        describe("OV1", &ov1_search),
        describe("OV2", &ov2_search),
        ov1_search.probes.len(),
        ov2_search.probes.len()
    );
    let mut per_chip: Vec<usize> = claims
        .iter()
        .filter(|c| c.setting.backbone == backbone)
        .filter_map(|c| c.setting.per_chip_batch.map(|b| b as usize))
        .collect();
    per_chip.sort();
    per_chip.dedup();
    let predictions = per_chip
        .iter()
        .map(|&b| (b, m1.predict(b), m2.predict(b)))
        .collect();
    let memory = MemoryFindings {
        cap_bytes: cfg.mem_cap_bytes,
        ov1_max_batch_under_cap: max1,
        ov2_max_batch_under_cap: max2,
        ov1_search,
        ov2_search,
        confirmation_note,
        predictions,
        ov1: m1,
        ov2: m2,
    };
    let flops = flop_checks();
    let judgements = judge_claims(cfg, backbone, &flops, &projection, &memory, &caveats)?;
    Ok(ReproReport {
        config: cfg.clone(),
        target_backbone: backbone.into(),
        target_resolution: final_res,
        flops,
        stages,
        projection,
        memory,
        judgements,
        caveats,
    })
}

fn judge_claims(
    cfg: &ReproConfig,
    backbone: &str,
    flops: &[FlopCheck],
    projection: &Projection,
    memory: &MemoryFindings,
    caveats: &[String],
) -> Result<Vec<Judgement>, ReproError> {
    let claims = reference::claims()?;
    let same_model = cfg.preset != Preset::Small;
    let with = |m: Measured| caveats.iter().fold(m, |m, c| m.caveat(c.clone()));
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
        let measured: Option<Measured> = match claim.metric.as_str() {
            metric::FLOPS_PER_IMAGE_OV1 => {
                flop(Recipe::Ov1).map(|v| Measured::point(v).caveat(flop_caveat))
            }
            metric::FLOPS_PER_IMAGE_OV2 => flop(Recipe::Ov2).map(Measured::point),
            metric::FLOPS_PER_IMAGE_RATIO_OV2_OV1 => flop(Recipe::Ov2)
                .zip(flop(Recipe::Ov1))
                .map(|(a, b)| Measured::point(a / b).caveat(flop_caveat)),
            _ if b != backbone => None,
            metric::SCHEDULE_TIME_RATIO_OV2_OV1 => Some(with(Measured::with_interval(
                projection.ratio,
                projection.ratio_ci95[0],
                projection.ratio_ci95[1],
            ))),
            metric::PEAK_MEMORY_RATIO_OV2_OV1 => claim.setting.per_chip_batch.map(|n| {
                with(Measured::point(
                    memory.ov2.predict(n as usize) / memory.ov1.predict(n as usize),
                ))
                .caveat(format!(
                    "memory model fitted at batches {} and {}, evaluated at per-chip batch {n}",
                    cfg.batch,
                    2 * cfg.batch
                ))
            }),
            metric::PEAK_MEMORY_GROWTH_OV2 => claim
                .setting
                .per_chip_batch
                .zip(claim.setting.reference_global_batch)
                .map(|(n, refg)| {
                    let chips = claim.setting.chips.unwrap_or(32) as u64;
                    let n0 = (refg / chips) as usize;
                    with(Measured::point(
                        memory.ov2.predict(n as usize) / memory.ov2.predict(n0),
                    ))
                }),
            metric::FITS_OV1_AT_BATCH | metric::FITS_OV2_AT_BATCH if same_model => {
                claim.setting.per_chip_batch.map(|n| {
                    let (model, search) = if claim.metric == metric::FITS_OV1_AT_BATCH {
                        (&memory.ov1, &memory.ov1_search)
                    } else {
                        (&memory.ov2, &memory.ov2_search)
                    };
                    let n = n as usize;
                    match real_step_fits(search, n) {
                        Some(fits) => with(Measured::fits(fits)).caveat(format!(
                            "real steps of the max-batch search against a cap of {} bytes",
                            memory.cap_bytes
                        )),
                        None => with(Measured::fits(model.predict(n) <= memory.cap_bytes as f64))
                            .caveat(format!(
                                "predicted peak against a cap of {} bytes (batch {n} beyond the real-step search)",
                                memory.cap_bytes
                            )),
                    }
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

/// Whether real steps settle that batch `n` fits (monotone in the batch), if they do.
fn real_step_fits(s: &BatchSearch, n: usize) -> Option<bool> {
    if s.max_fit.is_some_and(|a| n <= a) {
        Some(true)
    } else if s.min_fail.is_some_and(|b| n >= b) {
        Some(false)
    } else {
        None
    }
}

/// The claim table as markdown.
pub fn to_markdown(r: &ReproReport) -> String {
    let mut s = format!(
        "# ovbench repro: preset {:?} ({} at {} px)\n\n| claim | published | measured | 95 % interval | band | verdict | reason |\n|---|---|---|---|---|---|---|\n",
        r.config.preset, r.target_backbone, r.target_resolution
    );
    let q = |x: &Option<ovbench_reference::Quantity>| match x {
        Some(ovbench_reference::Quantity::Number(v)) => format!("{v:.4}"),
        Some(ovbench_reference::Quantity::Fits(true)) => "fits".into(),
        Some(ovbench_reference::Quantity::Fits(false)) => "out of memory".into(),
        None => "-".into(),
    };
    for j in &r.judgements {
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
    let p = &r.projection;
    s.push_str(&format!(
        "\nProjected schedule: OpenVision {:.3e} device-hours ({:.3e} h on {} chips), OpenVision 2 {:.3e} ({:.3e} h); ratio {:.3} [{:.3}, {:.3}].\n",
        p.ov1_device_hours, p.ov1_hours_on_chips, p.chips, p.ov2_device_hours, p.ov2_hours_on_chips, p.ratio, p.ratio_ci95[0], p.ratio_ci95[1]
    ));
    let m = &r.memory;
    s.push_str(&format!(
        "Memory model: persistent {:.3} / {:.3} GB, activations per sample {:.1} / {:.1} MB (OV1 / OV2); max per-device batch under {:.1} GB: {} / {} ({}).\n",
        m.ov1.persistent_bytes / 1e9,
        m.ov2.persistent_bytes / 1e9,
        m.ov1.activation_bytes_per_sample() / 1e6,
        m.ov2.activation_bytes_per_sample() / 1e6,
        m.cap_bytes as f64 / 1e9,
        m.ov1_max_batch_under_cap,
        m.ov2_max_batch_under_cap,
        m.confirmation_note
    ));
    for (name, search) in [("OV1", &m.ov1_search), ("OV2", &m.ov2_search)] {
        let steps: Vec<String> = search
            .probes
            .iter()
            .map(|p| match p.peak_bytes {
                Some(b) => format!(
                    "{} {} ({:.3} GB)",
                    p.batch,
                    if p.fits { "fits" } else { "over" },
                    b as f64 / 1e9
                ),
                None => format!("{} out of memory", p.batch),
            })
            .collect();
        s.push_str(&format!(
            "{name} max-batch search, real steps: {}.\n",
            steps.join(", ")
        ));
    }
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

    fn stage(samples: u64, ov1: f64, ov2: f64) -> StageMeasurement {
        StageMeasurement {
            stage: 1,
            paper_resolution: 84,
            measured_model: "Ti/16".parse().unwrap(),
            measured_resolution: 96,
            samples,
            paper_global_batch: 32768,
            measured_batch: 2,
            keep_ratio: 0.35,
            ov1_seconds_per_image: vec![ov1 * 0.99, ov1, ov1 * 1.01],
            ov2_seconds_per_image: vec![ov2 * 0.99, ov2, ov2 * 1.01],
            caveats: vec![],
        }
    }

    /// Hours are samples-weighted per-image times; the ratio's interval holds the point.
    #[test]
    fn projection_weights_stages_by_samples() {
        let p = project(&[stage(3600, 1.0, 0.5), stage(7200, 2.0, 1.0)], 4, 0);
        assert!((p.ov1_device_hours - (3600.0 + 14400.0) / 3600.0).abs() < 1e-9);
        assert!((p.ov2_hours_on_chips - p.ov2_device_hours / 4.0).abs() < 1e-12);
        assert!((p.ratio - 0.5).abs() < 1e-12);
        assert!(p.ratio_ci95[0] <= 0.5 && p.ratio_ci95[1] >= 0.5);
        assert!(p.ratio_ci95[1] - p.ratio_ci95[0] < 0.05);
    }
}
