//! End-to-end tests of `ovbench gate`, `compare`, `report` and `check` on records made here.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ovbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(args)
        .output()
        .expect("run ovbench")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A complete step record (valid for `check`): 10 measured steps after 2 warm-up steps,
/// times `base x slowdown x (1 + small deterministic jitter)`.
fn step_record(batch: u64, dtype: &str, slowdown: f64, cpu: &str) -> Value {
    let run = |recipe: &str, base: f64| {
        let samples: Vec<Value> = (0..10)
            .map(|i| {
                let t = base * slowdown * (1.0 + 0.004 * ((i * 7 % 5) as f64 - 2.0));
                json!({"step": i + 2, "forward_s": t * 0.4, "backward_s": t * 0.5, "optimizer_s": t * 0.1,
                       "total_s": t, "loss": 5.0, "caption_loss": 5.0, "contrastive_loss": null})
            })
            .collect();
        let med = base * slowdown;
        json!({
            "recipe": recipe, "label": recipe, "params_total": if recipe == "ov1" { 11_000_000 } else { 9_000_000 },
            "kept_tokens": if recipe == "ov2" { json!(17) } else { Value::Null },
            "forward_flops_per_image_total": if recipe == "ov1" { 2.0e9 } else { 1.4e9 },
            "training_flops_per_image": if recipe == "ov1" { 6.0e9 } else { 4.2e9 },
            "warmup_losses": [5.1, 5.05],
            "samples": samples,
            "summary": {"step_s": {"n": 10, "median": med, "mean": med, "stddev": 0.0, "min": med, "max": med, "mad": 0.0,
                                   "ci95": [med * 0.99, med * 1.01]},
                        "images_per_s": batch as f64 / med, "achieved_flops_per_s": 1.0e10},
            "memory": {"allocator_active": true, "baseline_bytes": 1000, "peak_bytes": 80_001_000,
                       "peak_over_baseline_bytes": 30_000_000 + batch * if recipe == "ov1" { 3_000_000 } else { 2_000_000 },
                       "params_bytes": 44_000_000, "grads_bytes": 44_000_000, "optimizer_bytes": 88_000_000,
                       "transient_peak_bytes": 5_000_000, "rss_peak_bytes": null, "allocations_per_step": 100},
            "notes": []
        })
    };
    json!({
        "schema": "ovbench.step/1",
        "provenance": {
            "created_utc": "2025-11-27T12:00:00Z",
            "command_line": ["ovbench", "step"],
            "git": {"commit": "0353d5e1111111111111111111111111111111aa", "dirty": false, "note": null},
            "host": {"hostname": "h", "cpu_model": cpu, "physical_cores": 2, "logical_cpus": 2,
                     "memory_bytes": 8_000_000_000u64, "os": "Linux", "kernel": "6"},
            "build": {"crate_version": "0.1.0", "rustc": "rustc 1.90", "profile": "release", "opt_level": "3",
                      "target": "x86_64-unknown-linux-gnu", "features": []}
        },
        "config": {"model": {"size": "Ti", "patch": 16}, "resolution": 112, "batch": batch, "keep_ratio": 0.35,
                   "v2_attention": "causal", "recipes": ["ov1", "ov2"], "steps": 10, "warmup": 2, "seed": 0,
                   "dtype": dtype, "device": {"kind": "cpu"}},
        "runs": [run("ov1", 0.05 * batch as f64), run("ov2", 0.03 * batch as f64)],
        "ratios_ov2_over_ov1": {"step_time": {"value": 0.6, "ci95": [0.58, 0.62]}, "peak_memory": 0.75,
                                "transient_memory": 1.0, "params": 0.82, "forward_flops": 0.7},
        "order": ["ov1", "ov2"]
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// github-action-benchmark's custom format: a JSON array of objects with exactly the keys
/// `name` (string), `unit` (string), `value` (number), and optionally `range`, `extra` (strings).
fn assert_gab_schema(path: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let arr = v.as_array().expect("top level is an array").clone();
    for (i, e) in arr.iter().enumerate() {
        let o = e
            .as_object()
            .unwrap_or_else(|| panic!("entry {i} is not an object"));
        for k in o.keys() {
            assert!(
                ["name", "unit", "value", "range", "extra"].contains(&k.as_str()),
                "entry {i}: unknown key {k}"
            );
        }
        assert!(
            o.get("name")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            "entry {i}: name"
        );
        assert!(
            o.get("unit").and_then(Value::as_str).is_some(),
            "entry {i}: unit"
        );
        assert!(
            o.get("value")
                .and_then(Value::as_f64)
                .is_some_and(f64::is_finite),
            "entry {i}: value"
        );
        for k in ["range", "extra"] {
            assert!(
                o.get(k).is_none_or(Value::is_string),
                "entry {i}: {k} must be a string"
            );
        }
    }
    arr
}

#[test]
fn same_record_passes_and_writes_every_output() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let c = write(d.path(), "c.json", &step_record(8, "f32", 1.0, "CPU A"));
    let (md, small, big, js) = (
        d.path().join("g.md"),
        d.path().join("s.json"),
        d.path().join("b2.json"),
        d.path().join("v.json"),
    );
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--markdown",
        s(&md),
        "--gab-smaller",
        s(&small),
        "--gab-bigger",
        s(&big),
        "--json",
        s(&js),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("PASS"), "{}", text(&o));
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.starts_with("### ovbench gate: PASS (exit 0)"), "{md}");
    let entries = assert_gab_schema(&small);
    assert!(entries
        .iter()
        .any(|e| e["name"].as_str().unwrap().ends_with("ov1/step_s")
            && e["unit"] == "s"
            && e["range"].is_string()));
    assert!(entries.iter().any(|e| e["name"]
        .as_str()
        .unwrap()
        .ends_with("ov2/memory/peak_over_baseline_bytes")));
    assert_gab_schema(&big);
    let v: Value = serde_json::from_slice(&std::fs::read(js).unwrap()).unwrap();
    assert!(v["results"].as_array().unwrap().len() >= 16);
}

#[test]
fn ten_percent_slowdown_is_a_regression() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let c = write(d.path(), "c.json", &step_record(8, "f32", 1.10, "CPU A"));
    let md = d.path().join("g.md");
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--markdown",
        s(&md),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("REGRESSION") && text(&o).contains("ov1/step_s"),
        "{}",
        text(&o)
    );
    assert!(std::fs::read_to_string(md)
        .unwrap()
        .contains("**REGRESSION**"));
    // The same pair gated on deterministic metrics only passes.
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--only",
        "deterministic",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    // A per-metric override in gate.toml lifts the threshold above the slowdown.
    let toml = d.path().join("gate.toml");
    std::fs::write(&toml, "[metrics.\"*_s\"]\nthreshold = 0.2\n").unwrap();
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--config",
        s(&toml),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn deterministic_change_fails_even_when_small() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let mut v = step_record(8, "f32", 1.0, "CPU A");
    v["runs"][1]["memory"]["peak_over_baseline_bytes"] = json!(46_000_100);
    let c = write(d.path(), "c.json", &v);
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--only",
        "deterministic",
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("ov2/memory/peak_over_baseline_bytes"));
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--only",
        "deterministic",
        "--tolerance",
        "0.001",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn mismatched_configs_are_refused_naming_the_keys() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let c = write(d.path(), "c.json", &step_record(16, "bf16", 1.0, "CPU A"));
    let o = ovbench(&["gate", "--baseline", s(&b), "--current", s(&c)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("batch: baseline 8 vs current 16")
            && t.contains("dtype: baseline f32 vs current bf16"),
        "{t}"
    );
    assert!(!t.contains("resolution:") && !t.contains("model:"), "{t}");
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--accept-diff",
        "batch",
        "--accept-diff",
        "dtype",
        "--only",
        "deterministic",
    ]);
    // Accepted: compared, and batch changes memory, so the deterministic gate fails (1), not 2.
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("accepted configuration difference: batch"),
        "{}",
        text(&o)
    );
}

#[test]
fn unusable_inputs_exit_2_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let bad = d.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let o = ovbench(&["gate", "--baseline", s(&b), "--current", s(&bad)]);
    assert_eq!(code(&o), 2);
    assert!(text(&o).contains("bad.json"), "{}", text(&o));
    let mut v = step_record(8, "f32", 1.0, "CPU A");
    v["runs"][0]["samples"][3]["total_s"] = json!("fast");
    let c = write(d.path(), "typo.json", &v);
    let o = ovbench(&["gate", "--baseline", s(&b), "--current", s(&c)]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o).contains("typo.json") && text(&o).contains("runs[0].samples[3].total_s"),
        "{}",
        text(&o)
    );
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&d.path().join("absent.json")),
    ]);
    assert_eq!(code(&o), 2);
    let mut v = step_record(8, "f32", 1.0, "CPU A");
    v["runs"].as_array_mut().unwrap().pop();
    let c = write(d.path(), "one.json", &v);
    let o = ovbench(&["gate", "--baseline", s(&b), "--current", s(&c)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(text(&o).contains("MISSING"), "{}", text(&o));
}

#[test]
fn confirming_rerun_decides() {
    let d = tempfile::tempdir().unwrap();
    let b = write(d.path(), "b.json", &step_record(8, "f32", 1.0, "CPU A"));
    let slow = write(d.path(), "slow.json", &step_record(8, "f32", 1.10, "CPU A"));
    let fine = write(d.path(), "fine.json", &step_record(8, "f32", 1.0, "CPU A"));
    // The rerun does not reproduce the slowdown: not confirmed, exit 0.
    let cmd = format!("cp {} {{out}}", s(&fine));
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&slow),
        "--rerun-cmd",
        &cmd,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("not confirmed"), "{}", text(&o));
    // The rerun shows it again: confirmed, exit 1.
    let cmd = format!("cp {} \"$OVBENCH_RERUN_OUT\"", s(&slow));
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&slow),
        "--rerun-cmd",
        &cmd,
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("confirmed by the rerun"), "{}", text(&o));
    // A failing rerun command is unusable input.
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&slow),
        "--rerun-cmd",
        "exit 3",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

/// A record in today's layout, envelope only (readers need nothing else).
fn envelope_record(kind: &str, version: u32, workload: Value, metrics: Value) -> Value {
    let prov = step_record(8, "f32", 1.0, "CPU A")["provenance"].clone();
    json!({"schema": format!("ovbench.{kind}/{version}"), "provenance": prov, "workload": workload,
           "hardware": "CPU A (2 threads)", "metrics": metrics})
}

#[test]
fn compare_puts_hardware_in_columns_and_never_pools_workloads() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "a.json", &step_record(8, "f32", 1.0, "CPU A"));
    write(d.path(), "b.json", &step_record(8, "f32", 2.0, "CPU B"));
    write(d.path(), "a2.json", &step_record(8, "f32", 1.1, "CPU A"));
    let mut composed = step_record(8, "f32", 1.0, "CPU A");
    composed["config"]["kernels"] = json!("fused");
    write(d.path(), "fused.json", &composed);
    let repro = envelope_record(
        "repro",
        3,
        json!({"preset": "small", "engine": "candle"}),
        json!([{"name": "ov1/projected_device_hours", "unit": "device-h", "direction": "smaller_is_better",
                "kind": "timed", "samples": [100.0, 100.0, 100.0], "warmup": 1}]),
    );
    write(d.path(), "repro.json", &repro);
    let md = d.path().join("t.md");
    let o = ovbench(&[
        "compare",
        s(d.path()),
        "--price-per-hour",
        "2.5",
        "--markdown",
        s(&md),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let t = text(&o);
    for want in [
        "CPU A (2 threads)",
        "CPU B (2 threads)",
        "kernels=composed",
        "kernels=fused",
        "ov1/step_s",
        "ov2/images_per_s",
        "ov1/memory/peak_over_baseline_bytes",
        "ov1/projected_device_hours",
        "250.000 USD",
        "2 runs",
        "here: kernels",
    ] {
        assert!(t.contains(want), "missing '{want}' in\n{t}");
    }
    assert!(std::fs::read_to_string(md)
        .unwrap()
        .starts_with("| Workload | Metric | CPU A (2 threads) | CPU B (2 threads) |"));
    let o = ovbench(&["compare", s(&d.path().join("nothing.json"))]);
    assert_eq!(code(&o), 2);
}

/// A GPU record as the H200 session wrote them: OpenVision ran out of memory (top-level
/// `failed`), OpenVision 2's device memory is in `runs[i].gpu.allocator`.
#[test]
fn gpu_records_gate_with_their_allocator_peak_and_failure_visible() {
    let d = tempfile::tempdir().unwrap();
    let gpu_record = |peak: u64| {
        let mut v = step_record(8, "bf16", 1.0, "CPU A");
        v["config"]["device"] = json!({"kind": "cuda", "index": 0});
        let runs = v["runs"].as_array_mut().unwrap();
        runs.remove(0);
        runs[0]["memory"]["allocator_active"] = json!(false);
        runs[0]["gpu"] = json!({"allocator": {"used_peak_bytes": peak, "reserved_peak_bytes": peak},
                                "gpu_before": {"status": "available", "name": "NVIDIA H200", "uuid": "GPU-1"}});
        v["failed"] =
            json!([{"recipe": "ov1", "batch": 8, "status": "oom", "error": "out of memory"}]);
        v
    };
    let b = write(d.path(), "b.json", &gpu_record(28_000_000_000));
    let c = write(d.path(), "c.json", &gpu_record(29_000_000_000));
    let json_out = d.path().join("verdicts.json");
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&b),
        "--current",
        s(&c),
        "--json",
        s(&json_out),
    ]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("ov2/memory/gpu/allocator_peak_bytes") && t.contains("REGRESSION"),
        "{t}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let find = |n: &str| {
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
    };
    assert_eq!(
        find("ov1/oom").unwrap()["current"],
        1.0,
        "the failure is a metric"
    );
    assert_eq!(find("ov1/completed").unwrap()["current"], 0.0);
    // The compare table names the card and says the recipe did not complete.
    let o = ovbench(&["compare", s(&c)]);
    let t = text(&o);
    assert!(
        t.contains("NVIDIA H200") && t.contains("ov1/oom") && t.contains("yes"),
        "{t}"
    );
}

#[test]
fn report_writes_svg_and_png_with_series_names() {
    let d = tempfile::tempdir().unwrap();
    for b in [4, 8, 16] {
        write(
            d.path(),
            &format!("step-b{b}.json"),
            &step_record(b, "f32", 1.0, "CPU A"),
        );
    }
    let out = d.path().join("plots");
    let o = ovbench(&["report", s(d.path()), "--out", s(&out), "--cap", "8GiB"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    for stem in ["step_time", "memory", "ratios", "memory_vs_batch"] {
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    let svg = std::fs::read_to_string(out.join("ratios.svg")).unwrap();
    assert!(svg.contains("published L/14@224") && svg.contains("measured Ti/16@112px b8"));
    let svg = std::fs::read_to_string(out.join("step_time.svg")).unwrap();
    assert!(svg.contains("OpenVision (ov1)") && svg.contains("OpenVision 2 (ov2)"));
}

#[test]
fn check_names_each_problem_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "good.json", &step_record(8, "f32", 1.0, "CPU A"));
    let o = ovbench(&["check", s(d.path())]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mut v = step_record(8, "f32", 1.0, "CPU A");
    v["provenance"]["git"]["dirty"] = json!(true);
    write(d.path(), "dirty.json", &v);
    let mut v = step_record(8, "f32", 1.0, "CPU A");
    v["config"]["warmup"] = json!(0);
    v["runs"][0]["samples"][3]["total_s"] = json!(-1.0);
    write(d.path(), "sloppy.json", &v);
    std::fs::write(d.path().join("notes.json"), "{\"hello\": 1}").unwrap();
    let o = ovbench(&["check", s(d.path())]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("FAIL") && t.contains("dirty.json") && t.contains("dirty tree"),
        "{t}"
    );
    assert!(
        t.contains("sloppy.json") && t.contains("no warm-up") && t.contains("is negative"),
        "{t}"
    );
    assert!(
        t.contains("notes.json") && t.contains("not an ovbench record"),
        "{t}"
    );
    assert!(t.contains("ok   ") && t.contains("good.json"), "{t}");
    std::fs::remove_file(d.path().join("sloppy.json")).unwrap();
    std::fs::remove_file(d.path().join("notes.json")).unwrap();
    let o = ovbench(&["check", s(d.path()), "--allow-dirty"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = ovbench(&["check", s(&d.path().join("missing"))]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

/// Real score records from `ovbench score`: a worse prediction file is a regression of the
/// toolkit score; the same predictions pass.
#[test]
fn score_records_are_gated_exactly() {
    let d = tempfile::tempdir().unwrap();
    let items: Vec<Value> = [(1, "cat"), (2, "10"), (3, "new york")]
        .iter()
        .map(|(i, a)| json!({"question_id": i, "question": "q", "answers": vec![*a; 10]}))
        .collect();
    let ann = write(
        d.path(),
        "TextVQA_0.5.1_val.json",
        &json!({"dataset_name": "textvqa", "data": items}),
    );
    let preds = |name: &str, third: &str| {
        let body: String = [(1, "cat"), (2, "ten"), (3, third)]
            .iter()
            .map(|(i, p)| json!({"question_id": i, "prediction": p}).to_string() + "\n")
            .collect();
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let score = |pred: &Path, out: &str| -> PathBuf {
        let dir = d.path().join(out);
        let o = ovbench(&[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            s(&ann),
            "--predictions",
            s(pred),
            "--out",
            s(&dir),
        ]);
        assert_eq!(code(&o), 0, "{}", text(&o));
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("a score record")
    };
    let good = score(&preds("good.jsonl", "new york"), "good");
    let worse = score(&preds("worse.jsonl", "boston"), "worse");
    let again = score(&preds("again.jsonl", "new york"), "again");
    let big = d.path().join("big.json");
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&good),
        "--current",
        s(&again),
        "--gab-bigger",
        s(&big),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let entries = assert_gab_schema(&big);
    assert!(
        entries.iter().any(|e| e["name"]
            .as_str()
            .unwrap()
            .ends_with("task=textvqa - score/toolkit")),
        "{entries:?}"
    );
    let o = ovbench(&["gate", "--baseline", s(&good), "--current", s(&worse)]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("score/toolkit") && text(&o).contains("REGRESSION"),
        "{}",
        text(&o)
    );
    // A step record is not comparable with a score record.
    let st = write(d.path(), "step.json", &step_record(8, "f32", 1.0, "CPU A"));
    let o = ovbench(&["gate", "--baseline", s(&good), "--current", s(&st)]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

/// A folder of baselines: the one from the current record's hardware is used; with none, the
/// gate refuses unless memory metrics may be gated across CPUs within a tolerance.
#[test]
fn baseline_folders_pick_the_same_hardware() {
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("baselines");
    std::fs::create_dir(&base).unwrap();
    write(&base, "a.json", &step_record(8, "f32", 1.0, "CPU A"));
    let mut other = step_record(8, "f32", 1.0, "CPU B");
    other["runs"][0]["memory"]["peak_over_baseline_bytes"] = json!(54_200_000); // +0.4 %
    let b_path = write(&base, "b.json", &other);
    let _ = b_path;
    let cur_a = write(d.path(), "cur-a.json", &step_record(8, "f32", 1.0, "CPU A"));
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&base),
        "--current",
        s(&cur_a),
        "--only",
        "deterministic",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("a.json"), "{}", text(&o));
    let cur_c = write(d.path(), "cur-c.json", &step_record(8, "f32", 1.0, "CPU C"));
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&base),
        "--current",
        s(&cur_c),
        "--only",
        "deterministic",
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("no baseline") && text(&o).contains("CPU A (2 threads)"),
        "{}",
        text(&o)
    );
    let o = ovbench(&[
        "gate",
        "--baseline",
        s(&base),
        "--current",
        s(&cur_c),
        "--only",
        "deterministic",
        "--other-hardware-tolerance",
        "0.01",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("other hardware"), "{}", text(&o));
}
