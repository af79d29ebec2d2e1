//! `ovbench check`: validate a results folder and say what is wrong with each record.

use ovbench_gate::check::{check_dir, CheckOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Checks every *.json below the folder: schema version, provenance (commit, clean \
tree, host, build), and for step records: warm-up excluded (warmup >= 1, no sample from a warm-up \
step), enough measured steps, seed recorded, per-step samples kept.\n\
Exit codes: 0 all records pass, 1 a record has a problem (or none was found), 2 the folder cannot be read."
)]
pub struct CheckArgs {
    /// Results folder (or a single record)
    #[arg(value_name = "RECORDS_DIR")]
    pub dir: PathBuf,
    /// Accept records made from a tree with uncommitted changes
    #[arg(long)]
    pub allow_dirty: bool,
    /// Fewest measured steps per recipe
    #[arg(long, default_value_t = 5)]
    pub min_steps: usize,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_dir(
        &args.dir,
        &CheckOptions {
            allow_dirty: args.allow_dirty,
            min_steps: args.min_steps,
        },
    )?;
    print!("{}", report.render());
    Ok(if report.failed() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
