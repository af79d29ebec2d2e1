//! The torch engine's harness side: starts engines/torch/engine.py (under torchrun for
//! `--nproc N`), gives it the resolved configuration and ovbench's batch and masks, reads its
//! samples through the harness protocol, samples its GPU memory with NVML, and turns what it
//! reports into the same [`RecipeRun`] the candle engine writes.
//!
//! Weights: the engine's own seeded initialisation (the same distributions as candle's, other
//! values), or, after `--check-same`, ovbench's exported weights. Batch and OpenVision 2 masks:
//! always ovbench's (written here with the candle engine's seeds), so that a one-process run
//! with exported weights takes exactly the candle engine's steps.

use super::{oom, Engine, RecipeOutcome};
use crate::config::ModelConfig;
use crate::device::DeviceArg;
use crate::flops::{forward_flops, V1_TEXT_PASSES};
use crate::gpu_memory::{AccountingView, AllocatorView, GpuMemory};
use crate::params::Module;
use crate::policy::{Execution, PolicyName, ResolvedPolicy};
use crate::recipe::Recipe;
use crate::step::{HostMemory, Progress, RecipeRun, RunSummary, StepConfig, StepError, StepSample};
use ovbench_harness::engine::{run_child, ChildOutcome, ChildRun, ChildSpec, RankReport, Sample};
use ovbench_harness::gpu::{self, GpuState};
use ovbench_harness::nvml_sampler::{self, NvmlSamples};
use ovbench_harness::Summary;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the engine is and how to run it (resolved by the binary: `--python`, OVBENCH_PYTHON
/// or scripts/pyenv.sh's cached environment).
#[derive(Debug, Clone)]
pub struct TorchSettings {
    pub python: PathBuf,
    /// engines/torch/engine.py
    pub script: PathBuf,
    /// Longest silence of the engine before it is killed.
    pub timeout: Duration,
    /// A passed same-function check: its export's weights are loaded and its results recorded.
    pub checked: Option<Arc<SameFunction>>,
}

static SETTINGS: Mutex<Option<TorchSettings>> = Mutex::new(None);

/// Sets how the torch engine runs for the rest of the process.
pub fn configure(settings: TorchSettings) {
    *SETTINGS.lock().unwrap_or_else(|p| p.into_inner()) = Some(settings);
}

/// Makes later runs start from a passed check's export, and record its results.
pub fn with_checked(checked: Arc<SameFunction>) {
    if let Some(s) = SETTINGS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        s.checked = Some(checked);
    }
}

fn settings() -> Result<TorchSettings, StepError> {
    if let Some(s) = SETTINGS.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return Ok(s);
    }
    let script = find_engine_script(&[]).map_err(StepError::Engine)?;
    let root = root_of(&script);
    Ok(TorchSettings {
        python: resolve_python(None, &root).map_err(StepError::Engine)?,
        script,
        timeout: Duration::from_secs(1800),
        checked: None,
    })
}

/// The checkout holding `engines/torch/engine.py`.
pub fn root_of(script: &Path) -> PathBuf {
    script
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// engines/torch/engine.py: $OVBENCH_TORCH_ENGINE, else under the folders above the running
/// executable (target/release/ovbench sits two below the checkout), `roots`, or the current
/// folder.
pub fn find_engine_script(roots: &[PathBuf]) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("OVBENCH_TORCH_ENGINE") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "OVBENCH_TORCH_ENGINE={}: no such file",
                p.display()
            ))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    candidates.extend(roots.iter().cloned());
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd);
    }
    let files: Vec<PathBuf> = candidates
        .iter()
        .map(|r| r.join("engines/torch/engine.py"))
        .collect();
    ovbench_harness::engine::first_existing("the torch engine (engines/torch/engine.py)", &files)
}

/// The interpreter: `explicit` (`--python`), else $OVBENCH_PYTHON, else the cached environment
/// of scripts/pyenv.sh (installed on first use, pinned in engines/torch/requirements.txt).
pub fn resolve_python(explicit: Option<&Path>, root: &Path) -> Result<PathBuf, String> {
    let check = |p: PathBuf, from: &str| -> Result<PathBuf, String> {
        if ovbench_harness::engine::is_executable(&p) || which(&p).is_some() {
            Ok(which(&p).unwrap_or(p))
        } else {
            Err(format!("{from} {}: not an executable", p.display()))
        }
    };
    if let Some(p) = explicit {
        return check(p.to_path_buf(), "--python");
    }
    if let Ok(p) = std::env::var("OVBENCH_PYTHON") {
        if !p.is_empty() {
            return check(PathBuf::from(p), "OVBENCH_PYTHON=");
        }
    }
    let script = root.join("scripts/pyenv.sh");
    let req = root.join("engines/torch/requirements.txt");
    eprintln!(
        "torch engine: Python from {} (first use installs torch; --python or OVBENCH_PYTHON picks another)",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&req)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed ({}); give --python PATH (an interpreter with torch)",
            script.display(),
            req.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("").trim();
    check(PathBuf::from(line), "scripts/pyenv.sh printed")
}

/// `name` on PATH when it is a bare name.
fn which(p: &Path) -> Option<PathBuf> {
    if p.components().count() != 1 {
        return None;
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|c| ovbench_harness::engine::is_executable(c))
    })
}

/// A passed same-function check (see [`check_same`]).
#[derive(Debug)]
pub struct SameFunction {
    _dir: tempfile::TempDir,
    /// `<export>/<ov1|ov2>/`: meta.json, params.safetensors, batch.safetensors.
    pub export: PathBuf,
    /// Per recipe: the engine's check result (same_function, problems, losses, norms).
    pub results: BTreeMap<Recipe, Value>,
}

impl SameFunction {
    /// Whether every recipe computes the same function.
    pub fn passed(&self) -> bool {
        self.results
            .values()
            .all(|r| r.get("same_function") == Some(&Value::Bool(true)))
    }
}

/// The same-function check of every recipe of `cfg` against the candle engine, in f32 on the
/// CPU: candle exports its weights, batch, masks, step-0 loss and gradient norms and step-1
/// loss at the configuration of `cfg` (`ovbench step --export-init`), and the torch engine
/// loads them and compares parameter names and counts, the step-0 loss, every gradient norm
/// and the step-1 loss (tolerances in engines/torch/ovbench_torch/check.py).
pub fn check_same(cfg: &StepConfig) -> Result<SameFunction, StepError> {
    let s = settings()?;
    let mut ec = cfg.clone();
    ec.dtype = crate::device::DTypeArg::F32;
    ec.device = DeviceArg::Cpu;
    ec.nproc = 1;
    // The check compares the two engines' functions (weights, losses, gradients, one update)
    // in f32 under ovbench's own policy, the one the export replays; the policy's precision,
    // moment dtypes and decay set are then the engines' settings, each tested on its own.
    ec.policy = PolicyName::Ovbench;
    ec.remat = crate::recipe::Remat::None;
    let dir = tempfile::Builder::new()
        .prefix("ovbench-check-")
        .tempdir()
        .map_err(|e| StepError::Engine(format!("temporary folder: {e}")))?;
    let export = dir.path().to_path_buf();
    crate::export::export(&ec, &export, false)
        .map_err(|e| StepError::Engine(format!("export for the check: {e}")))?;
    let mut results = BTreeMap::new();
    for &recipe in &cfg.recipes {
        let config = json!({
            "mode": "check",
            "recipe": recipe.key(),
            "export_dir": export.join(recipe.key()),
            "execution": ec.resolved_policy().execution(recipe).in_f32(),
            "threads": threads_per_rank(&ec),
        });
        let spec = spec_for(&s, config, 1, vec![], vec![], "torch", ec.nvml_interval_ms);
        match run_child(&spec, &mut |_, _| {}).map_err(|e| StepError::Engine(e.to_string()))? {
            ChildOutcome::Completed(run) => {
                let r = run.ranks[0].results.first().cloned().ok_or_else(|| {
                    StepError::Engine("engine torch: the check sent no result".into())
                })?;
                results.insert(recipe, Value::Object(r));
            }
            ChildOutcome::Oom(o) => {
                return Err(StepError::Engine(format!(
                    "engine torch: out of memory in the same-function check: {}",
                    o.error
                )))
            }
        }
    }
    Ok(SameFunction {
        _dir: dir,
        export,
        results,
    })
}

/// One line per recipe of a check's outcome.
pub fn describe_check(sf: &SameFunction) -> String {
    let mut out = Vec::new();
    for (recipe, r) in &sf.results {
        let f = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        let mut line = format!(
            "{}: parameters torch {} ovbench {}; step-0 loss torch {:.7} ovbench {:.7} (rel {:.1e}); \
             step-1 loss torch {:.7} ovbench {:.7} (rel {:.1e}); gradient norms max rel {:.1e} over {}",
            recipe.key(),
            r.get("params_torch").unwrap_or(&Value::Null),
            r.get("params_ovbench").unwrap_or(&Value::Null),
            f("loss0_torch"),
            f("loss0_ovbench"),
            f("loss0_rel_diff"),
            f("loss1_torch"),
            f("loss1_ovbench"),
            f("loss1_rel_diff"),
            f("grad_norm_max_rel_diff"),
            r.get("grad_norms_compared").unwrap_or(&Value::Null),
        );
        if r.get("same_function") == Some(&Value::Bool(true)) {
            line.push_str(": same function");
        } else {
            let problems: Vec<String> = r
                .get("problems")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            line.push_str(&format!("\n  DIFFERENT: {}", problems.join("; ")));
        }
        out.push(line);
    }
    out.join("\n")
}

/// One rank's part of a torch run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankRun {
    pub rank: usize,
    pub pid: u32,
    pub device: String,
    pub threads: Option<u64>,
    pub warmup: Vec<StepSample>,
    pub samples: Vec<StepSample>,
    /// Steps without the gradient all-reduce (DDP's no_sync), several processes only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_sync: Vec<StepSample>,
    pub memory: EngineMemory,
}

/// The engine's own memory views of one rank.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineMemory {
    /// `cuda_caching_allocator` (torch.cuda.max_memory_allocated) or `process_rss` (the
    /// kernel's high-water mark, reset per region through /proc/self/clear_refs).
    pub view: String,
    pub baseline_bytes: u64,
    pub peak_bytes: u64,
    pub peak_over_baseline_bytes: u64,
    pub forward_peak_over_baseline_bytes: u64,
    pub reserved_peak_bytes: Option<u64>,
    pub params_bytes: u64,
    pub grads_bytes: u64,
    pub optimizer_bytes: u64,
    pub rss_baseline_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
}

/// The gradient all-reduce's share of the step, from steps with and without it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AllReduceShare {
    /// Per step, the slowest rank's time, with the all-reduce (the measured steps).
    pub synced_step_s: Summary,
    /// The same without it (DDP no_sync).
    pub no_sync_step_s: Summary,
    /// 1 - median(no_sync) / median(synced).
    pub share: f64,
}

/// What the torch engine adds to a recipe's run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineRun {
    pub name: String,
    /// Python, torch, CUDA, cuDNN and NCCL versions, as the engine reported them.
    pub versions: Value,
    pub executable: String,
    pub command: Vec<String>,
    /// `eager` or `compiled` (torch.compile).
    pub mode: String,
    pub world_size: usize,
    /// gloo or nccl with several processes.
    pub backend: Option<String>,
    pub device_name: Option<String>,
    /// What the engine was asked to run, and what it could not honour.
    pub execution: Execution,
    pub not_honoured: Vec<String>,
    /// Where the weights came from.
    pub weights: String,
    pub ranks: Vec<RankRun>,
    /// One per GPU, the process view summed over the ranks' processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nvml: Vec<NvmlSamples>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allreduce: Option<AllReduceShare>,
    /// Images per second over all processes (the run's `images_per_s` is per device).
    pub images_per_s_total: f64,
    /// The engine's wall time, start-up (and compilation) included.
    pub wall_s: f64,
    /// The same-function check against candle, when `--check-same` ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_function: Option<Value>,
}

pub struct TorchEngine {
    settings: TorchSettings,
}

impl TorchEngine {
    pub fn new(_cfg: &StepConfig) -> Result<TorchEngine, StepError> {
        Ok(TorchEngine {
            settings: settings()?,
        })
    }
}

/// CPU threads of each rank: `--threads` per process, or the CPUs shared out.
fn threads_per_rank(cfg: &StepConfig) -> usize {
    if cfg.device != DeviceArg::Cpu {
        return 0;
    }
    if cfg.threads > 0 {
        return cfg.threads;
    }
    (ovbench_harness::limits::logical_cpus() / cfg.nproc.max(1)).max(1)
}

fn spec_for(
    s: &TorchSettings,
    config: Value,
    world: usize,
    phases: Vec<(String, usize)>,
    gpus: Vec<u32>,
    name: &str,
    nvml_interval_ms: f64,
) -> ChildSpec {
    let mut args: Vec<OsString> = vec!["-u".into()];
    if world > 1 {
        for a in [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            &world.to_string(),
        ] {
            args.push(a.into());
        }
    }
    args.push(s.script.clone().into());
    let mut env: Vec<(OsString, OsString)> = vec![("PYTHONUNBUFFERED".into(), "1".into())];
    // PyTorch's OpenMP workers spin while waiting by default, which on a shared or loaded
    // machine slows its element-wise ops several times; the candle engine likewise keeps its
    // spinning pool to one thread.
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        env.push(("OMP_WAIT_POLICY".into(), "PASSIVE".into()));
    }
    // CUDA's device numbers in NVML's order, so that cuda:N and the sampled GPU N agree.
    if std::env::var_os("CUDA_DEVICE_ORDER").is_none() {
        env.push(("CUDA_DEVICE_ORDER".into(), "PCI_BUS_ID".into()));
    }
    ChildSpec {
        engine: name.into(),
        program: s.python.clone(),
        args,
        env,
        cwd: None,
        config,
        ranks: world,
        phases,
        timeout: s.timeout,
        gpus,
        nvml_interval: Duration::from_secs_f64(nvml_interval_ms / 1e3),
    }
}

fn bad(what: &str, why: impl std::fmt::Display) -> StepError {
    StepError::Engine(format!("engine torch: {what}: {why}"))
}

fn get<T: DeserializeOwned>(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<T, StepError> {
    let v = m
        .get(key)
        .ok_or_else(|| bad(ctx, format!("field `{key}` is missing")))?;
    serde_json::from_value(v.clone()).map_err(|e| bad(&format!("{ctx}.{key}"), e))
}

fn step_sample(s: &Sample, global: bool) -> StepSample {
    let f = |k: &str| s.extra.get(k).and_then(Value::as_f64);
    let (loss, caption, con) = if global {
        (
            f("global_loss").unwrap_or(s.loss),
            f("global_caption_loss").or(f("caption_loss")),
            f("global_contrastive_loss").or(f("contrastive_loss")),
        )
    } else {
        (s.loss, f("caption_loss"), f("contrastive_loss"))
    };
    StepSample {
        step: s.step,
        forward_s: s.forward_s,
        backward_s: s.backward_s,
        optimizer_s: s.optimizer_s,
        total_s: s.total_s,
        loss,
        caption_loss: caption.unwrap_or(f64::NAN),
        contrastive_loss: con,
    }
}

/// Per step of `phase`, the slowest rank's sample (a synchronous step ends with its slowest
/// rank), with the global batch's losses.
fn slowest(ranks: &[RankReport], phase: &str) -> Vec<StepSample> {
    let per_rank: Vec<Vec<&Sample>> = ranks.iter().map(|r| r.phase(phase).collect()).collect();
    let n = per_rank.iter().map(Vec::len).min().unwrap_or(0);
    let global = ranks.len() > 1;
    (0..n)
        .map(|j| {
            let s = per_rank
                .iter()
                .map(|r| r[j])
                .max_by(|a, b| a.total_s.total_cmp(&b.total_s))
                .expect("at least one rank");
            let mut out = step_sample(s, global);
            // The global losses are the same on every rank; take rank 0's.
            let l = step_sample(per_rank[0][j], global);
            out.loss = l.loss;
            out.caption_loss = l.caption_loss;
            out.contrastive_loss = l.contrastive_loss;
            out
        })
        .collect()
}

impl Engine for TorchEngine {
    fn name(&self) -> &'static str {
        "torch"
    }

    fn run_recipe(
        &mut self,
        cfg: &StepConfig,
        mcfg: &ModelConfig,
        policy: &ResolvedPolicy,
        recipe: Recipe,
        progress: &mut dyn Progress,
    ) -> Result<RecipeOutcome, StepError> {
        let s = &self.settings;
        let world = cfg.nproc;
        let no_sync = if world > 1 { cfg.steps } else { 0 };
        let mut phases = vec![
            ("warmup".to_string(), cfg.warmup),
            ("measured".to_string(), cfg.steps),
        ];
        if no_sync > 0 {
            phases.push(("no_sync".to_string(), no_sync));
        }
        let dir = tempfile::Builder::new()
            .prefix("ovbench-torch-")
            .tempdir()
            .map_err(|e| StepError::Engine(format!("temporary folder: {e}")))?;
        let inputs = dir.path().join("batch.safetensors");
        crate::export::write_inputs(
            cfg,
            mcfg,
            cfg.batch * world,
            cfg.warmup + cfg.steps + no_sync,
            &inputs,
        )
        .map_err(|e| StepError::Engine(format!("writing the engine's inputs: {e}")))?;
        let execution = *policy.execution(recipe);
        let (weights, same) = match &s.checked {
            Some(c) => (
                Some(c.export.join(recipe.key()).join("params.safetensors")),
                c.results.get(&recipe).cloned(),
            ),
            None => (None, None),
        };
        let config = json!({
            "mode": "run",
            "recipe": recipe.key(),
            "model_config": mcfg,
            "kept_tokens": mcfg.kept_tokens(),
            "batch": cfg.batch,
            "seed": cfg.seed,
            "device": cfg.device.to_string(),
            "threads": threads_per_rank(cfg),
            "compile": cfg.compile,
            "execution": execution,
            "lr": cfg.optimizer.lr,
            "inputs": inputs,
            "weights": weights,
            "mem_cap_bytes": cfg.mem_cap_bytes,
        });
        let gpus: Vec<u32> = match cfg.device {
            DeviceArg::Cuda(i) => (i..i + world).map(|g| g as u32).collect(),
            DeviceArg::Cpu => vec![],
        };
        let spec = spec_for(
            s,
            config,
            world,
            phases,
            gpus.clone(),
            "torch",
            cfg.nvml_interval_ms,
        );
        let before = gpus.first().map(|&g| gpu::snapshot(g));
        progress.begin(recipe.label(), (cfg.warmup + cfg.steps) as u64);
        let outcome = run_child(&spec, &mut |rank, smp| {
            if rank == 0 && smp.phase != "no_sync" {
                progress.advance(&ovbench_harness::progress::step_note(
                    smp.phase == "warmup",
                    smp.total_s,
                    smp.loss,
                ))
            }
        })
        .map_err(|e| StepError::Engine(e.to_string()))?;
        progress.end();
        let run = match outcome {
            ChildOutcome::Oom(o) => {
                return Ok(RecipeOutcome::Failed(oom(recipe, cfg.batch, &o.error)))
            }
            ChildOutcome::Completed(run) => run,
        };
        let mut command = vec![s.python.display().to_string()];
        command.extend(spec.args.iter().map(|a| a.to_string_lossy().into_owned()));
        let out = recipe_run(
            cfg, mcfg, recipe, &run, execution, command, before, &gpus, weights, same,
        )?;
        if let Some(msg) = crate::gpu_memory::over_cap(out.gpu.as_ref(), cfg.mem_cap_bytes) {
            return Ok(RecipeOutcome::Failed(oom(recipe, cfg.batch, &msg)));
        }
        Ok(RecipeOutcome::Done(out))
    }
}

#[allow(clippy::too_many_arguments)]
fn recipe_run(
    cfg: &StepConfig,
    mcfg: &ModelConfig,
    recipe: Recipe,
    run: &ChildRun,
    execution: Execution,
    command: Vec<String>,
    before: Option<GpuState>,
    gpus: &[u32],
    weights: Option<PathBuf>,
    same: Option<Value>,
) -> Result<RecipeRun, StepError> {
    let world = run.ranks.len();
    let r0 = &run.ranks[0];
    let setup = r0.setup.as_ref().expect("the harness checked the setup");
    let params_total: usize = get(setup, "params_total", "setup")?;
    let params_by_module: BTreeMap<Module, usize> = get(setup, "params_by_module", "setup")?;
    let not_honoured: Vec<String> = get(setup, "not_honoured", "setup")?;
    let engine_info: Map<String, Value> = get(&r0.hello, "engine", "hello")?;
    let mut ranks = Vec::with_capacity(world);
    for r in &run.ranks {
        let summary = r.summary.as_ref().expect("the harness checked the summary");
        let memory: EngineMemory = get(summary, "memory", &format!("rank {} summary", r.rank))?;
        let info: Map<String, Value> = get(&r.hello, "engine", "hello")?;
        let conv = |phase| r.phase(phase).map(|x| step_sample(x, false)).collect();
        ranks.push(RankRun {
            rank: r.rank,
            pid: r.pid,
            device: info
                .get("device")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string(),
            threads: info.get("threads").and_then(Value::as_u64),
            warmup: conv("warmup"),
            samples: conv("measured"),
            no_sync: conv("no_sync"),
            memory,
        });
    }
    let samples = slowest(&run.ranks, "measured");
    let warmup_losses = slowest(&run.ranks, "warmup")
        .iter()
        .map(|x| x.loss)
        .collect();
    if let Some(bad_step) = samples.iter().find(|x| !x.loss.is_finite()) {
        return Err(StepError::NonFinite {
            recipe: recipe.key(),
            step: bad_step.step,
            loss: bad_step.loss,
        });
    }
    let col = |f: fn(&StepSample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
    let summ = |xs: Vec<f64>| Summary::of(&xs).ok_or_else(|| bad("samples", "none finite"));
    let step_s = summ(col(|x| x.total_s))?;
    let flops = forward_flops(recipe, mcfg, cfg.batch, V1_TEXT_PASSES);
    let training = 3.0 * flops.total();
    let summary = RunSummary {
        forward_s: summ(col(|x| x.forward_s))?,
        backward_s: summ(col(|x| x.backward_s))?,
        optimizer_s: summ(col(|x| x.optimizer_s))?,
        images_per_s: cfg.batch as f64 / step_s.median,
        achieved_flops_per_s: training * cfg.batch as f64 / step_s.median,
        step_s,
    };
    let allreduce = if world > 1 {
        let ns: Vec<f64> = slowest(&run.ranks, "no_sync")
            .iter()
            .map(|x| x.total_s)
            .collect();
        Summary::of(&ns).map(|no_sync_step_s| AllReduceShare {
            share: 1.0 - no_sync_step_s.median / summary.step_s.median,
            synced_step_s: summary.step_s,
            no_sync_step_s,
        })
    } else {
        None
    };
    // Per device: the rank that needed the most.
    let top = ranks
        .iter()
        .max_by_key(|r| r.memory.peak_over_baseline_bytes)
        .expect("a rank")
        .memory
        .clone();
    let cuda = top.view == "cuda_caching_allocator";
    let rss_over = top
        .rss_peak_bytes
        .zip(top.rss_baseline_bytes)
        .map(|(p, b)| p.saturating_sub(b))
        .unwrap_or(0);
    let persistent = top.params_bytes + top.optimizer_bytes;
    let memory = if cuda {
        HostMemory {
            allocator_active: false,
            baseline_bytes: top.rss_baseline_bytes.unwrap_or(0),
            peak_bytes: top.rss_peak_bytes.unwrap_or(0),
            peak_over_baseline_bytes: rss_over,
            forward_peak_over_baseline_bytes: 0,
            params_bytes: top.params_bytes,
            grads_bytes: top.grads_bytes,
            optimizer_bytes: top.optimizer_bytes,
            transient_peak_bytes: rss_over.saturating_sub(persistent),
            rss_peak_bytes: top.rss_peak_bytes,
            allocations_per_step: 0,
            allocated_bytes_per_step: 0,
        }
    } else {
        HostMemory {
            allocator_active: false,
            baseline_bytes: top.baseline_bytes,
            peak_bytes: top.peak_bytes,
            peak_over_baseline_bytes: top.peak_over_baseline_bytes,
            forward_peak_over_baseline_bytes: top.forward_peak_over_baseline_bytes,
            params_bytes: top.params_bytes,
            grads_bytes: top.grads_bytes,
            optimizer_bytes: top.optimizer_bytes,
            transient_peak_bytes: top.peak_over_baseline_bytes.saturating_sub(persistent),
            rss_peak_bytes: top.rss_peak_bytes,
            allocations_per_step: 0,
            allocated_bytes_per_step: 0,
        }
    };
    let gpu = match (gpus.first(), before) {
        (Some(&g), Some(before)) if cuda => {
            let mut acc = AccountingView::default();
            for r in &run.ranks {
                match nvml_sampler::accounting_peak_of(g + r.rank as u32, r.pid) {
                    Ok(b) => {
                        acc.peak_bytes = Some(acc.peak_bytes.unwrap_or(0).max(b));
                    }
                    Err(e) => acc.unavailable = Some(e),
                }
            }
            if acc.peak_bytes.is_some() {
                acc.unavailable = None;
            }
            let after = gpu::snapshot(g);
            let changed = match (&before, &after) {
                (GpuState::Available(a), GpuState::Available(b)) => {
                    a.sm_clock_mhz != b.sm_clock_mhz
                        || a.mem_clock_mhz != b.mem_clock_mhz
                        || a.throttle_reasons != b.throttle_reasons
                }
                _ => false,
            };
            let nvml0 = run.nvml.first().cloned().unwrap_or_default();
            Some(GpuMemory {
                // Device used memory before the engine's first allocation (its CUDA context
                // included once it appears; other processes too).
                context_baseline_bytes: nvml0.device_used_first_bytes,
                driver_used_after_bytes: None,
                allocator: AllocatorView {
                    used_at_start_bytes: Some(top.baseline_bytes),
                    used_peak_bytes: Some(top.peak_bytes),
                    reserved_peak_bytes: top.reserved_peak_bytes,
                    unavailable: None,
                },
                nvml_sampled: nvml0,
                nvml_accounting_peak: acc,
                pool_release_threshold:
                    "PyTorch's caching allocator: freed blocks stay reserved for reuse".into(),
                mem_cap_bytes: cfg.mem_cap_bytes,
                gpu_before: before,
                gpu_after: after,
                clocks_or_throttling_changed: changed,
            })
        }
        _ => None,
    };
    let mut notes = Vec::new();
    match recipe {
        Recipe::Ov1 => {
            notes.extend(mcfg.text_encoder.note.clone());
            notes.extend(mcfg.v1_decoder.note.clone());
        }
        Recipe::Ov2 => notes.extend(mcfg.v2_decoder.note.clone()),
    }
    let weights_note = match &weights {
        Some(p) => format!(
            "torch engine: ovbench's weights ({}), batch and masks",
            p.display()
        ),
        None => format!(
            "torch engine: its own seeded weights (seed {}; candle's distributions, other values), \
             ovbench's batch and masks",
            cfg.seed
        ),
    };
    notes.push(weights_note.clone());
    notes.push(format!(
        "torch engine memory: {}",
        if cuda {
            "the GPU view is torch.cuda.max_memory_allocated; host memory is the process's RSS"
        } else {
            "the process's RSS high-water mark over its RSS before the model was built (not an allocator count)"
        }
    ));
    if world > 1 {
        notes.push(format!(
            "{world} processes: batch {} per device (global {}); each step's time is its slowest \
             rank's, its loss the global batch's; images/s per device",
            cfg.batch,
            cfg.batch * world
        ));
    }
    notes.extend(not_honoured.iter().map(|n| format!("not honoured: {n}")));
    if run.exit != "exit status 0" {
        notes.push(format!(
            "torch engine: every rank reported all its steps, then: {}",
            run.exit
        ));
    }
    let str_of = |k: &str| engine_info.get(k).and_then(Value::as_str).map(String::from);
    Ok(RecipeRun {
        recipe,
        label: recipe.label().to_string(),
        params_by_module,
        params_total,
        kept_tokens: (recipe == Recipe::Ov2).then(|| mcfg.kept_tokens()),
        forward_flops_per_image: flops,
        forward_flops_per_image_total: flops.total(),
        training_flops_per_image: training,
        warmup_losses,
        samples,
        summary: summary.clone(),
        memory,
        gpu,
        notes,
        engine: Some(EngineRun {
            name: "torch".into(),
            versions: engine_info.get("versions").cloned().unwrap_or(Value::Null),
            executable: str_of("executable").unwrap_or_default(),
            command,
            mode: if cfg.compile { "compiled" } else { "eager" }.into(),
            world_size: world,
            backend: str_of("backend"),
            device_name: str_of("device_name"),
            execution,
            not_honoured,
            weights: weights_note,
            ranks,
            nvml: run.nvml.clone(),
            allreduce,
            images_per_s_total: summary.images_per_s * world as f64,
            wall_s: run.wall_s,
            same_function: same,
        }),
    })
}
