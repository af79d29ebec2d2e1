//! `ovbench check`: validates a results folder the way a reviewer's checker would, and
//! says what is wrong with each record.

use crate::error::GateError;
use crate::record::{parse_schema, type_name};
use crate::view::expand_paths;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Record schemas this checker knows.
pub const KNOWN_SCHEMAS: &[(&str, u32)] = &[("step", 1), ("score", 1), ("repro", 1), ("eval", 1)];

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
}

#[derive(Debug, Clone)]
pub struct CheckReport {
    pub root: PathBuf,
    pub records: Vec<RecordCheck>,
}

impl CheckReport {
    pub fn failed(&self) -> bool {
        self.records.is_empty() || self.records.iter().any(|r| r.errors() > 0)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for r in &self.records {
            let tag = if r.errors() > 0 { "FAIL" } else { "ok  " };
            let schema = r.schema.as_deref().unwrap_or("no schema");
            s.push_str(&format!("{tag} {} ({schema})\n", r.path.display()));
            for f in &r.findings {
                let sev = match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                s.push_str(&format!("     - {sev}: {}\n", f.message));
            }
        }
        let bad = self.records.iter().filter(|r| r.errors() > 0).count();
        if self.records.is_empty() {
            s.push_str(&format!(
                "no records (*.json) found under {}\n",
                self.root.display()
            ));
        } else {
            s.push_str(&format!(
                "{} records checked, {bad} with problems\n",
                self.records.len()
            ));
        }
        s
    }
}

/// Checks every `*.json` under `root` (a folder, or one file). Errors only when the folder
/// itself cannot be read.
pub fn check_dir(root: &Path, opts: &CheckOptions) -> Result<CheckReport, GateError> {
    let files = expand_paths(&[root.to_path_buf()])?;
    let records = files
        .into_iter()
        .map(|p| {
            let parsed = std::fs::read(&p)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|b| {
                    serde_json::from_slice::<Value>(&b).map_err(|e| format!("not valid JSON: {e}"))
                });
            check_value(&p, parsed, opts)
        })
        .collect();
    Ok(CheckReport {
        root: root.to_path_buf(),
        records,
    })
}

struct Ctx<'a> {
    v: &'a Value,
    out: Vec<Finding>,
}

impl Ctx<'_> {
    fn err(&mut self, m: impl Into<String>) {
        self.out.push(Finding {
            severity: Severity::Error,
            message: m.into(),
        });
    }
    fn warn(&mut self, m: impl Into<String>) {
        self.out.push(Finding {
            severity: Severity::Warning,
            message: m.into(),
        });
    }
    fn get(&self, path: &str) -> Option<&Value> {
        crate::record::at(self.v, path)
    }
    fn nonempty_str(&mut self, path: &str, what: &str) {
        let dotted = path.replace('/', ".");
        match self.get(path) {
            Some(Value::String(s)) if !s.trim().is_empty() && s != "unknown" => {}
            Some(Value::String(_)) => {
                self.err(format!("{dotted} is empty or unknown: {what} not recorded"))
            }
            Some(o) => self.err(format!(
                "{dotted}: expected a string, found {}",
                type_name(o)
            )),
            None => self.err(format!("{dotted} missing: {what} not recorded")),
        }
    }
    fn positive(&mut self, path: &str, what: &str) {
        let dotted = path.replace('/', ".");
        match self.get(path).and_then(Value::as_f64) {
            Some(x) if x > 0.0 => {}
            Some(_) => self.err(format!("{dotted} is 0: {what} not recorded")),
            None => self.err(format!(
                "{dotted} missing or not a number: {what} not recorded"
            )),
        }
    }
}

/// Checks one parsed record (or the reason it could not be parsed).
pub fn check_value(path: &Path, parsed: Result<Value, String>, opts: &CheckOptions) -> RecordCheck {
    let mut rc = RecordCheck {
        path: path.to_path_buf(),
        schema: None,
        findings: Vec::new(),
    };
    let v = match parsed {
        Ok(v) => v,
        Err(e) => {
            rc.findings.push(Finding {
                severity: Severity::Error,
                message: e,
            });
            return rc;
        }
    };
    let mut c = Ctx {
        v: &v,
        out: Vec::new(),
    };
    let schema = v.get("schema").and_then(Value::as_str).map(str::to_string);
    rc.schema = schema.clone();
    let Some(schema) = schema else {
        c.err("no `schema` field: not an ovbench record");
        rc.findings = c.out;
        return rc;
    };
    let kind = match parse_schema(&schema) {
        Some((k, ver)) if KNOWN_SCHEMAS.contains(&(k.as_str(), ver)) => k,
        _ => {
            let known: Vec<String> = KNOWN_SCHEMAS
                .iter()
                .map(|(k, v)| format!("ovbench.{k}/{v}"))
                .collect();
            c.err(format!(
                "schema '{schema}' is not a version this checker knows ({})",
                known.join(", ")
            ));
            rc.findings = c.out;
            return rc;
        }
    };
    check_provenance(&mut c, &kind, opts);
    if kind == "step" {
        check_step(&mut c, opts);
    }
    rc.findings = c.out;
    rc
}

fn check_provenance(c: &mut Ctx, kind: &str, opts: &CheckOptions) {
    if !c.get("provenance").is_some_and(Value::is_object) {
        c.err("provenance missing: environment not recorded");
        return;
    }
    c.nonempty_str("provenance/created_utc", "creation time");
    match c.get("provenance/command_line").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => {}
        _ => c.err("provenance.command_line missing or empty: the run cannot be repeated"),
    }
    match c.get("provenance/git/commit") {
        Some(Value::String(s)) if s.len() >= 7 && s.chars().all(|ch| ch.is_ascii_hexdigit()) => {}
        Some(Value::String(s)) => {
            c.err(format!("provenance.git.commit '{s}' is not a commit hash"))
        }
        _ => c.err("provenance.git.commit missing: source revision not recorded"),
    }
    match c.get("provenance/git/dirty").and_then(Value::as_bool) {
        Some(false) => {}
        Some(true) if opts.allow_dirty => c.warn("made from a dirty tree (allowed by --allow-dirty)"),
        Some(true) => c.err("made from a dirty tree: uncommitted changes are not reproducible (--allow-dirty to accept)"),
        None if opts.allow_dirty => c.warn("dirty state unknown"),
        None => c.err("provenance.git.dirty missing: cannot tell whether the tree was clean"),
    }
    c.nonempty_str("provenance/host/cpu_model", "CPU model");
    c.positive("provenance/host/logical_cpus", "CPU count");
    c.positive("provenance/host/memory_bytes", "host memory");
    c.nonempty_str("provenance/host/os", "operating system");
    for (f, what) in [
        ("crate_version", "harness version"),
        ("rustc", "compiler version"),
        ("profile", "build profile"),
        ("target", "target triple"),
    ] {
        c.nonempty_str(&format!("provenance/build/{f}"), what);
    }
    if !c
        .get("provenance/build/features")
        .is_some_and(Value::is_array)
    {
        c.err("provenance.build.features missing: build features not recorded");
    }
    if kind == "step" && c.get("provenance/build/profile").and_then(Value::as_str) == Some("debug")
    {
        c.warn("built with the debug profile: timings are not representative");
    }
}

fn check_step(c: &mut Ctx, opts: &CheckOptions) {
    let cfg_num = |c: &Ctx, k: &str| c.get(&format!("config/{k}")).and_then(Value::as_u64);
    if !c.get("config").is_some_and(Value::is_object) {
        c.err("config missing: the workload is not recorded");
        return;
    }
    let warmup = cfg_num(c, "warmup");
    match warmup {
        None => c.err("config.warmup missing: cannot tell whether warm-up was excluded"),
        Some(0) => c.err(
            "config.warmup is 0: warm-up (compilation, allocator growth) is inside the measurement",
        ),
        Some(_) => {}
    }
    let steps = cfg_num(c, "steps");
    match steps {
        None => c.err("config.steps missing"),
        Some(n) if (n as usize) < opts.min_steps => c.err(format!(
            "config.steps is {n}: fewer than {} measured steps",
            opts.min_steps
        )),
        _ => {}
    }
    if cfg_num(c, "seed").is_none() {
        c.err("config.seed missing or not an integer: seed not recorded");
    }
    for k in ["model", "resolution", "batch", "dtype", "device"] {
        if c.get(&format!("config/{k}")).is_none() {
            c.err(format!("config.{k} missing"));
        }
    }
    let runs = match c.get("runs").and_then(Value::as_array) {
        Some(r) if !r.is_empty() => r.clone(),
        _ => {
            c.err("runs missing or empty: nothing was measured");
            return;
        }
    };
    for (i, run) in runs.iter().enumerate() {
        let recipe = run
            .get("recipe")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let at = format!("runs[{i}] ({recipe})");
        if let Some(status) = run.get("status").and_then(Value::as_str) {
            if !matches!(status, "ok" | "completed" | "complete") {
                c.warn(format!("{at}: status '{status}', no timings expected"));
                continue;
            }
        }
        let Some(samples) = run.get("samples").and_then(Value::as_array) else {
            c.err(format!("{at}: samples missing: per-step timings not kept"));
            continue;
        };
        if samples.len() < opts.min_steps {
            c.err(format!(
                "{at}: {} measured steps, fewer than {}",
                samples.len(),
                opts.min_steps
            ));
        }
        if let Some(n) = steps.filter(|&n| n as usize != samples.len()) {
            c.err(format!(
                "{at}: {} samples but config.steps is {n}",
                samples.len()
            ));
        }
        if let Some(w) = warmup {
            let idx: Vec<u64> = samples
                .iter()
                .filter_map(|s| s.get("step").and_then(Value::as_u64))
                .collect();
            if idx.len() != samples.len() {
                c.err(format!(
                    "{at}: some samples lack a step index: cannot tell warm-up from measurement"
                ));
            } else if let Some(s) = idx.iter().find(|&&s| s < w) {
                c.err(format!("{at}: sample of step {s} is a warm-up step (warmup = {w}): warm-up not excluded"));
            }
            match run.get("warmup_losses").and_then(Value::as_array) {
                Some(wl) if wl.len() as u64 == w => {}
                Some(wl) => c.warn(format!(
                    "{at}: {} warm-up losses for warmup = {w}",
                    wl.len()
                )),
                None => c.warn(format!("{at}: warmup_losses missing")),
            }
        }
        let bad_time = samples.iter().position(|s| {
            !s.get("total_s")
                .and_then(Value::as_f64)
                .is_some_and(|t| t.is_finite() && t > 0.0)
        });
        if let Some(k) = bad_time {
            c.err(format!(
                "{at}: samples[{k}].total_s missing or not a positive time"
            ));
        }
        if let Some(n) = crate::record::at(run, "summary/step_s/n").and_then(Value::as_u64) {
            if n as usize != samples.len() {
                c.err(format!(
                    "{at}: summary.step_s.n = {n} but {} samples",
                    samples.len()
                ));
            }
        }
        if crate::record::at(run, "memory/allocator_active").and_then(Value::as_bool) == Some(false)
        {
            c.warn(format!(
                "{at}: counting allocator inactive: host memory numbers are not measured"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "schema": "ovbench.step/1",
            "provenance": {
                "created_utc": "2025-01-01T00:00:00Z",
                "command_line": ["ovbench", "step"],
                "git": {"commit": "0353d5e0353d5e0353d5e0353d5e0353d5e0353d", "dirty": false, "note": null},
                "host": {"cpu_model": "Xeon", "logical_cpus": 2, "memory_bytes": 1000, "os": "Linux"},
                "build": {"crate_version": "0.1.0", "rustc": "1.90", "profile": "release", "opt_level": "3",
                          "target": "x86_64", "features": []}
            },
            "config": {"model": "Ti/16", "resolution": 112, "batch": 8, "dtype": "f32", "device": {"kind": "cpu"},
                       "steps": 5, "warmup": 2, "seed": 0},
            "runs": [{"recipe": "ov1", "warmup_losses": [1.0, 1.0],
                      "samples": (2..7).map(|s| json!({"step": s, "total_s": 0.1})).collect::<Vec<_>>(),
                      "summary": {"step_s": {"n": 5}}}]
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
        assert!(msgs(good(), &CheckOptions::default()).is_empty());
    }

    #[test]
    fn each_problem_is_named() {
        let o = CheckOptions::default();
        let mut v = good();
        v["config"]["warmup"] = json!(0);
        assert!(msgs(v, &o).iter().any(|m| m.contains("config.warmup is 0")));
        let mut v = good();
        v["runs"][0]["samples"][0]["step"] = json!(1);
        assert!(msgs(v, &o).iter().any(|m| m.contains("warm-up step")));
        let mut v = good();
        v["provenance"]["git"]["dirty"] = json!(true);
        assert!(msgs(v.clone(), &o).iter().any(|m| m.contains("dirty tree")));
        assert!(msgs(
            v,
            &CheckOptions {
                allow_dirty: true,
                ..o.clone()
            }
        )
        .is_empty());
        let mut v = good();
        v["config"].as_object_mut().unwrap().remove("seed");
        assert!(msgs(v, &o).iter().any(|m| m.contains("seed")));
        let mut v = good();
        v["provenance"]["host"]["cpu_model"] = json!("unknown");
        assert!(msgs(v, &o).iter().any(|m| m.contains("cpu_model")));
        let mut v = good();
        v["schema"] = json!("ovbench.step/9");
        assert!(msgs(v, &o).iter().any(|m| m.contains("ovbench.step/9")));
        assert!(msgs(good(), &CheckOptions { min_steps: 10, ..o })
            .iter()
            .any(|m| m.contains("fewer than 10")));
    }
}
