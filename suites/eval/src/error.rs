//! Errors of the evaluation pipeline: each names the file and, where there is one, the
//! tensor, line, row or field. Nothing in this crate panics on bad input.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    #[error("{path}: tensor '{name}' is missing{hint}")]
    MissingTensor {
        path: PathBuf,
        name: String,
        hint: String,
    },
    #[error("{path}: tensor '{name}' has shape {found:?}, expected {expected}")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("{path}: tensor '{name}' has dtype {found}, expected a floating-point weight")]
    DType {
        path: PathBuf,
        name: String,
        found: String,
    },
    #[error("{path}: unexpected tensor '{name}': {msg}")]
    Unexpected {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{path} (field '{field}'): {msg}")]
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{loc}: {msg}")]
    Dataset { loc: String, msg: String },
    #[error("{path}: tokenizer: {msg}")]
    Tokenizer { path: PathBuf, msg: String },
    #[error("{path}:{line}: response cache: {msg}")]
    Cache {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    #[error(transparent)]
    Score(Box<ovbench_score::ScoreError>),
    #[error(transparent)]
    Record(Box<ovbench_harness::IoError>),
    #[error("{context}: {source}")]
    Candle {
        context: String,
        source: candle_core::Error,
    },
    #[error("{0}")]
    Usage(String),
    /// NaN or infinity where the model must give numbers (NaN weights, an overflow): no
    /// prediction can be made, and an empty one would score as a wrong answer.
    #[error("{item}: the model's {what} are not finite (NaN or infinity: check the weights); no prediction can be made")]
    NonFinite { item: String, what: String },
}

pub type Result<T, E = EvalError> = std::result::Result<T, E>;

impl From<ovbench_score::ScoreError> for EvalError {
    fn from(e: ovbench_score::ScoreError) -> Self {
        EvalError::Score(Box::new(e))
    }
}

impl From<ovbench_harness::IoError> for EvalError {
    fn from(e: ovbench_harness::IoError) -> Self {
        EvalError::Record(Box::new(e))
    }
}

/// Attaches a context to candle errors.
pub(crate) trait CandleCtx<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> CandleCtx<T> for std::result::Result<T, candle_core::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| EvalError::Candle {
            context: context(),
            source,
        })
    }
}

/// A configuration or tokenizer file as text: a regular file (a FIFO or device is refused, not
/// waited on) of at most [`ovbench_harness::io::limit::CONFIG`] bytes.
pub(crate) fn read_config(path: &std::path::Path) -> Result<String> {
    Ok(ovbench_harness::io::read_text(
        path,
        ovbench_harness::io::limit::CONFIG,
    )?)
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.into(),
        source,
    }
}
