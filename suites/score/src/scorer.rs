//! Joining predictions to annotations, per-item scoring, and the dataset report.

use crate::compat::{Compat, Task};
use crate::error::{Loc, ScoreError, Warning};
use crate::stats::{self, MeanCi};
use crate::{chartqa, ocrbench, pandas, py, textvqa};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Bumped whenever a scoring rule changes; recorded in every report.
pub const SCORER_VERSION: &str = "ovbench-score/1";

/// One annotated question.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The question id as text (TextVQA `question_id`; for formats without ids, the row).
    pub id: String,
    pub answers: Vec<String>,
    /// ChartQA: `human` / `augmented`; OCRBench: the question type.
    pub category: Option<String>,
    /// OCRBench: `dataset_name` (decides the handwritten-math rule for most toolkits).
    pub dataset_name: Option<String>,
    pub question: Option<String>,
    /// Decoded image bytes, only when a reader was asked for them.
    pub image: Option<Vec<u8>>,
    pub loc: Loc,
}

/// All annotations of one benchmark, in dataset order.
#[derive(Debug, Clone)]
pub struct Annotations {
    pub task: Task,
    /// Which reader produced them, e.g. `textvqa-json`, `vlmevalkit-tsv`, `lmms-eval-parquet`.
    pub format: &'static str,
    pub files: Vec<PathBuf>,
    pub items: Vec<Annotation>,
    pub warnings: Vec<Warning>,
}

/// How a prediction names its question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PredKey {
    /// The annotation's `id`.
    Id(String),
    /// The 0-based position in the annotations (lmms-eval `doc_id`).
    Row(usize),
}

impl std::fmt::Display for PredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PredKey::Id(s) => f.write_str(s),
            PredKey::Row(r) => write!(f, "doc_id {r}"),
        }
    }
}

/// The file a prediction came from, as far as VLMEvalKit's pandas round trip matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Text exactly as the model produced it (JSONL, lmms-eval logs).
    Plain,
    /// A VLMEvalKit `.xlsx`: VLMEvalKit labels see the xlsx round trip.
    VlmevalkitXlsx,
    /// A VLMEvalKit `.tsv`: VLMEvalKit labels see pandas' NA tokens as `nan`.
    VlmevalkitTsv,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub key: PredKey,
    /// The model output (xlsx escapes undone, NA tokens kept as written).
    pub text: String,
    pub loc: Loc,
    /// For a prediction keyed by position: what its file says about the question it
    /// answers, checked against the annotation at that position.
    pub witness: Option<Box<Witness>>,
}

/// What a positional prediction's file says about its question. A position alone joins
/// any file with any annotations (an OCRBench result file would score as TextVQA); these
/// let the join be confirmed, and a wrong file be refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Witness {
    /// The question's id (lmms-eval TextVQA `submission.question_id`, older logs'
    /// `doc.question_id`).
    pub question_id: Option<String>,
    /// The question text itself (OCRBench result files, older lmms-eval logs' `doc`).
    pub question: Option<String>,
    /// Text that contains the question (lmms-eval's rendered prompt, `input`).
    pub prompt: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Predictions {
    pub format: &'static str,
    pub origin: Origin,
    pub path: PathBuf,
    pub items: Vec<Prediction>,
    pub warnings: Vec<Warning>,
}

/// What to do with ids that do not join cleanly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchPolicy {
    /// Keep the first of duplicate predictions and count the rest (default: error).
    pub allow_duplicates: bool,
    /// Count and skip predictions whose id is not in the annotations (default: error).
    pub allow_unknown: bool,
}

/// One scored item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemScore {
    pub id: String,
    /// 0-based position in the annotations.
    pub row: usize,
    pub category: Option<String>,
    pub score: f64,
    pub prediction: String,
    /// The prediction as the toolkit saw it, when that differs (VLMEvalKit round trip).
    pub seen_as: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CategoryScore {
    pub name: String,
    pub n: usize,
    /// Sum of item scores (for OCRBench: the count of correct items).
    pub sum: f64,
    /// The category score on the toolkit's own scale.
    pub toolkit_value: f64,
}

/// The score as the toolkit itself would print it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ToolkitScore {
    /// The toolkit's name for the number, e.g. `exact_match,none` or `Final Score`.
    pub metric: String,
    pub value: f64,
    /// e.g. `0..1`, `0..100`, `0..1000`.
    pub scale: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub task: Task,
    pub compat: Compat,
    pub scorer_version: &'static str,
    pub n_annotations: usize,
    pub n_scored: usize,
    /// Annotation ids with no prediction (not scored; listed so nothing is dropped silently).
    pub missing: Vec<String>,
    /// Predictions whose id is not in the annotations (only with `allow_unknown`).
    pub unmatched: usize,
    /// Extra predictions for an already predicted id (only with `allow_duplicates`).
    pub duplicates: usize,
    /// Mean per-item score in 0..1 with its standard error and 95 % interval.
    pub summary: Option<MeanCi>,
    pub toolkit: ToolkitScore,
    pub categories: Vec<CategoryScore>,
    pub warning_counts: BTreeMap<&'static str, usize>,
    #[serde(skip)]
    pub warnings: Vec<Warning>,
    #[serde(skip)]
    pub items: Vec<ItemScore>,
}

/// Scores one item. `answers` are the annotation's answers; `origin` says whether the
/// prediction text went through VLMEvalKit's xlsx / tsv files.
pub fn score_item(
    task: Task,
    compat: Compat,
    prediction: &str,
    origin: Origin,
    answers: &[String],
    category: Option<&str>,
    dataset_name: Option<&str>,
) -> Result<(f64, Option<String>, Option<Warning>), String> {
    let view = vlmevalkit_view(compat, origin, prediction);
    let pred = view.as_deref().unwrap_or(prediction);
    let xlsx_view = compat == Compat::VlmevalkitXlsx
        || (compat.is_vlmevalkit() && origin == Origin::VlmevalkitXlsx);
    let warn = |code, message: String| {
        Some(Warning {
            code,
            loc: None,
            message,
        })
    };
    let (score, warning) = match task {
        Task::TextVqa => match textvqa::accuracy(compat, pred, answers) {
            Ok((s, None)) => (s, None),
            Ok((s, Some(_))) => (
                s,
                warn(
                    "answers-not-10",
                    format!(
                        "{} answers instead of 10 (scored, as {compat} does)",
                        answers.len()
                    ),
                ),
            ),
            Err(textvqa::TextVqaIssue::NotTenAnswers(n)) => {
                return Err(format!(
                    "{n} answers, but {compat} requires exactly 10 (its scorer asserts)"
                ))
            }
            Err(textvqa::TextVqaIssue::NoAnswers) => {
                return Err("no answers to score against".into())
            }
        },
        Task::ChartQa => {
            let labels: Vec<String>;
            let answers = if xlsx_view {
                labels = answers.iter().map(|a| chartqa::xlsx_label(a)).collect();
                &labels[..]
            } else {
                answers
            };
            let (s, note) = chartqa::accuracy(compat, pred, answers);
            let w = match note {
                Some(chartqa::LabelExpansion::Unsupported(why)) => warn(
                    "label-not-evaluated",
                    format!("list-like label uses Python this port does not evaluate ({why}); scored as one string"),
                ),
                _ => None,
            };
            (s, w)
        }
        Task::OcrBench => {
            let hme = ocrbench::is_hme(compat, dataset_name, category);
            (ocrbench::accuracy(compat, pred, answers, hme), None)
        }
    };
    Ok((score, view, warning))
}

/// The prediction text a VLMEvalKit label scores, if it differs from the model output.
fn vlmevalkit_view(compat: Compat, origin: Origin, text: &str) -> Option<String> {
    if !compat.is_vlmevalkit() {
        return None;
    }
    let seen = if compat == Compat::VlmevalkitXlsx || origin == Origin::VlmevalkitXlsx {
        pandas::xlsx_roundtrip(text)
    } else if origin == Origin::VlmevalkitTsv {
        pandas::na_to_nan(text).to_string()
    } else {
        return None;
    };
    (seen != text).then_some(seen)
}

/// Annotation formats whose ids are the benchmark's own question ids (not a VLMEvalKit
/// `index` or a position), so a witness's `question_id` can be compared with them.
const QUESTION_ID_FORMATS: &[&str] = &["textvqa-json"];

/// A prediction matched by position must answer the question at that position, as far as its
/// file tells: otherwise the positions of two unrelated files line up and score nonsense.
fn confirm_position(
    annotations: &Annotations,
    row: usize,
    p: &Prediction,
    w: &Witness,
) -> Result<(), ScoreError> {
    let a = &annotations.items[row];
    let refuse = |what: String| {
        Err(ScoreError::input(
            p.loc.clone(),
            format!(
                "matched by position to annotation row {row} ({}), but {what}: these predictions are not for these annotations (another benchmark, split or order?)",
                a.loc
            ),
        ))
    };
    if let Some(qid) = &w.question_id {
        if QUESTION_ID_FORMATS.contains(&annotations.format) && *qid != a.id {
            return refuse(format!(
                "the file gives question_id {qid} and the annotation's is {}",
                a.id
            ));
        }
    }
    let Some(question) = a
        .question
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
    else {
        return Ok(());
    };
    // Compared case-blind with whitespace runs as one space: lmms-eval's TextVQA prompt
    // capitalises the question (Python `str.capitalize`, which lowers the rest too).
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    if let Some(q) = &w.question {
        if norm(q) != norm(question) {
            return refuse(format!(
                "the file's question is {:?} and the annotation's {:?}",
                clip(q.trim()),
                clip(question)
            ));
        }
    }
    if let Some(prompt) = &w.prompt {
        if !norm(prompt).contains(&norm(question)) {
            return refuse(format!(
                "the file's prompt {:?} does not contain the annotation's question {:?}",
                clip(prompt),
                clip(question)
            ));
        }
    }
    Ok(())
}

/// The first 80 characters, for messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Scores `predictions` against `annotations` as `compat` does.
pub fn score(
    task: Task,
    compat: Compat,
    annotations: &Annotations,
    predictions: &Predictions,
    policy: MatchPolicy,
) -> Result<Report, ScoreError> {
    if annotations.task != task {
        return Err(ScoreError::Usage(format!(
            "annotations were read as {} but the task is {task}",
            annotations.task
        )));
    }
    if !task.compat_labels().contains(&compat) {
        Compat::parse(task, compat.label())?;
    }
    if predictions.format == "ocrbench-results-json" && task != Task::OcrBench {
        return Err(ScoreError::Usage(format!(
            "{}: an official OCRBench result file (matched by position) cannot be {task} predictions",
            predictions.path.display()
        )));
    }
    let mut warnings: Vec<Warning> = annotations.warnings.clone();
    warnings.extend(predictions.warnings.iter().cloned());

    let mut by_id: HashMap<&str, usize, crate::IdHash> =
        HashMap::with_capacity_and_hasher(annotations.items.len(), Default::default());
    by_id.extend(
        annotations
            .items
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i)),
    );
    let mut assigned: Vec<Option<usize>> = vec![None; annotations.items.len()];
    let (mut unmatched, mut duplicates) = (0, 0);
    for (pi, p) in predictions.items.iter().enumerate() {
        let row = match &p.key {
            PredKey::Id(id) => by_id.get(id.as_str()).copied(),
            PredKey::Row(r) => (*r < annotations.items.len()).then_some(*r),
        };
        if let (Some(r), Some(w)) = (row, &p.witness) {
            confirm_position(annotations, r, p, w)?;
        }
        let Some(row) = row else {
            if policy.allow_unknown {
                unmatched += 1;
                warnings.push(Warning {
                    code: "unknown-id",
                    loc: Some(p.loc.clone()),
                    message: format!(
                        "prediction for '{}', which is not in the annotations; skipped",
                        p.key
                    ),
                });
                continue;
            }
            let hint = match &p.key {
                PredKey::Row(_) => {
                    format!(" (the annotations have {} rows)", annotations.items.len())
                }
                PredKey::Id(_) => {
                    " (use --allow-unknown to count and skip such predictions)".to_string()
                }
            };
            return Err(ScoreError::UnknownId {
                loc: p.loc.clone(),
                id: p.key.to_string(),
                hint,
            });
        };
        if let Some(first) = assigned[row] {
            let first_loc = predictions.items[first].loc.to_string();
            if policy.allow_duplicates {
                duplicates += 1;
                warnings.push(Warning {
                    code: "duplicate-id",
                    loc: Some(p.loc.clone()),
                    message: format!(
                        "second prediction for '{}' (first at {first_loc}); the first is scored",
                        p.key
                    ),
                });
                continue;
            }
            return Err(ScoreError::Duplicate {
                loc: p.loc.clone(),
                id: p.key.to_string(),
                first: first_loc,
            });
        }
        assigned[row] = Some(pi);
    }

    let mut items = Vec::new();
    let mut missing = Vec::new();
    for (row, (a, pred)) in annotations.items.iter().zip(&assigned).enumerate() {
        let Some(pi) = pred else {
            missing.push(a.id.clone());
            continue;
        };
        let p = &predictions.items[*pi];
        let (s, seen_as, w) = score_item(
            task,
            compat,
            &p.text,
            predictions.origin,
            &a.answers,
            a.category.as_deref(),
            a.dataset_name.as_deref(),
        )
        .map_err(|msg| ScoreError::Item {
            loc: a.loc.clone(),
            msg: format!("question '{}': {msg}", a.id),
        })?;
        if let Some(mut w) = w {
            w.loc = Some(a.loc.clone());
            warnings.push(w);
        }
        items.push(ItemScore {
            id: a.id.clone(),
            row,
            category: a.category.clone(),
            score: s,
            prediction: p.text.clone(),
            seen_as,
        });
    }
    if task == Task::OcrBench {
        for it in &items {
            let cat = it.category.as_deref().unwrap_or("");
            if ocrbench::summary_of(cat).is_none() {
                let a = &annotations.items[it.row];
                return Err(ScoreError::input(
                    a.loc.clone().with_field("type"),
                    format!("OCRBench question type '{cat}' is not one of the 10 types (the toolkits raise KeyError)"),
                ));
            }
        }
    }
    if !missing.is_empty() {
        warnings.push(Warning {
            code: "missing-prediction",
            loc: None,
            message: format!(
                "{} of {} questions have no prediction and are not scored (first: {})",
                missing.len(),
                annotations.items.len(),
                missing
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let scores: Vec<f64> = items.iter().map(|i| i.score).collect();
    let (toolkit, categories) = aggregate(task, compat, &items, &scores);
    let mut warning_counts = BTreeMap::new();
    for w in &warnings {
        *warning_counts.entry(w.code).or_insert(0) += 1;
    }
    Ok(Report {
        task,
        compat,
        scorer_version: SCORER_VERSION,
        n_annotations: annotations.items.len(),
        n_scored: items.len(),
        missing,
        unmatched,
        duplicates,
        summary: stats::mean_ci(&scores),
        toolkit,
        categories,
        warning_counts,
        warnings,
        items,
    })
}

/// Mean with the toolkit's summation order (annotation order for every toolkit).
fn toolkit_mean(compat: Compat, xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    if compat.is_vlmevalkit() {
        py::numpy_mean(xs)
    } else {
        py::plain_sum(xs) / xs.len() as f64
    }
}

fn aggregate(
    task: Task,
    compat: Compat,
    items: &[ItemScore],
    scores: &[f64],
) -> (ToolkitScore, Vec<CategoryScore>) {
    let ts = |metric: &str, value: f64, scale: &str| ToolkitScore {
        metric: metric.into(),
        value,
        scale: scale.into(),
    };
    match task {
        Task::TextVqa => {
            let m = toolkit_mean(compat, scores);
            let t = match compat {
                Compat::LmmsEval => ts("exact_match,none", m, "0..1"),
                Compat::Llava => ts("Accuracy", 100.0 * m, "0..100 (%)"),
                Compat::VqaOfficial | Compat::VqaOfficialPre2021 => {
                    ts("overall", 100.0 * m, "0..100 (unrounded)")
                }
                _ => ts("Overall", 100.0 * m, "0..100"),
            };
            (t, Vec::new())
        }
        Task::ChartQa => {
            let vlm = compat.is_vlmevalkit();
            let scale = if vlm { 100.0 } else { 1.0 };
            let mut cats = Vec::new();
            for (key, name) in [
                (
                    "human",
                    if vlm {
                        "test_human"
                    } else {
                        "relaxed_human_split"
                    },
                ),
                (
                    "augmented",
                    if vlm {
                        "test_augmented"
                    } else {
                        "relaxed_augmented_split"
                    },
                ),
            ] {
                let xs: Vec<f64> = items
                    .iter()
                    .filter(|i| i.category.as_deref() == Some(key))
                    .map(|i| i.score)
                    .collect();
                if !xs.is_empty() {
                    cats.push(CategoryScore {
                        name: name.into(),
                        n: xs.len(),
                        sum: xs.iter().sum(),
                        toolkit_value: scale * toolkit_mean(compat, &xs),
                    });
                }
            }
            let m = scale * toolkit_mean(compat, scores);
            let t = if vlm {
                ts("Overall", m, "0..100")
            } else {
                ts("relaxed_overall,none", m, "0..1")
            };
            (t, cats)
        }
        Task::OcrBench => {
            let mut cats = Vec::new();
            for s in ocrbench::SUMMARY {
                let xs: Vec<f64> = items
                    .iter()
                    .filter(|i| i.category.as_deref().and_then(ocrbench::summary_of) == Some(s))
                    .map(|i| i.score)
                    .collect();
                let sum = xs.iter().sum();
                cats.push(CategoryScore {
                    name: s.into(),
                    n: xs.len(),
                    sum,
                    toolkit_value: sum,
                });
            }
            let total: f64 = scores.iter().sum();
            let t = match compat {
                // lmms-eval divides by 1000 whatever the number of documents.
                Compat::LmmsEval | Compat::LmmsEvalV072 | Compat::LmmsEvalLeV071 => ts(
                    "ocrbench_accuracy,none",
                    total / 1000.0,
                    "0..1 (total / 1000)",
                ),
                _ => ts("Final Score", total, "0..1000"),
            };
            (t, cats)
        }
    }
}

impl Report {
    /// Per-item scores as CSV (`id,row,category,score,prediction,seen_as`), annotation order.
    pub fn items_csv(&self) -> String {
        use std::fmt::Write as _;
        let mut w = csv::Writer::from_writer(Vec::with_capacity(64 * (self.items.len() + 1)));
        let _ = w.write_record(["id", "row", "category", "score", "prediction", "seen_as"]);
        // Two reused buffers for the numbers: no allocation per row.
        let (mut row, mut score) = (String::new(), String::new());
        for it in &self.items {
            row.clear();
            let _ = write!(row, "{}", it.row);
            score.clear();
            let _ = write!(score, "{:?}", it.score);
            let _ = w.write_record([
                it.id.as_str(),
                &row,
                it.category.as_deref().unwrap_or(""),
                &score,
                &it.prediction,
                it.seen_as.as_deref().unwrap_or(""),
            ]);
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// Per-item scores of two reports side by side (`id,row,category,score_a,score_b,diff`), for
/// the items both scored.
pub fn paired_items_csv(a: &Report, b: &Report) -> String {
    let by_row: HashMap<usize, f64> = b.items.iter().map(|i| (i.row, i.score)).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["id", "row", "category", "score_a", "score_b", "diff"]);
    for it in &a.items {
        if let Some(sb) = by_row.get(&it.row) {
            let _ = w.write_record([
                it.id.as_str(),
                &it.row.to_string(),
                it.category.as_deref().unwrap_or(""),
                &repr_f64(it.score),
                &repr_f64(*sb),
                &repr_f64(sb - it.score),
            ]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// Shortest round-trip text, so CSV values are exact.
fn repr_f64(x: f64) -> String {
    format!("{x:?}")
}

#[cfg(test)]
mod tests {
    use crate::readers::{self, ReadOptions};
    use crate::{score, Compat, MatchPolicy, Task};
    use std::path::{Path, PathBuf};

    fn write(dir: &Path, name: &str, body: String) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn textvqa(dir: &Path) -> PathBuf {
        let items: Vec<serde_json::Value> = (0..3)
            .map(|i| serde_json::json!({"question_id": 100 + i, "question": format!("what is {i}?"), "answers": vec!["a"; 10]}))
            .collect();
        write(
            dir,
            "TextVQA_0.5.1_val.json",
            serde_json::json!({"data": items}).to_string(),
        )
    }

    fn ocrbench_results(dir: &Path, questions: &[&str]) -> PathBuf {
        let items: Vec<serde_json::Value> = questions
            .iter()
            .map(|q| serde_json::json!({"dataset_name": "IIIT5K", "id": 0, "question": q, "answers": ["a"], "type": "Regular Text Recognition", "predict": "a"}))
            .collect();
        write(
            dir,
            "results.json",
            serde_json::Value::from(items).to_string(),
        )
    }

    fn run(task: Task, ann: &Path, pred: &Path) -> Result<crate::Report, String> {
        let a = readers::read_annotations(task, &[ann.into()], &ReadOptions::default())
            .map_err(|e| e.to_string())?;
        let p = readers::read_predictions(pred).map_err(|e| e.to_string())?;
        let c = Compat::parse(task, "lmms-eval").unwrap();
        score(task, c, &a, &p, MatchPolicy::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_ocrbench_result_file_is_not_textvqa_predictions() {
        let d = tempfile::tempdir().unwrap();
        let ann = textvqa(d.path());
        let pred = ocrbench_results(d.path(), &["what is 0?", "what is 1?", "what is 2?"]);
        let e = run(Task::TextVqa, &ann, &pred).unwrap_err();
        assert!(
            e.contains("results.json")
                && e.contains("OCRBench result file")
                && e.contains("textvqa"),
            "{e}"
        );
    }

    #[test]
    fn positional_predictions_must_answer_the_question_at_their_position() {
        let d = tempfile::tempdir().unwrap();
        let q = |i: usize| format!("what is {i}?");
        let ann = write(
            d.path(),
            "OCRBench.json",
            serde_json::Value::from(
                (0..3)
                    .map(|i| serde_json::json!({"dataset_name": "IIIT5K", "id": i, "question": q(i), "answers": ["a"], "type": "Regular Text Recognition"}))
                    .collect::<Vec<_>>(),
            )
            .to_string(),
        );
        let good = ocrbench_results(d.path(), &["what is 0?", "what is 1?", "what is 2?"]);
        assert_eq!(run(Task::OcrBench, &ann, &good).unwrap().n_scored, 3);
        // Another order: positions no longer line up with the questions.
        let bad = ocrbench_results(d.path(), &["what is 0?", "what is 2?", "what is 1?"]);
        let e = run(Task::OcrBench, &ann, &bad).unwrap_err();
        assert!(
            e.contains("results.json:")
                && e.contains("annotation row 1")
                && e.contains("what is 2?"),
            "{e}"
        );
    }

    #[test]
    fn lmms_eval_logs_are_checked_by_question_id_and_prompt() {
        let d = tempfile::tempdir().unwrap();
        let ann = textvqa(d.path());
        let line = |doc: usize, qid: usize, input: &str| {
            serde_json::json!({"doc_id": doc, "filtered_resps": "a", "input": input, "submission": {"question_id": qid, "answer": "a"}}).to_string() + "\n"
        };
        let good = write(
            d.path(),
            "good.jsonl",
            // lmms-eval capitalises TextVQA questions in its prompt (Python str.capitalize).
            (0..3)
                .map(|i| line(i, 100 + i, &format!("USER: What  is {i}? ASSISTANT:")))
                .collect(),
        );
        assert_eq!(run(Task::TextVqa, &ann, &good).unwrap().n_scored, 3);
        let wrong_id = write(d.path(), "id.jsonl", line(0, 101, "what is 0?"));
        let e = run(Task::TextVqa, &ann, &wrong_id).unwrap_err();
        assert!(
            e.contains("id.jsonl:1") && e.contains("question_id 101"),
            "{e}"
        );
        let wrong_prompt = write(d.path(), "prompt.jsonl", line(1, 101, "what is 0?"));
        let e = run(Task::TextVqa, &ann, &wrong_prompt).unwrap_err();
        assert!(
            e.contains("prompt.jsonl:1") && e.contains("does not contain"),
            "{e}"
        );
    }
}
