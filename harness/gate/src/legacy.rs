//! The one legacy reader: records written before the envelope existed (`step/1`, `score/1`,
//! `repro/1` and `/2`, `eval/1`, and `torch-cpu/1` from scripts/torch_vs_ovbench.py) are read
//! here, once, into the envelope that today's writers fill themselves, with the same workload
//! keys and metric names. This is the only place in the readers that looks inside a body.

use crate::error::GateError;
use crate::record::type_name;
use ovbench_harness::envelope::{Condition, Direction, Envelope, Metric, Schema, Workload};
use ovbench_harness::provenance::{BuildInfo, GitInfo, HostInfo, Provenance};
use serde_json::Value;
use std::path::Path;

use Direction::*;

/// Schemas this reader upgrades.
pub const LEGACY_SCHEMAS: &[(&str, u32)] = &[
    ("step", 1),
    ("score", 1),
    ("repro", 1),
    ("repro", 2),
    ("eval", 1),
    ("torch-cpu", 1),
];

/// The envelope of a legacy record, `None` when `schema` is not one this reader knows.
pub fn upgrade(path: &Path, schema: &Schema, v: &Value) -> Result<Option<Envelope>, GateError> {
    let r = Reader { path, v };
    let (workload, hardware, metrics, conditions) = match (schema.kind.as_str(), schema.version) {
        ("step", 1) => step(&r)?,
        ("score", 1) => score(&r)?,
        ("repro", 1 | 2) => repro(&r)?,
        ("eval", 1) => eval(&r)?,
        ("torch-cpu", 1) => return torch_cpu(&r, schema).map(Some),
        ("memory", 1) => memory(&r)?,
        _ => return Ok(None),
    };
    Ok(Some(Envelope {
        schema: schema.clone(),
        provenance: r.provenance()?,
        workload,
        hardware,
        metrics,
        conditions,
    }))
}

type Parts = (Workload, String, Vec<Metric>, Vec<Condition>);

struct Reader<'a> {
    path: &'a Path,
    v: &'a Value,
}

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
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

/// A configuration value as a short string: `{size, patch}` as `size/patch`, a device as its
/// kind, numbers as written.
fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Object(m) => {
            if let (Some(size), Some(patch)) = (m.get("size"), m.get("patch")) {
                return format!("{}/{}", short(size), short(patch));
            }
            if let Some(kind) = m.get("kind") {
                return short(kind);
            }
            v.to_string()
        }
        Value::Array(_) => v.to_string(),
    }
}

fn device_kind(v: &Value) -> String {
    short(v).split(':').next().unwrap_or("").to_string()
}

impl Reader<'_> {
    fn err(&self, field: &str, message: impl std::fmt::Display) -> GateError {
        GateError::invalid(self.path, format!("field `{field}`: {message}"))
    }

    fn get(&self, path: &str) -> Option<&Value> {
        at(self.v, path)
    }

    /// A number at `path` below `v`: absent or null is `None`, anything else not a number is
    /// an error naming the field.
    fn num_in(&self, v: &Value, path: &str, field: &str) -> Result<Option<f64>, GateError> {
        match at(v, path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(o) => Err(self.err(field, format!("expected a number, found {}", type_name(o)))),
        }
    }

    fn array(&self, path: &str) -> Result<&Vec<Value>, GateError> {
        match self.get(path) {
            Some(Value::Array(a)) => Ok(a),
            Some(o) => Err(self.err(
                &path.replace('/', "."),
                format!("expected an array, found {}", type_name(o)),
            )),
            None => Err(self.err(&path.replace('/', "."), "missing")),
        }
    }

    fn provenance(&self) -> Result<Provenance, GateError> {
        let p = self
            .get("provenance")
            .ok_or_else(|| self.err("provenance", "missing: environment not recorded"))?;
        serde_json::from_value(p.clone()).map_err(|e| self.err("provenance", e))
    }

    fn host_label(&self, threads: Option<u64>) -> String {
        let cpu = self
            .get("provenance/host/cpu_model")
            .and_then(Value::as_str)
            .unwrap_or("unknown CPU");
        let n = threads.filter(|&t| t > 0).or_else(|| {
            self.get("provenance/host/logical_cpus")
                .and_then(Value::as_u64)
        });
        match n {
            Some(n) => format!("{cpu} ({n} threads)"),
            None => cpu.to_string(),
        }
    }
}

fn workload(pairs: Vec<(&str, String)>) -> Workload {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A GPU snapshot's name anywhere below `v` (an object with `name` and `uuid`).
fn gpu_name(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(n)), Some(Value::String(_))) = (m.get("name"), m.get("uuid"))
            {
                return Some(n.clone());
            }
            m.values().find_map(gpu_name)
        }
        Value::Array(a) => a.iter().find_map(gpu_name),
        _ => None,
    }
}

/// `ovbench.step/1`.
fn step(r: &Reader) -> Result<Parts, GateError> {
    let cfg = r
        .get("config")
        .filter(|c| c.is_object())
        .ok_or_else(|| r.err("config", "missing or not an object"))?;
    let need = |k: &str| -> Result<String, GateError> {
        cfg.get(k)
            .map(short)
            .ok_or_else(|| r.err(&format!("config.{k}"), "missing"))
    };
    let opt = |k: &str, default: &str| cfg.get(k).map(short).unwrap_or_else(|| default.into());
    let device = cfg
        .get("device")
        .map(device_kind)
        .ok_or_else(|| r.err("config.device", "missing"))?;
    let wl = workload(vec![
        // Records from before engines existed are candle's, one process, eager.
        ("engine", opt("engine", "candle")),
        ("compile", opt("compile", "false")),
        ("model", need("model")?),
        ("resolution", need("resolution")?),
        ("batch", need("batch")?),
        ("keep_ratio", need("keep_ratio")?),
        ("dtype", need("dtype")?),
        // Records made before these settings existed ran composed ops, kept every activation
        // and used the causal image prefix.
        ("kernels", opt("kernels", "composed")),
        ("remat", opt("remat", "none")),
        ("v2_attention", opt("v2_attention", "causal")),
        ("device", device.clone()),
        ("processes", opt("nproc", "1")),
    ]);
    let hardware = if device == "cpu" {
        r.host_label(r.get("runtime/threads").and_then(Value::as_u64))
    } else {
        gpu_name(r.v).unwrap_or(device)
    };
    let batch = cfg.get("batch").and_then(Value::as_f64).unwrap_or(0.0);
    let warmup = cfg.get("warmup").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut out = Vec::new();
    for (i, run) in r.array("runs")?.iter().enumerate() {
        let recipe = run
            .get("recipe")
            .and_then(Value::as_str)
            .ok_or_else(|| r.err(&format!("runs[{i}].recipe"), "missing or not a string"))?;
        let f = |field: &str| {
            r.num_in(
                run,
                field,
                &format!("runs[{i}].{}", field.replace('/', ".")),
            )
        };
        let det = |name: &str, unit: &str, dir, v: f64| {
            Metric::deterministic(format!("{recipe}/{name}"), unit, dir, v)
        };
        out.push(det("completed", "bool", BiggerIsBetter, 1.0));
        out.push(det("oom", "bool", SmallerIsBetter, 0.0));
        for (field, name, unit, dir) in [
            ("params_total", "params_total", "params", Neither),
            ("kept_tokens", "kept_tokens", "tokens", Neither),
            (
                "forward_flops_per_image_total",
                "forward_flops_per_image",
                "FLOP",
                SmallerIsBetter,
            ),
            (
                "training_flops_per_image",
                "training_flops_per_image",
                "FLOP",
                SmallerIsBetter,
            ),
        ] {
            if let Some(v) = f(field)? {
                out.push(det(name, unit, dir, v));
            }
        }
        // Allocator bytes mean nothing when the counting allocator was not installed.
        let active = at(run, "memory/allocator_active")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if active {
            for field in [
                "peak_over_baseline_bytes",
                "transient_peak_bytes",
                "forward_peak_over_baseline_bytes",
            ] {
                if let Some(v) = f(&format!("memory/{field}"))?
                    .filter(|&v| v > 0.0 || field != "forward_peak_over_baseline_bytes")
                {
                    out.push(det(&format!("memory/{field}"), "bytes", SmallerIsBetter, v));
                }
            }
        }
        for (field, name) in [
            ("gpu/allocator/used_peak_bytes", "allocator_peak_bytes"),
            (
                "gpu/allocator/reserved_peak_bytes",
                "allocator_reserved_peak_bytes",
            ),
            (
                "gpu/nvml_sampled/process_used_peak_bytes",
                "nvml_process_peak_bytes",
            ),
            (
                "gpu/nvml_sampled/device_used_peak_bytes",
                "nvml_device_peak_bytes",
            ),
            (
                "gpu/nvml_accounting_peak/peak_bytes",
                "nvml_accounting_peak_bytes",
            ),
        ] {
            if let Some(v) = f(field)? {
                out.push(det(
                    &format!("memory/gpu/{name}"),
                    "bytes",
                    SmallerIsBetter,
                    v,
                ));
            }
        }
        let samples = match run.get("samples") {
            Some(Value::Array(s)) => s.as_slice(),
            _ => &[],
        };
        let mut totals = Vec::new();
        for (field, name) in [
            ("total_s", "step_s"),
            ("forward_s", "forward_s"),
            ("backward_s", "backward_s"),
            ("optimizer_s", "optimizer_s"),
        ] {
            let mut xs = Vec::with_capacity(samples.len());
            for (k, s) in samples.iter().enumerate() {
                if let Some(x) = r.num_in(s, field, &format!("runs[{i}].samples[{k}].{field}"))? {
                    xs.push(x);
                }
            }
            if field == "total_s" {
                totals = xs.clone();
            }
            if !xs.is_empty() {
                out.push(Metric::timed(
                    format!("{recipe}/{name}"),
                    "s",
                    SmallerIsBetter,
                    xs,
                    warmup,
                ));
            }
        }
        let tput: Vec<f64> = totals
            .iter()
            .filter(|&&t| t > 0.0)
            .map(|t| batch / t)
            .collect();
        if !tput.is_empty() {
            out.push(Metric::timed(
                format!("{recipe}/images_per_s"),
                "images/s",
                BiggerIsBetter,
                tput,
                warmup,
            ));
        }
    }
    if let Some(Value::Array(failed)) = r.get("failed") {
        for (i, f) in failed.iter().enumerate() {
            let recipe = f
                .get("recipe")
                .and_then(Value::as_str)
                .ok_or_else(|| r.err(&format!("failed[{i}].recipe"), "missing or not a string"))?;
            let oom = f.get("status").and_then(Value::as_str) == Some("oom");
            out.push(Metric::deterministic(
                format!("{recipe}/completed"),
                "bool",
                BiggerIsBetter,
                0.0,
            ));
            out.push(Metric::deterministic(
                format!("{recipe}/oom"),
                "bool",
                SmallerIsBetter,
                oom as u8 as f64,
            ));
        }
    }
    for name in ["peak_memory", "params", "forward_flops"] {
        if let Some(v) = r.num_in(
            r.v,
            &format!("ratios_ov2_over_ov1/{name}"),
            &format!("ratios_ov2_over_ov1.{name}"),
        )? {
            if v.is_finite() {
                out.push(Metric::deterministic(
                    format!("ov2_over_ov1/{name}"),
                    "ratio",
                    SmallerIsBetter,
                    v,
                ));
            }
        }
    }
    Ok((wl, hardware, out, Vec::new()))
}

/// Score metrics of one serialised report (`score/1` bodies and `eval/1`'s `report`), under
/// `prefix`, named as today's writers name them.
fn report_metrics(
    r: &Reader,
    rep: &Value,
    field: &str,
    prefix: &str,
    out: &mut Vec<Metric>,
) -> Result<(), GateError> {
    let m = |name: &str, unit: &str, dir, v: f64| {
        Metric::deterministic(format!("{prefix}{name}"), unit, dir, v)
    };
    let num = |p: &str| r.num_in(rep, p, &format!("{field}.{}", p.replace('/', ".")));
    if let Some(v) = num("summary/mean")? {
        out.push(m("score", "score", BiggerIsBetter, v));
    }
    let toolkit =
        num("toolkit/value")?.ok_or_else(|| r.err(&format!("{field}.toolkit.value"), "missing"))?;
    out.push(m("score/toolkit", "score", BiggerIsBetter, toolkit));
    if let Some(Value::Array(cats)) = rep.get("categories") {
        for (i, c) in cats.iter().enumerate() {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            if let Some(v) = r.num_in(
                c,
                "toolkit_value",
                &format!("{field}.categories[{i}].toolkit_value"),
            )? {
                out.push(m(
                    &format!("score/category/{name}"),
                    "score",
                    BiggerIsBetter,
                    v,
                ));
            }
        }
    }
    if let Some(v) = num("n_scored")? {
        out.push(m("items/scored", "count", Neither, v));
    }
    let missing = match rep.get("missing") {
        Some(Value::Array(a)) => Some(a.len() as f64),
        Some(o) => at(o, "count").and_then(Value::as_f64),
        None => None,
    };
    if let Some(v) = missing {
        out.push(m("items/missing", "count", SmallerIsBetter, v));
    }
    for k in ["unmatched", "duplicates"] {
        if let Some(v) = num(k)? {
            out.push(m(&format!("items/{k}"), "count", SmallerIsBetter, v));
        }
    }
    Ok(())
}

fn annotation_hashes(inputs: Option<&Value>) -> String {
    let Some(Value::Array(inputs)) = inputs else {
        return String::new();
    };
    inputs
        .iter()
        .filter(|i| i.get("role").and_then(Value::as_str) == Some("annotations"))
        .filter_map(|i| i.get("sha256").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

/// `ovbench.score/1`.
fn score(r: &Reader) -> Result<Parts, GateError> {
    let s = |k: &str| r.get(k).map(short).unwrap_or_default();
    let mode = s("mode");
    let wl = workload(vec![
        ("task", s("task")),
        ("compat", s("compat")),
        ("mode", mode.clone()),
        ("scorer_version", s("scorer_version")),
        ("annotations_sha256", annotation_hashes(r.get("inputs"))),
    ]);
    let mut out = Vec::new();
    if mode == "paired" {
        for side in ["a", "b"] {
            let rep = r.get(side).ok_or_else(|| r.err(side, "missing"))?;
            report_metrics(r, rep, side, &format!("{side}/"), &mut out)?;
        }
        if let Some(v) = r.num_in(r.v, "paired/stats/diff", "paired.stats.diff")? {
            out.push(Metric::deterministic("b_minus_a", "score", Neither, v));
        }
        if let Some(v) = r.num_in(r.v, "paired/stats/n", "paired.stats.n")? {
            out.push(Metric::deterministic("items/paired", "count", Neither, v));
        }
    } else {
        let rep = r.get("report").ok_or_else(|| r.err("report", "missing"))?;
        report_metrics(r, rep, "report", "", &mut out)?;
    }
    let hw = r.host_label(None);
    Ok((wl, hw, out, Vec::new()))
}

/// `ovbench.eval/1`.
fn eval(r: &Reader) -> Result<Parts, GateError> {
    let s = |k: &str| r.get(k).map(short).unwrap_or_default();
    let hashes = match r.get("data/annotation_sha256") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let wl = workload(vec![
        ("task", s("task")),
        ("compat", s("compat")),
        ("run_key", s("run_key")),
        ("annotations_sha256", hashes),
        ("evaluated", s("data/evaluated")),
        ("device", s("model/device")),
    ]);
    let mut out = Vec::new();
    let rep = r.get("report").ok_or_else(|| r.err("report", "missing"))?;
    report_metrics(r, rep, "report", "", &mut out)?;
    for (field, name) in [
        ("throughput/new_tokens", "tokens/new"),
        ("throughput/prompt_tokens", "tokens/prompt"),
    ] {
        if let Some(v) = r.num_in(r.v, field, &field.replace('/', "."))? {
            out.push(Metric::deterministic(name, "tokens", Neither, v));
        }
    }
    Ok((wl, r.host_label(None), out, Vec::new()))
}

/// `ovbench.memory/1`: the memory model's rows (with allocator checks) and Table 4, before the
/// envelope. Metric names as `ovbench.memory/2` writes them.
fn memory(r: &Reader) -> Result<Parts, GateError> {
    let s = |k: &str| r.get(k).map(short).unwrap_or_default();
    let wl = workload(vec![
        ("policy", s("policy/name")),
        ("model", format!("{}/{}", s("model/size"), s("model/patch"))),
        ("resolution", s("resolution")),
        ("kernels", s("kernels")),
        ("device", "cpu".into()),
    ]);
    let mut out = Vec::new();
    let bytes = |name: String, v: f64| Metric::deterministic(name, "bytes", SmallerIsBetter, v);
    for (i, row) in r.array("rows")?.iter().enumerate() {
        let field = |f: &str| format!("rows[{i}].{f}");
        let recipe = row
            .pointer("/model/recipe")
            .map(short)
            .ok_or_else(|| r.err(&field("model.recipe"), "missing"))?;
        let batch = r
            .num_in(row, "model/batch", &field("model.batch"))?
            .ok_or_else(|| r.err(&field("model.batch"), "missing"))?;
        let id = format!("{recipe}/batch_{batch}");
        for (path, name) in [
            ("model/step/bytes", "model_step_peak_bytes"),
            ("model/forward/bytes", "model_forward_peak_bytes"),
            ("measured_step_peak_bytes", "allocator_step_peak_bytes"),
            (
                "measured_forward_peak_bytes",
                "allocator_forward_peak_bytes",
            ),
        ] {
            if let Some(v) = r.num_in(row, path, &field(&path.replace('/', ".")))? {
                out.push(bytes(format!("{id}/{name}"), v));
            }
        }
    }
    if let Some(Value::Array(rows)) = r.get("table4/rows") {
        for (i, row) in rows.iter().enumerate() {
            let field = |f: &str| format!("table4.rows[{i}].{f}");
            let id = row
                .get("id")
                .map(short)
                .ok_or_else(|| r.err(&field("id"), "missing"))?;
            if let Some(v) =
                r.num_in(row, "predicted/step/bytes", &field("predicted.step.bytes"))?
            {
                out.push(bytes(format!("table4/{id}/model_peak_bytes"), v));
            }
            if let Some(Value::Bool(b)) = row.get("predicted_fits") {
                out.push(Metric::deterministic(
                    format!("table4/{id}/fits_cap"),
                    "bool",
                    BiggerIsBetter,
                    *b as u8 as f64,
                ));
            }
        }
    }
    Ok((wl, r.host_label(None), out, Vec::new()))
}

/// `ovbench.repro/1` and `/2` (2 added each point's forward-pass peak).
fn repro(r: &Reader) -> Result<Parts, GateError> {
    let cfg = r.get("config").ok_or_else(|| r.err("config", "missing"))?;
    let c = |k: &str, default: &str| cfg.get(k).map(short).unwrap_or_else(|| default.into());
    let device = cfg
        .get("device")
        .map(device_kind)
        .unwrap_or_else(|| "cpu".into());
    let wl = workload(vec![
        ("engine", c("engine", "candle")),
        ("compile", c("compile", "false")),
        ("preset", c("preset", "?")),
        ("dtype", c("dtype", "f32")),
        ("kernels", c("kernels", "composed")),
        ("remat", c("remat", "none")),
        ("batch", c("batch", "?")),
        ("device", device.clone()),
        ("processes", c("nproc", "1")),
        ("mem_cap_bytes", c("mem_cap_bytes", "?")),
        ("confirm_limit", c("confirm_limit", "?")),
    ]);
    let hardware = if device == "cpu" {
        r.host_label(None)
    } else {
        gpu_name(r.v).unwrap_or(device)
    };
    let warmup = cfg.get("warmup").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut out = Vec::new();
    if let Some(Value::Array(flops)) = r.get("flops") {
        for (i, f) in flops.iter().enumerate() {
            let name = |k: &str| f.get(k).map(short).unwrap_or_else(|| "?".into());
            let id = format!(
                "{}@{}/{}",
                name("backbone"),
                name("resolution"),
                name("recipe")
            );
            for field in ["gflops_table3_convention", "gflops_executed"] {
                if let Some(v) = r.num_in(f, field, &format!("flops[{i}].{field}"))? {
                    out.push(Metric::deterministic(
                        format!("flops/{id}/{field}"),
                        "GFLOP",
                        SmallerIsBetter,
                        v,
                    ));
                }
            }
        }
    }
    for recipe in ["ov1", "ov2"] {
        if let Some(Value::Array(points)) = r.get(&format!("memory/{recipe}/points")) {
            for p in points {
                let Some(b) = p.get("batch").and_then(Value::as_u64) else {
                    continue;
                };
                for field in ["peak_bytes", "forward_peak_bytes"] {
                    if let Some(v) = p.get(field).and_then(Value::as_f64).filter(|&v| v > 0.0) {
                        out.push(Metric::deterministic(
                            format!("memory/{recipe}/{field}_at_batch_{b}"),
                            "bytes",
                            SmallerIsBetter,
                            v,
                        ));
                    }
                }
            }
        }
        if let Some(v) = r
            .get(&format!("memory/{recipe}_max_batch_under_cap"))
            .and_then(Value::as_f64)
        {
            out.push(Metric::deterministic(
                format!("memory/{recipe}/max_batch_under_cap"),
                "images",
                BiggerIsBetter,
                v,
            ));
        }
    }
    // Per-image time of each stage, and the projection once per round (today's writer's rule).
    let mut rounds: [Option<Vec<f64>>; 2] = [None, None];
    if let Some(Value::Array(stages)) = r.get("stages") {
        for (i, s) in stages.iter().enumerate() {
            let stage = s
                .get("stage")
                .and_then(Value::as_u64)
                .unwrap_or(i as u64 + 1);
            let samples = s.get("samples").and_then(Value::as_f64).unwrap_or(0.0);
            for (k, recipe) in ["ov1", "ov2"].into_iter().enumerate() {
                let xs: Vec<f64> = match s.get(format!("{recipe}_seconds_per_image")) {
                    Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                    _ => Vec::new(),
                };
                if xs.is_empty() {
                    continue;
                }
                let hours: Vec<f64> = xs.iter().map(|x| x * samples / 3600.0).collect();
                rounds[k] = Some(match rounds[k].take() {
                    None => hours,
                    Some(acc) => acc.iter().zip(&hours).map(|(a, b)| a + b).collect(),
                });
                out.push(Metric::timed(
                    format!("{recipe}/stage{stage}/seconds_per_image"),
                    "s",
                    SmallerIsBetter,
                    xs,
                    warmup,
                ));
            }
        }
    }
    for (k, recipe) in ["ov1", "ov2"].into_iter().enumerate() {
        if let Some(h) = rounds[k].take().filter(|h| !h.is_empty()) {
            out.push(Metric::timed(
                format!("{recipe}/projected_device_hours"),
                "device-h",
                SmallerIsBetter,
                h,
                warmup,
            ));
        }
    }
    Ok((wl, hardware, out, Vec::new()))
}

/// `ovbench.torch-cpu/1`: ovbench against PyTorch eager, written by a Python script: its
/// provenance is the ovbench side's, with the script's time and command line.
fn torch_cpu(r: &Reader, schema: &Schema) -> Result<Envelope, GateError> {
    let ov = r
        .get("ovbench_provenance")
        .and_then(Value::as_object)
        .and_then(|m| m.values().next());
    let mut provenance: Provenance = match ov {
        Some(p) => serde_json::from_value(p.clone()).map_err(|e| r.err("ovbench_provenance", e))?,
        None => Provenance {
            created_utc: String::new(),
            command_line: Vec::new(),
            git: GitInfo {
                commit: None,
                dirty: None,
                note: None,
            },
            host: HostInfo {
                hostname: None,
                cpu_model: String::new(),
                physical_cores: None,
                logical_cpus: 0,
                memory_bytes: 0,
                os: String::new(),
                kernel: None,
            },
            build: BuildInfo {
                crate_version: String::new(),
                rustc: String::new(),
                profile: String::new(),
                opt_level: String::new(),
                target: String::new(),
                features: Vec::new(),
            },
        },
    };
    let s = |k: &str| r.get(k).map(short).unwrap_or_default();
    provenance.created_utc = s("created_utc");
    provenance.command_line = match r.get("command_line") {
        Some(Value::Array(a)) => a.iter().map(short).collect(),
        _ => Vec::new(),
    };
    provenance.git = GitInfo {
        commit: r
            .get("git/commit")
            .and_then(Value::as_str)
            .map(str::to_string),
        dirty: r.get("git/dirty").and_then(Value::as_bool),
        note: None,
    };
    let threads = r.get("threads").and_then(Value::as_u64);
    let wl = workload(vec![
        ("engines", "candle,torch-eager".into()),
        ("torch", s("torch")),
        ("threads", s("threads")),
        ("device", "cpu".into()),
    ]);
    let mut metrics = Vec::new();
    for (i, row) in r.array("results")?.iter().enumerate() {
        let g = |k: &str| row.get(k).map(short).unwrap_or_else(|| "?".into());
        let id = format!("{}/{}", g("config"), g("recipe"));
        let warmup = row.get("warmup").and_then(Value::as_u64).unwrap_or(0) as usize;
        for (side, field) in [
            ("ovbench", "ovbench_samples_s"),
            ("torch", "torch_samples_s"),
        ] {
            let xs: Vec<f64> = match row.get(field) {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_f64).collect(),
                Some(o) => {
                    return Err(r.err(
                        &format!("results[{i}].{field}"),
                        format!("expected an array, found {}", type_name(o)),
                    ))
                }
                None => Vec::new(),
            };
            if !xs.is_empty() {
                metrics.push(Metric::timed(
                    format!("{id}/{side}_step_s"),
                    "s",
                    SmallerIsBetter,
                    xs,
                    warmup,
                ));
            }
        }
    }
    let mut conditions = Vec::new();
    match r.get("same_function").and_then(Value::as_object) {
        None => conditions.push(Condition {
            name: "same_function".into(),
            holds: false,
            detail: "missing: no evidence that both sides compute the same function".into(),
        }),
        Some(m) if m.is_empty() => conditions.push(Condition {
            name: "same_function".into(),
            holds: false,
            detail: "empty: no configuration was checked".into(),
        }),
        Some(m) => {
            for (config, checks) in m {
                let checks = checks.as_array().map(Vec::as_slice).unwrap_or_default();
                if checks.is_empty() {
                    conditions.push(Condition {
                        name: format!("same_function.{config}"),
                        holds: false,
                        detail: "no check recorded".into(),
                    });
                }
                for (i, chk) in checks.iter().enumerate() {
                    let recipe = chk.get("recipe").and_then(Value::as_str).unwrap_or("?");
                    let holds = chk.get("same_function").and_then(Value::as_bool) == Some(true);
                    let detail = chk
                        .get("problems")
                        .and_then(Value::as_array)
                        .map(|p| p.iter().map(short).collect::<Vec<_>>().join("; "))
                        .unwrap_or_default();
                    conditions.push(Condition {
                        name: format!("same_function.{config}[{i}] ({recipe})"),
                        holds,
                        detail,
                    });
                }
            }
        }
    }
    let cpu = r
        .get("host/cpu_model")
        .and_then(Value::as_str)
        .unwrap_or("unknown CPU");
    Ok(Envelope {
        schema: schema.clone(),
        provenance,
        workload: wl,
        hardware: match threads {
            Some(t) => format!("{cpu} ({t} threads)"),
            None => cpu.to_string(),
        },
        metrics,
        conditions,
    })
}
