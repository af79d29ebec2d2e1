//! JSON and JSONL files: official annotation files, JSONL predictions, lmms-eval sample
//! logs and official OCRBench result files.

use super::{line_at, read_text};
use crate::compat::Task;
use crate::error::{Loc, ScoreError, Warning};
use crate::scorer::{Annotation, Annotations, Origin, PredKey, Prediction, Predictions, Witness};
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

/// The number of line feeds in `b`.
fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
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
    // What an lmms-eval log says about the question it answers (see `Witness`).
    "doc",
    "submission",
    "input",
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
    let (mut at, mut line) = (0usize, 1usize);
    for r in &raw {
        // Items come in file order, so the line is counted incrementally.
        let offset = r.get().as_ptr() as usize - text.as_ptr() as usize;
        line += count_newlines(&text.as_bytes()[at..offset]);
        at = offset;
        let loc = Loc::line(path, line);
        // Fast path: an object with an integer or string id and a non-empty list of strings.
        if let (
            true,
            Ok(fast::TextVqaItem {
                question_id: Some(id),
                question,
                answers: Some(fast::StrList(Some(answers))),
            }),
        ) = (fast::enabled(), serde_json::from_str(r.get()))
        {
            if let (Some(id), false) = (id.id(), answers.is_empty()) {
                items.push(Annotation {
                    id,
                    answers,
                    category: None,
                    dataset_name: None,
                    question: question.and_then(fast::Scalar::string),
                    image: None,
                    loc,
                });
                continue;
            }
        }
        // Anything else: decode the fields as values, which names the problem.
        let v = only_fields(r.get(), &["question_id", "question", "answers"]).map_err(|e| {
            ScoreError::input(Loc::line(path, line), format!("malformed item: {e}"))
        })?;
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
                witness: Some(Box::new(Witness {
                    question: opt_str(&v, "question"),
                    ..Witness::default()
                })),
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
    parse_predictions_jsonl(path, &text)
}

/// [`read_predictions_jsonl`] on text already in memory (`path` names it in messages): what
/// `ovbench eval` scores before it commits its predictions file and record together.
pub fn parse_predictions_jsonl(path: &Path, text: &str) -> Result<Predictions, ScoreError> {
    if text.is_empty() {
        return Err(ScoreError::Empty { path: path.into() });
    }
    let mut items = Vec::new();
    let mut format: Option<&'static str> = None;
    for (i, line) in text.lines().enumerate() {
        let loc = Loc::line(path, i + 1);
        if line.trim().is_empty() {
            continue;
        }
        // Fast path: a plain `{question_id, prediction}` object (no `doc_id`) in a plain
        // JSONL file, with an integer or string id and a string prediction.
        if format != Some("lmms-eval-samples") && fast::enabled() {
            if let Ok(fast::PredLine {
                question_id: Some(id),
                prediction: Some(fast::Scalar::Str(pred)),
                has_doc_id: false,
            }) = serde_json::from_str(line)
            {
                if let Some(id) = id.id() {
                    format.get_or_insert("jsonl");
                    items.push(Prediction {
                        key: PredKey::Id(id),
                        text: pred,
                        loc,
                        witness: None,
                    });
                    continue;
                }
            }
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
            let doc = v.get("doc");
            let qid = v
                .pointer("/submission/question_id")
                .or_else(|| doc.and_then(|d| d.get("question_id")))
                .and_then(id_text);
            items.push(Prediction {
                key: PredKey::Row(row as usize),
                text,
                loc,
                witness: Some(Box::new(Witness {
                    question_id: qid,
                    question: doc.and_then(|d| opt_str(d, "question")),
                    prompt: opt_str(&v, "input"),
                })),
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
                witness: None,
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

/// Typed decoding of the common item shapes straight from the JSON text, without building a
/// `serde_json::Value` per item. The decoders are lenient about types: they record what they
/// saw, and the callers take this path only when an item has exactly the expected shape.
/// Anything else (a wrong type, a missing field, a syntax error) goes to the `Value`-based
/// path, which produces the error message or the tolerance, so both paths give the same
/// result for every input. Keys are matched after unescaping, and a repeated key keeps its
/// last value, as `serde_json::Value` does.
mod fast {
    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde::Deserialize;
    use std::fmt;

    #[cfg(not(test))]
    #[inline(always)]
    pub fn enabled() -> bool {
        true
    }

    #[cfg(test)]
    thread_local! {
        /// Tests turn the fast paths off to compare them with the value-based path.
        pub static OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[cfg(test)]
    pub fn enabled() -> bool {
        !OFF.with(|c| c.get())
    }

    /// A JSON string, a JSON integer (as `id_text` prints it), or any other value.
    pub enum Scalar {
        Str(String),
        Int(String),
        Other,
    }

    impl Scalar {
        /// What `id_text` accepts: a string, or an i64/u64 integer as decimal text.
        pub fn id(self) -> Option<String> {
            match self {
                Scalar::Str(s) | Scalar::Int(s) => Some(s),
                Scalar::Other => None,
            }
        }
        pub fn string(self) -> Option<String> {
            match self {
                Scalar::Str(s) => Some(s),
                _ => None,
            }
        }
    }

    /// A list whose elements are all strings (`Some`), or any other value (`None`).
    pub struct StrList(pub Option<Vec<String>>);

    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                    Ok(Scalar::Str(s.to_string()))
                }
                fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                    Ok(Scalar::Str(s))
                }
                fn visit_u64<E: de::Error>(self, i: u64) -> Result<Scalar, E> {
                    Ok(Scalar::Int(i.to_string()))
                }
                fn visit_i64<E: de::Error>(self, i: i64) -> Result<Scalar, E> {
                    Ok(Scalar::Int(i.to_string()))
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
                    Ok(Scalar::Other)
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                    Ok(Scalar::Other)
                }
                fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                    Ok(Scalar::Other)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(Scalar::Other)
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(Scalar::Other)
                }
            }
            d.deserialize_any(V)
        }
    }

    impl<'de> Deserialize<'de> for StrList {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = StrList;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_str<E: de::Error>(self, _: &str) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_unit<E: de::Error>(self) -> Result<StrList, E> {
                    Ok(StrList(None))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(10));
                    let mut all_str = true;
                    while let Some(x) = seq.next_element::<Scalar>()? {
                        match x {
                            Scalar::Str(s) if all_str => out.push(s),
                            _ => all_str = false,
                        }
                    }
                    Ok(StrList(all_str.then_some(out)))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrList, A::Error> {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(StrList(None))
                }
            }
            d.deserialize_any(V)
        }
    }

    /// Decodes an object key (unescaped) to the index its item type gives it (`None` for keys
    /// it skips). The index functions match on bytes, which compiles to inline compares.
    struct KeySeed(fn(&[u8]) -> Option<usize>);

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            struct V(fn(&[u8]) -> Option<usize>);
            impl<'de> Visitor<'de> for V {
                type Value = Option<usize>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, k: &str) -> Result<Option<usize>, E> {
                    Ok((self.0)(k.as_bytes()))
                }
            }
            d.deserialize_str(V(self.0))
        }
    }

    /// Visits an object, handing each wanted key's index and the map to `field`.
    fn fields<'de, A: MapAccess<'de>>(
        mut map: A,
        index: fn(&[u8]) -> Option<usize>,
        mut field: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
    ) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(KeySeed(index))? {
            match k {
                Some(i) => field(i, &mut map)?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    /// A TextVQA annotation item: `question_id`, `question`, `answers` (others skipped).
    #[derive(Default)]
    pub struct TextVqaItem {
        pub question_id: Option<Scalar>,
        pub question: Option<Scalar>,
        pub answers: Option<StrList>,
    }

    impl<'de> Deserialize<'de> for TextVqaItem {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = TextVqaItem;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TextVqaItem, A::Error> {
                    let mut it = TextVqaItem::default();
                    let index = |k: &[u8]| match k {
                        b"question_id" => Some(0),
                        b"question" => Some(1),
                        b"answers" => Some(2),
                        _ => None,
                    };
                    fields(map, index, |i, m| {
                        match i {
                            0 => it.question_id = Some(m.next_value()?),
                            1 => it.question = Some(m.next_value()?),
                            _ => it.answers = Some(m.next_value()?),
                        }
                        Ok(())
                    })?;
                    Ok(it)
                }
            }
            d.deserialize_map(V)
        }
    }

    /// A prediction line: `question_id`, `prediction`, and whether a `doc_id` key is there.
    #[derive(Default)]
    pub struct PredLine {
        pub question_id: Option<Scalar>,
        pub prediction: Option<Scalar>,
        pub has_doc_id: bool,
    }

    impl<'de> Deserialize<'de> for PredLine {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = PredLine;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PredLine, A::Error> {
                    let mut it = PredLine::default();
                    let index = |k: &[u8]| match k {
                        b"question_id" => Some(0),
                        b"prediction" => Some(1),
                        b"doc_id" => Some(2),
                        _ => None,
                    };
                    fields(map, index, |i, m| {
                        match i {
                            0 => it.question_id = Some(m.next_value()?),
                            1 => it.prediction = Some(m.next_value()?),
                            _ => {
                                it.has_doc_id = true;
                                m.next_value::<IgnoredAny>()?;
                            }
                        }
                        Ok(())
                    })?;
                    Ok(it)
                }
            }
            d.deserialize_map(V)
        }
    }
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

    /// Reads `path` with the fast paths on and off; the results must be identical.
    fn both_ways<T: std::fmt::Debug>(
        f: impl Fn(&Path) -> Result<T, ScoreError>,
        path: &Path,
    ) -> (String, String) {
        let show = |r: Result<T, ScoreError>| match r {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e}"),
        };
        fast::OFF.with(|c| c.set(false));
        let on = show(f(path));
        fast::OFF.with(|c| c.set(true));
        let off = show(f(path));
        fast::OFF.with(|c| c.set(false));
        (on, off)
    }

    const IDS: [&str; 13] = [
        "1",
        "-3",
        "\"7\"",
        "\"\\u0037x\"",
        "1.5",
        "null",
        "true",
        "[1]",
        "{\"a\": 1}",
        "18446744073709551615",
        "18446744073709551616",
        "1e3",
        "-0",
    ];
    const ANSWERS: [&str; 9] = [
        "[\"a\", \"B\"]",
        "[]",
        "[\"a\", 1]",
        "\"a\"",
        "null",
        "[[\"a\"]]",
        "[\"x\\ny\", \"\\u00e9\"]",
        "{\"a\": [1]}",
        "[\"a\", null, \"b\"]",
    ];
    const STRS: [&str; 6] = ["\"q\"", "3", "null", "\"\\\"esc\\\"\"", "[\"a\"]", "false"];
    const KEYS_ID: [&str; 3] = ["question_id", "question\\u005fid", "question_Id"];

    fn field(key: &str, val: &str) -> String {
        format!("\"{key}\": {val}")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 400, ..Default::default() })]

        #[test]
        fn textvqa_fast_path_equals_value_path(
            items in proptest::collection::vec(
                (0..IDS.len(), 0..ANSWERS.len() + 1, 0..STRS.len() + 1, 0..KEYS_ID.len(), 0..4usize, proptest::bool::ANY),
                1..8,
            ),
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut body = String::from("{\"dataset_name\": \"textvqa\", \"data\": [\n");
            for (n, (id, ans, q, key, extra, nl)) in items.iter().enumerate() {
                let mut fields = vec![field(KEYS_ID[*key], IDS[*id])];
                if *ans < ANSWERS.len() {
                    fields.push(field("answers", ANSWERS[*ans]));
                }
                if *q < STRS.len() {
                    fields.push(field("question", STRS[*q]));
                }
                match extra {
                    1 => fields.push(field("image_id", "{\"deep\": [1, {\"x\": null}]}")),
                    2 => fields.push(field("answers", "[\"dup\"]")),
                    3 => fields.insert(0, field("question_id", "\"first\"")),
                    _ => {}
                }
                let sep = if *nl { ",\n  " } else { ", " };
                let item = if *extra == 0 && *id == 7 { "[1, 2]".to_string() } else { format!("{{{}}}", fields.join(sep)) };
                body.push_str(&item);
                body.push_str(if n + 1 < items.len() { ",\n" } else { "\n" });
            }
            body.push_str("]}");
            let p = d.path().join("t.json");
            std::fs::write(&p, &body).unwrap();
            let (on, off) = both_ways(read_textvqa_json, &p);
            proptest::prop_assert_eq!(on, off, "{}", body);
        }

        #[test]
        fn jsonl_fast_path_equals_value_path(
            lines in proptest::collection::vec(
                (0..IDS.len() + 1, 0..STRS.len() + 1, 0..KEYS_ID.len(), 0..6usize),
                1..8,
            ),
        ) {
            let d = tempfile::tempdir().unwrap();
            let mut body = String::new();
            for (id, pred, key, extra) in &lines {
                let mut fields = Vec::new();
                if *id < IDS.len() {
                    fields.push(field(KEYS_ID[*key], IDS[*id]));
                }
                if *pred < STRS.len() {
                    fields.push(field("prediction", STRS[*pred]));
                }
                match extra {
                    1 => fields.push(field("doc_id", "0")),
                    2 => fields.push(field("filtered_resps", "[\"x\"]")),
                    3 => fields.push(field("text", "\"t\", \"prompt\": \"p\"")),
                    4 => fields.push(field("prediction", "\"last\"")),
                    _ => {}
                }
                let line = match (extra, id) {
                    (5, 0) => "[1]".to_string(),
                    (5, 1) => "{\"question_id\": 1, \"prediction\": ".to_string(),
                    (5, 2) => "   ".to_string(),
                    _ => format!("{{{}}}", fields.join(", ")),
                };
                body.push_str(&line);
                body.push('\n');
            }
            let p = d.path().join("p.jsonl");
            std::fs::write(&p, &body).unwrap();
            let (on, off) = both_ways(read_predictions_jsonl, &p);
            proptest::prop_assert_eq!(on, off, "{}", body);
        }
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
