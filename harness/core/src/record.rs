//! The record envelope every ovbench command writes, and atomic file output.

use crate::provenance::Provenance;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ovbench record: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: record schema '{found}' is not one this version reads (expected {expected})")]
    Schema {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// One record: a versioned schema name, provenance, and the command's own body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<T> {
    /// `ovbench.<kind>/<version>`, for example `ovbench.step/1`.
    pub schema: String,
    pub provenance: Provenance,
    #[serde(flatten)]
    pub body: T,
}

impl<T: Serialize> Record<T> {
    pub fn new(kind: &str, version: u32, provenance: Provenance, body: T) -> Self {
        Record {
            schema: format!("ovbench.{kind}/{version}"),
            provenance,
            body,
        }
    }

    /// Writes the record as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        let json = serde_json::to_vec_pretty(self).expect("records serialise");
        write_atomic(path, &json)
    }
}

impl<T: for<'de> Deserialize<'de>> Record<T> {
    /// Reads a record and checks its schema name.
    pub fn read(path: &Path, expected_schema: &str) -> Result<Self, RecordError> {
        let bytes = std::fs::read(path).map_err(|source| RecordError::Read {
            path: path.into(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| RecordError::Parse {
                path: path.into(),
                source,
            })?;
        let found = value
            .get("schema")
            .and_then(|s| s.as_str())
            .unwrap_or("<none>")
            .to_string();
        if found != expected_schema {
            return Err(RecordError::Schema {
                path: path.into(),
                found,
                expected: expected_schema.into(),
            });
        }
        serde_json::from_value(value).map_err(|source| RecordError::Parse {
            path: path.into(),
            source,
        })
    }
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// a temporary file in the same folder, flushed and synced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    let err = |source| RecordError::Write {
        path: path.into(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".ovbench-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A default file name for a record: `<kind>-<UTC timestamp>.json` under `dir`.
pub fn default_path(dir: &Path, kind: &str) -> PathBuf {
    let stamp = time::OffsetDateTime::now_utc();
    let name = format!(
        "{kind}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.json",
        stamp.year(),
        stamp.month() as u8,
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    dir.join(name)
}

/// SHA-256 of a file, hex encoded, streaming.
pub fn sha256_file(path: &Path) -> Result<String, RecordError> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).map_err(|source| RecordError::Read {
        path: path.into(),
        source,
    })?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|source| RecordError::Read {
        path: path.into(),
        source,
    })?;
    Ok(format!("{:x}", h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/r.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn read_checks_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let prov = Provenance::collect("0", &[], dir.path());
        #[derive(Debug, Serialize, Deserialize)]
        struct B {
            x: u32,
        }
        Record::new("step", 1, prov, B { x: 3 }).write(&p).unwrap();
        let r: Record<B> = Record::read(&p, "ovbench.step/1").unwrap();
        assert_eq!(r.body.x, 3);
        let e = Record::<B>::read(&p, "ovbench.score/1").unwrap_err();
        assert!(e.to_string().contains("ovbench.step/1"), "{e}");
    }
}
