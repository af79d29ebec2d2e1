//! Errors and counted warnings. Every input problem names the file, and the line and field
//! where there is one.

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where in an input something was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Loc {
    pub path: PathBuf,
    /// 1-based line (for JSON arrays: the line where the item starts; for parquet: the row).
    pub line: Option<usize>,
    /// What `line` counts: "line", or "row" for parquet and xlsx.
    #[serde(skip)]
    pub unit: &'static str,
    pub field: Option<String>,
}

impl Loc {
    pub fn file(path: &Path) -> Loc {
        Loc {
            path: path.to_path_buf(),
            line: None,
            unit: "line",
            field: None,
        }
    }
    pub fn line(path: &Path, line: usize) -> Loc {
        Loc {
            path: path.to_path_buf(),
            line: Some(line),
            unit: "line",
            field: None,
        }
    }
    pub fn row(path: &Path, row: usize) -> Loc {
        Loc {
            path: path.to_path_buf(),
            line: Some(row),
            unit: "row",
            field: None,
        }
    }
    pub fn with_field(mut self, field: &str) -> Loc {
        self.field = Some(field.to_string());
        self
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            if self.unit == "line" {
                write!(f, ":{l}")?;
            } else {
                write!(f, " {} {l}", self.unit)?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, " (field '{field}')")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a regular file, larger than the input may be, or unreadable.
    #[error(transparent)]
    File(#[from] ovbench_harness::IoError),
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{loc}: invalid UTF-8 (byte offset {offset} in the file)")]
    Utf8 { loc: Loc, offset: usize },
    /// Malformed content or a missing / mistyped field.
    #[error("{loc}: {msg}")]
    Input { loc: Loc, msg: String },
    #[error("{loc}: duplicate question id '{id}' (first at {first})")]
    Duplicate { loc: Loc, id: String, first: String },
    #[error("{loc}: prediction for question id '{id}', which is not in the annotations{hint}")]
    UnknownId { loc: Loc, id: String, hint: String },
    /// An item the chosen toolkit refuses to score (it would raise).
    #[error("{loc}: {msg}")]
    Item { loc: Loc, msg: String },
}

impl ScoreError {
    pub fn input(loc: Loc, msg: impl Into<String>) -> ScoreError {
        ScoreError::Input {
            loc,
            msg: msg.into(),
        }
    }
}

/// A case the toolkit itself tolerates: counted, reported, never dropped silently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Stable short code, e.g. `answers-not-10`, `unknown-id`, `duplicate-id`.
    pub code: &'static str,
    pub loc: Option<Loc>,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loc {
            Some(l) => write!(f, "{l}: {} [{}]", self.message, self.code),
            None => write!(f, "{} [{}]", self.message, self.code),
        }
    }
}
