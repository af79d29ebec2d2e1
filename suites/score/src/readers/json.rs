//! JSON and JSONL files: official annotation files, JSONL predictions, lmms-eval sample
//! logs and official OCRBench result files.

use super::{line_at, read_text};
use crate::compat::Task;
use crate::error::{Loc, ScoreError, Warning};
use crate::report::{Annotation, Annotations, Origin, PredKey, Prediction, Predictions};
use serde_json::value::RawValue;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Parses a whole JSON document, turning a syntax error into file:line.
fn parse_doc<'a, T: serde::Deserialize<'a>>(
    path: &Path,
    text: &'a str,
    what: &str,
) -> Result<T, ScoreError> {
    serde_json::from_str(text).map_err(|e| {
        ScoreError::input(Loc::line(path, e.line().max(1)), format!("not {what}: {e}"))
    })
}

/// The items of a JSON array with the line each starts on (counted incrementally: items
/// come in file order, so the whole file is scanned once).
fn items_with_lines<'a>(
    path: &Path,
    text: &'a str,
    raw: &[&'a RawValue],
) -> Result<Vec<(usize, Value)>, ScoreError> {
    let (mut at, mut line) = (0usize, 1usize);
    raw.iter()
        .map(|r| {
            let offset = r.get().as_ptr() as usize - text.as_ptr() as usize;
            if offset >= at {
                line += text.as_bytes()[at..offset]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
            } else {
                line = line_at(text, offset);
            }
            at = offset;
            let v: Value = serde_json::from_str(r.get()).map_err(|e| {
                ScoreError::input(Loc::line(path, line), format!("malformed item: {e}"))
            })?;
            Ok((line, v))
        })
        .collect()
}

/// The fields a prediction line can use; others (a sample log's `doc`, `arguments`, ...)
/// are skipped without being decoded into values.
const PRED_FIELDS: &[&str] = &[
    "question_id",
    "prediction",
    "doc_id",
    "filtered_resps",
    "text",
    "prompt",
];

/// Parses one JSON value, keeping only `keys` of an object (other values are returned whole).
fn only_fields(json: &str, keys: &[&str]) -> Result<Value, serde_json::Error> {
    let map: Result<std::collections::HashMap<&str, &RawValue>, _> = serde_json::from_str(json);
    match map {
        Ok(m) => {
            let mut out = serde_json::Map::new();
            for k in keys {
                if let Some(r) = m.get(k) {
                    out.insert((*k).to_string(), serde_json::from_str(r.get())?);
                }
            }
            Ok(Value::Object(out))
        }
        // Not an object (or has escaped keys): decode it fully and let the caller judge it.
        Err(_) => serde_json::from_str(json),
    }
}

/// Like `items_with_lines`, keeping only `keys` of each item.
fn items_with_lines_only<'a>(
    path: &Path,
    text: &'a str,
    raw: &[&'a RawValue],
    keys: &[&str],
) -> Result<Vec<(usize, Value)>, ScoreError> {
    let (mut at, mut line) = (0usize, 1usize);
    raw.iter()
        .map(|r| {
            let offset = r.get().as_ptr() as usize - text.as_ptr() as usize;
            line += text.as_bytes()[at..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            at = offset;
            let v = only_fields(r.get(), keys).map_err(|e| {
                ScoreError::input(Loc::line(path, line), format!("malformed item: {e}"))
            })?;
            Ok((line, v))
        })
        .collect()
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn get_str(obj: &Value, key: &str, loc: &Loc) -> Result<String, ScoreError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(ScoreError::input(
            loc.clone().with_field(key),
            format!("expected a string, found {}", kind(other)),
        )),
        None => Err(ScoreError::input(loc.clone().with_field(key), "missing")),
    }
}

fn opt_str(obj: &Value, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A non-empty list of strings (or, where `allow_str`, one string).
fn answers_of(
    v: Option<&Value>,
    loc: &Loc,
    field: &str,
    allow_str: bool,
) -> Result<Vec<String>, ScoreError> {
    let loc = loc.clone().with_field(field);
    let list = match v {
        None | Some(Value::Null) => {
            return Err(ScoreError::input(loc, "annotation has no answers"))
        }
        Some(Value::String(s)) if allow_str => return Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(ScoreError::input(
                loc,
                format!("expected a list of strings, found {}", kind(other)),
            ))
        }
    };
    if list.is_empty() {
        return Err(ScoreError::input(
            loc,
            "annotation has no answers (empty list)",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            a.as_str().map(str::to_string).ok_or_else(|| {
                ScoreError::input(
                    loc.clone(),
                    format!("answer {i} is {}, not a string", kind(a)),
                )
            })
        })
        .collect()
}

/// `TextVQA_0.5.1_val.json`: `{"data": [{question_id, question, answers[10], ...}]}`.
pub fn read_textvqa_json(path: &Path) -> Result<Annotations, ScoreError> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        #[serde(borrow)]
        data: Option<Vec<&'a RawValue>>,
    }
    let text = read_text(path)?;
    let top: Top = parse_doc(
        path,
        &text,
        "a TextVQA annotation file (an object with a 'data' list)",
    )?;
    let raw = top.data.ok_or_else(|| {
        ScoreError::input(
            Loc::file(path).with_field("data"),
            "missing: not TextVQA_0.5.1_*.json",
        )
    })?;
    let mut items = Vec::with_capacity(raw.len());
    for (line, v) in
        items_with_lines_only(path, &text, &raw, &["question_id", "question", "answers"])?
    {
        let loc = Loc::line(path, line);
        let id = v.get("question_id").and_then(id_text).ok_or_else(|| {
            ScoreError::input(
                loc.clone().with_field("question_id"),
                "missing or not an integer/string",
            )
        })?;
        let answers = answers_of(v.get("answers"), &loc, "answers", false)?;
        items.push(Annotation {
            id,
            answers,
            category: None,
            dataset_name: None,
            question: opt_str(&v, "question"),
            image: None,
            loc,
        });
    }
    if items.is_empty() {
        return Err(ScoreError::input(
            Loc::file(path).with_field("data"),
            "no questions",
        ));
    }
    Ok(Annotations {
        task: Task::TextVqa,
        format: "textvqa-json",
        files: vec![path.into()],
        items,
        warnings: Vec::new(),
    })
}

/// ChartQA `test_human.json` and/or `test_augmented.json` (lists of `{imgname, query,
/// label}`). The split comes from the file name; ids are `human-<i>` / `augmented-<i>`.
pub fn read_chartqa_json(paths: &[PathBuf]) -> Result<Annotations, ScoreError> {
    let mut by_split: Vec<(&str, &PathBuf)> = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let split = if name.contains("human") {
            "human"
        } else if name.contains("augmented") {
            "augmented"
        } else {
            return Err(ScoreError::Usage(format!(
                "{}: cannot tell the ChartQA split; the file name must contain 'human' or 'augmented'",
                p.display()
            )));
        };
        if by_split.iter().any(|(s, _)| *s == split) {
            return Err(ScoreError::Usage(format!(
                "two ChartQA '{split}' files given"
            )));
        }
        by_split.push((split, p));
    }
    // lmms-eval's upload put the human rows first.
    by_split.sort_by_key(|(s, _)| *s != "human");
    let mut items = Vec::new();
    for (split, path) in by_split {
        let text = read_text(path)?;
        let raw: Vec<&RawValue> =
            parse_doc(path, &text, "a ChartQA annotation file (a JSON list)")?;
        for (i, (line, v)) in items_with_lines(path, &text, &raw)?.into_iter().enumerate() {
            let loc = Loc::line(path, line);
            let label = match v.get("label") {
                None | Some(Value::Null) => {
                    return Err(ScoreError::input(
                        loc.with_field("label"),
                        "annotation has no answer",
                    ))
                }
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(ScoreError::input(
                        loc.with_field("label"),
                        format!("expected a string, found {}", kind(other)),
                    ))
                }
            };
            items.push(Annotation {
                id: format!("{split}-{i}"),
                answers: vec![label],
                category: Some(split.to_string()),
                dataset_name: None,
                question: Some(get_str(&v, "query", &loc)?),
                image: None,
                loc,
            });
        }
    }
    if items.is_empty() {
        return Err(ScoreError::Usage(
            "the ChartQA files hold no questions".into(),
        ));
    }
    Ok(Annotations {
        task: Task::ChartQa,
        format: "chartqa-json",
        files: paths.to_vec(),
        items,
        warnings: Vec::new(),
    })
}

/// `OCRBench.json`: a list of `{dataset_name, id, question, answers (str|list), type}`.
/// `id` is not unique there, so the question id is the 0-based position.
pub fn read_ocrbench_json(path: &Path) -> Result<Annotations, ScoreError> {
    let text = read_text(path)?;
    let raw: Vec<&RawValue> = parse_doc(path, &text, "an OCRBench annotation file (a JSON list)")?;
    let mut items = Vec::with_capacity(raw.len());
    for (i, (line, v)) in items_with_lines(path, &text, &raw)?.into_iter().enumerate() {
        let loc = Loc::line(path, line);
        items.push(Annotation {
            id: i.to_string(),
            answers: answers_of(v.get("answers"), &loc, "answers", true)?,
            category: Some(get_str(&v, "type", &loc)?),
            dataset_name: Some(get_str(&v, "dataset_name", &loc)?),
            question: opt_str(&v, "question"),
            image: None,
            loc,
        });
    }
    if items.is_empty() {
        return Err(ScoreError::input(Loc::file(path), "no questions"));
    }
    Ok(Annotations {
        task: Task::OcrBench,
        format: "ocrbench-json",
        files: vec![path.into()],
        items,
        warnings: Vec::new(),
    })
}

/// The official OCRBench result file (`OCRBench.json` items plus `predict`); keyed by
/// position. Items without `predict`, or with the int 0, are skipped as the script does,
/// and counted.
pub fn read_predictions_json(path: &Path) -> Result<Predictions, ScoreError> {
    let text = read_text(path)?;
    let raw: Vec<&RawValue> = parse_doc(
        path,
        &text,
        "an official OCRBench result file (a JSON list)",
    )?;
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for (i, (line, v)) in items_with_lines(path, &text, &raw)?.into_iter().enumerate() {
        let loc = Loc::line(path, line);
        match v.get("predict") {
            Some(Value::String(s)) => items.push(Prediction {
                key: PredKey::Row(i),
                text: s.clone(),
                loc,
            }),
            None => warnings.push(Warning {
                code: "no-predict",
                loc: Some(loc),
                message: "item has no 'predict'; skipped as the official script does".into(),
            }),
            Some(Value::Number(n)) if n.as_i64() == Some(0) => warnings.push(Warning {
                code: "no-predict",
                loc: Some(loc),
                message: "'predict' is 0; skipped as the official script does".into(),
            }),
            Some(other) => {
                return Err(ScoreError::input(
                    loc.with_field("predict"),
                    format!("expected a string, found {}", kind(other)),
                ))
            }
        }
    }
    if items.is_empty() {
        return Err(ScoreError::input(
            Loc::file(path),
            "no item has a 'predict' string",
        ));
    }
    Ok(Predictions {
        format: "ocrbench-results-json",
        origin: Origin::Plain,
        path: path.into(),
        items,
        warnings,
    })
}

/// JSONL predictions: `{question_id, prediction}` per line, or an lmms-eval sample log
/// (`doc_id` and `filtered_resps`, a string at HEAD or `[str]` in older logs), which joins
/// on the annotation row.
pub fn read_predictions_jsonl(path: &Path) -> Result<Predictions, ScoreError> {
    let text = read_text(path)?;
    let mut items = Vec::new();
    let mut format: Option<&'static str> = None;
    for (i, line) in text.lines().enumerate() {
        let loc = Loc::line(path, i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let v = only_fields(line, PRED_FIELDS)
            .map_err(|e| ScoreError::input(loc.clone(), format!("malformed JSON line: {e}")))?;
        if !v.is_object() {
            return Err(ScoreError::input(
                loc,
                format!("expected a JSON object, found {}", kind(&v)),
            ));
        }
        let fmt = *format.get_or_insert(if v.get("doc_id").is_some() {
            "lmms-eval-samples"
        } else {
            "jsonl"
        });
        if fmt == "lmms-eval-samples" {
            let row = v.get("doc_id").and_then(Value::as_u64).ok_or_else(|| {
                ScoreError::input(
                    loc.clone().with_field("doc_id"),
                    "missing or not a non-negative integer",
                )
            })?;
            let text = match v.get("filtered_resps") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(a)) if a.len() == 1 => match &a[0] {
                    Value::String(s) => s.clone(),
                    Value::Array(inner) if inner.len() == 1 && inner[0].is_string() => {
                        inner[0].as_str().unwrap_or_default().to_string()
                    }
                    other => {
                        return Err(ScoreError::input(
                            loc.with_field("filtered_resps"),
                            format!("expected a string, found {}", kind(other)),
                        ))
                    }
                },
                Some(other) => {
                    return Err(ScoreError::input(
                        loc.with_field("filtered_resps"),
                        format!(
                            "expected a string or a one-element list, found {}",
                            kind(other)
                        ),
                    ))
                }
                None => {
                    return Err(ScoreError::input(
                        loc.with_field("filtered_resps"),
                        "missing",
                    ))
                }
            };
            items.push(Prediction {
                key: PredKey::Row(row as usize),
                text,
                loc,
            });
        } else {
            let id = match v.get("question_id") {
                Some(x) => id_text(x).ok_or_else(|| {
                    ScoreError::input(
                        loc.clone().with_field("question_id"),
                        format!("expected an integer or string, found {}", kind(x)),
                    )
                })?,
                None => {
                    let hint = if v.get("text").is_some() && v.get("prompt").is_some() {
                        " (this looks like a LLaVA answer file; convert it to {question_id, prediction})"
                    } else {
                        ""
                    };
                    return Err(ScoreError::input(
                        loc.with_field("question_id"),
                        format!("missing{hint}"),
                    ));
                }
            };
            let pred = get_str(&v, "prediction", &loc)?;
            items.push(Prediction {
                key: PredKey::Id(id),
                text: pred,
                loc,
            });
        }
    }
    if items.is_empty() {
        return Err(ScoreError::Empty { path: path.into() });
    }
    Ok(Predictions {
        format: format.unwrap_or("jsonl"),
        origin: Origin::Plain,
        path: path.into(),
        items,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn textvqa_items_know_their_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "t.json",
            b"{\"dataset_name\": \"textvqa\",\n \"data\": [\n  {\"question_id\": 1, \"answers\": [\"a\"]},\n  {\"question_id\": 2}\n]}",
        );
        let e = read_textvqa_json(&p).unwrap_err().to_string();
        assert!(
            e.contains("t.json:4") && e.contains("answers") && e.contains("no answers"),
            "{e}"
        );
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "p.jsonl",
            b"{\"question_id\": 1, \"prediction\": \"a\"}\n{\"question_id\": 2, \"prediction\": \n",
        );
        let e = read_predictions_jsonl(&p).unwrap_err().to_string();
        assert!(
            e.contains("p.jsonl:2") && e.contains("malformed JSON"),
            "{e}"
        );
        let p = write(d.path(), "u.jsonl", b"{\"question_id\": 1, \"prediction\": \"a\"}\n{\"question_id\": 2, \"prediction\": \"\xff\"}\n");
        let e = read_predictions_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("u.jsonl:2") && e.contains("UTF-8"), "{e}");
        let p = write(d.path(), "e.jsonl", b"");
        assert!(read_predictions_jsonl(&p)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let p = write(
            d.path(),
            "n.jsonl",
            b"{\"question_id\": 1, \"prediction\": null}\n",
        );
        let e = read_predictions_jsonl(&p).unwrap_err().to_string();
        assert!(e.contains("n.jsonl:1 (field 'prediction')"), "{e}");
    }

    #[test]
    fn lmms_eval_samples_old_and_new() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "s.jsonl",
            b"{\"doc_id\": 0, \"filtered_resps\": \" Cat\"}\n{\"doc_id\": 1, \"filtered_resps\": [\"dog\"], \"resps\": [[\"dog\"]]}\n",
        );
        let r = read_predictions_jsonl(&p).unwrap();
        assert_eq!(r.format, "lmms-eval-samples");
        assert_eq!(r.items[0].key, PredKey::Row(0));
        assert_eq!(r.items[0].text, " Cat");
        assert_eq!(r.items[1].text, "dog");
    }
}
