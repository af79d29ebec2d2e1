//! The one error type of this crate. It is `Clone` so that the embedded data,
//! parsed once into a `OnceLock`, can hand the same failure to every caller.

/// Why reference data or a claims file could not be used. Every variant names
/// the file; `Field` also names the offending field as a JSON path such as
/// `claims[3].tolerance.relative`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    /// The text is not JSON, or (for the embedded tables) does not match the
    /// expected shape; serde's message names the field where it can.
    #[error("{file}: line {line}, column {column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A field is missing, has the wrong type, or fails a consistency check.
    #[error("{file}: {field}: {message}")]
    Field {
        file: String,
        field: String,
        message: String,
    },
    /// A CLIPA schedule cannot be planned for the asked backbone/resolution.
    #[error("schedule {recipe}: {message}")]
    Schedule { recipe: String, message: String },
}

impl ReferenceError {
    /// The file the error is about (the recipe for schedule errors).
    pub fn file(&self) -> &str {
        match self {
            Self::Read { file, .. } | Self::Parse { file, .. } | Self::Field { file, .. } => file,
            Self::Schedule { recipe, .. } => recipe,
        }
    }

    /// The JSON path of the offending field, where known.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn field_error(
        file: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Field {
            file: file.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn from_serde(file: &str, e: &serde_json::Error) -> Self {
        Self::Parse {
            file: file.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}
