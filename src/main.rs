//! `ovbench`: check OpenVision 2's training-efficiency and downstream claims on your own hardware.
//!
//! A thin binary: each subcommand parses its arguments and calls into the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;
mod progress;

/// Exact host allocation counts for every record (peak bytes are deterministic).
#[global_allocator]
static ALLOC: ovbench_harness::CountingAlloc = ovbench_harness::CountingAlloc;

#[derive(Parser)]
#[command(
    name = "ovbench",
    version,
    about = "Reproduce OpenVision 2's efficiency and downstream claims on your own hardware",
    long_about = "ovbench replays one full training step (forward, backward, AdamW) of OpenVision \
                  (contrastive + captioning) and OpenVision 2 (captioning only, masked visual tokens), \
                  measures time and memory, scores downstream predictions as lmms-eval does, and writes \
                  every result as a JSON record with the provenance needed to repeat it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time one training step of each recipe (default: a small preset that runs in about a minute)
    Step(cmd::step::StepArgs),
    /// LLaVA-style TextVQA / ChartQA / OCRBench evaluation with a chosen vision encoder
    Eval(cmd::eval::EvalArgs),
    /// Write tiny random-weight models and datasets in the real file layouts (for tests)
    #[command(hide = true)]
    EvalFixture(cmd::eval::FixtureArgs),
    /// Check the paper's efficiency claims one by one: published, measured, verdict
    Repro(cmd::repro::ReproArgs),
    /// The analytic memory model term by term: against the allocator (--check), Table 4 (--table4)
    Memory(cmd::memory::MemoryArgs),
    /// Score TextVQA / ChartQA / OCRBench predictions exactly as the reference toolkits do
    Score(cmd::score::ScoreArgs),
    /// Gate a record against a baseline: exit 0 no regression, 1 regression, 2 unusable input
    Gate(cmd::gate::GateArgs),
    /// One table of step records across machines and runs, grouped by workload
    Compare(cmd::compare::CompareArgs),
    /// Plots (SVG and PNG) of step records: time, memory, ratios vs the paper, memory vs batch
    Report(cmd::report::ReportArgs),
    /// Validate a results folder: schema, warm-up, steps, seeds, environment, clean tree
    Check(cmd::check::CheckArgs),
}

fn main() -> ExitCode {
    ovbench_harness::CountingAlloc::activate();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Step(a) => cmd::step::run(a),
        Command::Score(a) => cmd::score::run(a),
        Command::Repro(a) => cmd::repro::run(a),
        Command::Memory(a) => cmd::memory::run(a),
        Command::Eval(a) => cmd::eval::run(a),
        Command::EvalFixture(a) => cmd::eval::fixture(a),
        Command::Gate(a) => cmd::gate::run(a),
        Command::Compare(a) => cmd::compare::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Check(a) => cmd::check::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
