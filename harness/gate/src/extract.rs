//! Record JSON to metrics. One [`Extractor`] per record kind; adding a kind (for example
//! `repro`) is one more implementation and one more entry in [`extractors`].

use crate::error::GateError;
use crate::metric::{Direction, Metric};
use crate::record::{at, device_kind, display_value, type_name, LoadedRecord};
use serde_json::Value;
use std::collections::BTreeMap;

pub trait Extractor: Sync {
    /// The `<kind>` of `ovbench.<kind>/<version>` this extractor reads.
    fn kind(&self) -> &'static str;
    /// Schema versions it understands.
    fn versions(&self) -> &'static [u32];
    /// Keys that must agree before two records are compared (model, resolution, ...),
    /// rendered as short strings.
    fn config_keys(&self, rec: &LoadedRecord) -> Result<BTreeMap<String, String>, GateError>;
    /// Every metric of the record.
    fn metrics(&self, rec: &LoadedRecord) -> Result<Vec<Metric>, GateError>;
    /// A short label of the workload, prefixed to chart names (github-action-benchmark).
    fn workload_label(&self, rec: &LoadedRecord) -> String;
}

/// Every known extractor.
pub fn extractors() -> &'static [&'static dyn Extractor] {
    &[&StepExtractor, &ScoreExtractor, &ReproExtractor]
}

/// The extractor for `rec`'s schema, or an error listing the known schemas.
pub fn extractor_for(rec: &LoadedRecord) -> Result<&'static dyn Extractor, GateError> {
    extractors()
        .iter()
        .copied()
        .find(|e| e.kind() == rec.kind && e.versions().contains(&rec.version))
        .ok_or_else(|| GateError::UnknownSchema {
            path: rec.path.clone(),
            schema: rec.schema.clone(),
            known: extractors()
                .iter()
                .flat_map(|e| {
                    e.versions()
                        .iter()
                        .map(move |v| format!("ovbench.{}/{v}", e.kind()))
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn num(rec: &LoadedRecord, v: &Value, field: &str) -> Result<Option<f64>, GateError> {
    match at(v, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(rec.field_error(
            &field.replace('/', "."),
            format!("expected a number, found {}", type_name(other)),
        )),
    }
}

/// `ovbench.step/1`: per recipe, parameters, FLOPs, kept tokens and allocator peaks
/// (deterministic) and the forward / backward / optimizer / total step times (timed).
pub struct StepExtractor;

/// The configuration keys a step comparison must agree on.
pub const STEP_CONFIG_KEYS: &[&str] = &[
    "model",
    "resolution",
    "batch",
    "keep_ratio",
    "dtype",
    "device",
    "engine",
    "compile",
    "nproc",
];

/// Values of keys that records made before the key existed ran with (every record before
/// engines existed is candle's, one process, not compiled).
pub const STEP_CONFIG_DEFAULTS: &[(&str, &str)] =
    &[("engine", "candle"), ("compile", "false"), ("nproc", "1")];

impl Extractor for StepExtractor {
    fn kind(&self) -> &'static str {
        "step"
    }

    fn versions(&self) -> &'static [u32] {
        &[1]
    }

    fn config_keys(&self, rec: &LoadedRecord) -> Result<BTreeMap<String, String>, GateError> {
        let cfg = rec
            .at("config")
            .filter(|c| c.is_object())
            .ok_or_else(|| rec.field_error("config", "missing or not an object"))?;
        let mut keys = BTreeMap::new();
        for &k in STEP_CONFIG_KEYS {
            let Some(v) = cfg.get(k) else {
                match STEP_CONFIG_DEFAULTS.iter().find(|(d, _)| *d == k) {
                    Some((_, default)) => {
                        keys.insert(k.to_string(), default.to_string());
                        continue;
                    }
                    None => return Err(rec.field_error(&format!("config.{k}"), "missing")),
                }
            };
            // Device index does not change the workload; the kind (cpu, cuda) does.
            let s = if k == "device" {
                device_kind(v)
            } else {
                display_value(v)
            };
            keys.insert(k.to_string(), s);
        }
        Ok(keys)
    }

    fn metrics(&self, rec: &LoadedRecord) -> Result<Vec<Metric>, GateError> {
        let runs = match rec.at("runs") {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(rec.field_error(
                    "runs",
                    format!("expected an array, found {}", type_name(other)),
                ))
            }
            None => return Err(rec.field_error("runs", "missing")),
        };
        let mut out = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            let recipe = match run.get("recipe") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(
                        rec.field_error(&format!("runs[{i}].recipe"), "missing or not a string")
                    )
                }
            };
            let f = |field: &str| num(rec, run, field).map_err(|e| relabel(e, i));
            use Direction::*;
            if let Some(status) = run.get("status").and_then(Value::as_str) {
                let ok = matches!(status, "ok" | "completed" | "complete");
                out.push(Metric::deterministic(
                    format!("{recipe}/completed"),
                    "bool",
                    BiggerIsBetter,
                    ok as u8 as f64,
                ));
            }
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
                    out.push(Metric::deterministic(
                        format!("{recipe}/{name}"),
                        unit,
                        dir,
                        v,
                    ));
                }
            }
            // Allocator bytes mean nothing when the counting allocator was not installed.
            let active = run
                .pointer("/memory/allocator_active")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if active {
                for field in ["peak_over_baseline_bytes", "transient_peak_bytes"] {
                    if let Some(v) = f(&format!("memory/{field}"))? {
                        out.push(Metric::deterministic(
                            format!("{recipe}/memory/{field}"),
                            "bytes",
                            SmallerIsBetter,
                            v,
                        ));
                    }
                }
            }
            if let Some(Value::Array(samples)) = run.get("samples") {
                for (field, name) in [
                    ("total_s", "step_s"),
                    ("forward_s", "forward_s"),
                    ("backward_s", "backward_s"),
                    ("optimizer_s", "optimizer_s"),
                ] {
                    let mut xs = Vec::with_capacity(samples.len());
                    for (k, s) in samples.iter().enumerate() {
                        match s.get(field) {
                            Some(Value::Number(n)) => xs.push(n.as_f64().unwrap_or(f64::NAN)),
                            None | Some(Value::Null) => {}
                            Some(o) => {
                                return Err(rec.field_error(
                                    &format!("runs[{i}].samples[{k}].{field}"),
                                    format!("expected a number, found {}", type_name(o)),
                                ))
                            }
                        }
                    }
                    if let Some(bad) = xs.iter().position(|x| !x.is_finite() || *x < 0.0) {
                        return Err(rec.field_error(
                            &format!("runs[{i}].samples[{bad}].{field}"),
                            "not a finite non-negative time",
                        ));
                    }
                    if !xs.is_empty() {
                        out.push(Metric::timed(
                            format!("{recipe}/{name}"),
                            "s",
                            SmallerIsBetter,
                            xs,
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    fn workload_label(&self, rec: &LoadedRecord) -> String {
        let g = |k: &str| {
            rec.at(&format!("config/{k}"))
                .map(display_value)
                .unwrap_or_else(|| "?".into())
        };
        let device = rec
            .at("config/device")
            .map(device_kind)
            .unwrap_or_else(|| "?".into());
        // Candle's labels stay as they were before engines existed (chart names follow them).
        let engine = match rec.at("config/engine").map(display_value) {
            Some(e) if e != "candle" => format!(" {e}"),
            _ => String::new(),
        };
        format!(
            "{}@{}px b{} keep{} {} {}{engine}",
            g("model"),
            g("resolution"),
            g("batch"),
            g("keep_ratio"),
            g("dtype"),
            device
        )
    }
}

fn relabel(e: GateError, run: usize) -> GateError {
    match e {
        GateError::Invalid { path, message } => GateError::Invalid {
            path,
            message: message.replacen("field `", &format!("field `runs[{run}]."), 1),
        },
        other => other,
    }
}

/// `ovbench.score/1`: scores are deterministic functions of predictions and annotations,
/// so every numeric leaf of the body (outside provenance) is gated, except time-like
/// fields. Names are JSON paths; array elements are named by their `task`, `name`,
/// `id` or `metric` field when they have one.
pub struct ScoreExtractor;

/// Body fields that are bookkeeping, not scores.
const SCORE_SKIP: &[&str] = &["schema", "provenance", "inputs", "warnings", "items_csv"];

const SCORE_CONFIG_KEYS: &[&str] = &[
    "mode",
    "task",
    "compat",
    "scorer_version",
    "model",
    "split",
    "benchmark",
];

fn timing_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.ends_with("_s")
        || k.contains("seconds")
        || k.contains("elapsed")
        || k.contains("duration")
        || k.contains("time")
}

fn element_name(v: &Value, i: usize) -> String {
    for k in ["task", "name", "id", "metric"] {
        if let Some(s) = v.get(k).and_then(Value::as_str) {
            return s.to_string();
        }
    }
    i.to_string()
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut Vec<Metric>) {
    match v {
        Value::Number(n) => {
            let last = path.last().map(String::as_str).unwrap_or("");
            let dir = if matches!(
                last,
                "value" | "mean" | "toolkit_value" | "score" | "accuracy"
            ) {
                Direction::BiggerIsBetter
            } else {
                Direction::Neither
            };
            if let Some(x) = n.as_f64() {
                out.push(Metric::deterministic(
                    format!("score/{}", path.join("/")),
                    "score",
                    dir,
                    x,
                ));
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if timing_like(k) {
                    continue;
                }
                path.push(k.clone());
                walk(x, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(element_name(x, i));
                walk(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

impl Extractor for ScoreExtractor {
    fn kind(&self) -> &'static str {
        "score"
    }

    fn versions(&self) -> &'static [u32] {
        &[1]
    }

    fn config_keys(&self, rec: &LoadedRecord) -> Result<BTreeMap<String, String>, GateError> {
        let mut keys = BTreeMap::new();
        for &k in SCORE_CONFIG_KEYS {
            let v = rec.at(k).or_else(|| rec.at(&format!("config/{k}")));
            if let Some(v) = v.filter(|v| !v.is_object() && !v.is_array()) {
                keys.insert(k.to_string(), display_value(v));
            }
        }
        // Scores of different annotation files are not comparable.
        if let Some(Value::Array(inputs)) = rec.at("inputs") {
            let hashes: Vec<&str> = inputs
                .iter()
                .filter(|i| i.get("role").and_then(Value::as_str) == Some("annotations"))
                .filter_map(|i| i.get("sha256").and_then(Value::as_str))
                .collect();
            if !hashes.is_empty() {
                keys.insert("annotations_sha256".into(), hashes.join(","));
            }
        }
        Ok(keys)
    }

    fn metrics(&self, rec: &LoadedRecord) -> Result<Vec<Metric>, GateError> {
        let body = rec
            .value
            .as_object()
            .ok_or_else(|| rec.field_error("", "not an object"))?;
        let mut out = Vec::new();
        for (k, v) in body {
            if SCORE_SKIP.contains(&k.as_str()) || timing_like(k) {
                continue;
            }
            let mut path = vec![k.clone()];
            walk(v, &mut path, &mut out);
        }
        if out.is_empty() {
            return Err(rec.field_error("", "a score record with no numeric field to gate"));
        }
        Ok(out)
    }

    fn workload_label(&self, rec: &LoadedRecord) -> String {
        // Task and toolkit label only: chart names must not change with a scorer version.
        let keys = self.config_keys(rec).unwrap_or_default();
        let parts: Vec<&str> = ["task", "compat"]
            .iter()
            .filter_map(|k| keys.get(*k).map(String::as_str))
            .collect();
        if parts.is_empty() {
            "score".into()
        } else {
            parts.join(" ")
        }
    }
}

/// `ovbench.repro/1` and `/2`: the analytic FLOPs per image of each (backbone, resolution,
/// recipe) and the measured allocator peaks behind the memory model, all deterministic (`/2`
/// adds each point's forward-pass peak). The projection's hours are derived from timings and
/// are not gated here.
pub struct ReproExtractor;

impl Extractor for ReproExtractor {
    fn kind(&self) -> &'static str {
        "repro"
    }

    fn versions(&self) -> &'static [u32] {
        &[1, 2]
    }

    fn config_keys(&self, rec: &LoadedRecord) -> Result<BTreeMap<String, String>, GateError> {
        let mut keys = BTreeMap::new();
        // The cap and the search's limit decide the max batch found, so they must match too.
        for k in [
            "preset",
            "dtype",
            "batch",
            "remat",
            "device",
            "mem_cap_bytes",
            "confirm_limit",
        ] {
            if let Some(v) = rec.at(&format!("config/{k}")) {
                let s = if k == "device" {
                    device_kind(v)
                } else {
                    display_value(v)
                };
                keys.insert(k.to_string(), s);
            }
        }
        // The engine of every step, as for step records (older reports ran candle).
        for (k, default) in STEP_CONFIG_DEFAULTS {
            let v = rec
                .at(&format!("config/{k}"))
                .map(display_value)
                .unwrap_or_else(|| default.to_string());
            keys.insert(k.to_string(), v);
        }
        Ok(keys)
    }

    fn metrics(&self, rec: &LoadedRecord) -> Result<Vec<Metric>, GateError> {
        let mut out = Vec::new();
        if let Some(Value::Array(flops)) = rec.at("flops") {
            for (i, f) in flops.iter().enumerate() {
                let name = |k: &str| f.get(k).map(display_value).unwrap_or_else(|| "?".into());
                let id = format!(
                    "{}@{}/{}",
                    name("backbone"),
                    name("resolution"),
                    name("recipe")
                );
                for field in ["gflops_table3_convention", "gflops_executed"] {
                    if let Some(v) =
                        num(rec, f, field).map_err(|e| relabel_at(e, &format!("flops[{i}]")))?
                    {
                        out.push(Metric::deterministic(
                            format!("flops/{id}/{field}"),
                            "GFLOP",
                            Direction::SmallerIsBetter,
                            v,
                        ));
                    }
                }
            }
        }
        for recipe in ["ov1", "ov2"] {
            if let Some(Value::Array(points)) = rec.at(&format!("memory/{recipe}/points")) {
                for p in points {
                    let Some(b) = p.get("batch").and_then(Value::as_u64) else {
                        continue;
                    };
                    for field in ["peak_bytes", "forward_peak_bytes"] {
                        if let Some(v) = p.get(field).and_then(Value::as_f64) {
                            out.push(Metric::deterministic(
                                format!("memory/{recipe}/{field}_at_batch_{b}"),
                                "bytes",
                                Direction::SmallerIsBetter,
                                v,
                            ));
                        }
                    }
                }
            }
            if let Some(v) = rec
                .at(&format!("memory/{recipe}_max_batch_under_cap"))
                .and_then(Value::as_f64)
            {
                out.push(Metric::deterministic(
                    format!("memory/{recipe}/max_batch_under_cap"),
                    "images",
                    Direction::BiggerIsBetter,
                    v,
                ));
            }
        }
        if out.is_empty() {
            return Err(rec.field_error(
                "flops",
                "a repro record with no FLOP or memory figure to gate",
            ));
        }
        Ok(out)
    }

    fn workload_label(&self, rec: &LoadedRecord) -> String {
        let preset = rec
            .at("config/preset")
            .map(display_value)
            .unwrap_or_else(|| "?".into());
        format!("repro {preset}")
    }
}

fn relabel_at(e: GateError, prefix: &str) -> GateError {
    match e {
        GateError::Invalid { path, message } => GateError::Invalid {
            path,
            message: message.replacen("field `", &format!("field `{prefix}."), 1),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn step() -> LoadedRecord {
        LoadedRecord::from_value(
            Path::new("s.json"),
            json!({
                "schema": "ovbench.step/1",
                "config": {"model": {"size": "Ti", "patch": 16}, "resolution": 112, "batch": 8,
                           "keep_ratio": 0.35, "dtype": "f32", "device": {"kind": "cpu"}},
                "runs": [
                    {"recipe": "ov1", "params_total": 100, "forward_flops_per_image_total": 5.0e9,
                     "memory": {"allocator_active": true, "peak_over_baseline_bytes": 1000, "transient_peak_bytes": 10},
                     "samples": [{"total_s": 1.0, "forward_s": 0.4}, {"total_s": 1.1, "forward_s": 0.5}]},
                    {"recipe": "ov2", "status": "oom", "params_total": 90, "kept_tokens": 17,
                     "memory": {"allocator_active": false, "peak_over_baseline_bytes": 0}}
                ]
            }),
        )
        .unwrap()
    }

    #[test]
    fn step_metrics_and_keys() {
        let r = step();
        let e = extractor_for(&r).unwrap();
        let keys = e.config_keys(&r).unwrap();
        assert_eq!(keys["model"], "Ti/16");
        assert_eq!(keys["device"], "cpu");
        let names: Vec<String> = e.metrics(&r).unwrap().into_iter().map(|m| m.name).collect();
        for n in [
            "ov1/params_total",
            "ov1/memory/peak_over_baseline_bytes",
            "ov1/step_s",
            "ov1/forward_s",
            "ov2/completed",
            "ov2/kept_tokens",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        // The inactive allocator's zeros are not gated.
        assert!(!names
            .iter()
            .any(|x| x == "ov2/memory/peak_over_baseline_bytes"));
        assert!(e.workload_label(&r).starts_with("Ti/16@112px b8"));
        // Records from before engines existed are candle's, one process, eager.
        assert_eq!(keys["engine"], "candle");
        assert_eq!(keys["compile"], "false");
        assert_eq!(keys["nproc"], "1");
        let mut t = step();
        t.value["config"]["engine"] = json!("torch");
        t.value["config"]["compile"] = json!(true);
        let tk = e.config_keys(&t).unwrap();
        assert_eq!(tk["engine"], "torch");
        assert_ne!(tk, keys, "a torch record must not pool with a candle one");
        assert!(e.workload_label(&t).ends_with(" torch"));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut r = step();
        r.value["runs"][0]["params_total"] = json!("many");
        let err = StepExtractor.metrics(&r).unwrap_err().to_string();
        assert!(
            err.contains("runs[0].params_total") && err.contains("s.json"),
            "{err}"
        );
        let mut r = step();
        r.value["runs"][0]["samples"][1]["total_s"] = json!("slow");
        let err = StepExtractor.metrics(&r).unwrap_err().to_string();
        assert!(err.contains("runs[0].samples[1].total_s"), "{err}");
        let mut r = step();
        r.value["config"].as_object_mut().unwrap().remove("batch");
        let err = StepExtractor.config_keys(&r).unwrap_err().to_string();
        assert!(err.contains("config.batch"), "{err}");
    }

    #[test]
    fn unknown_schema_lists_known() {
        let r = LoadedRecord::from_value(Path::new("r.json"), json!({"schema": "ovbench.repro/9"}))
            .unwrap();
        let err = extractor_for(&r).err().unwrap().to_string();
        assert!(
            err.contains("ovbench.step/1")
                && err.contains("ovbench.repro/1")
                && err.contains("'ovbench.repro/9'"),
            "{err}"
        );
    }

    #[test]
    fn repro_figures_are_deterministic_metrics() {
        let r = LoadedRecord::from_value(
            Path::new("repro.json"),
            json!({"schema": "ovbench.repro/2",
                   "config": {"preset": "small", "dtype": "f32", "batch": 2, "remat": "full", "device": {"kind": "cpu"}},
                   "flops": [{"backbone": "L/14", "resolution": 224, "recipe": "ov2", "gflops_table3_convention": 206.8}],
                   "memory": {"ov1": {"points": [{"batch": 2, "peak_bytes": 100, "forward_peak_bytes": 90},
                                                 {"batch": 4, "peak_bytes": 180}]},
                              "ov1_max_batch_under_cap": 40}}),
        )
        .unwrap();
        let e = extractor_for(&r).unwrap();
        let names: Vec<String> = e.metrics(&r).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "flops/L/14@224/ov2/gflops_table3_convention",
                "memory/ov1/peak_bytes_at_batch_2",
                "memory/ov1/forward_peak_bytes_at_batch_2",
                "memory/ov1/peak_bytes_at_batch_4",
                "memory/ov1/max_batch_under_cap"
            ]
        );
        assert_eq!(e.config_keys(&r).unwrap()["device"], "cpu");
        let mut bad = r.clone();
        bad.value["flops"][0]["gflops_executed"] = json!("lots");
        let err = e.metrics(&bad).unwrap_err().to_string();
        assert!(err.contains("flops[0].gflops_executed"), "{err}");
    }

    #[test]
    fn score_leaves_are_named_by_path() {
        let r = LoadedRecord::from_value(
            Path::new("c.json"),
            json!({"schema": "ovbench.score/1", "provenance": {"x": 1}, "task": "textvqa", "elapsed_s": 3.2,
                   "reports": [{"task": "chartqa", "toolkit": {"value": 0.5, "metric": "relaxed"}, "n_scored": 10}]}),
        )
        .unwrap();
        let e = extractor_for(&r).unwrap();
        let ms = e.metrics(&r).unwrap();
        let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "score/reports/chartqa/n_scored",
                "score/reports/chartqa/toolkit/value"
            ]
        );
        assert_eq!(ms[1].direction, Direction::BiggerIsBetter);
        assert_eq!(e.config_keys(&r).unwrap()["task"], "textvqa");
        assert_eq!(e.workload_label(&r), "textvqa");
    }
}
