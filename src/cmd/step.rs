//! `ovbench step`: one full training step of each recipe, measured.

use anyhow::Context;
use ovbench_harness::table::{self, bytes, seconds};
use ovbench_train::device::{DTypeArg, DeviceArg};
use ovbench_train::policy::PolicyName;
use ovbench_train::step::{self, RecipeRun, StepConfig, StepRecord};
use ovbench_train::{ModelName, PrefixAttention, Recipe};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "With no options it runs the small preset (Ti/16, 112 px, batch 8, \
5 measured steps after 1 warm-up step) for both recipes; about a minute on 2 cores.\n\
Paper setting, for example: ovbench step --model L/14 --res 224 --batch 64 --keep 0.35"
)]
pub struct StepArgs {
    /// Image encoder: Ti/16, S/16, B/16, L/14, So400m/14, H/14, g/14
    #[arg(long, default_value = "Ti/16")]
    pub model: ModelName,
    /// Image resolution in pixels (a multiple of the patch size)
    #[arg(long, default_value_t = 112)]
    pub res: usize,
    /// Images per step
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Fraction of patch tokens OpenVision 2 keeps, in (0, 1]
    #[arg(long, default_value_t = 0.35)]
    pub keep: f64,
    /// Which recipe(s): ov1, ov2 or both
    #[arg(long, default_value = "both", value_parser = ["ov1", "ov2", "both"])]
    pub recipe: String,
    /// Measured steps per recipe
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Warm-up steps per recipe (run, not counted)
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Seed of weights, inputs and masks
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Execution policy: ovbench (its own replay: --dtype, --remat, --kernels decide), released
    /// (what the released scripts set, per recipe and module), matched-bf16 or matched-f32 (the
    /// released settings with both recipes in one precision); see docs/policies-and-memory.md
    #[arg(long, default_value = "ovbench")]
    pub policy: PolicyName,
    /// Matmul precision of the ovbench policy: f32 (default), bf16 or f16 (weights and
    /// optimizer state stay f32); other policies set it per module
    #[arg(long)]
    pub dtype: Option<DTypeArg>,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Image-encoder activation recomputation of the ovbench policy: none (default), or full;
    /// other policies set it per module
    #[arg(long)]
    pub remat: Option<ovbench_train::recipe::Remat>,
    /// OpenVision 2 image-prefix attention: causal (released code) or prefix (bidirectional)
    #[arg(long, default_value = "causal")]
    pub attention: PrefixAttention,
    /// CPU threads for matrix products (0: one per available CPU)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// CPU threads for element-wise kernels. candle's pool for them spins and pins its
    /// workers, which costs more than it saves on small shared machines, hence 1
    #[arg(long, default_value_t = 1)]
    pub ew_threads: usize,
    /// fused: ovbench's CPU kernels with their own backward passes (each transformer block as
    /// one op; layer norm, softmax, GELU, head + cross-entropy), and on CUDA the portable ops;
    /// composed: candle's ops only; portable: layer norm, softmax, biased dense layers and the
    /// token cross-entropy as device-generic single ops that keep only their inputs and output,
    /// attention recomputed in the backward pass, candle's ops for the rest (what fused runs on
    /// CUDA; selectable on the CPU to test and measure it there)
    #[arg(long, default_value = "fused")]
    pub kernels: ovbench_train::fused::Kernels,
    /// GPU memory cap, e.g. 32GiB: a recipe whose allocator peak exceeds it is recorded as oom
    #[arg(long, value_parser = ovbench_train::gpu_memory::parse_bytes)]
    pub mem_cap: Option<u64>,
    /// Interval of the NVML memory sampler on GPU runs, in milliseconds
    #[arg(long, default_value_t = 1.0)]
    pub nvml_interval_ms: f64,
    /// Let glibc return freed memory to the kernel after every free (slower; the default
    /// keeps it for reuse across steps, as a long training run would)
    #[arg(long)]
    pub no_malloc_retain: bool,
    /// Record file, or a folder to put a time-stamped record in
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Do not write a record
    #[arg(long)]
    pub no_record: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Before timing, check that the torch engine computes the same function as candle (same
    /// weights, batch and masks: parameter names and counts, step-0 loss, gradient norms,
    /// step-1 loss; f32 on the CPU); exit 1 when it does not. The timed run then starts from
    /// ovbench's weights. Meant for small models: candle runs two steps on the CPU
    #[arg(long)]
    pub check_same: bool,
    /// Instead of timing, write each recipe's initial weights, batch, kept-token indices and
    /// step-0/1 losses under this folder, for the torch engine's same-function check
    #[arg(long, hide = true)]
    pub export_init: Option<PathBuf>,
    /// With --export-init: the step-0 loss only (no gradients, no update; large models)
    #[arg(long, hide = true)]
    pub export_forward_only: bool,
}

/// Which engine runs the steps, and how (shared by `step` and `repro`).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// What runs the step: candle (ovbench's models, in this process) or torch (the same
    /// models in PyTorch, engines/torch, in a child process; see docs/engines.md)
    #[arg(long, default_value = "candle")]
    pub engine: ovbench_train::engine::EngineKind,
    /// torch.compile the step (torch engine; the warm-up steps compile, so --warmup >= 1)
    #[arg(long)]
    pub compile: bool,
    /// Processes under torchrun, one per device (cuda:N, N+1, ...), each with --batch images;
    /// DistributedDataParallel over NCCL on GPUs, gloo on the CPU (torch engine)
    #[arg(long, default_value_t = 1)]
    pub nproc: usize,
    /// Python interpreter with torch for the torch engine (default: $OVBENCH_PYTHON, else the
    /// cached environment of scripts/pyenv.sh, installed on first use)
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Seconds the torch engine may go without reporting before it is killed
    #[arg(long, default_value_t = 1800.0)]
    pub engine_timeout: f64,
}

impl StepArgs {
    pub fn config(&self) -> anyhow::Result<StepConfig> {
        if self.policy != PolicyName::Ovbench && (self.dtype.is_some() || self.remat.is_some()) {
            anyhow::bail!(
                "--dtype and --remat set the ovbench policy; --policy {} sets precision and \
                 recomputation per recipe and module (see docs/policies-and-memory.md)",
                self.policy
            );
        }
        let recipes = match self.recipe.as_str() {
            "ov1" => vec![Recipe::Ov1],
            "ov2" => vec![Recipe::Ov2],
            _ => vec![Recipe::Ov1, Recipe::Ov2],
        };
        Ok(StepConfig {
            model: self.model,
            resolution: self.res,
            batch: self.batch,
            keep_ratio: self.keep,
            v2_attention: self.attention,
            recipes,
            steps: self.steps,
            warmup: self.warmup,
            seed: self.seed,
            dtype: self.dtype.unwrap_or(DTypeArg::F32),
            device: self.device,
            threads: self.threads,
            ew_threads: self.ew_threads,
            remat: self.remat.unwrap_or_default(),
            kernels: self.kernels,
            engine: self.engine.engine,
            compile: self.engine.compile,
            nproc: self.engine.nproc,
            mem_cap_bytes: self.mem_cap,
            nvml_interval_ms: self.nvml_interval_ms,
            policy: self.policy,
            ..StepConfig::small()
        })
    }
}

/// Resolves the torch engine (engines/torch/engine.py and its Python) for this process.
pub fn configure_torch(args: &EngineArgs) -> anyhow::Result<()> {
    let (python, timeout_s) = (args.python.as_deref(), args.engine_timeout);
    use ovbench_train::engine::torch;
    if !(timeout_s > 0.0 && timeout_s.is_finite()) {
        anyhow::bail!("--engine-timeout must be a positive number of seconds");
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = torch::find_engine_script(&[here]).map_err(anyhow::Error::msg)?;
    let python =
        torch::resolve_python(python, &torch::root_of(&script)).map_err(anyhow::Error::msg)?;
    torch::configure(torch::TorchSettings {
        python,
        script,
        timeout: std::time::Duration::from_secs_f64(timeout_s),
        checked: None,
    });
    Ok(())
}

/// Sets the thread counts candle reads when its kernels first run (nothing has run yet).
pub fn apply_threads(threads: usize, ew_threads: usize) {
    if threads > 0 {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if ew_threads > 0 {
        std::env::set_var("CANDLE_NUM_THREADS", ew_threads.to_string());
    }
}

pub fn run(args: StepArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    // Validate before any work so that bad arguments never leave a record behind.
    cfg.validate().map_err(anyhow::Error::msg)?;
    apply_threads(cfg.threads, cfg.ew_threads);
    if !args.no_malloc_retain {
        ovbench_harness::alloc::retain_freed_memory();
    }
    let torch = cfg.engine == ovbench_train::engine::EngineKind::Torch;
    if args.check_same && !torch {
        anyhow::bail!("--check-same needs --engine torch");
    }
    if torch && args.export_init.is_none() {
        configure_torch(&args.engine)?;
    }
    if let Some(dir) = &args.export_init {
        for e in ovbench_train::export::export(&cfg, dir, args.export_forward_only)? {
            let losses: Vec<String> = e
                .meta
                .losses
                .iter()
                .map(|l| format!("step {} {:.7}", l.step, l.total))
                .collect();
            println!(
                "{}: {} parameters, loss {} -> {}",
                e.recipe.key(),
                e.meta.params_total,
                losses.join(", "),
                e.dir.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Where the record goes is settled, and proven writable, before the run: a long run's
    // measurements must not be lost to an unwritable --out at the end.
    let path = (!args.no_record).then(|| super::record_path(&args.out, "step"));
    if let Some(p) = &path {
        ovbench_harness::io::check_writable(p)
            .with_context(|| "--out: the record could not be written there")?;
    }
    if args.check_same {
        use ovbench_train::engine::torch;
        if !args.quiet {
            eprintln!(
                "same-function check: candle's export against the torch engine (f32, CPU) ..."
            );
        }
        let checked = torch::check_same(&cfg)?;
        println!("{}", torch::describe_check(&checked));
        if !checked.passed() {
            eprintln!(
                "error: the torch engine does not compute the same function as candle: no timing, no record"
            );
            return Ok(ExitCode::from(1));
        }
        torch::with_checked(std::sync::Arc::new(checked));
    }
    let rec = step::run(&cfg, &mut crate::progress::Lines::new(args.quiet))?;
    println!("{}", render(&rec));
    if let Some(path) = path {
        super::write_record(&path, rec).with_context(|| "writing the step record")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The side-by-side table: OpenVision | OpenVision 2 | ratio.
pub fn render(rec: &StepRecord) -> String {
    let c = &rec.config;
    let engine = match (c.compile, c.nproc) {
        (false, 1) => c.engine.to_string(),
        (true, 1) => format!("{} (compiled)", c.engine),
        (compile, n) => format!(
            "{}{} x {n} processes",
            c.engine,
            if compile { " (compiled)" } else { "" }
        ),
    };
    let precision = match c.policy {
        PolicyName::Ovbench => c.dtype.name().to_string(),
        p => format!("policy {p}"),
    };
    let mut out = format!(
        "{} at {} px, batch {}{}, keep {}, {} on {}, engine {engine}, {} measured steps after {} warm-up (seed {})\n",
        c.model,
        c.resolution,
        c.batch,
        if c.nproc > 1 { " per device" } else { "" },
        c.keep_ratio,
        precision,
        c.device,
        c.steps,
        c.warmup,
        c.seed
    );
    let torch = rec.runs.iter().any(|r| r.engine.is_some());
    let get = |r: Recipe| rec.runs.iter().find(|x| x.recipe == r);
    let (v1, v2) = (get(Recipe::Ov1), get(Recipe::Ov2));
    let ratio = rec.ratios_ov2_over_ov1.as_ref();
    let mut rows = vec![vec![
        "metric".to_string(),
        "OpenVision".into(),
        "OpenVision 2".into(),
        "OV2 / OV1".into(),
    ]];
    let cell = |r: Option<&RecipeRun>, f: &dyn Fn(&RecipeRun) -> String| {
        r.map(f).unwrap_or_else(|| "-".into())
    };
    let fmt_ratio = |r: Option<ovbench_harness::stats::Ratio>| {
        r.map(|r| format!("{:.3} [{:.3}, {:.3}]", r.value, r.ci95[0], r.ci95[1]))
            .unwrap_or_else(|| "-".into())
    };
    let mut row = |name: &str, f: &dyn Fn(&RecipeRun) -> String, ratio: String| {
        rows.push(vec![name.to_string(), cell(v1, f), cell(v2, f), ratio]);
    };
    row(
        "step time (median)",
        &|r| {
            format!(
                "{} ±{:.0}%",
                seconds(r.summary.step_s.median),
                100.0 * r.summary.step_s.rel_mad()
            )
        },
        fmt_ratio(ratio.and_then(|x| x.step_time)),
    );
    row(
        "  forward",
        &|r| seconds(r.summary.forward_s.median),
        fmt_ratio(ratio.and_then(|x| x.forward_time)),
    );
    row(
        "  backward",
        &|r| seconds(r.summary.backward_s.median),
        fmt_ratio(ratio.and_then(|x| x.backward_time)),
    );
    row(
        "  optimizer",
        &|r| seconds(r.summary.optimizer_s.median),
        "".into(),
    );
    row(
        "images / s",
        &|r| format!("{:.2}", r.summary.images_per_s),
        "".into(),
    );
    row(
        if torch {
            "peak host memory (engine RSS)"
        } else {
            "peak host memory (allocator)"
        },
        &|r| bytes(r.memory.peak_over_baseline_bytes),
        ratio
            .map(|x| format!("{:.3}", x.peak_memory))
            .unwrap_or_default(),
    );
    row(
        "  params + optimizer state",
        &|r| bytes(r.memory.params_bytes + r.memory.optimizer_bytes),
        "".into(),
    );
    row(
        "  transient (activations, grads)",
        &|r| bytes(r.memory.transient_peak_bytes),
        ratio
            .map(|x| format!("{:.3}", x.transient_memory))
            .unwrap_or_default(),
    );
    row(
        "peak RSS",
        &|r| {
            r.memory
                .rss_peak_bytes
                .map(bytes)
                .unwrap_or_else(|| "n/a".into())
        },
        "".into(),
    );
    row(
        "allocated per step",
        &|r| {
            if r.memory.allocator_active {
                format!(
                    "{} in {}",
                    bytes(r.memory.allocated_bytes_per_step),
                    r.memory.allocations_per_step
                )
            } else {
                "n/a".into()
            }
        },
        "".into(),
    );
    row(
        "parameters",
        &|r| format!("{:.2} M", r.params_total as f64 / 1e6),
        ratio
            .map(|x| format!("{:.3}", x.params))
            .unwrap_or_default(),
    );
    row(
        "forward GFLOPs / image",
        &|r| format!("{:.3}", r.forward_flops_per_image_total / 1e9),
        ratio
            .map(|x| format!("{:.3}", x.forward_flops))
            .unwrap_or_default(),
    );
    row(
        "achieved GFLOP/s (3x fwd)",
        &|r| format!("{:.2}", r.summary.achieved_flops_per_s / 1e9),
        "".into(),
    );
    row(
        "loss first -> last",
        &|r| {
            let first = r
                .warmup_losses
                .first()
                .or(r.samples.first().map(|s| &s.loss));
            format!(
                "{:.4} -> {:.4}",
                first.copied().unwrap_or(f64::NAN),
                r.samples.last().map(|s| s.loss).unwrap_or(f64::NAN)
            )
        },
        "".into(),
    );
    if rec.runs.iter().any(|r| r.gpu.is_some()) {
        let opt = |b: Option<u64>| b.map(bytes).unwrap_or_else(|| "n/a".into());
        let mut row = |name: &str, f: &dyn Fn(&ovbench_train::gpu_memory::GpuMemory) -> String| {
            let c = |r: Option<&RecipeRun>| {
                r.and_then(|r| r.gpu.as_ref())
                    .map(f)
                    .unwrap_or_else(|| "-".into())
            };
            rows.push(vec![name.to_string(), c(v1), c(v2), String::new()]);
        };
        row(
            if torch {
                "GPU: allocator peak (torch.cuda.max_memory_allocated)"
            } else {
                "GPU: allocator peak (candle, pool used)"
            },
            &|g| opt(g.allocator.used_peak_bytes),
        );
        row("GPU: pool reserved peak", &|g| {
            opt(g.allocator.reserved_peak_bytes)
        });
        row("GPU: NVML sampled device peak", &|g| {
            opt(g.nvml_sampled.device_used_peak_bytes)
        });
        row("GPU: NVML sampled process peak", &|g| {
            opt(g.nvml_sampled.process_used_peak_bytes)
        });
        row("GPU: NVML accounting peak", &|g| {
            opt(g.nvml_accounting_peak.peak_bytes)
        });
        row("GPU: context baseline", &|g| opt(g.context_baseline_bytes));
        row("GPU: NVML samples", &|g| {
            format!("{}", g.nvml_sampled.samples)
        });
    }
    if rec
        .runs
        .iter()
        .any(|r| r.engine.as_ref().is_some_and(|e| e.world_size > 1))
    {
        let e = |r: Option<&RecipeRun>,
                 f: &dyn Fn(&ovbench_train::engine::torch::EngineRun) -> String| {
            r.and_then(|r| r.engine.as_ref())
                .map(f)
                .unwrap_or_else(|| "-".into())
        };
        rows.push(vec![
            "images / s, all devices".into(),
            e(v1, &|x| format!("{:.2}", x.images_per_s_total)),
            e(v2, &|x| format!("{:.2}", x.images_per_s_total)),
            String::new(),
        ]);
        rows.push(vec![
            "gradient all-reduce share of the step".into(),
            e(v1, &|x| {
                x.allreduce
                    .as_ref()
                    .map(|a| format!("{:.1}%", 100.0 * a.share))
                    .unwrap_or_else(|| "n/a".into())
            }),
            e(v2, &|x| {
                x.allreduce
                    .as_ref()
                    .map(|a| format!("{:.1}%", 100.0 * a.share))
                    .unwrap_or_else(|| "n/a".into())
            }),
            String::new(),
        ]);
    }
    out.push_str(&table::render(rows));
    if let Some(e) = rec.runs.iter().find_map(|r| r.engine.as_ref()) {
        let v = |k: &str| {
            e.versions
                .get(k)
                .filter(|x| !x.is_null())
                .map(|x| x.to_string().trim_matches('"').to_string())
                .unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "\nengine: torch {} ({}), Python {}, CUDA {}, cuDNN {}, NCCL {}; {}",
            v("torch"),
            e.mode,
            v("python"),
            v("cuda"),
            v("cudnn"),
            v("nccl"),
            e.executable
        ));
        for r in &rec.runs {
            if let Some(sf) = r.engine.as_ref().and_then(|e| e.same_function.as_ref()) {
                out.push_str(&format!(
                    "\nsame function as candle ({}): {}",
                    r.recipe.key(),
                    sf.get("same_function").unwrap_or(&serde_json::Value::Null)
                ));
            }
        }
    }
    for f in &rec.failed {
        out.push_str(&format!(
            "\n{} at batch {}: {} ({})",
            f.recipe.label(),
            f.batch,
            f.status,
            f.error
        ));
    }
    if let Some(p) = rec
        .policy
        .as_ref()
        .filter(|p| p.name != PolicyName::Ovbench)
    {
        for r in &rec.runs {
            out.push_str(&format!(
                "\npolicy {} ({}): {}",
                p.name,
                r.label,
                ovbench_train::policy::summary(p.execution(r.recipe))
            ));
        }
    }
    for r in &rec.runs {
        for n in &r.notes {
            out.push_str(&format!("\nnote ({}): {n}", r.label));
        }
    }
    out
}
