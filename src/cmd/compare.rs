//! `ovbench compare`: one table across machines and runs, grouped by workload.

use anyhow::Context;
use ovbench_gate::compare::{compare, CompareOptions, DEFAULT_METRICS};
use ovbench_gate::record::load_all;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Rows: workload (the record kind and its whole workload key: model, \
resolution, batch, dtype, kernels, recomputation, engine, device, ...) and metric; columns: hardware \
(GPU name on CUDA, else CPU model and threads). Records whose workload keys differ in anything are \
separate rows, never pooled. Repeated records of one workload on one machine are summarised as median \
(n runs, min–max); a single timed metric as median [95 % CI].\n\
Any record kind can be compared (step, repro, score, eval). Projected full-schedule device-hours come \
from repro records; --price-per-hour adds their cost."
)]
pub struct CompareArgs {
    /// Records, or folders of them
    #[arg(required = true, value_name = "RECORDS")]
    pub records: Vec<PathBuf>,
    /// Price of one device-hour: adds the cost of the projected full schedule
    #[arg(long, value_name = "PRICE")]
    pub price_per_hour: Option<f64>,
    /// Currency label for costs
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Metrics to show, by name pattern (`*` matches anything; repeatable). Default: step time,
    /// throughput, peak memory, completion, projected hours and scores
    #[arg(long = "metric", value_name = "PATTERN")]
    pub metrics: Vec<String>,
    /// Show every metric of every record
    #[arg(long, conflicts_with = "metrics")]
    pub all_metrics: bool,
    /// Also write the table as markdown to FILE (- for standard output)
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = args.price_per_hour {
        anyhow::ensure!(
            p.is_finite() && p >= 0.0,
            "--price-per-hour must be a non-negative number, got {p}"
        );
    }
    if let Some(p) = &args.markdown {
        ovbench_harness::io::check_writable(p).context("--markdown")?;
    }
    let records = load_all(&args.records)?;
    anyhow::ensure!(!records.is_empty(), "no records among {:?}", args.records);
    let metrics = if args.all_metrics {
        vec!["*".to_string()]
    } else {
        args.metrics.clone()
    };
    let table = compare(
        &records,
        &CompareOptions {
            price_per_hour: args.price_per_hour,
            currency: args.currency.clone(),
            metrics,
        },
    );
    if table.rows.is_empty() {
        eprintln!(
            "note: no metric matched ({}); --all-metrics shows every metric",
            if args.metrics.is_empty() {
                DEFAULT_METRICS.join(", ")
            } else {
                args.metrics.join(", ")
            }
        );
    }
    print!("{}", table.terminal());
    if let Some(p) = &args.markdown {
        ovbench_harness::write_atomic(p, table.markdown().as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
