//! `ovbench step --engine torch` end to end.
//!
//! Without Python: fake engines (shell scripts standing in for the interpreter) show that a
//! misbehaving engine is a clear error with no record, and an out-of-memory report a record
//! with `oom` runs.
//!
//! With PyTorch: the same-function check of both recipes at Ti/16 against candle, and a
//! 2-process gloo run whose loss after one update agrees with a 1-process run on the same
//! global batch. These need torch: the interpreter is $OVBENCH_TEST_PYTHON, else
//! $OVBENCH_PYTHON, else scripts/pyenv.sh's cached environment if it exists. Without one they
//! print a notice and pass, unless OVBENCH_REQUIRE_TORCH=1 (set by .ci/run after installing
//! torch), which makes a missing torch a failure.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ovbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(args)
        .output()
        .expect("runs")
}

fn fake_python(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fake-python");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

const TINY: &[&str] = &[
    "step", "--engine", "torch", "--model", "Ti/16", "--res", "32", "--batch", "2", "--warmup",
    "0", "--steps", "1", "--quiet",
];

#[test]
fn a_broken_engine_is_an_error_naming_it_and_leaves_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let py = fake_python(
        dir.path(),
        "echo 'ImportError: no module named torch' >&2\necho 'Python 3.11.7'",
    );
    let out_path = dir.path().join("r.json");
    let out = ovbench(
        &[
            TINY,
            &[
                "--python",
                py.to_str().unwrap(),
                "--out",
                out_path.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("engine torch"), "{err}");
    assert!(err.contains("Python 3.11.7"), "the offending line: {err}");
    assert!(
        err.contains("no module named torch"),
        "the stderr tail: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_path.exists(), "a record was written");

    // A hang past --engine-timeout.
    let py = fake_python(
        dir.path(),
        r#"echo '{"type":"hello","rank":0,"protocol":1,"pid":'$$'}'; exec sleep 600"#,
    );
    let t0 = std::time::Instant::now();
    let out = ovbench(
        &[
            TINY,
            &[
                "--python",
                py.to_str().unwrap(),
                "--engine-timeout",
                "1",
                "--out",
                out_path.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("timeout"), "{err}");
    assert!(t0.elapsed().as_secs() < 60);
    assert!(!out_path.exists());
}

#[test]
fn an_engine_out_of_memory_is_recorded_as_oom() {
    let dir = tempfile::tempdir().unwrap();
    let py = fake_python(
        dir.path(),
        r#"echo '{"type":"hello","rank":0,"protocol":1,"pid":'$$'}'
echo '{"type":"oom","rank":0,"error":"OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"}'
exit 3"#,
    );
    let out_path = dir.path().join("r.json");
    let out = ovbench(
        &[
            TINY,
            &[
                "--python",
                py.to_str().unwrap(),
                "--out",
                out_path.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(rec["config"]["engine"], "torch");
    let failed = rec["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2);
    for f in failed {
        assert_eq!(f["status"], "oom");
        assert!(f["error"].as_str().unwrap().contains("Tried to allocate"));
    }
    assert_eq!(rec["runs"].as_array().unwrap().len(), 0);
}

#[test]
fn engine_flags_that_do_not_fit_are_one_line_errors() {
    for (args, needle) in [
        (&["step", "--compile"][..], "--compile needs --engine torch"),
        (
            &["step", "--nproc", "2"][..],
            "--nproc needs --engine torch",
        ),
        (
            &["step", "--check-same"][..],
            "--check-same needs --engine torch",
        ),
        (
            &["step", "--engine", "torch", "--compile", "--warmup", "0"][..],
            "--compile needs --warmup",
        ),
        (&["step", "--engine", "jax"][..], "unknown engine"),
    ] {
        let out = ovbench(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// The interpreter with torch, or None (after a notice) when there is none and none is required.
fn torch_python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = [
        std::env::var_os("OVBENCH_TEST_PYTHON").map(PathBuf::from),
        std::env::var_os("OVBENCH_PYTHON").map(PathBuf::from),
        std::env::var_os("OVBENCH_PYENV").map(|d| PathBuf::from(d).join("bin/python")),
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("ovbench/pyenv/bin/python")),
    ]
    .into_iter()
    .flatten()
    .collect();
    for c in &candidates {
        let ok = Command::new(c)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c.clone());
        }
    }
    let why = format!("no Python with torch (looked at {candidates:?})");
    if std::env::var("OVBENCH_REQUIRE_TORCH").as_deref() == Ok("1") {
        panic!("OVBENCH_REQUIRE_TORCH=1 but {why}: install it with scripts/pyenv.sh engines/torch/requirements.txt");
    }
    eprintln!("SKIPPED (torch tests): {why}; set OVBENCH_REQUIRE_TORCH=1 to make this a failure");
    None
}

fn record(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let out = ovbench(&[args, &["--out", path.to_str().unwrap()]].concat());
    assert!(
        out.status.success(),
        "{args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn run_of<'a>(rec: &'a Value, recipe: &str) -> &'a Value {
    rec["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["recipe"] == recipe)
        .unwrap_or_else(|| panic!("no {recipe} run"))
}

#[test]
fn torch_engine_computes_the_same_function_as_candle_at_ti16() {
    let Some(py) = torch_python() else { return };
    let rec = record(&[
        "step",
        "--engine",
        "torch",
        "--check-same",
        "--python",
        py.to_str().unwrap(),
        "--threads",
        "2",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--quiet",
    ]);
    assert_eq!(rec["config"]["engine"], "torch");
    for recipe in ["ov1", "ov2"] {
        let r = run_of(&rec, recipe);
        let e = &r["engine"];
        let sf = &e["same_function"];
        assert_eq!(sf["same_function"], true, "{recipe}: {sf}");
        assert_eq!(sf["params_torch"], sf["params_ovbench"]);
        assert_eq!(r["params_total"], sf["params_ovbench"]);
        assert!(sf["grad_norms_compared"].as_u64().unwrap() > 10, "{sf}");
        // The timed run starts from the export: its first step is the check's step 0.
        let l0 = r["samples"][0]["loss"].as_f64().unwrap();
        let ov = sf["loss0_ovbench"].as_f64().unwrap();
        assert!((l0 - ov).abs() <= 1e-5 * ov.abs(), "{recipe}: {l0} vs {ov}");
        for k in ["python", "torch"] {
            assert!(e["versions"][k].is_string(), "{k}: {}", e["versions"]);
        }
        assert_eq!(e["mode"], "eager");
        assert_eq!(
            e["execution"]["optimizer"]["decay_set"],
            "matrices_and_embeddings"
        );
        assert!(r["memory"]["peak_over_baseline_bytes"].as_u64().unwrap() > 0);
        assert!(r["memory"]["params_bytes"].as_u64().unwrap() > 0);
    }
}

/// Under `--policy released` the torch engine receives each recipe's resolved execution (the
/// record's `policy` and the engine's `execution` agree), and its check still compares the
/// two engines' functions, under ovbench's own policy in f32.
#[test]
fn torch_engine_runs_the_resolved_policy() {
    let Some(py) = torch_python() else { return };
    let rec = record(&[
        "step",
        "--engine",
        "torch",
        "--check-same",
        "--policy",
        "released",
        "--python",
        py.to_str().unwrap(),
        "--res",
        "32",
        "--batch",
        "2",
        "--threads",
        "2",
        "--warmup",
        "1",
        "--steps",
        "1",
        "--quiet",
    ]);
    assert_eq!(rec["config"]["policy"], "released");
    for recipe in ["ov1", "ov2"] {
        let r = run_of(&rec, recipe);
        let e = &r["engine"]["execution"];
        assert_eq!(e, &rec["policy"]["recipes"][recipe], "{recipe}");
        assert_eq!(e["optimizer"]["mu"], "bf16");
        assert_eq!(e["optimizer"]["decay_set"], "kernels");
        assert_eq!(e["loss_buffers"], "materialized");
        assert_eq!(r["engine"]["same_function"]["same_function"], true);
    }
    let ov1 = &run_of(&rec, "ov1")["engine"]["execution"]["modules"];
    assert_eq!(ov1["image_encoder"]["compute"], "bf16");
    assert_eq!(ov1["text_encoder"]["recompute"], true);
    let ov2 = &run_of(&rec, "ov2")["engine"]["execution"]["modules"];
    assert_eq!(ov2["image_encoder"]["compute"], "f32");
}

/// `repro --engine torch`: every lane through the engine, a record with both projections
/// (the loop untimed, and said so).
#[test]
fn repro_runs_its_lanes_on_the_torch_engine() {
    let Some(py) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repro.json");
    let out = ovbench(&[
        "repro",
        "--engine",
        "torch",
        "--python",
        py.to_str().unwrap(),
        "--preset",
        "small",
        "--policy",
        "matched-f32",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--threads",
        "2",
        "--quiet",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rec["config"]["engine"], "torch");
    let stages = rec["stages"].as_array().unwrap();
    assert!(!stages.is_empty());
    for s in stages {
        for l in s["lanes"].as_array().unwrap() {
            assert_eq!(l["seconds_per_image"].as_array().unwrap().len(), 2, "{l}");
        }
    }
    let caveats = rec["caveats"].to_string();
    assert!(caveats.contains("engine torch"), "{caveats}");
}

#[test]
fn two_gloo_processes_agree_with_one_on_the_same_global_batch() {
    let Some(py) = torch_python() else { return };
    let py = py.to_str().unwrap();
    let common = [
        "step",
        "--engine",
        "torch",
        "--python",
        py,
        "--model",
        "Ti/16",
        "--res",
        "64",
        "--warmup",
        "1",
        "--steps",
        "1",
        "--threads",
        "1",
        "--quiet",
    ];
    let one = record(&[&common[..], &["--nproc", "1", "--batch", "4"]].concat());
    let two = record(&[&common[..], &["--nproc", "2", "--batch", "2"]].concat());
    for recipe in ["ov1", "ov2"] {
        let (a, b) = (run_of(&one, recipe), run_of(&two, recipe));
        let e = &b["engine"];
        assert_eq!(e["world_size"], 2);
        assert_eq!(e["backend"], "gloo");
        assert_eq!(e["ranks"].as_array().unwrap().len(), 2);
        for rank in e["ranks"].as_array().unwrap() {
            assert_eq!(rank["samples"].as_array().unwrap().len(), 1);
            assert_eq!(rank["no_sync"].as_array().unwrap().len(), 1);
        }
        assert!(e["allreduce"]["share"].is_number(), "{}", e["allreduce"]);
        // Same weights and global batch: the step-0 loss agrees to summation order, and the
        // loss after one update (the all-reduced gradients') within a looser tolerance.
        let w = |r: &Value| r["warmup_losses"][0].as_f64().unwrap();
        let l = |r: &Value| r["samples"][0]["loss"].as_f64().unwrap();
        let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
        assert!(
            rel(w(a), w(b)) < 1e-5,
            "{recipe} step 0: {} vs {}",
            w(a),
            w(b)
        );
        assert!(
            rel(l(a), l(b)) < 1e-4,
            "{recipe} step 1: {} vs {}",
            l(a),
            l(b)
        );
        assert_ne!(w(a), l(a), "the update changed nothing");
    }
}

/// compare, gate and report keep engines apart: a torch record of the same workload is its own
/// column in compare, a gate between engines is refused naming the key, and report draws both.
#[test]
fn readers_show_the_engine_and_never_pool_engines() {
    let dir = tempfile::tempdir().unwrap();
    let candle = dir.path().join("candle.json");
    let out = ovbench(&[
        "step",
        "--model",
        "Ti/16",
        "--res",
        "32",
        "--batch",
        "2",
        "--warmup",
        "0",
        "--steps",
        "2",
        "--quiet",
        "--out",
        candle.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&std::fs::read(&candle).unwrap()).unwrap();
    assert_eq!(v["config"]["engine"], "candle");
    assert_eq!(v["config"]["nproc"], 1);
    assert_eq!(v["workload"]["engine"], "candle");
    // The same workload as the torch engine would record it (its runs' fields are the same).
    v["config"]["engine"] = "torch".into();
    v["workload"]["engine"] = "torch".into();
    let torch = dir.path().join("torch.json");
    std::fs::write(&torch, serde_json::to_vec(&v).unwrap()).unwrap();

    let out = ovbench(&["compare", candle.to_str().unwrap(), torch.to_str().unwrap()]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("· torch"), "no torch column:\n{t}");
    assert!(!t.contains("2 runs"), "engines pooled:\n{t}");

    let out = ovbench(&[
        "gate",
        "--baseline",
        candle.to_str().unwrap(),
        "--current",
        torch.to_str().unwrap(),
    ]);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("engine: baseline candle vs current torch"),
        "{t}"
    );

    let plots = dir.path().join("plots");
    let out = ovbench(&[
        "report",
        candle.to_str().unwrap(),
        torch.to_str().unwrap(),
        "--out",
        plots.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index = std::fs::read_to_string(plots.join("index.md")).unwrap();
    assert!(index.contains("engine=torch"), "{index}");
}

/// The engine's own checks of its execution variants: recomputation, SDPA's kernels and the
/// fused loss change no loss or gradient beyond rounding; bf16 autocast and bf16 first moments
/// with the `kernels` decay set train; the moment-dtype AdamW in f32 is torch's AdamW.
#[test]
fn torch_engine_selftest_of_its_execution_variants() {
    let Some(py) = torch_python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/torch/engine.py");
    let out = Command::new(py)
        .arg(&script)
        .arg("--selftest")
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in ["ov1 ok", "ov2 ok", "adamw ok"] {
        assert!(text.contains(line), "{text}");
    }
}
