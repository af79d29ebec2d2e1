use std::fmt;
use std::path::PathBuf;

/// One configuration key whose value differs between baseline and current.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyDiff {
    pub key: String,
    pub baseline: String,
    pub current: String,
}

impl fmt::Display for KeyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: baseline {} vs current {}",
            self.key, self.baseline, self.current
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not valid JSON: {cause}")]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
    /// A file refused or unreadable (not a regular file, too large, not JSON).
    #[error(transparent)]
    Input(#[from] ovbench_harness::IoError),
    /// A record that parses but lacks or mistypes a field the extraction needs.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: record schema '{schema}' is not one this version reads (known: {known})")]
    UnknownSchema {
        path: PathBuf,
        schema: String,
        known: String,
    },
    #[error("cannot compare a '{baseline}' record with a '{current}' record")]
    KindMismatch { baseline: String, current: String },
    #[error(
        "configurations differ ({}); compare like with like, or pass --accept-diff {} if the difference is intended",
        .diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; "),
        .diffs.iter().map(|d| d.key.as_str()).collect::<Vec<_>>().join(" --accept-diff ")
    )]
    ConfigMismatch { diffs: Vec<KeyDiff> },
    /// A bad gate configuration (file or flag); `at` names the file and field.
    #[error("{at}: {message}")]
    Config { at: String, message: String },
}

impl GateError {
    pub(crate) fn invalid(path: &std::path::Path, message: impl Into<String>) -> Self {
        GateError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
