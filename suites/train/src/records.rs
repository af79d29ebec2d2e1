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
        .map(|(k, v)| (k.to_string(), v.to_string()))
        // The `ovbench` policy is what dtype, kernels and remat above describe, and what every
        // record before policies ran: its key is absent so those records stay comparable.
        // Another policy sets precision and recomputation per module: the key says which.
        .chain(
            (c.policy != crate::policy::PolicyName::Ovbench)
                .then(|| ("policy".to_string(), c.policy.key().to_string())),
        )
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
    /// 4: judged per execution policy, recipes' steps alternated in lanes, two projections,
    /// memory from the analytic model (3: the envelope beside the body; 2 added the
    /// forward-pass peak to the fitted memory model).
    const VERSION: u32 = 4;

    fn workload(&self) -> Workload {
        let c = &self.config;
        let policies: Vec<String> = c.policies.iter().map(|p| p.key().to_string()).collect();
        [
            ("engine", key(&c.engine)),
            ("compile", c.compile.to_string()),
            ("preset", key(&c.preset)),
            ("policies", policies.join(",")),
            ("dtype", key(&c.dtype)),
            ("kernels", key(&c.kernels)),
            ("remat", key(&c.remat)),
            ("batch", c.batch.to_string()),
            ("device", device_kind(&c.device).to_string()),
            ("processes", c.nproc.to_string()),
            // The cap decides the largest batch found and the fits/OOM verdicts.
            ("mem_cap_bytes", c.mem_cap_bytes.to_string()),
            ("eval_loop", c.eval_loop.to_string()),
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
        use crate::repro::ProjectionKind;
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
        let warmup = self.config.warmup;
        // The counting allocator's peaks are exact on the candle engine's host runs only.
        let exact_memory = self.config.engine == crate::engine::EngineKind::Candle
            && self.config.device == DeviceArg::Cpu;
        for s in &self.stages {
            for l in &s.lanes {
                let lane: Vec<&str> = l.policies.iter().map(|p| p.key()).collect();
                let id = format!("{}/{}/stage{}", l.recipe.key(), lane.join("+"), s.stage);
                if !l.seconds_per_image.is_empty() {
                    out.push(Metric::timed(
                        format!("{id}/seconds_per_image"),
                        "s",
                        SmallerIsBetter,
                        l.seconds_per_image.clone(),
                        warmup,
                    ));
                }
                if exact_memory {
                    out.push(Metric::deterministic(
                        format!("{id}/allocator_step_bytes"),
                        "bytes",
                        SmallerIsBetter,
                        l.allocator_step_bytes as f64,
                    ));
                }
            }
        }
        for p in &self.policies {
            let name = p.policy.name.key();
            for (b, ov1, ov2) in &p.memory.predictions {
                for (recipe, v) in [("ov1", ov1), ("ov2", ov2)] {
                    out.push(Metric::deterministic(
                        format!("{name}/{recipe}/model_peak_bytes_at_batch_{b}"),
                        "bytes",
                        SmallerIsBetter,
                        *v as f64,
                    ));
                }
            }
            for (recipe, max) in [
                ("ov1", p.memory.ov1_max_batch_under_cap),
                ("ov2", p.memory.ov2_max_batch_under_cap),
            ] {
                out.push(Metric::deterministic(
                    format!("{name}/{recipe}/max_batch_under_cap"),
                    "images",
                    BiggerIsBetter,
                    max as f64,
                ));
            }
            // The full-schedule projection once per measured round, so readers see its spread.
            for kind in [ProjectionKind::StepsAlone, ProjectionKind::WithLoop] {
                for recipe in [crate::recipe::Recipe::Ov1, crate::recipe::Recipe::Ov2] {
                    let per_round = self.round_device_hours(p.policy.name, recipe, kind);
                    if !per_round.is_empty() {
                        out.push(Metric::timed(
                            format!(
                                "{name}/{}/projected_device_hours/{}",
                                recipe.key(),
                                key(&kind)
                            ),
                            "device-h",
                            SmallerIsBetter,
                            per_round,
                            warmup,
                        ));
                    }
                }
            }
        }
        out
    }
}

impl RecordBody for crate::footprint::MemoryReport {
    const KIND: &'static str = "memory";
    /// 2: the envelope beside the body (1: the analytic memory model's predictions, with
    /// allocator checks and Table 4, before the envelope).
    const VERSION: u32 = 2;

    fn workload(&self) -> Workload {
        [
            ("policy", self.policy.name.key().to_string()),
            ("model", self.model.to_string()),
            ("resolution", self.resolution.to_string()),
            ("kernels", key(&self.kernels)),
            ("device", "cpu".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The model's transients depend on the kernels' thread count, the checks on the host.
    fn hardware(&self, p: &Provenance) -> String {
        host_label(p)
    }

    fn metrics(&self) -> Vec<Metric> {
        use Direction::*;
        let det = |name: String, unit: &str, d: Direction, v: f64| {
            Metric::deterministic(name, unit, d, v)
        };
        let mut out = Vec::new();
        for c in &self.rows {
            let id = format!("{}/batch_{}", c.model.recipe.key(), c.model.batch);
            out.push(det(
                format!("{id}/model_step_peak_bytes"),
                "bytes",
                SmallerIsBetter,
                c.model.step.bytes as f64,
            ));
            out.push(det(
                format!("{id}/model_forward_peak_bytes"),
                "bytes",
                SmallerIsBetter,
                c.model.forward.bytes as f64,
            ));
            for (name, v) in [
                ("allocator_step_peak_bytes", c.measured_step_peak_bytes),
                (
                    "allocator_forward_peak_bytes",
                    c.measured_forward_peak_bytes,
                ),
            ] {
                if let Some(v) = v {
                    out.push(det(
                        format!("{id}/{name}"),
                        "bytes",
                        SmallerIsBetter,
                        v as f64,
                    ));
                }
            }
        }
        if let Some(t) = &self.table4 {
            for r in &t.rows {
                out.push(det(
                    format!("table4/{}/model_peak_bytes", r.id),
                    "bytes",
                    SmallerIsBetter,
                    r.predicted.step.bytes as f64,
                ));
                out.push(det(
                    format!("table4/{}/fits_cap", r.id),
                    "bool",
                    BiggerIsBetter,
                    r.predicted_fits as u8 as f64,
                ));
            }
        }
        out
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
