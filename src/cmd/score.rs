//! `ovbench score` (being built: issue 3).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ScoreArgs {}

pub fn run(_args: ScoreArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("ovbench score is not built yet")
}
