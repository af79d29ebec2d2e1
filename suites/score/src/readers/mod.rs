//! Readers for annotation and prediction files (spec §1.1, §2.1, §3.1, §4, §5).
//!
//! Annotations: TextVQA `TextVQA_0.5.1_val.json`, ChartQA `test_human.json` /
//! `test_augmented.json`, `OCRBench.json`, VLMEvalKit TSVs, lmms-eval parquet shards.
//! Predictions: JSONL `{question_id, prediction}`, lmms-eval sample logs, VLMEvalKit
//! `.xlsx` and `.tsv` prediction files, official OCRBench result JSON.

mod json;
mod parquet_rows;
mod tsv;
mod xlsx;

pub use json::{
    parse_predictions_jsonl, read_chartqa_json, read_ocrbench_json, read_predictions_json,
    read_predictions_jsonl, read_textvqa_json,
};
pub use parquet_rows::read_lmms_parquet;
pub use tsv::{read_vlmevalkit_predictions_tsv, read_vlmevalkit_tsv};
pub use xlsx::read_vlmevalkit_xlsx;

use crate::compat::Task;
use crate::error::{Loc, ScoreError};
use crate::scorer::{Annotation, Annotations, Predictions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Options for annotation readers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Decode VLMEvalKit's base64 `image` column (left unread by default).
    pub decode_images: bool,
}

/// Reads the bytes of `path` as UTF-8 text; empty files and invalid UTF-8 are errors that
/// name the line.
pub fn read_text(path: &Path) -> Result<String, ScoreError> {
    let bytes = ovbench_harness::io::read_regular(path, ovbench_harness::io::limit::DATA)?;
    if bytes.is_empty() {
        return Err(ScoreError::Empty { path: path.into() });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ScoreError::Utf8 {
            loc: Loc::line(path, line),
            offset,
        }
    })
}

/// 1-based line of a byte offset.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

fn ext(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Reads annotations for `task` from one or more files (or a folder), detecting the format
/// by extension. Several parquet shards are read in file-name order; ChartQA's two JSON
/// files are read human first, as lmms-eval's upload did.
pub fn read_annotations(
    task: Task,
    paths: &[PathBuf],
    opts: &ReadOptions,
) -> Result<Annotations, ScoreError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|source| ScoreError::Io {
                    path: p.clone(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(ext(f).as_str(), "json" | "tsv" | "parquet"))
                .collect();
            inner.sort();
            if inner.is_empty() {
                return Err(ScoreError::Usage(format!(
                    "{}: no .json, .tsv or .parquet annotation file inside",
                    p.display()
                )));
            }
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(ScoreError::Usage("no annotation file given".into()));
    }
    let kinds: Vec<String> = files.iter().map(|f| ext(f)).collect();
    if kinds.iter().any(|k| k != &kinds[0]) {
        return Err(ScoreError::Usage(
            "annotation files must all have the same format".into(),
        ));
    }
    let mut out = match (kinds[0].as_str(), task) {
        ("json", Task::TextVqa) => single(&files, read_textvqa_json)?,
        ("json", Task::OcrBench) => single(&files, read_ocrbench_json)?,
        ("json", Task::ChartQa) => read_chartqa_json(&files)?,
        ("tsv", _) => single(&files, |f| read_vlmevalkit_tsv(task, f, opts))?,
        ("parquet", _) => {
            let mut sorted = files.clone();
            sorted.sort();
            read_lmms_parquet(task, &sorted)?
        }
        (other, _) => {
            return Err(ScoreError::Usage(format!(
                "{}: unknown annotation format '.{other}' (expected .json, .tsv or .parquet)",
                files[0].display()
            )))
        }
    };
    check_unique_ids(&out.items)?;
    out.files = files;
    Ok(out)
}

fn single(
    files: &[PathBuf],
    f: impl Fn(&Path) -> Result<Annotations, ScoreError>,
) -> Result<Annotations, ScoreError> {
    if files.len() != 1 {
        return Err(ScoreError::Usage(format!(
            "expected one annotation file in this format, got {}",
            files.len()
        )));
    }
    f(&files[0])
}

/// Question ids must identify one annotation each.
pub fn check_unique_ids(items: &[Annotation]) -> Result<(), ScoreError> {
    let mut seen: HashMap<&str, &Loc, crate::IdHash> =
        HashMap::with_capacity_and_hasher(items.len(), Default::default());
    for a in items {
        if let Some(first) = seen.insert(&a.id, &a.loc) {
            return Err(ScoreError::Duplicate {
                loc: a.loc.clone(),
                id: a.id.clone(),
                first: first.to_string(),
            });
        }
    }
    Ok(())
}

/// Reads a prediction file, detecting the format: `.xlsx` and `.tsv` (VLMEvalKit), `.json`
/// (official OCRBench results with `predict`), `.jsonl` (plain `{question_id, prediction}`
/// or an lmms-eval `samples_<task>.jsonl` log, told apart by its first record).
pub fn read_predictions(path: &Path) -> Result<Predictions, ScoreError> {
    match ext(path).as_str() {
        "xlsx" => read_vlmevalkit_xlsx(path),
        "tsv" => read_vlmevalkit_predictions_tsv(path),
        "json" => read_predictions_json(path),
        _ => read_predictions_jsonl(path),
    }
}
