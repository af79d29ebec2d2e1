//! `ovbench report`: SVG and PNG plots of step records beside the paper's figures.

use anyhow::Context;
use ovbench_gate::record::load_all;
use ovbench_plot::{report, PaperPoint, Published, PublishedRatio, Quantity, ReportOptions};
use ovbench_reference::{claims, metric, table4};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes step_time, memory, ratios and (with records at two or more batches of one \
workload) memory_vs_batch, each as .svg and .png, plus index.md, all at once (nothing is written if \
any fails). Records of different workloads are labelled apart, never pooled. Published ratios and \
Table 4 points come from the ovbench-reference claims manifest."
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

/// The paper's figures the charts set beside the measured ones.
fn published() -> anyhow::Result<Published> {
    let mut ratios = Vec::new();
    for (q, m) in [
        (Quantity::Time, metric::SCHEDULE_TIME_RATIO_OV2_OV1),
        (Quantity::PeakMemory, metric::PEAK_MEMORY_RATIO_OV2_OV1),
        (Quantity::Flops, metric::FLOPS_PER_IMAGE_RATIO_OV2_OV1),
    ] {
        for c in claims()?.iter().filter(|c| c.metric == m) {
            let Some(value) = c.published_value() else {
                continue;
            };
            ratios.push(PublishedRatio {
                quantity: q,
                setting: format!("{}@{}", c.setting.backbone, c.setting.resolution),
                value,
                band: c.tolerance.as_ref().map(|t| {
                    let b = t.band(value);
                    (b.lo, b.hi)
                }),
            });
        }
    }
    let t4 = table4()?;
    let memory = t4
        .rows
        .iter()
        .map(|row| PaperPoint {
            recipe: row.recipe.key().to_string(),
            setting: format!("{}@{}", row.backbone, row.resolution),
            per_chip_batch: row.per_chip_batch as f64,
            peak_gb: row.peak_memory_gb.filter(|_| !row.oom),
        })
        .collect();
    Ok(Published {
        ratios,
        memory,
        memory_cap_gb: t4.memory_cap_gb,
        memory_source: "Table 4, per TPU v4 chip".into(),
        hardware: "TPU v4 chip".into(),
        source:
            "OpenVision 2 paper Tables 3 and 4 (TPU v4), via the ovbench-reference claims manifest"
                .into(),
    })
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    ovbench_harness::io::check_writable(&args.out.join("index.md")).context("--out")?;
    let records: Vec<_> = load_all(&args.records)?
        .into_iter()
        .map(|r| (r.path, r.envelope))
        .collect();
    let r = report(
        &records,
        &published()?,
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
