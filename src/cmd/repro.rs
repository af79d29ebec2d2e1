//! `ovbench repro`: the paper's efficiency claims, one by one, with verdicts.

use anyhow::Context;
use ovbench_harness::io::OutputSet;
use ovbench_harness::{table, Record};
use ovbench_train::device::{DTypeArg, DeviceArg};
use ovbench_train::policy::PolicyName;
use ovbench_train::recipe::Remat;
use ovbench_train::repro::{self, Preset, ReproConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Presets: small (Ti/16 standing in for L/14 at the same patch counts), l14-224 \
and so400m-384 (the paper's backbones).\n\
Every claim is judged under each --policy (default: released and matched-bf16); the recipes' \
steps are alternated A B A B; see docs/policies-and-memory.md.\n\
Writes results/repro-<time>.json and .md unless --no-record."
)]
pub struct ReproArgs {
    /// small, l14-224 or so400m-384
    #[arg(long, default_value = "small")]
    pub preset: Preset,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Execution policies to judge every claim under, comma-separated: released,
    /// matched-bf16, matched-f32, ovbench
    #[arg(long, default_value = "released,matched-bf16", value_delimiter = ',')]
    pub policy: Vec<PolicyName>,
    /// Matmul precision of the ovbench policy: f32 (default), bf16 or f16
    #[arg(long)]
    pub dtype: Option<DTypeArg>,
    /// Per-device batch of the timed steps (memory is also measured at twice this)
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Measured steps per stage and recipe (alternated; 2 or more give an interval)
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Warm-up steps per stage and recipe
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Image-encoder recomputation of the ovbench policy: full (default) or none
    #[arg(long)]
    pub remat: Option<Remat>,
    /// Do not time OpenVision's periodic zero-shot evaluation (the wall-clock projection then
    /// equals the steps-alone one)
    #[arg(long)]
    pub no_eval_loop: bool,
    /// Kernels, as for `ovbench step --kernels` (fused: the fused CPU kernels, the portable
    /// ops on CUDA)
    #[arg(long, default_value = "fused")]
    pub kernels: ovbench_train::fused::Kernels,
    #[command(flatten)]
    pub engine: super::step::EngineArgs,
    /// Per-device memory cap for the fits/OOM claims and the largest batch
    #[arg(long, default_value = "32GB")]
    pub mem_cap: String,
    /// Seed of weights, inputs and masks
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads for matrix products (0: all)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Folder for the JSON record and its markdown report, or the record's .json path (the
    /// report is written beside it as .md)
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Do not write a record (the report is printed only)
    #[arg(long)]
    pub no_record: bool,
    /// No progress output
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: ReproArgs) -> anyhow::Result<ExitCode> {
    let cap = table::parse_bytes(&args.mem_cap).map_err(|e| anyhow::anyhow!("--mem-cap: {e}"))?;
    if !args.policy.contains(&PolicyName::Ovbench) && (args.dtype.is_some() || args.remat.is_some())
    {
        anyhow::bail!(
            "--dtype and --remat set the ovbench policy; add it to --policy, or let the other \
             policies set precision and recomputation per module"
        );
    }
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let defaults = ReproConfig::new(args.preset);
    let cfg = ReproConfig {
        device: args.device,
        policies: args.policy.clone(),
        dtype: args.dtype.unwrap_or(defaults.dtype),
        seed: args.seed,
        steps: args.steps,
        warmup: args.warmup,
        batch: args.batch,
        remat: args.remat.unwrap_or(defaults.remat),
        mem_cap_bytes: cap,
        threads: args.threads,
        kernels: args.kernels,
        eval_loop: !args.no_eval_loop,
        engine: args.engine.engine,
        compile: args.engine.compile,
        nproc: args.engine.nproc,
        ..defaults
    };
    cfg.validate().map_err(anyhow::Error::msg)?;
    if ovbench_harness::io::is_stdout(&args.out) {
        anyhow::bail!("--out: repro writes a record and a report; name a folder or a .json file");
    }
    let json = (!args.no_record).then(|| super::record_path(&args.out, "repro"));
    if let Some(p) = &json {
        ovbench_harness::io::check_writable(p)
            .context("--out: the record could not be written there")?;
    }
    if cfg.engine == ovbench_train::engine::EngineKind::Torch {
        super::step::configure_torch(&args.engine)?;
    }
    super::step::apply_threads(cfg.threads, cfg.ew_threads);
    ovbench_harness::alloc::retain_freed_memory();
    let report = repro::run(&cfg, &mut crate::progress::Dots { quiet: args.quiet })?;
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
