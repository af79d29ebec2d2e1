//! `ovbench repro`: the paper's efficiency claims, one by one, with verdicts.

use anyhow::Context;
use ovbench_harness::io::OutputSet;
use ovbench_harness::{record, table, Record};
use ovbench_train::device::{DTypeArg, DeviceArg};
use ovbench_train::recipe::{Recipe, Remat};
use ovbench_train::repro::{self, Preset, ReproConfig};
use ovbench_train::step::Progress;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Presets: small (Ti/16 standing in for L/14 at the same patch counts; a few \
minutes on 2 CPU cores), l14-224 and so400m-384 (the paper's backbones; meant for a GPU).\n\
Writes results/repro-<time>.json and .md unless --no-record."
)]
pub struct ReproArgs {
    /// small, l14-224 or so400m-384
    #[arg(long, default_value = "small")]
    pub preset: Preset,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Matmul precision: f32, bf16 or f16
    #[arg(long, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Per-device batch of the timed steps (memory is also measured at twice this)
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Measured steps per stage and recipe
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Warm-up steps per stage and recipe
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Image-encoder activation recomputation (the released recipe uses full)
    #[arg(long, default_value = "full")]
    pub remat: Remat,
    /// Kernels, as for `ovbench step --kernels` (fused: the fused CPU kernels, the portable
    /// ops on CUDA)
    #[arg(long, default_value = "fused")]
    pub kernels: ovbench_train::fused::Kernels,
    /// What runs each step: candle or torch (see `ovbench step --engine`)
    #[arg(long, default_value = "candle")]
    pub engine: ovbench_train::engine::EngineKind,
    /// torch.compile every step (torch engine)
    #[arg(long)]
    pub compile: bool,
    /// Processes per step under torchrun, each with --batch images (torch engine)
    #[arg(long, default_value_t = 1)]
    pub nproc: usize,
    /// Python interpreter with torch (torch engine; default: $OVBENCH_PYTHON, else
    /// scripts/pyenv.sh's cached environment)
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Seconds the torch engine may go without reporting before it is killed
    #[arg(long, default_value_t = 1800.0)]
    pub engine_timeout: f64,
    /// Per-device memory cap for the fits/OOM claims and the max-batch search
    #[arg(long, default_value = "32GB")]
    pub mem_cap: String,
    /// Largest batch that the real-step max-batch search (a bisection started at the memory
    /// model's prediction) may run
    #[arg(long, default_value_t = 8)]
    pub confirm_limit: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for matrix products (0: all)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Folder for the JSON and markdown reports
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    #[arg(long)]
    pub no_record: bool,
    #[arg(long, short)]
    pub quiet: bool,
}

struct Dots(bool);
impl Progress for Dots {
    fn recipe_started(&mut self, r: Recipe, total: usize) {
        if !self.0 {
            eprint!("{} ({total} steps) ", r.label());
        }
    }
    fn step_done(&mut self, _: Recipe, step: usize, _: bool, _: f64, _: f64) {
        if !self.0 {
            eprint!(".");
            let _ = step;
        }
    }
}

pub fn run(args: ReproArgs) -> anyhow::Result<ExitCode> {
    let cap = table::parse_bytes(&args.mem_cap).map_err(|e| anyhow::anyhow!("--mem-cap: {e}"))?;
    let cfg = ReproConfig {
        device: args.device,
        dtype: args.dtype,
        seed: args.seed,
        steps: args.steps,
        warmup: args.warmup,
        batch: args.batch,
        remat: args.remat,
        mem_cap_bytes: cap,
        confirm_limit: args.confirm_limit,
        threads: args.threads,
        kernels: args.kernels,
        engine: args.engine,
        compile: args.compile,
        nproc: args.nproc,
        ..ReproConfig::new(args.preset)
    };
    cfg.validate().map_err(anyhow::Error::msg)?;
    let json = (!args.no_record).then(|| record::default_path(&args.out, "repro"));
    if let Some(p) = &json {
        ovbench_harness::io::check_writable(p)
            .context("--out: the record could not be written there")?;
    }
    if cfg.engine == ovbench_train::engine::EngineKind::Torch {
        super::step::configure_torch(args.python.as_deref(), args.engine_timeout, 1.0)?;
    }
    super::step::apply_threads(cfg.threads, cfg.ew_threads);
    ovbench_harness::alloc::retain_freed_memory();
    let report = repro::run(&cfg, &mut Dots(args.quiet))?;
    if !args.quiet {
        eprintln!();
    }
    let md = repro::to_markdown(&report);
    println!("{md}");
    if let Some(json) = json {
        // The record and its markdown, both or neither.
        let md_path = json.with_extension("md");
        let mut set = OutputSet::default();
        set.add(&md_path, md.into_bytes());
        set.add(&json, Record::new(super::provenance(), report).to_json());
        set.commit()
            .context("writing the repro record and its report")?;
        println!("record: {}\nreport: {}", json.display(), md_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
