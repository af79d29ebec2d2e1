//! `ovbench report`: SVG and PNG plots of step records.

use ovbench_gate::view::load_step_views;
use ovbench_plot::{report, ReportOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes step_time, memory, ratios and (with records at two or more batches of one \
workload) memory_vs_batch, each as .svg and .png, plus index.md. Published ratios and Table 4 points \
come from the ovbench-reference claims manifest."
)]
pub struct ReportArgs {
    /// Step records, or folders of them
    #[arg(required = true, value_name = "RECORDS")]
    pub records: Vec<PathBuf>,
    /// Folder for the plots
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Memory of the measuring device (e.g. 80GiB), drawn as its cap on the memory-versus-batch chart
    #[arg(long, value_name = "SIZE", value_parser = ovbench_harness::table::parse_bytes)]
    pub cap: Option<u64>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (views, notes) = load_step_views(&args.records)?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    anyhow::ensure!(
        !views.is_empty(),
        "no step records among {:?}",
        args.records
    );
    let r = report(
        &views,
        &args.out,
        &ReportOptions {
            device_cap_bytes: args.cap.map(|c| c as f64),
        },
    )?;
    for f in &r.files {
        println!("wrote {}", f.display());
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}
