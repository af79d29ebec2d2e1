//! `ovbench score`: rescore TextVQA / ChartQA / OCRBench predictions exactly as a reference
//! toolkit does, with uncertainty, and compare two prediction sets (`--paired`).

use anyhow::{bail, Context};
use ovbench_harness::io::OutputSet;
use ovbench_harness::{record, table, Record};
use ovbench_score::readers::{self, ReadOptions};
use ovbench_score::record::{InputFile, ScoreRecord, ScoreTiming};
use ovbench_score::{Compat, MatchPolicy, Report, Task};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(
    after_help = "Compat labels: textvqa: lmms-eval (default), llava, vlmevalkit, vlmevalkit<2025-05-13, \
vqa-official, vqa-official<2021, vlmevalkit+xlsx; chartqa: lmms-eval, vlmevalkit, vlmevalkit<2025-09-01, pix2struct, \
qwen-vl, vlmevalkit+xlsx; ocrbench: lmms-eval, official, vlmevalkit, lmms-eval@v0.7.2, lmms-eval<=v0.7.1, vlmevalkit+xlsx."
)]
pub struct ScoreArgs {
    /// Benchmark: textvqa, chartqa or ocrbench
    #[arg(long)]
    pub task: String,
    /// Annotation file(s) or a folder: TextVQA_0.5.1_val.json, ChartQA test_human.json +
    /// test_augmented.json, OCRBench.json, a VLMEvalKit .tsv, or lmms-eval .parquet shards
    #[arg(long, required = true, num_args = 1..)]
    pub annotations: Vec<PathBuf>,
    /// Predictions: .jsonl ({question_id, prediction} or an lmms-eval samples log), a VLMEvalKit
    /// .xlsx / .tsv, or an official OCRBench result .json
    #[arg(long, conflicts_with = "paired", required_unless_present = "paired")]
    pub predictions: Option<PathBuf>,
    /// Compare two prediction files on the same questions (B minus A)
    #[arg(long, num_args = 2, value_names = ["P1", "P2"])]
    pub paired: Option<Vec<PathBuf>>,
    /// Equivalence margin for --paired, as a score fraction (0.01 = 1 point)
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    pub margin: f64,
    /// Toolkit behaviour to reproduce
    #[arg(long, default_value = "lmms-eval")]
    pub compat: String,
    /// Folder for the JSON record and the per-item CSV
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Keep the first of duplicate predictions and count the rest (default: error)
    #[arg(long)]
    pub allow_duplicates: bool,
    /// Count and skip predictions for ids absent from the annotations (default: error)
    #[arg(long)]
    pub allow_unknown: bool,
}

pub fn run(args: ScoreArgs) -> anyhow::Result<ExitCode> {
    let task = Task::parse(&args.task)?;
    let compat = Compat::parse(task, &args.compat)?;
    let policy = MatchPolicy {
        allow_duplicates: args.allow_duplicates,
        allow_unknown: args.allow_unknown,
    };
    let stem = format!("score-{task}");
    let json_path = record::default_path(&args.out, &stem);
    let csv_path = json_path.with_extension("items.csv");
    for p in [&json_path, &csv_path] {
        ovbench_harness::io::check_writable(p).context("--out")?;
    }
    let started = std::time::Instant::now();
    let ann = readers::read_annotations(task, &args.annotations, &ReadOptions::default())?;

    if let Some(pair) = &args.paired {
        if !(args.margin > 0.0 && args.margin.is_finite()) {
            bail!(
                "--margin must be a positive number (a score fraction, 0.01 = 1 point), got {}",
                args.margin
            );
        }
        let mut inputs = annotation_entries(&ann)?;
        let mut reports = Vec::new();
        for p in pair {
            let preds = readers::read_predictions(p)?;
            inputs.push(input_entry("predictions", p, preds.format)?);
            reports.push(ovbench_score::score(task, compat, &ann, &preds, policy)?);
        }
        let (a, b) = (&reports[0], &reports[1]);
        let paired = ovbench_score::paired_report(a, b, args.margin)?;
        print_report("A", &pair[0], a);
        print_report("B", &pair[1], b);
        print_paired(&paired);
        let rec = ScoreRecord::paired(a, b, &paired, inputs, file_name(&csv_path));
        write_outputs(
            &json_path,
            &csv_path,
            ovbench_score::paired_items_csv(a, b),
            rec,
        )?;
        println!(
            "record: {}\nitems:  {}",
            json_path.display(),
            csv_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let pred_path = args
        .predictions
        .as_ref()
        .context("--predictions or --paired is required")?;
    let preds = readers::read_predictions(pred_path)?;
    let read_s = started.elapsed().as_secs_f64();
    let report = ovbench_score::score(task, compat, &ann, &preds, policy)?;
    let score_s = started.elapsed().as_secs_f64() - read_s;
    // Reading + scoring only, as timed on the lmms-eval side: hashing the inputs, collecting
    // provenance and writing the results are bookkeeping and come after.
    let mut inputs = annotation_entries(&ann)?;
    inputs.push(input_entry("predictions", pred_path, preds.format)?);
    print_report("", pred_path, &report);
    println!(
        "time: read {:.1} ms, score {:.1} ms",
        1e3 * read_s,
        1e3 * score_s
    );
    let rec = ScoreRecord::single(
        &report,
        inputs,
        ScoreTiming {
            read: read_s,
            score: score_s,
        },
        file_name(&csv_path),
    );
    write_outputs(&json_path, &csv_path, report.items_csv(), rec)?;
    println!(
        "record: {}\nitems:  {}",
        json_path.display(),
        csv_path.display()
    );
    // The process ends here: freeing the ~10^5 small strings of the annotations, predictions
    // and per-item scores one by one would only delay the exit (about 3 ms for TextVQA val).
    std::mem::forget((ann, preds, report));
    Ok(ExitCode::SUCCESS)
}

fn annotation_entries(ann: &ovbench_score::Annotations) -> anyhow::Result<Vec<InputFile>> {
    ann.files
        .iter()
        .map(|f| input_entry("annotations", f, ann.format))
        .collect()
}

fn input_entry(role: &str, path: &Path, format: &str) -> anyhow::Result<InputFile> {
    Ok(InputFile {
        role: role.into(),
        path: path.display().to_string(),
        format: format.into(),
        sha256: record::sha256_file(path)?,
    })
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// The items CSV and the record, both or neither: a CSV without its record looks like a result.
fn write_outputs(json: &Path, csv: &Path, items: String, rec: ScoreRecord) -> anyhow::Result<()> {
    let rec = Record::new(crate::cmd::provenance(), rec);
    let mut set = OutputSet::default();
    set.add(csv, items.into_bytes());
    set.add(json, rec.to_json());
    set.commit()?;
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

fn print_report(tag: &str, pred: &Path, r: &Report) {
    let title = if tag.is_empty() {
        String::new()
    } else {
        format!("[{tag}] ")
    };
    println!(
        "{title}{} · {} · {} ({})",
        r.task,
        r.compat,
        pred.display(),
        r.scorer_version
    );
    let mut rows = vec![vec!["".to_string(), "value".to_string()]];
    rows.push(vec![
        format!("{} ({})", r.toolkit.metric, r.toolkit.scale),
        format!("{}", r.toolkit.value),
    ]);
    if let Some(s) = &r.summary {
        rows.push(vec!["mean item score (%)".into(), pct(s.mean)]);
        rows.push(vec!["standard error (points)".into(), pct(s.se)]);
        rows.push(vec![
            "95 % CI (%)".into(),
            format!("[{}, {}]", pct(s.ci95[0]), pct(s.ci95[1])),
        ]);
    }
    rows.push(vec![
        "scored / annotated".into(),
        format!("{} / {}", r.n_scored, r.n_annotations),
    ]);
    rows.push(vec![
        "missing ids (no prediction)".into(),
        r.missing.len().to_string(),
    ]);
    rows.push(vec![
        "unmatched predictions".into(),
        r.unmatched.to_string(),
    ]);
    rows.push(vec![
        "duplicate predictions".into(),
        r.duplicates.to_string(),
    ]);
    for c in &r.categories {
        rows.push(vec![
            format!("  {} (n={})", c.name, c.n),
            format!("{}", c.toolkit_value),
        ]);
    }
    println!("{}", table::render(rows));
    for (code, n) in &r.warning_counts {
        println!("warning: {n} × {code}");
        for w in r.warnings.iter().filter(|w| w.code == *code).take(3) {
            println!("  {w}");
        }
    }
}

fn print_paired(p: &ovbench_score::PairedReport) {
    let s = &p.stats;
    let e = &s.equivalence;
    let rows = vec![
        vec!["paired (B − A)".to_string(), "value".to_string()],
        vec!["questions compared".into(), s.n.to_string()],
        vec![
            "only in A / only in B".into(),
            format!("{} / {}", p.only_in_a, p.only_in_b),
        ],
        vec!["A mean (%)".into(), pct(s.mean_a)],
        vec!["B mean (%)".into(), pct(s.mean_b)],
        vec!["difference (points)".into(), pct(s.diff)],
        vec!["standard error (points)".into(), pct(s.se)],
        vec![
            "95 % CI (points)".into(),
            format!("[{}, {}]", pct(s.ci95[0]), pct(s.ci95[1])),
        ],
        vec![
            "paired t-test p (two-sided)".into(),
            format!("{:.4}", s.p_two_sided),
        ],
        vec![
            "B better / A better (items)".into(),
            format!("{} / {}", s.b_better, s.a_better),
        ],
        vec![
            format!("TOST margin ±{} points", pct(e.margin)),
            format!("p = {:.4}", e.p),
        ],
        vec![
            "90 % CI (points)".into(),
            format!("[{}, {}]", pct(e.ci90[0]), pct(e.ci90[1])),
        ],
    ];
    println!("{}", table::render(rows));
    if e.equivalent {
        println!(
            "equivalent: the difference lies within ±{} points (TOST p = {:.4} < 0.05)",
            pct(e.margin),
            e.p
        );
    } else {
        println!(
            "not shown equivalent: the 90 % interval leaves ±{} points (TOST p = {:.4} ≥ 0.05)",
            pct(e.margin),
            e.p
        );
    }
}
