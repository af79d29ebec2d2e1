//! Path-aware reading of a `serde_json::Value`, for the claims file.
//!
//! serde's derive reports a wrong type without naming the field, which is no
//! help to a reviewer who mistyped one tolerance among seventeen claims. These
//! helpers carry the JSON path along so every error names the field.

use serde_json::{Map, Value};

use crate::ReferenceError;

type Result<T> = std::result::Result<T, ReferenceError>;

/// A JSON value together with its path and the file it came from.
#[derive(Clone, Copy)]
pub(crate) struct At<'v> {
    pub file: &'v str,
    pub path: &'v str,
    pub value: &'v Value,
}

/// A JSON object whose keys have been checked against an allowed list.
pub(crate) struct Obj<'v> {
    file: &'v str,
    path: String,
    map: &'v Map<String, Value>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'v> At<'v> {
    pub fn object(self, allowed: &[&str]) -> Result<Obj<'v>> {
        let map = self.value.as_object().ok_or_else(|| {
            ReferenceError::field_error(
                self.file,
                self.path,
                format!("expected an object, found {}", type_name(self.value)),
            )
        })?;
        // Unknown keys are refused so that a typo ("relativ") cannot silently
        // drop a tolerance.
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ReferenceError::field_error(
                self.file,
                join(self.path, k),
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            ));
        }
        Ok(Obj {
            file: self.file,
            path: self.path.to_owned(),
            map,
        })
    }
}

impl<'v> Obj<'v> {
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn err(&self, key: &str, message: impl Into<String>) -> ReferenceError {
        ReferenceError::field_error(self.file, self.path_of(key), message)
    }

    /// The value at `key`, treating an explicit `null` as absent.
    pub fn opt(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn req(&self, key: &str) -> Result<&'v Value> {
        self.opt(key)
            .ok_or_else(|| self.err(key, "missing required field"))
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> ReferenceError {
        self.err(key, format!("expected {want}, found {}", type_name(got)))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        let v = self.req(key)?;
        let s = v.as_str().ok_or_else(|| self.wrong(key, "a string", v))?;
        if s.trim().is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Ok(s.to_owned())
    }

    pub fn opt_string(&self, key: &str) -> Result<Option<String>> {
        match self.opt(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    pub fn f64(&self, key: &str) -> Result<f64> {
        let v = self.req(key)?;
        let x = v.as_f64().ok_or_else(|| self.wrong(key, "a number", v))?;
        if !x.is_finite() {
            return Err(self.err(key, "must be finite"));
        }
        Ok(x)
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.opt(key) {
            None => Ok(None),
            Some(_) => self.f64(key).map(Some),
        }
    }

    pub fn u64(&self, key: &str) -> Result<u64> {
        let v = self.req(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong(key, "a non-negative integer", v))
    }

    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match self.opt(key) {
            None => Ok(None),
            Some(_) => self.u64(key).map(Some),
        }
    }

    pub fn u32(&self, key: &str) -> Result<u32> {
        let x = self.u64(key)?;
        u32::try_from(x).map_err(|_| self.err(key, format!("{x} is too large")))
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.opt(key) {
            None => Ok(None),
            Some(_) => self.u32(key).map(Some),
        }
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        let v = self.req(key)?;
        v.as_bool().ok_or_else(|| self.wrong(key, "a boolean", v))
    }

    /// Calls `f` with each element of the array at `key` and its path.
    pub fn array<T>(&self, key: &str, mut f: impl FnMut(At<'_>) -> Result<T>) -> Result<Vec<T>> {
        let v = self.req(key)?;
        let items = v.as_array().ok_or_else(|| self.wrong(key, "an array", v))?;
        let base = self.path_of(key);
        items
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let path = format!("{base}[{i}]");
                f(At {
                    file: self.file,
                    path: &path,
                    value,
                })
            })
            .collect()
    }

    /// Calls `f` with the object at `key`.
    pub fn child<T>(&self, key: &str, f: impl FnOnce(At<'_>) -> Result<T>) -> Result<T> {
        let value = self.req(key)?;
        let path = self.path_of(key);
        f(At {
            file: self.file,
            path: &path,
            value,
        })
    }

    pub fn opt_child<T>(
        &self,
        key: &str,
        f: impl FnOnce(At<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.opt(key) {
            None => Ok(None),
            Some(_) => self.child(key, f).map(Some),
        }
    }
}
