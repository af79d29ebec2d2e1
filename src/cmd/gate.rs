//! `ovbench gate`: compare a record against a baseline, metric by metric, with an exit code.

use anyhow::Context;
use ovbench_gate::config::{GateConfig, Only};
use ovbench_gate::output;
use ovbench_gate::{confirm, gate, GateReport, LoadedRecord};
use ovbench_harness::io::OutputSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 no regression, 1 regression (or a changed deterministic metric), \
2 unusable input (unreadable record, different configuration, missing metric).\n\n\
Deterministic metrics (parameters, FLOPs, kept tokens, allocator peak bytes, scores) must match \
exactly or within --tolerance. Timed metrics regress only when the whole 95 % bootstrap interval of \
median(current) / median(baseline) lies above 1 + --threshold; \"inconclusive\" when it straddles.\n\n\
Confirming rerun: --rerun-cmd 'ovbench step --out {out}' runs the command once (through sh -c, with \
{out} and $OVBENCH_RERUN_OUT set to a temporary record path) when a timed metric is a regression or \
inconclusive, and gates that record too: a regression stands only if the rerun shows it again.\n\n\
Example CI gate on deterministic metrics only:\n  \
ovbench gate --baseline results/baseline/step-default.json --current /tmp/step.json --only deterministic\n\n\
A folder as --baseline: the record in it of the same kind and workload measured on the same hardware \
(the record's hardware label) is the baseline. Allocator peaks depend on the CPU (the matrix kernels \
size their packing buffers by its caches), so with no baseline from this hardware the gate refuses \
(exit 2), unless --other-hardware-tolerance lets it gate memory metrics against another machine's \
baseline within that relative tolerance (every other metric stays exact)."
)]
pub struct GateArgs {
    /// The baseline record, or a folder of baselines (the one measured on this hardware is used)
    #[arg(long, value_name = "FILE|DIR")]
    pub baseline: PathBuf,
    /// With a folder of baselines and none from this hardware: use another's, with memory
    /// metrics gated within this relative tolerance (e.g. 0.01)
    #[arg(long, value_name = "FRACTION")]
    pub other_hardware_tolerance: Option<f64>,
    /// The record to judge
    #[arg(long, value_name = "FILE")]
    pub current: PathBuf,
    /// Gate configuration (TOML): defaults and per-metric overrides
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which metrics to gate: all, deterministic or timed (overrides the config)
    #[arg(long, value_name = "WHICH")]
    pub only: Option<Only>,
    /// Timed metrics: regression threshold as a fraction, e.g. 0.05 (overrides the config default)
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Deterministic metrics: allowed relative change, e.g. 0.001 (overrides the config default)
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// A workload key allowed to differ (model, resolution, batch, kernels, ...); repeatable
    #[arg(long = "accept-diff", value_name = "KEY")]
    pub accept_diff: Vec<String>,
    /// Fail (exit 1) on inconclusive timed metrics too
    #[arg(long)]
    pub fail_on_inconclusive: bool,
    /// Write a markdown summary (for a pull-request comment) to FILE
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write github-action-benchmark `customSmallerIsBetter` JSON (times, bytes, FLOPs, counts) to FILE
    #[arg(long, value_name = "FILE")]
    pub gab_smaller: Option<PathBuf>,
    /// Write github-action-benchmark `customBiggerIsBetter` JSON (scores) to FILE
    #[arg(long, value_name = "FILE")]
    pub gab_bigger: Option<PathBuf>,
    /// Write the full verdicts as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Command that writes a fresh current record to {out}, run once to confirm a timed regression
    #[arg(long, value_name = "CMD")]
    pub rerun_cmd: Option<String>,
    /// Longest the rerun command may take, in seconds; it is killed after that
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub rerun_timeout: u64,
    /// Print nothing but errors
    #[arg(long, short)]
    pub quiet: bool,
}

fn rerun(
    cmd: &str,
    timeout: std::time::Duration,
    baseline: &LoadedRecord,
    cfg: &GateConfig,
    accept: &[String],
) -> anyhow::Result<GateReport> {
    let dir = tempfile::tempdir().context("creating a folder for the rerun record")?;
    let out = dir.path().join("rerun.json");
    let line = cmd.replace("{out}", &out.display().to_string());
    eprintln!("confirming rerun: {line}");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("OVBENCH_RERUN_OUT", &out)
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the rerun command `{line}`"))?;
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().context("waiting for the rerun command")? {
            break s;
        }
        if started.elapsed() > timeout {
            // The whole process group: sh and whatever it started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            anyhow::bail!(
                "the rerun command `{line}` ran past --rerun-timeout {} s and was killed",
                timeout.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    anyhow::ensure!(
        status.success(),
        "the rerun command `{line}` failed ({status})"
    );
    let rec = LoadedRecord::load(&out)
        .context("the rerun command did not write a usable record to {out}")?;
    Ok(gate(baseline, &rec, cfg, accept)?)
}

/// The baseline: the file given, or from a folder the record of the current record's kind,
/// workload and hardware; with none from this hardware, another's under
/// `--other-hardware-tolerance` (returned with its hardware and the tolerance).
fn pick_baseline(
    args: &GateArgs,
    current: &LoadedRecord,
) -> anyhow::Result<(LoadedRecord, Option<(String, f64)>)> {
    if !args.baseline.is_dir() {
        anyhow::ensure!(
            args.other_hardware_tolerance.is_none(),
            "--other-hardware-tolerance needs a folder of baselines as --baseline"
        );
        return Ok((LoadedRecord::load(&args.baseline)?, None));
    }
    let all = ovbench_gate::record::load_all(std::slice::from_ref(&args.baseline))?;
    let same: Vec<LoadedRecord> = all
        .into_iter()
        .filter(|b| b.kind() == current.kind() && b.envelope.workload == current.envelope.workload)
        .collect();
    anyhow::ensure!(
        !same.is_empty(),
        "no record in {} has the current record's kind and workload ({})",
        args.baseline.display(),
        current.envelope.workload_line()
    );
    let hw = &current.envelope.hardware;
    if let Some(b) = same.iter().find(|b| &b.envelope.hardware == hw) {
        return Ok((b.clone(), None));
    }
    let others: Vec<&str> = same.iter().map(|b| b.envelope.hardware.as_str()).collect();
    match args.other_hardware_tolerance {
        Some(t) => {
            let b = same[0].clone();
            let their = b.envelope.hardware.clone();
            Ok((b, Some((their, t))))
        }
        None => anyhow::bail!(
            "no baseline in {} was measured on this hardware ({hw}); there are baselines from: {}. \
             Allocator peaks depend on the CPU: record one here, or pass --other-hardware-tolerance",
            args.baseline.display(),
            others.join("; ")
        ),
    }
}

pub fn run(args: GateArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(p) => GateConfig::load(p)?,
        None => GateConfig::default(),
    };
    if let Some(o) = args.only {
        cfg.defaults.only = o;
    }
    if let Some(t) = args.threshold {
        cfg.defaults.threshold = t;
    }
    if let Some(t) = args.tolerance {
        cfg.defaults.tolerance = t;
    }
    cfg.defaults.fail_on_inconclusive |= args.fail_on_inconclusive;
    cfg.validate("command line (--threshold / --tolerance)")?;

    anyhow::ensure!(
        args.rerun_timeout > 0,
        "--rerun-timeout must be at least 1 second"
    );
    let outputs: Vec<&Path> = [
        &args.markdown,
        &args.gab_smaller,
        &args.gab_bigger,
        &args.json,
    ]
    .into_iter()
    .flatten()
    .map(PathBuf::as_path)
    .collect();
    for p in &outputs {
        ovbench_harness::io::check_writable(p)?;
    }
    let current = LoadedRecord::load(&args.current)?;
    let (baseline, other_hw) = pick_baseline(&args, &current)?;
    if let Some((hw, tol)) = &other_hw {
        // Exact gating of bytes across CPUs would fail on cache-size-dependent buffers alone.
        cfg.metrics.insert(
            "*memory*".into(),
            ovbench_gate::config::Override {
                tolerance: Some(*tol),
                ..Default::default()
            },
        );
        cfg.validate("--other-hardware-tolerance")?;
        eprintln!(
            "note: no baseline from this hardware ({}); gating against {} (measured on {hw}) with memory metrics within ±{:.2} %",
            current.envelope.hardware,
            baseline.path.display(),
            tol * 100.0
        );
    }
    let mut report = gate(&baseline, &current, &cfg, &args.accept_diff)?;
    if let Some((hw, tol)) = &other_hw {
        report.notes.push(format!(
            "baseline measured on other hardware ({hw}): memory metrics gated within ±{:.2} %",
            tol * 100.0
        ));
    }
    if let Some(cmd) = &args.rerun_cmd {
        if report.needs_confirmation() {
            let timeout = std::time::Duration::from_secs(args.rerun_timeout);
            let second = rerun(cmd, timeout, &baseline, &cfg, &args.accept_diff)?;
            report = confirm(report, &second);
        }
    }

    if !args.quiet {
        print!("{}", output::terminal(&report));
    }
    // Every output or none.
    let mut set = OutputSet::default();
    if let Some(p) = &args.markdown {
        set.add(p, output::markdown(&report).into_bytes());
    }
    for (path, bigger) in [(&args.gab_smaller, false), (&args.gab_bigger, true)] {
        if let Some(p) = path {
            let entries = output::github_action_benchmark(&report, bigger);
            set.add(p, serde_json::to_vec_pretty(&entries)?);
        }
    }
    if let Some(p) = &args.json {
        set.add(p, serde_json::to_vec_pretty(&report)?);
    }
    set.commit().context("writing the gate's outputs")?;
    let outcome = report.outcome();
    if outcome == ovbench_gate::Outcome::Unusable {
        eprintln!("error: unusable comparison: a baseline metric is missing from the current record, or nothing was compared");
    }
    Ok(ExitCode::from(outcome.exit_code()))
}
