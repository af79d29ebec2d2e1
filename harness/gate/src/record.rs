//! Records read as plain JSON: the extraction asks for the paths it needs, so fields added
//! by newer writers (GPU memory views, an OOM status) never break reading.

use crate::error::GateError;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LoadedRecord {
    pub path: PathBuf,
    /// Full schema string, e.g. `ovbench.step/1`.
    pub schema: String,
    /// `step`, `score`, `repro`, ...
    pub kind: String,
    pub version: u32,
    pub value: Value,
}

/// Splits `ovbench.<kind>/<version>`.
pub fn parse_schema(s: &str) -> Option<(String, u32)> {
    let rest = s.strip_prefix("ovbench.")?;
    let (kind, version) = rest.split_once('/')?;
    if kind.is_empty()
        || !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    Some((kind.to_string(), version.parse().ok()?))
}

impl LoadedRecord {
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let bytes = std::fs::read(path).map_err(|cause| GateError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|cause| GateError::Parse {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_value(path, value)
    }

    pub fn from_value(path: &Path, value: Value) -> Result<Self, GateError> {
        let schema = match value.get("schema") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(GateError::invalid(
                    path,
                    format!(
                        "field `schema`: expected a string, found {}",
                        type_name(other)
                    ),
                ))
            }
            None if value.is_object() => {
                return Err(GateError::invalid(
                    path,
                    "field `schema`: missing (not an ovbench record)",
                ))
            }
            None => {
                return Err(GateError::invalid(
                    path,
                    format!("expected a JSON object, found {}", type_name(&value)),
                ))
            }
        };
        let (kind, version) = parse_schema(&schema).ok_or_else(|| {
            GateError::invalid(
                path,
                format!("field `schema`: '{schema}' is not of the form ovbench.<kind>/<version>"),
            )
        })?;
        Ok(LoadedRecord {
            path: path.to_path_buf(),
            schema,
            kind,
            version,
            value,
        })
    }

    /// The value at a `/`-separated path (`runs/0/summary`), if present.
    pub fn at(&self, path: &str) -> Option<&Value> {
        at(&self.value, path)
    }

    /// An error naming this file and `field`.
    pub fn field_error(&self, field: &str, message: impl std::fmt::Display) -> GateError {
        GateError::invalid(&self.path, format!("field `{field}`: {message}"))
    }
}

/// The value at a `/`-separated path below `v`; array elements by index.
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short human form of a configuration value: strings as is, `{size, patch}` models as
/// `size/patch`, `{kind, index}` devices as `kind:index`, other values as compact JSON.
pub fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Object(m) => {
            if let (Some(size), Some(patch)) = (m.get("size"), m.get("patch")) {
                return format!("{}/{}", display_value(size), display_value(patch));
            }
            if let Some(kind) = m.get("kind") {
                return match m.get("index") {
                    Some(i) if !i.is_null() => {
                        format!("{}:{}", display_value(kind), display_value(i))
                    }
                    _ => display_value(kind),
                };
            }
            v.to_string()
        }
        Value::Array(_) => v.to_string(),
    }
}

/// The device kind (`cpu`, `cuda`, ...) of a device value, whatever its encoding.
pub fn device_kind(v: &Value) -> String {
    match v {
        Value::Object(m) if m.contains_key("kind") => display_value(&m["kind"]),
        other => {
            let s = display_value(other);
            s.split(':').next().unwrap_or("").to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_strings() {
        assert_eq!(parse_schema("ovbench.step/1"), Some(("step".into(), 1)));
        assert_eq!(parse_schema("ovbench.step"), None);
        assert_eq!(parse_schema("other.step/1"), None);
        assert_eq!(parse_schema("ovbench.step/x"), None);
    }

    #[test]
    fn values_display_compactly() {
        assert_eq!(display_value(&json!({"size": "Ti", "patch": 16})), "Ti/16");
        assert_eq!(
            display_value(&json!({"kind": "cuda", "index": 1})),
            "cuda:1"
        );
        assert_eq!(device_kind(&json!({"kind": "cuda", "index": 1})), "cuda");
        assert_eq!(device_kind(&json!("cuda:0")), "cuda");
        assert_eq!(device_kind(&json!({"kind": "cpu"})), "cpu");
    }

    #[test]
    fn load_errors_name_file_and_field() {
        let p = Path::new("x.json");
        let e = LoadedRecord::from_value(p, json!({"schema": 3})).unwrap_err();
        assert!(
            e.to_string().contains("x.json") && e.to_string().contains("`schema`"),
            "{e}"
        );
        let e = LoadedRecord::from_value(p, json!([1])).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let r = LoadedRecord::from_value(p, json!({"schema": "ovbench.step/1", "a": [{"b": 2}]}))
            .unwrap();
        assert_eq!(r.at("a/0/b"), Some(&json!(2)));
        assert_eq!(r.at("a/1/b"), None);
    }
}
