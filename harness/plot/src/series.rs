//! What the charts draw, taken from records' envelopes (workload keys and metrics by name)
//! and from published figures handed in by the caller: this crate holds no paper numbers.

use ovbench_harness::envelope::{Envelope, Measurement, Workload};
use ovbench_harness::stats::{self, Summary};
use std::path::PathBuf;

/// Which OV2 / OV1 ratio a published figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Training time (the paper's: the whole schedule).
    Time,
    PeakMemory,
    /// Forward FLOPs per image.
    Flops,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRatio {
    pub quantity: Quantity,
    /// `backbone@resolution`.
    pub setting: String,
    pub value: f64,
    /// The claim's tolerance band.
    pub band: Option<(f64, f64)>,
}

/// One published peak-memory point: `peak_gb` None means out of memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperPoint {
    /// `ov1` or `ov2`.
    pub recipe: String,
    /// `backbone@resolution`.
    pub setting: String,
    pub per_chip_batch: f64,
    pub peak_gb: Option<f64>,
}

/// The published figures the charts set beside the measured ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub ratios: Vec<PublishedRatio>,
    pub memory: Vec<PaperPoint>,
    pub memory_cap_gb: f64,
    /// Where the memory points come from, e.g. "Table 4, per TPU v4 chip".
    pub memory_source: String,
    /// The hardware the paper measured on, e.g. "TPU v4 chip".
    pub hardware: String,
    /// One line naming the source, written into the index.
    pub source: String,
}

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
    /// Host allocator peak above the pre-run baseline.
    pub peak_bytes: Option<f64>,
    /// Device (GPU allocator) peak, when the record has one.
    pub device_peak_bytes: Option<f64>,
}

/// One step record as the charts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub path: PathBuf,
    pub model: String,
    pub resolution: Option<u64>,
    pub batch: Option<u64>,
    /// The workload keys (beyond model, resolution, batch) that tell this record apart from
    /// others being plotted, as ` key=value ...`: workloads are never pooled unlabelled.
    pub extra: String,
    pub workload: Workload,
    pub hardware: String,
    pub runs: Vec<RunView>,
    pub step_time_ratio: Option<Interval>,
    pub peak_memory_ratio: Option<f64>,
    pub flops_ratio: Option<f64>,
}

impl StepView {
    /// `model@res px b<batch>` plus the distinguishing keys.
    pub fn setting(&self) -> String {
        let o = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
        format!(
            "{}@{}px b{}{}",
            self.model,
            o(self.resolution),
            o(self.batch),
            self.extra
        )
    }

    pub fn run(&self, recipe: &str) -> Option<&RunView> {
        self.runs.iter().find(|r| r.recipe == recipe)
    }
}

fn samples(env: &Envelope, name: &str) -> Vec<f64> {
    match env.metric(name).map(|m| &m.measurement) {
        Some(Measurement::Timed { samples, .. }) => samples.clone(),
        _ => Vec::new(),
    }
}

fn value(env: &Envelope, name: &str) -> Option<f64> {
    env.metric(name).and_then(|m| m.measurement.central())
}

/// Step views of the step records among `records`; the others are returned by path.
pub fn step_views(records: &[(PathBuf, Envelope)]) -> (Vec<StepView>, Vec<PathBuf>) {
    let steps: Vec<&(PathBuf, Envelope)> = records
        .iter()
        .filter(|(_, e)| e.schema.kind == "step")
        .collect();
    let others = records
        .iter()
        .filter(|(_, e)| e.schema.kind != "step")
        .map(|(p, _)| p.clone())
        .collect();
    // Keys whose values differ between the plotted records, besides the ones in the label.
    let mut varying = Vec::new();
    for (_, e) in &steps {
        for (k, v) in &e.workload {
            if matches!(k.as_str(), "model" | "resolution" | "batch") || varying.contains(k) {
                continue;
            }
            if steps.iter().any(|(_, o)| o.workload.get(k) != Some(v)) {
                varying.push(k.clone());
            }
        }
    }
    let views = steps
        .iter()
        .map(|(path, e)| {
            let w = &e.workload;
            let mut recipes: Vec<String> = Vec::new();
            for m in &e.metrics {
                if let Some((r, _)) = m.name.split_once('/') {
                    if matches!(r, "ov1" | "ov2") && !recipes.iter().any(|x| x == r) {
                        recipes.push(r.to_string());
                    }
                }
            }
            let runs = recipes
                .into_iter()
                .map(|r| {
                    let step_samples = samples(e, &format!("{r}/step_s"));
                    RunView {
                        step_s: Summary::of(&step_samples).map(|s| Interval {
                            median: s.median,
                            ci95: s.ci95,
                        }),
                        step_samples,
                        peak_bytes: value(e, &format!("{r}/memory/peak_over_baseline_bytes")),
                        device_peak_bytes: value(
                            e,
                            &format!("{r}/memory/gpu/allocator_peak_bytes"),
                        ),
                        recipe: r,
                    }
                })
                .collect();
            let (t1, t2) = (samples(e, "ov1/step_s"), samples(e, "ov2/step_s"));
            StepView {
                path: path.clone(),
                model: w.get("model").cloned().unwrap_or_else(|| "?".into()),
                resolution: w.get("resolution").and_then(|x| x.parse().ok()),
                batch: w.get("batch").and_then(|x| x.parse().ok()),
                extra: varying
                    .iter()
                    .filter_map(|k| w.get(k).map(|v| format!(" {k}={v}")))
                    .collect(),
                workload: w.clone(),
                hardware: e.hardware.clone(),
                runs,
                step_time_ratio: stats::ratio_of_medians(&t2, &t1, 0).map(|r| Interval {
                    median: r.value,
                    ci95: r.ci95,
                }),
                peak_memory_ratio: value(e, "ov2_over_ov1/peak_memory"),
                flops_ratio: value(e, "ov2_over_ov1/forward_flops"),
            }
        })
        .collect();
    (views, others)
}
