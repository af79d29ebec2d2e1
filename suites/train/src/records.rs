//! What the train suite's records tell every reader: their workload keys and metrics
//! (see `ovbench_harness::envelope`). Metric names are a public vocabulary (gate
//! configurations and baselines name them): rename one only with a schema bump.

use crate::device::DeviceArg;
use crate::repro::ReproReport;
use crate::step::{RecipeRun, StepRecord};
use ovbench_harness::envelope::{host_label, Condition, Direction, Metric, RecordBody, Workload};
use ovbench_harness::gpu::GpuState;
use ovbench_harness::Provenance;
use serde::Serialize;

/// A configuration value as a short string: JSON strings bare, numbers as written.
pub fn key<T: Serialize>(x: &T) -> String {
    match serde_json::to_value(x) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => "?".into(),
    }
}

fn device_kind(d: &DeviceArg) -> &'static str {
    match d {
        DeviceArg::Cpu => "cpu",
        DeviceArg::Cuda(_) => "cuda",
    }
}

/// The name of the GPU a run measured on, from its snapshots.
fn gpu_name(runs: &[RecipeRun]) -> Option<String> {
    runs.iter().filter_map(|r| r.gpu.as_ref()).find_map(|g| {
        [&g.gpu_before, &g.gpu_after]
            .into_iter()
            .find_map(|s| match s {
                GpuState::Available(s) => Some(s.name.clone()),
                GpuState::Unavailable { .. } => None,
            })
    })
}

impl RecordBody for StepRecord {
    const KIND: &'static str = "step";
    /// 2: the envelope (workload, metrics, hardware) beside the body.
    const VERSION: u32 = 2;

    fn workload(&self) -> Workload {
        let c = &self.config;
        [
            ("engine", key(&c.engine)),
            ("compile", c.compile.to_string()),
            ("model", c.model.to_string()),
            ("resolution", c.resolution.to_string()),
            ("batch", c.batch.to_string()),
            ("keep_ratio", key(&c.keep_ratio)),
            ("dtype", key(&c.dtype)),
            ("kernels", key(&c.kernels)),
            ("remat", key(&c.remat)),
            ("v2_attention", key(&c.v2_attention)),
            ("device", device_kind(&c.device).to_string()),
            ("processes", c.nproc.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn hardware(&self, p: &Provenance) -> String {
        let engine_device = self
            .runs
            .iter()
            .filter_map(|r| r.engine.as_ref()?.device_name.clone())
            .find(|n| !n.is_empty() && self.config.device != DeviceArg::Cpu);
        match gpu_name(&self.runs).or(engine_device) {
            Some(name) => name,
            None => format!(
                "{} ({} threads)",
                p.host.cpu_model,
                self.runtime.threads.max(1)
            ),
        }
    }

    /// A torch run after `--check-same` must have shown it computes candle's function.
    fn conditions(&self) -> Vec<Condition> {
        self.runs
            .iter()
            .filter_map(|r| {
                let check = r.engine.as_ref()?.same_function.as_ref()?;
                let holds = check.get("same_function") == Some(&serde_json::Value::Bool(true));
                let detail = check
                    .get("problems")
                    .and_then(|p| p.as_array())
                    .map(|p| {
                        p.iter()
                            .map(|x| {
                                x.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| x.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                Some(Condition {
                    name: format!("{}/same_function_as_candle", r.recipe.key()),
                    holds,
                    detail,
                })
            })
            .collect()
    }

    fn metrics(&self) -> Vec<Metric> {
        use Direction::*;
        let mut out = Vec::new();
        for run in &self.runs {
            run_metrics(run, self.config.batch, self.config.warmup, &mut out);
        }
        for f in &self.failed {
            let r = f.recipe.key();
            out.push(Metric::deterministic(
                format!("{r}/completed"),
                "bool",
                BiggerIsBetter,
                0.0,
            ));
            out.push(Metric::deterministic(
                format!("{r}/oom"),
                "bool",
                SmallerIsBetter,
                (f.status == "oom") as u8 as f64,
            ));
        }
        if let Some(r) = &self.ratios_ov2_over_ov1 {
            for (name, v) in [
                ("peak_memory", r.peak_memory),
                ("params", r.params),
                ("forward_flops", r.forward_flops),
            ] {
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
        out
    }
}

fn run_metrics(run: &RecipeRun, batch: usize, warmup: usize, out: &mut Vec<Metric>) {
    use Direction::*;
    let r = run.recipe.key();
    let det = |name: &str, unit: &str, dir: Direction, v: f64| {
        Metric::deterministic(format!("{r}/{name}"), unit, dir, v)
    };
    out.push(det("completed", "bool", BiggerIsBetter, 1.0));
    out.push(det("oom", "bool", SmallerIsBetter, 0.0));
    out.push(det(
        "params_total",
        "params",
        Neither,
        run.params_total as f64,
    ));
    if let Some(k) = run.kept_tokens {
        out.push(det("kept_tokens", "tokens", Neither, k as f64));
    }
    out.push(det(
        "forward_flops_per_image",
        "FLOP",
        SmallerIsBetter,
        run.forward_flops_per_image_total,
    ));
    out.push(det(
        "training_flops_per_image",
        "FLOP",
        SmallerIsBetter,
        run.training_flops_per_image,
    ));
    let m = &run.memory;
    // Allocator bytes mean nothing when the counting allocator was not installed.
    if m.allocator_active {
        out.push(det(
            "memory/peak_over_baseline_bytes",
            "bytes",
            SmallerIsBetter,
            m.peak_over_baseline_bytes as f64,
        ));
        out.push(det(
            "memory/transient_peak_bytes",
            "bytes",
            SmallerIsBetter,
            m.transient_peak_bytes as f64,
        ));
        if m.forward_peak_over_baseline_bytes > 0 {
            out.push(det(
                "memory/forward_peak_over_baseline_bytes",
                "bytes",
                SmallerIsBetter,
                m.forward_peak_over_baseline_bytes as f64,
            ));
        }
    }
    if let Some(g) = &run.gpu {
        for (name, v) in [
            ("allocator_peak_bytes", g.allocator.used_peak_bytes),
            (
                "allocator_reserved_peak_bytes",
                g.allocator.reserved_peak_bytes,
            ),
            (
                "nvml_process_peak_bytes",
                g.nvml_sampled.process_used_peak_bytes,
            ),
            (
                "nvml_device_peak_bytes",
                g.nvml_sampled.device_used_peak_bytes,
            ),
            (
                "nvml_accounting_peak_bytes",
                g.nvml_accounting_peak.peak_bytes,
            ),
        ] {
            if let Some(v) = v {
                out.push(det(
                    &format!("memory/gpu/{name}"),
                    "bytes",
                    SmallerIsBetter,
                    v as f64,
                ));
            }
        }
    }
    let col = |f: fn(&crate::step::StepSample) -> f64| -> Vec<f64> {
        run.samples.iter().map(f).collect()
    };
    for (name, xs) in [
        ("step_s", col(|s| s.total_s)),
        ("forward_s", col(|s| s.forward_s)),
        ("backward_s", col(|s| s.backward_s)),
        ("optimizer_s", col(|s| s.optimizer_s)),
    ] {
        if !xs.is_empty() {
            out.push(Metric::timed(
                format!("{r}/{name}"),
                "s",
                SmallerIsBetter,
                xs,
                warmup,
            ));
        }
    }
    let throughput: Vec<f64> = run
        .samples
        .iter()
        .filter(|s| s.total_s > 0.0)
        .map(|s| batch as f64 / s.total_s)
        .collect();
    if !throughput.is_empty() {
        out.push(Metric::timed(
            format!("{r}/images_per_s"),
            "images/s",
            BiggerIsBetter,
            throughput,
            warmup,
        ));
    }
}

impl RecordBody for ReproReport {
    const KIND: &'static str = "repro";
    /// 3: the envelope beside the body (2 added the forward-pass peak to the memory model).
    const VERSION: u32 = 3;

    fn workload(&self) -> Workload {
        let c = &self.config;
        [
            ("engine", key(&c.engine)),
            ("compile", c.compile.to_string()),
            ("preset", key(&c.preset)),
            ("dtype", key(&c.dtype)),
            ("kernels", key(&c.kernels)),
            ("remat", key(&c.remat)),
            ("batch", c.batch.to_string()),
            ("device", device_kind(&c.device).to_string()),
            ("processes", c.nproc.to_string()),
            // The cap and the search's limit decide the max batch found.
            ("mem_cap_bytes", c.mem_cap_bytes.to_string()),
            ("confirm_limit", c.confirm_limit.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn hardware(&self, p: &Provenance) -> String {
        match self.config.device {
            DeviceArg::Cpu => host_label(p),
            DeviceArg::Cuda(_) => crate::records::cuda_label(self.config.device),
        }
    }

    fn metrics(&self) -> Vec<Metric> {
        use Direction::*;
        let mut out = Vec::new();
        for f in &self.flops {
            let id = format!("{}@{}/{}", f.backbone, f.resolution, f.recipe.key());
            for (field, v) in [
                ("gflops_table3_convention", f.gflops_table3_convention),
                ("gflops_executed", f.gflops_executed),
            ] {
                out.push(Metric::deterministic(
                    format!("flops/{id}/{field}"),
                    "GFLOP",
                    SmallerIsBetter,
                    v,
                ));
            }
        }
        for (recipe, model, max) in [
            ("ov1", &self.memory.ov1, self.memory.ov1_max_batch_under_cap),
            ("ov2", &self.memory.ov2, self.memory.ov2_max_batch_under_cap),
        ] {
            for p in &model.points {
                out.push(Metric::deterministic(
                    format!("memory/{recipe}/peak_bytes_at_batch_{}", p.batch),
                    "bytes",
                    SmallerIsBetter,
                    p.peak_bytes as f64,
                ));
                if let Some(f) = p.forward_peak_bytes.filter(|&f| f > 0) {
                    out.push(Metric::deterministic(
                        format!("memory/{recipe}/forward_peak_bytes_at_batch_{}", p.batch),
                        "bytes",
                        SmallerIsBetter,
                        f as f64,
                    ));
                }
            }
            out.push(Metric::deterministic(
                format!("memory/{recipe}/max_batch_under_cap"),
                "images",
                BiggerIsBetter,
                max as f64,
            ));
        }
        // Per-image time of each stage, and the full-schedule projection once per measured
        // round (the i-th step of every stage), so readers see its spread.
        let warmup = self.config.warmup;
        for s in &self.stages {
            for (recipe, xs) in [
                ("ov1", &s.ov1_seconds_per_image),
                ("ov2", &s.ov2_seconds_per_image),
            ] {
                if !xs.is_empty() {
                    out.push(Metric::timed(
                        format!("{recipe}/stage{}/seconds_per_image", s.stage),
                        "s",
                        SmallerIsBetter,
                        xs.clone(),
                        warmup,
                    ));
                }
            }
        }
        for (recipe, per_round) in [
            ("ov1", self.round_device_hours(true)),
            ("ov2", self.round_device_hours(false)),
        ] {
            if !per_round.is_empty() {
                out.push(Metric::timed(
                    format!("{recipe}/projected_device_hours"),
                    "device-h",
                    SmallerIsBetter,
                    per_round,
                    warmup,
                ));
            }
        }
        out
    }
}

impl ReproReport {
    /// The full-schedule device-hours of one recipe computed from each measured round alone:
    /// round i takes the i-th per-image time of every stage, weighted by the stage's samples.
    pub fn round_device_hours(&self, ov1: bool) -> Vec<f64> {
        let rounds = self
            .stages
            .iter()
            .map(|s| {
                if ov1 {
                    s.ov1_seconds_per_image.len()
                } else {
                    s.ov2_seconds_per_image.len()
                }
            })
            .min()
            .unwrap_or(0);
        (0..rounds)
            .map(|i| {
                self.stages
                    .iter()
                    .map(|s| {
                        let x = if ov1 {
                            s.ov1_seconds_per_image[i]
                        } else {
                            s.ov2_seconds_per_image[i]
                        };
                        x * s.samples as f64 / 3600.0
                    })
                    .sum()
            })
            .collect()
    }
}

/// The label of a CUDA device from NVML, when the driver answers.
pub fn cuda_label(device: DeviceArg) -> String {
    let DeviceArg::Cuda(i) = device else {
        return "cpu".into();
    };
    match ovbench_harness::gpu::snapshot(i as u32) {
        GpuState::Available(s) => s.name,
        GpuState::Unavailable { .. } => format!("cuda:{i}"),
    }
}
