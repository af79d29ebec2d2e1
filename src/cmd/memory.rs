//! `ovbench memory`: the analytic memory model term by term, checked against the counting
//! allocator (`--check`) or set beside the paper's Table 4 (`--table4`).

use anyhow::Context;
use ovbench_harness::table::{self, bytes};
use ovbench_harness::Record;
use ovbench_train::device::DTypeArg;
use ovbench_train::footprint::{self, Checked, MemoryReport, Setting};
use ovbench_train::fused::Kernels;
use ovbench_train::policy::PolicyName;
use ovbench_train::recipe::{Recipe, Remat};
use ovbench_train::step::{self, Silent, StepConfig};
use ovbench_train::ModelName;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
ovbench memory --policy released --model L/14 --res 224 --batch 2,4\n  \
ovbench memory --policy matched-f32 --model L/14 --res 224 --batch 2,4 --check   # runs real steps\n  \
ovbench memory --table4 --policy released\n\
See docs/policies-and-memory.md for the model and its liveness rule.")]
pub struct MemoryArgs {
    /// Execution policy: released, matched-bf16, matched-f32 or ovbench
    #[arg(long, default_value = "released")]
    pub policy: PolicyName,
    /// Image encoder: Ti/16, S/16, B/16, L/14, So400m/14, H/14, g/14
    #[arg(long, default_value = "Ti/16")]
    pub model: ModelName,
    /// Image resolution in pixels (a multiple of the patch size)
    #[arg(long, default_value_t = 112)]
    pub res: usize,
    /// Per-device batches, comma-separated
    #[arg(long, default_value = "2,4", value_delimiter = ',')]
    pub batch: Vec<usize>,
    /// Which recipe(s): ov1, ov2 or both
    #[arg(long, default_value = "both", value_parser = ["ov1", "ov2", "both"])]
    pub recipe: String,
    /// fused or portable (the model does not cover composed)
    #[arg(long, default_value = "fused")]
    pub kernels: Kernels,
    /// Image-encoder recomputation of the ovbench policy (other policies set it per module)
    #[arg(long)]
    pub remat: Option<Remat>,
    /// Run one real step per recipe and batch and set the counting allocator's peaks beside the
    /// model's (a tiny warm-up step first, so that buffers a process allocates once are not
    /// counted)
    #[arg(long)]
    pub check: bool,
    /// Predict every row of the paper's Table 4 under the policy, term by term, and the
    /// largest per-chip batch under --cap
    #[arg(long)]
    pub table4: bool,
    /// Per-chip memory cap for --table4 (the paper's TPU v4: 32 GB)
    #[arg(long, default_value = "32GB")]
    pub cap: String,
    /// Also write the predictions (and checks) as a JSON record here
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// CPU threads for the checks' matrix products (0: all)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

fn pct(model: u64, measured: u64) -> String {
    format!("{:+.2} %", 100.0 * (model as f64 / measured as f64 - 1.0))
}

/// The terms of one peak as table rows.
fn terms(f: &footprint::Peak) -> Vec<Vec<String>> {
    let mut t: Vec<_> = f.terms.iter().filter(|t| t.bytes > 0).collect();
    t.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    t.iter()
        .map(|t| vec![format!("  {}", t.label), bytes(t.bytes), gb(t.bytes)])
        .collect()
}

pub fn run(args: MemoryArgs) -> anyhow::Result<ExitCode> {
    let cap = table::parse_bytes(&args.cap).map_err(|e| anyhow::anyhow!("--cap: {e}"))?;
    if let Some(p) = &args.json {
        ovbench_harness::io::check_writable(p)
            .context("--json: the record could not be written there")?;
    }
    if args.policy != PolicyName::Ovbench && args.remat.is_some() {
        anyhow::bail!(
            "--remat sets the ovbench policy; --policy {} sets recomputation per module",
            args.policy
        );
    }
    if args.batch.is_empty() || args.batch.contains(&0) {
        anyhow::bail!("--batch: give one or more batches of at least 1");
    }
    let recipes = match args.recipe.as_str() {
        "ov1" => vec![Recipe::Ov1],
        "ov2" => vec![Recipe::Ov2],
        _ => vec![Recipe::Ov1, Recipe::Ov2],
    };
    if recipes.contains(&Recipe::Ov1) && args.batch.iter().any(|&b| b < 2) {
        anyhow::bail!(
            "--batch must be at least 2 for OpenVision: the contrastive loss needs negatives"
        );
    }
    let base = StepConfig {
        model: args.model,
        resolution: args.res,
        policy: args.policy,
        kernels: args.kernels,
        remat: args.remat.unwrap_or_default(),
        dtype: DTypeArg::F32,
        threads: args.threads,
        steps: 1,
        warmup: 0,
        ..StepConfig::small()
    };
    let mcfg = base.validate().map_err(anyhow::Error::msg)?;
    let policy = base.resolved_policy();
    let ovbench = args.policy == PolicyName::Ovbench;
    super::step::apply_threads(args.threads, 1);
    ovbench_harness::alloc::retain_freed_memory();
    if args.check {
        // Buffers a process allocates once (matrix-product packing, thread pool) go to the
        // baseline of what follows.
        let warm = StepConfig {
            model: "Ti/16".parse().expect("valid"),
            resolution: 32,
            batch: 2,
            policy: args.policy,
            ..base.clone()
        };
        step::run(&warm, &mut Silent).context("the warm-up step")?;
    }
    let threads = footprint::kernel_threads();
    let mut rows = Vec::new();
    let mut out = format!(
        "memory model: {} at {} px, policy {} ({}), --kernels {}\n",
        args.model,
        args.res,
        args.policy,
        policy.description,
        ovbench_train::records::key(&args.kernels)
    );
    for &batch in &args.batch {
        let measured = if args.check {
            let cfg = StepConfig {
                batch,
                recipes: recipes.clone(),
                ..base.clone()
            };
            eprintln!("running one step per recipe at batch {batch} …");
            Some(step::run(&cfg, &mut Silent)?)
        } else {
            None
        };
        for &recipe in &recipes {
            let s = Setting {
                recipe,
                cfg: &mcfg,
                batch,
                exec: policy.execution(recipe),
                kernels: args.kernels,
                text_one_batch: !ovbench,
                portable_off_f32: !ovbench,
                threads,
            };
            let f = footprint::predict(&s)?;
            let run = measured
                .as_ref()
                .and_then(|m| m.runs.iter().find(|r| r.recipe == recipe));
            let c = Checked {
                measured_forward_peak_bytes: run.map(|r| r.memory.forward_peak_over_baseline_bytes),
                measured_step_peak_bytes: run.map(|r| r.memory.peak_over_baseline_bytes),
                model: f,
            };
            out.push_str(&render(&c));
            rows.push(c);
        }
    }
    let t4 = if args.table4 {
        let t = footprint::table4(&policy, args.kernels, cap)?;
        out.push_str(&render_table4(&t));
        Some(t)
    } else {
        None
    };
    println!("{out}");
    if let Some(path) = &args.json {
        let rec = MemoryReport {
            policy,
            model: args.model,
            resolution: args.res,
            kernels: args.kernels,
            rows,
            table4: t4,
        };
        let json = Record::new(super::provenance(), rec).to_json();
        ovbench_harness::io::write_atomic(path, &json).context("writing the memory record")?;
        println!("record: {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn render(c: &Checked) -> String {
    let f = &c.model;
    let mut rows = vec![vec![
        format!("{} at batch {}", f.recipe.label(), f.batch),
        "bytes".to_string(),
        "GB".to_string(),
    ]];
    rows.push(vec![
        format!("step peak (model), at {}", f.step.at),
        bytes(f.step.bytes),
        gb(f.step.bytes),
    ]);
    rows.extend(terms(&f.step));
    if let Some(m) = c.measured_step_peak_bytes {
        rows.push(vec![
            "step peak (counting allocator)".into(),
            bytes(m),
            format!("model {}", pct(f.step.bytes, m)),
        ]);
    }
    rows.push(vec![
        "forward peak (model)".into(),
        bytes(f.forward.bytes),
        gb(f.forward.bytes),
    ]);
    if let Some(m) = c.measured_forward_peak_bytes {
        rows.push(vec![
            "forward peak (counting allocator)".into(),
            bytes(m),
            format!("model {}", pct(f.forward.bytes, m)),
        ]);
    }
    for l in &f.layers {
        rows.push(vec![
            format!(
                "  per {} block (x{}{}): f32 / bf16 / probabilities / weight copies / checkpoint",
                match l.part {
                    footprint::Part::ImageEncoder => "image-encoder",
                    footprint::Part::TextTower => "text-tower",
                    footprint::Part::Decoder => "decoder",
                    footprint::Part::Head => "head",
                },
                l.blocks,
                if l.recomputed { ", recomputed" } else { "" }
            ),
            format!(
                "{} / {} / {} / {} / {}",
                bytes(l.f32_bytes),
                bytes(l.bf16_bytes),
                bytes(l.attention_probs_bytes),
                bytes(l.weight_copy_bytes),
                bytes(l.checkpoint_bytes)
            ),
            String::new(),
        ]);
    }
    format!("\n{}\n", table::render(rows))
}

fn render_table4(t: &footprint::Table4Prediction) -> String {
    let mut s = format!(
        "\nTable 4 (peak memory per chip, TPU v4-64) beside the replay's memory model under policy {}; \
         per-chip batch = global / 32 chips (the unverified reading); GB = 1e9 bytes; cap {}\n",
        t.policy,
        gb(t.cap_bytes)
    );
    let mut rows = vec![vec![
        "row".to_string(),
        "per chip".into(),
        "published".into(),
        "model".into(),
        "model / published".into(),
        "fits cap".into(),
    ]];
    for r in &t.rows {
        rows.push(vec![
            r.id.clone(),
            r.per_chip_batch.to_string(),
            match r.published_gb {
                Some(g) => format!("{g:.1} GB"),
                None => "OOM".into(),
            },
            gb(r.predicted.step.bytes),
            r.published_gb
                .map(|g| format!("{:.2}", r.predicted.step.bytes as f64 / 1e9 / g))
                .unwrap_or_else(|| "-".into()),
            if r.predicted_fits { "yes" } else { "no" }.into(),
        ]);
    }
    s.push_str(&table::render(rows));
    s.push('\n');
    for r in &t.rows {
        let mut rows = vec![vec![
            format!(
                "{} ({} at {} px, {} per chip), step peak at {}",
                r.id,
                r.measured_model,
                r.measured_resolution,
                r.per_chip_batch,
                r.predicted.step.at
            ),
            "GB".to_string(),
        ]];
        let mut terms: Vec<_> = r
            .predicted
            .step
            .terms
            .iter()
            .filter(|t| t.bytes > 0)
            .collect();
        terms.sort_by_key(|t| std::cmp::Reverse(t.bytes));
        for t in terms {
            rows.push(vec![
                format!("  {}", t.label),
                format!("{:.2}", t.bytes as f64 / 1e9),
            ]);
        }
        rows.push(vec![
            "  total (model)".into(),
            format!("{:.2}", r.predicted.step.bytes as f64 / 1e9),
        ]);
        rows.push(vec![
            "  published".into(),
            r.published_gb
                .map(|g| format!("{g:.1}"))
                .unwrap_or_else(|| "OOM".into()),
        ]);
        s.push_str(&table::render(rows));
        s.push('\n');
    }
    for (b, r, n) in &t.max_batch {
        s.push_str(&format!(
            "largest per-chip batch under {}: {} {}: {n}\n",
            gb(t.cap_bytes),
            b,
            r.label()
        ));
    }
    s
}
