//! `ovbench check`: validates a results folder the way a reviewer's checker would, and
//! says what is wrong with each record.

use crate::error::GateError;
use crate::record::{parse_schema, type_name};
use crate::view::expand_paths;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Record schemas this checker knows. `repro/2` added the forward-pass peak and the GPU
/// allocator peak to the memory model; the provenance a checker reads is the same as in `/1`.
/// `torch-cpu/1` is written by `scripts/torch_vs_ovbench.py`.
pub const KNOWN_SCHEMAS: &[(&str, u32)] = &[
    ("step", 1),
    ("score", 1),
    ("repro", 1),
    ("repro", 2),
    ("eval", 1),
    ("torch-cpu", 1),
];

/// ovbench files that are inputs to a measurement, not measurements: listed, not judged.
const INPUT_SCHEMAS: &[(&str, u32, &str)] = &[(
    "export",
    1,
    "weights and batch exported for the PyTorch comparison",
)];

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
                "; {skipped} other JSON files skipped (not ovbench measurements)"
            ));
        }
        s.push('\n');
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
    fn skip(&mut self, m: impl Into<String>) {
        self.out.push(Finding {
            severity: Severity::Skip,
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
        c.skip("no `schema` field: not an ovbench record");
        rc.findings = c.out;
        return rc;
    };
    let kind = match parse_schema(&schema) {
        Some((k, ver)) if KNOWN_SCHEMAS.contains(&(k.as_str(), ver)) => k,
        Some((k, ver)) => {
            if let Some((_, _, what)) = INPUT_SCHEMAS
                .iter()
                .find(|(ik, iv, _)| *ik == k && *iv == ver)
            {
                c.skip(format!("{what}: an input, not a measurement"));
                rc.findings = c.out;
                return rc;
            }
            rc.findings = unknown_schema(&schema);
            return rc;
        }
        None => {
            rc.findings = unknown_schema(&schema);
            return rc;
        }
    };
    if kind == "torch-cpu" {
        check_torch_cpu(&mut c, opts);
    } else {
        check_provenance(&mut c, &kind, opts);
    }
    if kind == "step" {
        check_step(&mut c, opts);
    }
    rc.findings = c.out;
    rc
}

fn unknown_schema(schema: &str) -> Vec<Finding> {
    let known: Vec<String> = KNOWN_SCHEMAS
        .iter()
        .map(|(k, v)| format!("ovbench.{k}/{v}"))
        .collect();
    vec![Finding {
        severity: Severity::Error,
        message: format!(
            "schema '{schema}' is not a version this checker knows ({})",
            known.join(", ")
        ),
    }]
}

/// The command line at `path`, needed to repeat the run.
fn check_command_line(c: &mut Ctx, path: &str) {
    match c.get(path).and_then(Value::as_array) {
        Some(a) if !a.is_empty() => {}
        _ => c.err(format!(
            "{} missing or empty: the run cannot be repeated",
            path.replace('/', ".")
        )),
    }
}

/// The source revision and clean-tree flag under `prefix` (`provenance/git` in records
/// written by the binary, `git` in the PyTorch comparison's).
fn check_git(c: &mut Ctx, prefix: &str, opts: &CheckOptions) {
    let dotted = prefix.replace('/', ".");
    match c.get(&format!("{prefix}/commit")) {
        Some(Value::String(s)) if s.len() >= 7 && s.chars().all(|ch| ch.is_ascii_hexdigit()) => {}
        Some(Value::String(s)) => c.err(format!("{dotted}.commit '{s}' is not a commit hash")),
        _ => c.err(format!(
            "{dotted}.commit missing: source revision not recorded"
        )),
    }
    match c.get(&format!("{prefix}/dirty")).and_then(Value::as_bool) {
        Some(false) => {}
        Some(true) if opts.allow_dirty => c.warn("made from a dirty tree (allowed by --allow-dirty)"),
        Some(true) => c.err("made from a dirty tree: uncommitted changes are not reproducible (--allow-dirty to accept)"),
        None if opts.allow_dirty => c.warn("dirty state unknown"),
        None => c.err(format!(
            "{dotted}.dirty missing: cannot tell whether the tree was clean"
        )),
    }
}

/// `ovbench.torch-cpu/1`: ovbench against PyTorch eager. Its timings mean something only if
/// the two sides were shown to compute the same function first.
fn check_torch_cpu(c: &mut Ctx, opts: &CheckOptions) {
    c.nonempty_str("created_utc", "creation time");
    check_command_line(c, "command_line");
    check_git(c, "git", opts);
    c.nonempty_str("host/cpu_model", "CPU model");
    c.positive("threads", "thread count");
    let Some(configs) = c.get("same_function").and_then(Value::as_object).cloned() else {
        c.err("same_function missing: no evidence that both sides compute the same function");
        return;
    };
    if configs.is_empty() {
        c.err("same_function is empty: no configuration was checked");
    }
    for (config, checks) in &configs {
        let checks = checks.as_array().map(Vec::as_slice).unwrap_or_default();
        if checks.is_empty() {
            c.err(format!("same_function.{config}: no check recorded"));
        }
        for (i, chk) in checks.iter().enumerate() {
            let recipe = chk.get("recipe").and_then(Value::as_str).unwrap_or("?");
            if chk.get("same_function").and_then(Value::as_bool) != Some(true) {
                let problems = chk
                    .get("problems")
                    .and_then(Value::as_array)
                    .map(|p| {
                        p.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                c.err(format!(
                    "same_function.{config}[{i}] ({recipe}): the two sides were not shown to compute the same function{}",
                    if problems.is_empty() { String::new() } else { format!(": {problems}") }
                ));
            }
        }
    }
}

fn check_provenance(c: &mut Ctx, kind: &str, opts: &CheckOptions) {
    if !c.get("provenance").is_some_and(Value::is_object) {
        c.err("provenance missing: environment not recorded");
        return;
    }
    c.nonempty_str("provenance/created_utc", "creation time");
    check_command_line(c, "provenance/command_line");
    check_git(c, "provenance/git", opts);
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

    fn torch_cpu() -> Value {
        json!({
            "schema": "ovbench.torch-cpu/1",
            "created_utc": "20261130T152114Z",
            "command_line": ["scripts/torch_vs_ovbench.py"],
            "git": {"commit": "7a2abfd5e6ae245c2eb8c7370eed8bcb67116ce0", "dirty": false},
            "host": {"cpu_model": "AMD EPYC", "logical_cpus": 2},
            "threads": 2,
            "same_function": {"default": [
                {"recipe": "ov1", "same_function": true, "problems": []},
                {"recipe": "ov2", "same_function": true, "problems": []}
            ]}
        })
    }

    #[test]
    fn repro_v2_and_torch_comparisons_are_judged() {
        let o = CheckOptions::default();
        let mut repro = good();
        repro["schema"] = json!("ovbench.repro/2");
        assert!(msgs(repro, &o).is_empty());
        assert!(msgs(torch_cpu(), &o).is_empty());
        let mut v = torch_cpu();
        v["same_function"]["default"][1]["same_function"] = json!(false);
        v["same_function"]["default"][1]["problems"] = json!(["step-0 loss differs"]);
        let m = msgs(v, &o);
        assert!(
            m.iter()
                .any(|m| m.contains("same_function.default[1] (ov2)")
                    && m.contains("step-0 loss differs")),
            "{m:?}"
        );
        let mut v = torch_cpu();
        v.as_object_mut().unwrap().remove("same_function");
        assert!(msgs(v, &o)
            .iter()
            .any(|m| m.contains("same_function missing")));
        let mut v = torch_cpu();
        v["git"]["dirty"] = json!(true);
        assert!(msgs(v, &o).iter().any(|m| m.contains("dirty tree")));
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
        assert!(only_skipped.render().contains("2 other JSON files skipped"));
        let with_good = CheckReport {
            root: PathBuf::from("results"),
            records: vec![plain, check_value(Path::new("r.json"), Ok(good()), &o)],
        };
        assert!(!with_good.failed());
        assert!(with_good
            .render()
            .contains("1 record checked, 0 with problems"));
    }
}
