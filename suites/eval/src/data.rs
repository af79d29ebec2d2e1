//! Evaluation items from any annotation format `ovbench score` reads: the question ids,
//! questions and answers come from `ovbench_score::readers` (so predictions join exactly as
//! `ovbench score` joins them); the images (and TextVQA OCR tokens) are found here.
//!
//! | format | image |
//! |---|---|
//! | TextVQA `TextVQA_0.5.1_val.json` | `train_images/<image_id>.jpg` (or `<image_id>.jpg`) beside the file or under `--images` |
//! | ChartQA `test_human.json` / `test_augmented.json` | `png/<imgname>` (or `<imgname>`) |
//! | `OCRBench.json` | `OCRBench_Images/<image_path>` (or `<image_path>`) |
//! | VLMEvalKit `.tsv` | the base64 `image` cell (or the row it refers to) |
//! | lmms-eval `.parquet` | the `image` struct's `bytes` (`ocr_tokens` for TextVQA) |

use crate::error::{EvalError, Result};
use ovbench_score::readers::{self, ReadOptions};
use ovbench_score::{Annotations, Task};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub enum ImageSource {
    Bytes(Vec<u8>),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Item {
    /// The id `ovbench score` joins on.
    pub id: String,
    pub question: String,
    pub image: ImageSource,
    pub ocr_tokens: Option<Vec<String>>,
    /// Where the row is, for messages.
    pub loc: String,
}

pub struct Dataset {
    pub task: Task,
    pub format: &'static str,
    pub annotations: Annotations,
    pub items: Vec<Item>,
}

impl ImageSource {
    pub fn bytes(&self, loc: &str) -> Result<Vec<u8>> {
        match self {
            ImageSource::Bytes(b) => Ok(b.clone()),
            ImageSource::File(p) => {
                ovbench_harness::io::read_regular(p, ovbench_harness::io::limit::IMAGE).map_err(
                    |e| EvalError::Dataset {
                        loc: loc.into(),
                        msg: format!("image: {e}"),
                    },
                )
            }
        }
    }
}

fn derr(loc: impl ToString, msg: impl Into<String>) -> EvalError {
    EvalError::Dataset {
        loc: loc.to_string(),
        msg: msg.into(),
    }
}

/// Reads the dataset at `path` (a file or a folder). `images`: where image files live, for
/// the JSON formats (default: beside the annotation file).
pub fn load(task: Task, path: &Path, images: Option<&Path>) -> Result<Dataset> {
    let ann = readers::read_annotations(
        task,
        &[path.to_path_buf()],
        &ReadOptions {
            decode_images: true,
        },
    )?;
    let n = ann.items.len();
    let mut sources: Vec<(ImageSource, Option<Vec<String>>)> = match ann.format {
        "vlmevalkit-tsv" => ann
            .items
            .iter()
            .map(|a| match &a.image {
                Some(b) if !b.is_empty() => Ok((ImageSource::Bytes(b.clone()), None)),
                _ => Err(derr(a.loc.clone().with_field("image"), "row has no image")),
            })
            .collect::<Result<_>>()?,
        "lmms-eval-parquet" => {
            let mut out = Vec::new();
            for f in &ann.files {
                // The parquet crate asserts on some corrupt files: an error naming the file.
                ovbench_harness::guard::catch_quietly(|| parquet_images(task, f, &mut out))
                    .map_err(|panic| {
                        derr(
                            f.display(),
                            format!(
                                "not a readable parquet file (the parquet library failed: {panic})"
                            ),
                        )
                    })??;
            }
            out
        }
        "textvqa-json" | "chartqa-json" | "ocrbench-json" => json_images(&ann, images)?,
        other => {
            return Err(EvalError::Usage(format!(
                "{}: format '{other}' has no images to evaluate on",
                path.display()
            )))
        }
    };
    if sources.len() != n {
        return Err(EvalError::Usage(format!(
            "{}: found {} images for {n} questions",
            path.display(),
            sources.len()
        )));
    }
    let mut items = Vec::with_capacity(n);
    for (a, (img, ocr)) in ann.items.iter().zip(sources.drain(..)) {
        let loc = a.loc.to_string();
        let question = a
            .question
            .clone()
            .ok_or_else(|| derr(a.loc.clone().with_field("question"), "row has no question"))?;
        if let ImageSource::File(p) = &img {
            if !p.is_file() {
                return Err(derr(
                    &loc,
                    format!(
                        "row has no image: {} does not exist or is not a regular file",
                        p.display()
                    ),
                ));
            }
        }
        items.push(Item {
            id: a.id.clone(),
            question,
            image: img,
            ocr_tokens: ocr,
            loc,
        });
    }
    Ok(Dataset {
        task,
        format: ann.format,
        annotations: ann,
        items,
    })
}

fn read_json(path: &Path) -> Result<Value> {
    let text = ovbench_harness::io::read_text(path, ovbench_harness::io::limit::DATA)?;
    serde_json::from_str(&text)
        .map_err(|e| derr(format!("{}:{}", path.display(), e.line()), e.to_string()))
}

fn pick(dir: &Path, sub: &str, name: &str) -> PathBuf {
    let nested = dir.join(sub).join(name);
    if nested.exists() {
        nested
    } else if dir.join(name).exists() {
        dir.join(name)
    } else {
        nested
    }
}

fn json_images(
    ann: &Annotations,
    images: Option<&Path>,
) -> Result<Vec<(ImageSource, Option<Vec<String>>)>> {
    let mut out = Vec::new();
    let mut files = ann.files.clone();
    if ann.format == "chartqa-json" {
        // The reader puts the human split first.
        files.sort_by_key(|f| {
            !f.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("human")
        });
    }
    for f in &files {
        let dir = images
            .map(Path::to_path_buf)
            .unwrap_or_else(|| f.parent().unwrap_or(Path::new(".")).to_path_buf());
        let v = read_json(f)?;
        let (rows, field, sub) = match ann.format {
            "textvqa-json" => (v.get("data").cloned(), "image_id", "train_images"),
            "chartqa-json" => (Some(v.clone()), "imgname", "png"),
            _ => (Some(v.clone()), "image_path", "OCRBench_Images"),
        };
        let rows = rows
            .and_then(|r| r.as_array().cloned())
            .ok_or_else(|| derr(f.display(), "expected a list of questions"))?;
        for (i, r) in rows.iter().enumerate() {
            let name = r
                .get(field)
                .and_then(|x| x.as_str())
                .filter(|s| !s.is_empty());
            let Some(name) = name else {
                return Err(derr(
                    format!("{} item {i} (field '{field}')", f.display()),
                    "row has no image",
                ));
            };
            let file = if ann.format == "textvqa-json" {
                pick(&dir, sub, &format!("{name}.jpg"))
            } else {
                pick(&dir, sub, name)
            };
            out.push((ImageSource::File(file), None));
        }
    }
    Ok(out)
}

fn parquet_images(
    task: Task,
    path: &Path,
    out: &mut Vec<(ImageSource, Option<Vec<String>>)>,
) -> Result<()> {
    let file = ovbench_harness::io::open_bounded(path, ovbench_harness::io::limit::DATA)?;
    let bad = |e: parquet::errors::ParquetError| {
        derr(path.display(), format!("not a readable parquet file: {e}"))
    };
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let schema = reader.metadata().file_metadata().schema();
    let mut wanted = vec!["image"];
    let has_ocr = schema.get_fields().iter().any(|f| f.name() == "ocr_tokens");
    if task == Task::TextVqa && has_ocr {
        wanted.push("ocr_tokens");
    }
    let mut fields = Vec::new();
    for w in &wanted {
        let f = schema
            .get_fields()
            .iter()
            .find(|f| f.name() == *w)
            .ok_or_else(|| {
                derr(
                    format!("{} (field '{w}')", path.display()),
                    "column missing: rows have no image",
                )
            })?;
        fields.push(std::sync::Arc::clone(f));
    }
    let projection = parquet::schema::types::Type::group_type_builder(schema.name())
        .with_fields(fields)
        .build()
        .map_err(bad)?;
    for (k, row) in reader
        .get_row_iter(Some(projection))
        .map_err(bad)?
        .enumerate()
    {
        let loc = format!("{} row {k}", path.display());
        let row = row.map_err(|e| derr(&loc, format!("cannot decode row: {e}")))?;
        let mut bytes = None;
        let mut ocr = None;
        for (name, f) in row.get_column_iter() {
            match (name.as_str(), f) {
                ("image", Field::Group(g)) => {
                    for (n, x) in g.get_column_iter() {
                        if let ("bytes", Field::Bytes(b)) = (n.as_str(), x) {
                            bytes = Some(b.data().to_vec());
                        }
                    }
                }
                ("ocr_tokens", Field::ListInternal(l)) => {
                    ocr = Some(
                        l.elements()
                            .iter()
                            .filter_map(|e| match e {
                                Field::Str(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        match bytes {
            Some(b) if !b.is_empty() => out.push((ImageSource::Bytes(b), ocr)),
            _ => return Err(derr(format!("{loc} (field 'image')"), "row has no image")),
        }
    }
    Ok(())
}
