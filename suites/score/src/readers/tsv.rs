//! VLMEvalKit TSV files: benchmark TSVs (annotations) and `PRED_FORMAT=tsv` predictions.
//! The base64 `image` column is skipped unless images are asked for.

use super::ReadOptions;
use crate::compat::Task;
use crate::error::{Loc, ScoreError, Warning};
use crate::pandas;
use crate::py::{self, LiteralError, PyValue};
use crate::report::{Annotation, Annotations, Origin, PredKey, Prediction, Predictions};
use base64::Engine;
use std::collections::HashMap;
use std::path::Path;

struct Table {
    header: Vec<String>,
    /// (line, cells of the wanted columns); `None` for a column the file lacks.
    rows: Vec<(usize, Vec<Option<String>>)>,
}

/// Streams a tab-separated file with pandas' default quoting, keeping only `wanted` columns.
fn read_table(path: &Path, wanted: &[&str]) -> Result<Table, ScoreError> {
    let meta = std::fs::metadata(path).map_err(|source| ScoreError::Io {
        path: path.into(),
        source,
    })?;
    if meta.len() == 0 {
        return Err(ScoreError::Empty { path: path.into() });
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .has_headers(true)
        .from_path(path)
        .map_err(|e| csv_err(path, e))?;
    let header_rec = rdr.byte_headers().map_err(|e| csv_err(path, e))?.clone();
    let header: Vec<String> = header_rec
        .iter()
        .map(|h| {
            String::from_utf8(h.to_vec()).map_err(|_| ScoreError::Utf8 {
                loc: Loc::line(path, 1),
                offset: 0,
            })
        })
        .collect::<Result<_, _>>()?;
    let cols: Vec<Option<usize>> = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w))
        .collect();
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(path, e)),
        }
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut cells = Vec::with_capacity(cols.len());
        for (c, name) in cols.iter().zip(wanted) {
            cells.push(match c {
                None => None,
                Some(i) => {
                    let raw = rec.get(*i).unwrap_or_default();
                    Some(
                        String::from_utf8(raw.to_vec()).map_err(|e| ScoreError::Utf8 {
                            loc: Loc::line(path, line).with_field(name),
                            offset: rec.position().map(|p| p.byte() as usize).unwrap_or(0)
                                + e.utf8_error().valid_up_to(),
                        })?,
                    )
                }
            });
        }
        rows.push((line, cells));
    }
    if rows.is_empty() {
        return Err(ScoreError::input(
            Loc::file(path),
            "the table has a header but no rows",
        ));
    }
    Ok(Table { header, rows })
}

fn csv_err(path: &Path, e: csv::Error) -> ScoreError {
    let line = e.position().map(|p| p.line() as usize);
    let loc = match line {
        Some(l) => Loc::line(path, l),
        None => Loc::file(path),
    };
    match e.kind() {
        csv::ErrorKind::Io(_) => ScoreError::input(loc, format!("cannot read: {e}")),
        _ => ScoreError::input(loc, format!("malformed TSV: {e}")),
    }
}

fn require<'a>(
    t: &Table,
    cell: &'a Option<String>,
    name: &str,
    path: &Path,
    line: usize,
) -> Result<&'a str, ScoreError> {
    cell.as_deref().ok_or_else(|| {
        ScoreError::input(
            Loc::line(path, line).with_field(name),
            format!("column missing (the header has: {})", t.header.join(", ")),
        )
    })
}

/// A VLMEvalKit benchmark TSV (`TextVQA_VAL.tsv`, `ChartQA_TEST.tsv`, `OCRBench.tsv`).
/// Ids are the `index` column.
pub fn read_vlmevalkit_tsv(
    task: Task,
    path: &Path,
    opts: &ReadOptions,
) -> Result<Annotations, ScoreError> {
    let extra = match task {
        Task::TextVqa => "question",
        Task::ChartQa => "split",
        Task::OcrBench => "category",
    };
    let mut wanted = vec!["index", "question", "answer", extra];
    if opts.decode_images {
        wanted.push("image");
    }
    let t = read_table(path, &wanted)?;
    let mut items = Vec::with_capacity(t.rows.len());
    let mut warnings = Vec::new();
    let mut image_cells: Vec<Option<String>> = Vec::new();
    for (line, cells) in &t.rows {
        let line = *line;
        let loc = Loc::line(path, line);
        let id = require(&t, &cells[0], "index", path, line)?.to_string();
        let answer = require(&t, &cells[2], "answer", path, line)?;
        if pandas::is_na(answer) {
            if answer.is_empty() {
                return Err(ScoreError::input(
                    loc.with_field("answer"),
                    "annotation has no answer (empty cell)",
                ));
            }
            warnings.push(Warning {
                code: "na-answer",
                loc: Some(loc.clone().with_field("answer")),
                message: format!(
                    "answer '{answer}' is a pandas NA token; VLMEvalKit reads it as 'nan'"
                ),
            });
        }
        let answers = match task {
            Task::TextVqa => textvqa_answers(answer, &loc)?,
            Task::OcrBench => ocrbench_answers(answer, &loc)?,
            Task::ChartQa => vec![answer.to_string()],
        };
        let category = match task {
            Task::TextVqa => None,
            Task::ChartQa => {
                let s = require(&t, &cells[3], "split", path, line)?;
                Some(match s {
                    "test_human" => "human".to_string(),
                    "test_augmented" => "augmented".to_string(),
                    other => {
                        return Err(ScoreError::input(
                            loc.with_field("split"),
                            format!("'{other}' is not test_human or test_augmented"),
                        ))
                    }
                })
            }
            Task::OcrBench => Some(require(&t, &cells[3], "category", path, line)?.to_string()),
        };
        if opts.decode_images {
            image_cells.push(cells[4].clone());
        }
        items.push(Annotation {
            id,
            answers,
            category,
            dataset_name: None,
            question: cells[1].clone(),
            image: None,
            loc,
        });
    }
    if opts.decode_images {
        decode_images(path, &mut items, &image_cells)?;
    }
    Ok(Annotations {
        task,
        format: "vlmevalkit-tsv",
        files: vec![path.into()],
        items,
        warnings,
    })
}

/// Base64 images; a cell of 1..=64 characters names another row's `index` whose image it
/// reuses (VLMEvalKit `image_base.py`).
fn decode_images(
    path: &Path,
    items: &mut [Annotation],
    cells: &[Option<String>],
) -> Result<(), ScoreError> {
    let by_index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut decoded: Vec<Option<Vec<u8>>> = vec![None; items.len()];
    for (i, cell) in cells.iter().enumerate() {
        let loc = || items[i].loc.clone().with_field("image");
        let cell = cell
            .as_deref()
            .ok_or_else(|| ScoreError::input(loc(), "no 'image' column"))?;
        let src = if (1..=64).contains(&cell.len()) {
            let j = *by_index.get(cell).ok_or_else(|| {
                ScoreError::input(
                    loc(),
                    format!("refers to index '{cell}', which is not in the file"),
                )
            })?;
            cells[j].as_deref().unwrap_or_default()
        } else {
            cell
        };
        if src.starts_with('[') {
            return Err(ScoreError::input(
                loc(),
                "multi-image cells are not supported",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(src.trim())
            .map_err(|e| ScoreError::input(loc(), format!("not base64: {e}")))?;
        decoded[i] = Some(bytes);
    }
    for (a, d) in items.iter_mut().zip(decoded) {
        a.image = d;
    }
    let _ = path;
    Ok(())
}

fn str_list(v: Vec<PyValue>, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    v.into_iter()
        .enumerate()
        .map(|(i, x)| match x {
            PyValue::Str(s) => Ok(s),
            other => Err(ScoreError::input(
                loc.clone().with_field("answer"),
                format!("answer {i} is {other:?}, not a string (the toolkit would raise)"),
            )),
        })
        .collect()
}

/// TextVQA: `istype(answer, list)` then `eval`, else the cell is the single answer.
fn textvqa_answers(cell: &str, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    match py::eval_literal(cell) {
        Ok(PyValue::List(v)) if !v.is_empty() => str_list(v, loc),
        Ok(PyValue::List(_)) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            "annotation has no answers (empty list)",
        )),
        Err(LiteralError::Unsupported(why)) if cell.trim_start().starts_with('[') => {
            Err(ScoreError::input(
                loc.clone().with_field("answer"),
                format!("list-like answer this port cannot evaluate ({why})"),
            ))
        }
        _ => Ok(vec![cell.to_string()]),
    }
}

/// OCRBench: VLMEvalKit always `eval`s the cell; it must give a list of strings.
fn ocrbench_answers(cell: &str, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    match py::eval_literal(cell) {
        Ok(PyValue::List(v)) if !v.is_empty() => str_list(v, loc),
        Ok(PyValue::List(_)) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            "annotation has no answers (empty list)",
        )),
        Ok(other) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            format!("expected a list literal, found {other:?}"),
        )),
        Err(e) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            format!("not a Python list literal ({e:?})"),
        )),
    }
}

/// A VLMEvalKit prediction TSV (`PRED_FORMAT=tsv`): `index` and `prediction` columns.
/// Cells are kept as written; VLMEvalKit labels then see pandas' NA tokens as `nan`.
pub fn read_vlmevalkit_predictions_tsv(path: &Path) -> Result<Predictions, ScoreError> {
    let t = read_table(path, &["index", "prediction"])?;
    let mut items = Vec::with_capacity(t.rows.len());
    for (line, cells) in &t.rows {
        let id = require(&t, &cells[0], "index", path, *line)?.to_string();
        let text = require(&t, &cells[1], "prediction", path, *line)?.to_string();
        items.push(Prediction {
            key: PredKey::Id(id),
            text,
            loc: Loc::line(path, *line),
        });
    }
    Ok(Predictions {
        format: "vlmevalkit-tsv",
        origin: Origin::VlmevalkitTsv,
        path: path.into(),
        items,
        warnings: Vec::new(),
    })
}
