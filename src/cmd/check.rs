//! `ovbench check`: validate a results folder and say what is wrong with each record.

use ovbench_gate::check::{check_dir, CheckOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Checks every *.json below the folder with the validator every reader uses: a schema \
this version reads (older layouts through the legacy reader), finite metrics of sane magnitude, \
provenance (commit, clean tree, command line, host, build), conditions that must hold (e.g. two \
engines computed the same function), and for timed metrics: a warm-up before the samples and at \
least --min-steps samples. Folders named `archive` are listed as skipped (check them directly to \
judge them); symbolic links inside the folder are not followed; names that are not regular files \
are errors.\n\
Exit codes: 0 all records pass, 1 a record has a problem (or none was found), 2 the folder cannot be read."
)]
pub struct CheckArgs {
    /// Results folder (or a single record)
    #[arg(value_name = "RECORDS_DIR")]
    pub dir: PathBuf,
    /// Accept records made from a tree with uncommitted changes
    #[arg(long)]
    pub allow_dirty: bool,
    /// Fewest samples of a timed metric
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
