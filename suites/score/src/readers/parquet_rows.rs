//! lmms-eval's Hugging Face parquet rows (`lmms-lab/textvqa` validation, `lmms-lab/ChartQA`
//! test, `echo840/OCRBench` test). Only the needed columns are decoded: never `image`.

use crate::compat::Task;
use crate::error::{Loc, ScoreError};
use crate::scorer::{Annotation, Annotations};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::Type;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads shards in the given order; row numbers (lmms-eval `doc_id`) run on across shards.
pub fn read_lmms_parquet(task: Task, paths: &[PathBuf]) -> Result<Annotations, ScoreError> {
    let columns: &[&str] = match task {
        Task::TextVqa => &["question_id", "question", "answers"],
        Task::ChartQa => &["type", "question", "answer"],
        Task::OcrBench => &["dataset", "question", "question_type", "answer"],
    };
    let mut items = Vec::new();
    for path in paths {
        // The parquet crate asserts on some corrupt files (found by scripts/fuzz.sh): such a
        // panic is an error naming the file.
        ovbench_harness::guard::catch_quietly(|| read_shard(task, path, columns, &mut items))
            .map_err(|panic| {
                ScoreError::input(
                    Loc::file(path),
                    format!("not a readable parquet file (the parquet library failed: {panic})"),
                )
            })??;
    }
    if items.is_empty() {
        return Err(ScoreError::Usage("the parquet files hold no rows".into()));
    }
    Ok(Annotations {
        task,
        format: "lmms-eval-parquet",
        files: paths.to_vec(),
        items,
        warnings: Vec::new(),
    })
}

fn read_shard(
    task: Task,
    path: &Path,
    columns: &[&str],
    items: &mut Vec<Annotation>,
) -> Result<(), ScoreError> {
    let file = ovbench_harness::io::open_bounded(path, ovbench_harness::io::limit::DATA)?;
    if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(ScoreError::Empty { path: path.into() });
    }
    let bad = |e: parquet::errors::ParquetError| {
        ScoreError::input(Loc::file(path), format!("not a readable parquet file: {e}"))
    };
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let schema = reader.metadata().file_metadata().schema();
    let mut fields = Vec::new();
    for c in columns {
        let f = schema
            .get_fields()
            .iter()
            .find(|f| f.name() == *c)
            .ok_or_else(|| {
                let have: Vec<&str> = schema.get_fields().iter().map(|f| f.name()).collect();
                ScoreError::input(
                    Loc::file(path).with_field(c),
                    format!("column missing (the file has: {})", have.join(", ")),
                )
            })?;
        fields.push(Arc::clone(f));
    }
    let projection = Type::group_type_builder(schema.name())
        .with_fields(fields)
        .build()
        .map_err(bad)?;
    let rows = reader.get_row_iter(Some(projection)).map_err(bad)?;
    for (k, row) in rows.enumerate() {
        let loc = Loc::row(path, k);
        let row =
            row.map_err(|e| ScoreError::input(loc.clone(), format!("cannot decode row: {e}")))?;
        let global = items.len();
        items.push(annotation(task, &row, global, loc)?);
    }
    Ok(())
}

fn field<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, f)| f)
}

fn string(row: &Row, name: &str, loc: &Loc) -> Result<String, ScoreError> {
    match field(row, name) {
        Some(Field::Str(s)) => Ok(s.clone()),
        Some(other) => Err(ScoreError::input(
            loc.clone().with_field(name),
            format!("expected a string, found {other}"),
        )),
        None => Err(ScoreError::input(loc.clone().with_field(name), "missing")),
    }
}

fn string_list(row: &Row, name: &str, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    let loc = loc.clone().with_field(name);
    let list = match field(row, name) {
        Some(Field::ListInternal(l)) => l,
        Some(Field::Null) | None => {
            return Err(ScoreError::input(loc, "annotation has no answers"))
        }
        Some(other) => {
            return Err(ScoreError::input(
                loc,
                format!("expected a list of strings, found {other}"),
            ))
        }
    };
    if list.elements().is_empty() {
        return Err(ScoreError::input(
            loc,
            "annotation has no answers (empty list)",
        ));
    }
    list.elements()
        .iter()
        .map(|e| match e {
            Field::Str(s) => Ok(s.clone()),
            other => Err(ScoreError::input(
                loc.clone(),
                format!("answer {other} is not a string"),
            )),
        })
        .collect()
}

fn annotation(task: Task, row: &Row, global: usize, loc: Loc) -> Result<Annotation, ScoreError> {
    let question = string(row, "question", &loc).ok();
    Ok(match task {
        Task::TextVqa => {
            let id = match field(row, "question_id") {
                Some(Field::Int(i)) => i.to_string(),
                Some(Field::Long(i)) => i.to_string(),
                Some(Field::Str(s)) => s.clone(),
                _ => {
                    return Err(ScoreError::input(
                        loc.with_field("question_id"),
                        "missing or not an integer",
                    ))
                }
            };
            Annotation {
                id,
                answers: string_list(row, "answers", &loc)?,
                category: None,
                dataset_name: None,
                question,
                image: None,
                loc,
            }
        }
        Task::ChartQa => {
            let category = match string(row, "type", &loc)?.as_str() {
                "human_test" => "human",
                "augmented_test" => "augmented",
                other => {
                    return Err(ScoreError::input(
                        loc.with_field("type"),
                        format!("'{other}' is not human_test or augmented_test"),
                    ))
                }
            };
            let answer = string(row, "answer", &loc).map_err(|_| {
                ScoreError::input(loc.clone().with_field("answer"), "annotation has no answer")
            })?;
            Annotation {
                id: global.to_string(),
                answers: vec![answer],
                category: Some(category.into()),
                dataset_name: None,
                question,
                image: None,
                loc,
            }
        }
        Task::OcrBench => Annotation {
            id: global.to_string(),
            answers: string_list(row, "answer", &loc)?,
            category: Some(string(row, "question_type", &loc)?),
            dataset_name: Some(string(row, "dataset", &loc)?),
            question,
            image: None,
            loc,
        },
    })
}
