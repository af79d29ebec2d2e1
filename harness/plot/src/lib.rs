//! `ovbench report`: pictures of step records, readable at a glance (titles, units, legends).
//!
//! * `step_time`: median step time by recipe and workload, whiskers = 95 % interval.
//! * `memory`: peak memory by recipe and workload, whiskers = min–max over repeated records.
//! * `ratios`: measured OpenVision 2 / OpenVision ratios (step time, peak memory, forward
//!   FLOPs) beside the paper's, whose whiskers are the claim tolerance bands; the published
//!   numbers are handed in ([`Published`]), never held by this crate.
//! * `memory_vs_batch`: peak memory against batch when records at two or more batches of
//!   one workload exist, with the paper's Table 4 points and its 32 GB per-chip cap.
//!
//! Each chart is written as SVG and PNG. PNG text is drawn with an embedded DejaVu Sans
//! (assets/, Bitstream Vera license), so no system font library is needed.

mod charts;
mod font;
pub mod series;

pub use charts::{report, Report, ReportOptions};
pub use series::{PaperPoint, Published, PublishedRatio, Quantity};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot create {path}: {cause}")]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("drawing {path}: {message}")]
    Draw {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    Write(#[from] ovbench_harness::IoError),
    #[error("no step records to plot")]
    NoRecords,
    #[error("embedded font: {0}")]
    Font(String),
}
