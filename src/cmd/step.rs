//! `ovbench step` (being built: issue 2).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct StepArgs {}

pub fn run(_args: StepArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ovbench step is not built yet")
}
