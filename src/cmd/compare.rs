//! `ovbench compare`: one table across machines and runs, grouped by workload.

use anyhow::Context;
use ovbench_gate::compare::{compare, CompareOptions};
use ovbench_gate::view::load_step_views;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Rows: workload (recipe, model, resolution, batch) and metric; columns: hardware \
(GPU name on CUDA, else CPU model and threads). Repeated records of one workload on one machine are \
summarised as median (n runs, min–max). Projected full-schedule hours appear when a record carries them."
)]
pub struct CompareArgs {
    /// Step records, or folders of them
    #[arg(required = true, value_name = "RECORDS")]
    pub records: Vec<PathBuf>,
    /// Price of one device-hour: adds the cost of the full schedule
    #[arg(long, value_name = "PRICE")]
    pub price_per_hour: Option<f64>,
    /// Currency label for costs
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Also write the table as markdown to FILE
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
    let (views, notes) = load_step_views(&args.records)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    anyhow::ensure!(
        !views.is_empty(),
        "no step records among {:?}",
        args.records
    );
    let table = compare(
        &views,
        &CompareOptions {
            price_per_hour: args.price_per_hour,
            currency: args.currency.clone(),
        },
    );
    print!("{}", table.terminal());
    if let Some(p) = &args.markdown {
        ovbench_harness::write_atomic(p, table.markdown().as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
