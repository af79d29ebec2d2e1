//! A tolerant view of step records for tables and plots: every field optional, so records
//! from older or newer writers still show what they have.

use crate::error::GateError;
use crate::record::{at, device_kind, display_value, LoadedRecord};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub median: f64,
    pub ci95: [f64; 2],
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub recipe: String,
    pub step_s: Option<Interval>,
    pub step_samples: Vec<f64>,
    pub images_per_s: Option<f64>,
    pub achieved_flops_per_s: Option<f64>,
    /// Host allocator peak above the pre-run baseline.
    pub peak_bytes: Option<f64>,
    /// Device (GPU) peak, when the record carries one.
    pub device_peak_bytes: Option<f64>,
    pub params_total: Option<f64>,
    pub forward_flops_per_image: Option<f64>,
    /// Projected hours of the full training schedule, when the record carries one.
    pub projected_hours: Option<f64>,
    /// `ok`, `oom`, ... when the record says.
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub path: PathBuf,
    pub model: String,
    pub resolution: Option<u64>,
    pub batch: Option<u64>,
    pub keep_ratio: Option<f64>,
    pub dtype: String,
    pub device: String,
    /// Column label: the GPU name on CUDA, else the CPU model and thread count; followed by
    /// the engine when it is not candle, so that engines sit side by side and never pool.
    pub hardware: String,
    /// `candle`, `torch`, `torch.compile`, with ` x N` for N processes.
    pub engine: String,
    /// Total memory of the measuring GPU, from a GPU snapshot in the record.
    pub device_memory_bytes: Option<f64>,
    pub runs: Vec<RunView>,
    /// OV2 / OV1 step time with its interval, as the record computed it.
    pub step_time_ratio: Option<Interval>,
    pub peak_memory_ratio: Option<f64>,
    pub flops_ratio: Option<f64>,
}

/// Device-peak paths tried in order; the train suite may add GPU memory views.
const DEVICE_PEAK: &[&str] = &[
    "memory/device_peak_bytes",
    "memory/gpu_peak_bytes",
    "memory/gpu/peak_bytes",
    "gpu_memory/peak_bytes",
    "device_memory/peak_bytes",
];
/// Full-schedule projection paths tried in order (a run's, then the record's per recipe).
const PROJECTED_HOURS: &[&str] = &[
    "projected_full_schedule_hours",
    "full_schedule_hours",
    "projection/full_schedule_hours",
    "projection/hours",
    "schedule/projected_hours",
];

fn first_num(v: &Value, paths: &[&str]) -> Option<f64> {
    paths.iter().find_map(|p| at(v, p).and_then(Value::as_f64))
}

fn interval(v: Option<&Value>) -> Option<Interval> {
    let v = v?;
    let median = v.get("median").or_else(|| v.get("value"))?.as_f64()?;
    let ci = v.get("ci95").and_then(Value::as_array);
    let ci95 = match ci.map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>()) {
        Some(c) if c.len() == 2 => [c[0], c[1]],
        _ => [median, median],
    };
    Some(Interval { median, ci95 })
}

/// Searches the record for a GPU snapshot (an object with `name` and `uuid`).
fn gpu_snapshot(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(_)), Some(Value::String(_))) = (m.get("name"), m.get("uuid"))
            {
                return Some(m);
            }
            m.values().find_map(gpu_snapshot)
        }
        Value::Array(a) => a.iter().find_map(gpu_snapshot),
        _ => None,
    }
}

fn gpu_name(v: &Value) -> Option<String> {
    gpu_snapshot(v).and_then(|m| m.get("name")?.as_str().map(str::to_string))
}

/// The engine that made a step record (records from before engines existed are candle's).
pub fn engine_label(rec: &LoadedRecord) -> String {
    let engine = rec
        .at("config/engine")
        .and_then(Value::as_str)
        .unwrap_or("candle");
    let compiled = rec.at("config/compile").and_then(Value::as_bool) == Some(true);
    let nproc = rec.at("config/nproc").and_then(Value::as_u64).unwrap_or(1);
    let mut out = format!("{engine}{}", if compiled { ".compile" } else { "" });
    if nproc > 1 {
        out.push_str(&format!(" x {nproc}"));
    }
    out
}

pub fn hardware_label(rec: &LoadedRecord) -> String {
    let kind = rec
        .at("config/device")
        .map(device_kind)
        .unwrap_or_else(|| "cpu".into());
    if kind != "cpu" {
        return gpu_name(&rec.value).unwrap_or(kind);
    }
    let cpu = rec
        .at("provenance/host/cpu_model")
        .and_then(Value::as_str)
        .unwrap_or("unknown CPU");
    match rec
        .at("provenance/host/logical_cpus")
        .and_then(Value::as_u64)
    {
        Some(n) => format!("{cpu} ({n} threads)"),
        None => cpu.to_string(),
    }
}

impl StepView {
    pub fn from_record(rec: &LoadedRecord) -> Result<Self, GateError> {
        if rec.kind != "step" {
            return Err(GateError::invalid(
                &rec.path,
                format!("a '{}' record, not a step record", rec.schema),
            ));
        }
        let runs_v = rec
            .at("runs")
            .and_then(Value::as_array)
            .ok_or_else(|| rec.field_error("runs", "missing or not an array"))?;
        let mut runs = Vec::new();
        for (i, r) in runs_v.iter().enumerate() {
            let recipe = r.get("recipe").and_then(Value::as_str).ok_or_else(|| {
                rec.field_error(&format!("runs[{i}].recipe"), "missing or not a string")
            })?;
            let step_samples = r
                .get("samples")
                .and_then(Value::as_array)
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.get("total_s").and_then(Value::as_f64))
                        .collect()
                })
                .unwrap_or_default();
            let projected = first_num(r, PROJECTED_HOURS).or_else(|| {
                PROJECTED_HOURS
                    .iter()
                    .find_map(|p| rec.at(&format!("{p}/{recipe}")).and_then(Value::as_f64))
            });
            runs.push(RunView {
                recipe: recipe.to_string(),
                step_s: interval(at(r, "summary/step_s")),
                step_samples,
                images_per_s: at(r, "summary/images_per_s").and_then(Value::as_f64),
                achieved_flops_per_s: at(r, "summary/achieved_flops_per_s").and_then(Value::as_f64),
                peak_bytes: at(r, "memory/peak_over_baseline_bytes").and_then(Value::as_f64),
                device_peak_bytes: first_num(r, DEVICE_PEAK),
                params_total: r.get("params_total").and_then(Value::as_f64),
                forward_flops_per_image: r
                    .get("forward_flops_per_image_total")
                    .and_then(Value::as_f64),
                projected_hours: projected,
                status: r.get("status").and_then(Value::as_str).map(str::to_string),
            });
        }
        let g = |k: &str| rec.at(&format!("config/{k}"));
        Ok(StepView {
            path: rec.path.clone(),
            model: g("model").map(display_value).unwrap_or_else(|| "?".into()),
            resolution: g("resolution").and_then(Value::as_u64),
            batch: g("batch").and_then(Value::as_u64),
            keep_ratio: g("keep_ratio").and_then(Value::as_f64),
            dtype: g("dtype").map(display_value).unwrap_or_else(|| "?".into()),
            device: g("device").map(display_value).unwrap_or_else(|| "?".into()),
            hardware: match engine_label(rec) {
                e if e == "candle" => hardware_label(rec),
                e => format!("{} · {e}", hardware_label(rec)),
            },
            engine: engine_label(rec),
            device_memory_bytes: gpu_snapshot(&rec.value)
                .and_then(|m| m.get("memory_total_bytes")?.as_f64()),
            runs,
            step_time_ratio: interval(rec.at("ratios_ov2_over_ov1/step_time")),
            peak_memory_ratio: rec
                .at("ratios_ov2_over_ov1/peak_memory")
                .and_then(Value::as_f64),
            flops_ratio: rec
                .at("ratios_ov2_over_ov1/forward_flops")
                .and_then(Value::as_f64),
        })
    }

    /// `model@res px, batch b` (without the recipe).
    pub fn setting(&self) -> String {
        let o = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        format!("{}@{}px b{}", self.model, o(self.resolution), o(self.batch))
    }

    pub fn run(&self, recipe: &str) -> Option<&RunView> {
        self.runs.iter().find(|r| r.recipe == recipe)
    }
}

/// Files named on the command line, and every `*.json` below folders named there
/// (sorted, hidden files skipped).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, GateError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|cause| GateError::Read {
            path: p.clone(),
            cause,
        })?;
        if meta.is_dir() {
            walk_json(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk_json(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), GateError> {
    let rd = std::fs::read_dir(dir).map_err(|cause| GateError::Read {
        path: dir.to_path_buf(),
        cause,
    })?;
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk_json(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads every step record among `paths` (files or folders). Records of other kinds are
/// skipped and named in the returned notes; unreadable files are errors.
pub fn load_step_views(paths: &[PathBuf]) -> Result<(Vec<StepView>, Vec<String>), GateError> {
    let mut views = Vec::new();
    let mut notes = Vec::new();
    for p in expand_paths(paths)? {
        let rec = LoadedRecord::load(&p)?;
        if rec.kind == "step" {
            views.push(StepView::from_record(&rec)?);
        } else {
            notes.push(format!("{}: skipped ({} record)", p.display(), rec.schema));
        }
    }
    Ok((views, notes))
}
