//! Records as every reader sees them: the envelope (workload key, metrics, provenance), read
//! from the current layout or, for records written before it existed, by the one legacy
//! reader ([`crate::legacy`]). Every record is validated the same way on the way in.

use crate::error::GateError;
use ovbench_harness::envelope::{self, Envelope, Schema};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The record kinds and versions written today: the suites' (`RecordBody::KIND/VERSION`; a
/// test of the binary checks the two agree) and `engines/1`, which
/// scripts/torch_vs_ovbench.py writes from the step records of its alternating runs.
pub const CURRENT_SCHEMAS: &[(&str, u32)] = &[
    ("step", 2),
    // repro/3, the layout before execution policies, carries its envelope: still readable.
    ("repro", 3),
    ("repro", 4),
    ("score", 2),
    ("eval", 2),
    ("engines", 1),
    ("memory", 2),
];

/// ovbench files that are inputs to a measurement, not measurements: listed, not judged.
pub const INPUT_SCHEMAS: &[(&str, u32, &str)] = &[(
    "export",
    1,
    "weights and batch exported for the PyTorch comparison",
)];

#[derive(Debug, Clone)]
pub struct LoadedRecord {
    pub path: PathBuf,
    pub envelope: Envelope,
    /// The schema the file was written with, when the legacy reader upgraded it.
    pub legacy: Option<Schema>,
}

impl LoadedRecord {
    pub fn kind(&self) -> &str {
        &self.envelope.schema.kind
    }

    /// The schema as written in the file.
    pub fn written_schema(&self) -> String {
        self.legacy
            .as_ref()
            .unwrap_or(&self.envelope.schema)
            .to_string()
    }

    /// Reads, upgrades if needed, and validates a record; any problem is an error naming the
    /// file and the field.
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let value = ovbench_harness::io::read_json(path)?;
        let rec = Self::from_value(path, &value)?;
        let problems = envelope::validate(&rec.envelope);
        if let Some(p) = problems.first() {
            let more = match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more problems)", n - 1),
            };
            return Err(GateError::invalid(path, format!("{p}{more}")));
        }
        Ok(rec)
    }

    /// The envelope of a parsed record, without validation.
    pub fn from_value(path: &Path, value: &Value) -> Result<Self, GateError> {
        let schema = schema_of(path, value)?;
        if let Some(env) = Envelope::from_value(path, value) {
            if !CURRENT_SCHEMAS.contains(&(schema.kind.as_str(), schema.version)) {
                return Err(unknown_schema(path, &schema));
            }
            let envelope = env.map_err(|e| GateError::invalid(path, e.to_string()))?;
            return Ok(LoadedRecord {
                path: path.into(),
                envelope,
                legacy: None,
            });
        }
        match crate::legacy::upgrade(path, &schema, value)? {
            Some(envelope) => Ok(LoadedRecord {
                path: path.into(),
                envelope,
                legacy: Some(schema),
            }),
            None => Err(unknown_schema(path, &schema)),
        }
    }
}

/// The `schema` field of a record, checked.
pub fn schema_of(path: &Path, value: &Value) -> Result<Schema, GateError> {
    match value.get("schema") {
        Some(Value::String(s)) => Schema::parse(s).ok_or_else(|| {
            GateError::invalid(
                path,
                format!("field `schema`: '{s}' is not of the form ovbench.<kind>/<version>"),
            )
        }),
        Some(other) => Err(GateError::invalid(
            path,
            format!(
                "field `schema`: expected a string, found {}",
                type_name(other)
            ),
        )),
        None if value.is_object() => Err(GateError::invalid(
            path,
            "field `schema`: missing (not an ovbench record)",
        )),
        None => Err(GateError::invalid(
            path,
            format!("expected a JSON object, found {}", type_name(value)),
        )),
    }
}

/// Every schema a reader accepts, for error messages.
pub fn known_schemas() -> String {
    let mut all: Vec<String> = CURRENT_SCHEMAS
        .iter()
        .map(|(k, v)| Schema::new(k, *v).to_string())
        .collect();
    all.extend(
        crate::legacy::LEGACY_SCHEMAS
            .iter()
            .map(|(k, v)| format!("{} (legacy)", Schema::new(k, *v))),
    );
    all.join(", ")
}

fn unknown_schema(path: &Path, schema: &Schema) -> GateError {
    GateError::UnknownSchema {
        path: path.into(),
        schema: schema.to_string(),
        known: known_schemas(),
    }
}

pub use ovbench_harness::io::json_type_name as type_name;

/// A folder walk's finding that is not a record: a name ending in `.json` that is not a
/// regular file, or a symlink that leaves the folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub path: PathBuf,
    pub why: String,
}

/// Files named on the command line, and every `*.json` below folders named there (sorted;
/// hidden entries skipped). Inside folders, symlinks are not followed (a link could lead
/// anywhere, `/proc` included) and names that are not regular files (FIFOs, devices) are
/// refused rather than opened; both are returned so a reader can say what it left out.
pub fn expand_paths(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Refused>), GateError> {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|cause| GateError::Read {
            path: p.clone(),
            cause,
        })?;
        if meta.is_dir() {
            walk_json(p, &mut out, &mut refused)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok((out, refused))
}

fn walk_json(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    refused: &mut Vec<Refused>,
) -> Result<(), GateError> {
    let rd = std::fs::read_dir(dir).map_err(|cause| GateError::Read {
        path: dir.to_path_buf(),
        cause,
    })?;
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        let hidden = e.file_name().to_str().is_some_and(|n| n.starts_with('.'));
        let Ok(ft) = e.file_type() else { continue };
        let json = p.extension().is_some_and(|x| x == "json");
        if hidden {
            continue;
        }
        if ft.is_symlink() {
            if json {
                refused.push(Refused {
                    path: p,
                    why: "a symbolic link (not followed inside a folder)".into(),
                });
            }
        } else if ft.is_dir() {
            walk_json(&p, out, refused)?;
        } else if json && ft.is_file() {
            out.push(p);
        } else if json {
            refused.push(Refused {
                path: p,
                why: "not a regular file".into(),
            });
        }
    }
    Ok(())
}

/// Loads every record among `paths` (files or folders), in order. Files that are not
/// ovbench records are errors; so are records with problems.
pub fn load_all(paths: &[PathBuf]) -> Result<Vec<LoadedRecord>, GateError> {
    let (files, refused) = expand_paths(paths)?;
    if let Some(r) = refused.first() {
        return Err(GateError::invalid(&r.path, &r.why));
    }
    files.iter().map(|p| LoadedRecord::load(p)).collect()
}

/// A record built in memory, for the readers' tests.
#[cfg(test)]
pub(crate) fn fixture(
    path: &str,
    kind: &str,
    workload: &[(&str, &str)],
    metrics: Vec<ovbench_harness::Metric>,
) -> LoadedRecord {
    let provenance: ovbench_harness::Provenance = serde_json::from_value(serde_json::json!({
        "created_utc": "2026-01-01T00:00:00Z",
        "command_line": ["ovbench"],
        "git": {"commit": "0353d5e0353d5e0353d5e0353d5e0353d5e0353d", "dirty": false, "note": null},
        "host": {"hostname": null, "cpu_model": "X", "physical_cores": 1, "logical_cpus": 2,
                 "memory_bytes": 1000, "os": "Linux", "kernel": null},
        "build": {"crate_version": "0.1.0", "rustc": "1.95", "profile": "release", "opt_level": "3",
                  "target": "x86_64", "features": []}
    }))
    .expect("valid provenance");
    LoadedRecord {
        path: path.into(),
        envelope: Envelope {
            schema: Schema::new(kind, 2),
            hardware: ovbench_harness::envelope::host_label(&provenance),
            provenance,
            workload: workload
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            metrics,
            conditions: Vec::new(),
        },
        legacy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn load_errors_name_file_and_field() {
        let p = Path::new("x.json");
        let e = LoadedRecord::from_value(p, &json!({"schema": 3})).unwrap_err();
        assert!(
            e.to_string().contains("x.json") && e.to_string().contains("`schema`"),
            "{e}"
        );
        let e = LoadedRecord::from_value(p, &json!([1])).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        let e = LoadedRecord::from_value(p, &json!({"schema": "ovbench.step/9", "metrics": []}))
            .unwrap_err();
        assert!(e.to_string().contains("ovbench.step/9"), "{e}");
        let e = LoadedRecord::from_value(p, &json!({"schema": "ovbench.step/99"})).unwrap_err();
        assert!(e.to_string().contains("ovbench.step/2"), "{e}");
    }

    #[test]
    fn folder_walks_refuse_special_files_and_do_not_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.json"), "{}").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/b.json"), "{}").unwrap();
        std::fs::write(d.join(".hidden.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/proc", d.join("proc")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.json")).unwrap();
        let fifo = d.join("f.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (files, refused) = expand_paths(&[d.to_path_buf()]).unwrap();
        assert_eq!(files, vec![d.join("a.json"), d.join("sub/b.json")]);
        let names: Vec<_> = refused.iter().map(|r| r.path.clone()).collect();
        assert_eq!(names, vec![d.join("f.json"), d.join("zero.json")]);
    }
}
