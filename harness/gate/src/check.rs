//! `ovbench check`: validates a results folder the way a reviewer's checker would, and
//! says what is wrong with each record.

use crate::error::GateError;
use crate::record::{expand_paths, LoadedRecord, INPUT_SCHEMAS};
use ovbench_harness::envelope::{self, Measurement, Schema};
use ovbench_harness::Provenance;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub allow_dirty: bool,
    /// Fewest measured steps per recipe for a step record.
    pub min_steps: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            allow_dirty: false,
            min_steps: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    /// Not a record this checker judges.
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct RecordCheck {
    pub path: PathBuf,
    pub schema: Option<String>,
    pub findings: Vec<Finding>,
}

impl RecordCheck {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }

    /// A JSON file that is not an ovbench measurement (no schema, or an input such as an
    /// export): listed so that nothing passes unseen, but neither passed nor failed.
    pub fn skipped(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Skip)
    }
}

#[derive(Debug, Clone)]
pub struct CheckReport {
    pub root: PathBuf,
    pub records: Vec<RecordCheck>,
}

impl CheckReport {
    /// Fails when a record has an error, or when there was no record to judge at all.
    pub fn failed(&self) -> bool {
        self.checked() == 0 || self.records.iter().any(|r| r.errors() > 0)
    }

    /// Records judged (skipped files not counted).
    pub fn checked(&self) -> usize {
        self.records.iter().filter(|r| !r.skipped()).count()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for r in &self.records {
            let tag = if r.errors() > 0 {
                "FAIL"
            } else if r.skipped() {
                "skip"
            } else {
                "ok  "
            };
            let schema = r.schema.as_deref().unwrap_or("no schema");
            s.push_str(&format!("{tag} {} ({schema})\n", r.path.display()));
            for f in &r.findings {
                let sev = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Skip => "skipped",
                };
                s.push_str(&format!("     - {sev}: {}\n", f.message));
            }
        }
        let bad = self.records.iter().filter(|r| r.errors() > 0).count();
        let skipped = self.records.len() - self.checked();
        if self.checked() == 0 {
            s.push_str(&format!(
                "no ovbench records (*.json with a known schema) found under {}",
                self.root.display()
            ));
        } else {
            let n = self.checked();
            let noun = if n == 1 { "record" } else { "records" };
            s.push_str(&format!("{n} {noun} checked, {bad} with problems"));
        }
        if skipped > 0 {
            s.push_str(&format!(
                "; {skipped} skipped (not measurements, archived or links; listed above)"
            ));
        }
        s.push('\n');
        s
    }
}

/// Folders with this name hold records kept for history that no longer pass (their README
/// says why): a check of the folder above lists them as skipped.
pub const ARCHIVE_DIR: &str = "archive";

/// Checks every `*.json` under `root` (a folder, or one file). Errors only when the folder
/// itself cannot be read.
pub fn check_dir(root: &Path, opts: &CheckOptions) -> Result<CheckReport, GateError> {
    let mut records = Vec::new();
    let mut roots = vec![root.to_path_buf()];
    // Archive folders below the root are skipped, each listed once.
    if root.is_dir() {
        roots.clear();
        collect_roots(root, &mut roots, &mut records)?;
    }
    let (files, refused) = expand_paths(&roots)?;
    for r in refused {
        let symlink = r.why.contains("symbolic link");
        records.push(RecordCheck {
            path: r.path,
            schema: None,
            findings: vec![Finding {
                severity: if symlink {
                    Severity::Skip
                } else {
                    Severity::Error
                },
                message: r.why,
            }],
        });
    }
    for p in files {
        let parsed = ovbench_harness::io::read_json(&p).map_err(|e| e.to_string());
        records.push(check_value(&p, parsed, opts));
    }
    records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(CheckReport {
        root: root.to_path_buf(),
        records,
    })
}

/// The folders to walk below `dir`: itself, minus archive folders, which are noted as skipped.
fn collect_roots(
    dir: &Path,
    roots: &mut Vec<PathBuf>,
    skipped: &mut Vec<RecordCheck>,
) -> Result<(), GateError> {
    let has_archive = std::fs::read_dir(dir)
        .map_err(|cause| GateError::Read {
            path: dir.to_path_buf(),
            cause,
        })?
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() == ARCHIVE_DIR && e.file_type().is_ok_and(|t| t.is_dir()));
    if !has_archive {
        // No archive here: walk it whole, unless one sits deeper.
        let mut deeper = false;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && contains_archive(&e.path()) {
                deeper = true;
            }
        }
        if !deeper {
            roots.push(dir.to_path_buf());
            return Ok(());
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|cause| GateError::Read {
            path: dir.to_path_buf(),
            cause,
        })?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && e.file_name() == ARCHIVE_DIR {
            skipped.push(RecordCheck {
                path: p.clone(),
                schema: None,
                findings: vec![Finding {
                    severity: Severity::Skip,
                    message: format!(
                        "archived records, kept for history (see {}/README.md); check the folder itself to judge them",
                        p.display()
                    ),
                }],
            });
        } else if ft.is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
            collect_roots(&p, roots, skipped)?;
        } else if p.extension().is_some_and(|x| x == "json") {
            roots.push(p);
        }
    }
    Ok(())
}

fn contains_archive(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_type().is_ok_and(|t| t.is_dir())
                && (e.file_name() == ARCHIVE_DIR || contains_archive(&e.path()))
        })
}

fn error(message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Error,
        message: message.into(),
    }
}

fn warning(message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        message: message.into(),
    }
}

/// Checks one parsed record (or the reason it could not be read).
pub fn check_value(path: &Path, parsed: Result<Value, String>, opts: &CheckOptions) -> RecordCheck {
    let mut rc = RecordCheck {
        path: path.to_path_buf(),
        schema: None,
        findings: Vec::new(),
    };
    let v = match parsed {
        Ok(v) => v,
        Err(e) => {
            rc.findings.push(error(e));
            return rc;
        }
    };
    let Some(schema) = v.get("schema").and_then(Value::as_str) else {
        rc.findings.push(Finding {
            severity: Severity::Skip,
            message: "no `schema` field: not an ovbench record".into(),
        });
        return rc;
    };
    rc.schema = Some(schema.to_string());
    if let Some(s) = Schema::parse(schema) {
        if let Some((_, _, what)) = INPUT_SCHEMAS
            .iter()
            .find(|(k, ver, _)| *k == s.kind && *ver == s.version)
        {
            rc.findings.push(Finding {
                severity: Severity::Skip,
                message: format!("{what}: an input, not a measurement"),
            });
            return rc;
        }
    }
    let rec = match LoadedRecord::from_value(path, &v) {
        Ok(r) => r,
        Err(e) => {
            let msg = e.to_string();
            let prefix = format!("{}: ", path.display());
            rc.findings
                .push(error(msg.strip_prefix(&prefix).unwrap_or(&msg).to_string()));
            return rc;
        }
    };
    if rec.legacy.is_some() {
        rc.schema = Some(format!("{schema}, legacy layout"));
    }
    let env = &rec.envelope;
    rc.findings.extend(
        envelope::validate(env)
            .into_iter()
            .map(|p| error(p.to_string())),
    );
    check_provenance(&env.provenance, opts, &mut rc.findings);
    for c in env.conditions.iter().filter(|c| !c.holds) {
        let detail = if c.detail.is_empty() {
            String::new()
        } else {
            format!(": {}", c.detail)
        };
        rc.findings.push(error(format!(
            "{} does not hold{detail}: the record's numbers mean nothing without it",
            c.name
        )));
    }
    let mut timed = 0;
    for m in &env.metrics {
        let Measurement::Timed { samples, warmup } = &m.measurement else {
            continue;
        };
        timed += 1;
        if *warmup == 0 {
            rc.findings.push(error(format!(
                "{}: no warm-up before its samples (compilation, allocator growth inside the measurement)",
                m.name
            )));
        }
        if samples.len() < opts.min_steps {
            rc.findings.push(error(format!(
                "{}: {} samples, fewer than {}",
                m.name,
                samples.len(),
                opts.min_steps
            )));
        }
    }
    if timed > 0 && env.provenance.build.profile == "debug" {
        rc.findings.push(warning(
            "built with the debug profile: timings are not representative",
        ));
    }
    // One finding per kind of problem is enough to act on; repeated ones are counted.
    rc.findings = collapse(rc.findings);
    rc
}

/// Keeps the first finding of each message shape (metric name stripped), noting how many
/// more there were.
fn collapse(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<(Finding, usize, String)> = Vec::new();
    for f in findings {
        let shape = f
            .message
            .split_once(": ")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_else(|| f.message.clone());
        match out
            .iter_mut()
            .find(|(g, _, s)| g.severity == f.severity && *s == shape)
        {
            Some((_, n, _)) => *n += 1,
            None => out.push((f, 0, shape)),
        }
    }
    out.into_iter()
        .map(|(mut f, n, _)| {
            if n > 0 {
                f.message.push_str(&format!(" (and {n} more like it)"));
            }
            f
        })
        .collect()
}

fn check_provenance(p: &Provenance, opts: &CheckOptions, out: &mut Vec<Finding>) {
    let mut need = |value: &str, field: &str, what: &str| {
        if value.trim().is_empty() || value == "unknown" {
            out.push(error(format!(
                "provenance.{field} is empty or unknown: {what} not recorded"
            )));
        }
    };
    need(&p.created_utc, "created_utc", "creation time");
    need(&p.host.cpu_model, "host.cpu_model", "CPU model");
    need(&p.host.os, "host.os", "operating system");
    need(
        &p.build.crate_version,
        "build.crate_version",
        "harness version",
    );
    need(&p.build.rustc, "build.rustc", "compiler version");
    need(&p.build.profile, "build.profile", "build profile");
    need(&p.build.target, "build.target", "target triple");
    if p.command_line.is_empty() {
        out.push(error(
            "provenance.command_line missing or empty: the run cannot be repeated",
        ));
    }
    if p.host.logical_cpus == 0 {
        out.push(error(
            "provenance.host.logical_cpus is 0: CPU count not recorded",
        ));
    }
    if p.host.memory_bytes == 0 {
        out.push(error(
            "provenance.host.memory_bytes is 0: host memory not recorded",
        ));
    }
    match &p.git.commit {
        Some(s) if s.len() >= 7 && s.chars().all(|c| c.is_ascii_hexdigit()) => {}
        Some(s) => out.push(error(format!(
            "provenance.git.commit '{s}' is not a commit hash"
        ))),
        None => out.push(error(
            "provenance.git.commit missing: source revision not recorded",
        )),
    }
    match p.git.dirty {
        Some(false) => {}
        Some(true) if opts.allow_dirty => {
            out.push(warning("made from a dirty tree (allowed by --allow-dirty)"))
        }
        Some(true) => out.push(error(
            "made from a dirty tree: uncommitted changes are not reproducible (--allow-dirty to accept)",
        )),
        None if opts.allow_dirty => out.push(warning("dirty state unknown")),
        None => out.push(error(
            "provenance.git.dirty missing: cannot tell whether the tree was clean",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A current-layout step record that passes.
    fn good() -> Value {
        json!({
            "schema": "ovbench.step/2",
            "provenance": {
                "created_utc": "2025-01-01T00:00:00Z",
                "command_line": ["ovbench", "step"],
                "git": {"commit": "0353d5e0353d5e0353d5e0353d5e0353d5e0353d", "dirty": false, "note": null},
                "host": {"hostname": null, "cpu_model": "Xeon", "physical_cores": 1, "logical_cpus": 2,
                         "memory_bytes": 1000, "os": "Linux", "kernel": null},
                "build": {"crate_version": "0.1.0", "rustc": "1.90", "profile": "release", "opt_level": "3",
                          "target": "x86_64", "features": []}
            },
            "workload": {"model": "Ti/16", "batch": "8"},
            "hardware": "Xeon (2 threads)",
            "metrics": [
                {"name": "ov1/params_total", "unit": "params", "direction": "neither",
                 "kind": "deterministic", "value": 5.0},
                {"name": "ov1/step_s", "unit": "s", "direction": "smaller_is_better",
                 "kind": "timed", "samples": [0.1, 0.1, 0.1, 0.1, 0.1], "warmup": 1}
            ]
        })
    }

    fn msgs(v: Value, opts: &CheckOptions) -> Vec<String> {
        check_value(Path::new("r.json"), Ok(v), opts)
            .findings
            .into_iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.message)
            .collect()
    }

    #[test]
    fn good_record_passes() {
        assert_eq!(msgs(good(), &CheckOptions::default()), Vec::<String>::new());
    }

    #[test]
    fn each_problem_is_named() {
        let o = CheckOptions::default();
        let has = |v: Value, o: &CheckOptions, s: &str| {
            let m = msgs(v, o);
            assert!(m.iter().any(|m| m.contains(s)), "{s}: {m:?}");
        };
        let mut v = good();
        v["metrics"][1]["warmup"] = json!(0);
        has(v, &o, "no warm-up");
        let mut v = good();
        v["provenance"]["git"]["dirty"] = json!(true);
        has(v.clone(), &o, "dirty tree");
        assert!(msgs(
            v,
            &CheckOptions {
                allow_dirty: true,
                ..o.clone()
            }
        )
        .is_empty());
        let mut v = good();
        v["provenance"]["host"]["cpu_model"] = json!("unknown");
        has(v, &o, "cpu_model");
        let mut v = good();
        v["schema"] = json!("ovbench.step/9");
        has(v, &o, "ovbench.step/9");
        has(
            good(),
            &CheckOptions {
                min_steps: 10,
                ..o.clone()
            },
            "fewer than 10",
        );
        let mut v = good();
        v["metrics"][1]["samples"][2] = json!(1.7976931348623157e308);
        has(v, &o, "beyond any real measurement");
        let mut v = good();
        v["metrics"][1]["samples"][2] = json!(-0.5);
        has(v, &o, "negative");
    }

    #[test]
    fn failed_conditions_fail_the_record() {
        let mut v = good();
        v["conditions"] =
            json!([{"name": "same_function", "holds": false, "detail": "step-0 loss differs"}]);
        let m = msgs(v, &CheckOptions::default());
        assert!(
            m.iter()
                .any(|m| m.contains("same_function does not hold: step-0 loss differs")),
            "{m:?}"
        );
    }

    #[test]
    fn legacy_records_are_judged_through_the_legacy_reader() {
        let mut v = good();
        let obj = v.as_object_mut().unwrap();
        obj.remove("metrics");
        obj.remove("workload");
        obj.remove("hardware");
        v["schema"] = json!("ovbench.step/1");
        v["config"] = json!({"model": "Ti/16", "resolution": 112, "batch": 8, "keep_ratio": 0.35,
                             "dtype": "f32", "device": {"kind": "cpu"}, "steps": 5, "warmup": 1});
        v["runs"] = json!([{"recipe": "ov1", "params_total": 5,
                            "samples": (1..6).map(|s| json!({"step": s, "total_s": 0.1})).collect::<Vec<_>>()}]);
        let rc = check_value(Path::new("r.json"), Ok(v.clone()), &CheckOptions::default());
        assert_eq!(rc.errors(), 0, "{:?}", rc.findings);
        assert!(rc.schema.unwrap().contains("legacy"));
        v["config"]["warmup"] = json!(0);
        assert!(msgs(v, &CheckOptions::default())
            .iter()
            .any(|m| m.contains("no warm-up")));
    }

    #[test]
    fn other_json_is_skipped_but_a_folder_of_it_alone_fails() {
        let o = CheckOptions::default();
        let plain = check_value(Path::new("torch-r0.json"), Ok(json!({"steps": [1.0]})), &o);
        let export = check_value(
            Path::new("meta.json"),
            Ok(json!({"schema": "ovbench.export/1"})),
            &o,
        );
        for r in [&plain, &export] {
            assert!(r.skipped() && r.errors() == 0, "{:?}", r.findings);
        }
        let only_skipped = CheckReport {
            root: PathBuf::from("results"),
            records: vec![plain.clone(), export],
        };
        assert!(only_skipped.failed());
        assert!(only_skipped.render().contains("2 skipped"));
        let with_good = CheckReport {
            root: PathBuf::from("results"),
            records: vec![plain, check_value(Path::new("r.json"), Ok(good()), &o)],
        };
        assert!(!with_good.failed());
        assert!(with_good
            .render()
            .contains("1 record checked, 0 with problems"));
    }

    #[test]
    fn archive_folders_are_skipped_and_special_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("r.json"), good().to_string()).unwrap();
        std::fs::create_dir_all(d.join("sub/archive")).unwrap();
        std::fs::write(
            d.join("sub/archive/old.json"),
            "{\"schema\": \"ovbench.step/1\"}",
        )
        .unwrap();
        let fifo = d.join("sub/f.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let report = check_dir(d, &CheckOptions::default()).unwrap();
        let text = report.render();
        assert!(text.contains("archived records"), "{text}");
        assert!(
            text.contains("f.json") && text.contains("not a regular file"),
            "{text}"
        );
        assert!(report.failed(), "the FIFO is an error");
        std::fs::remove_file(&fifo).unwrap();
        let report = check_dir(d, &CheckOptions::default()).unwrap();
        assert!(!report.failed(), "{}", report.render());
        // Checked by itself, the archive is judged.
        assert!(check_dir(&d.join("sub/archive"), &CheckOptions::default())
            .unwrap()
            .failed());
    }
}
