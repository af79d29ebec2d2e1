//! End-to-end checks of `ovbench step`: bad arguments fail cleanly and write nothing;
//! a tiny run writes a complete record.

use std::process::Command;

fn ovbench(args: &[&str], out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .arg("step")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs")
}

/// Runs `ovbench step` with `args` into a fresh folder and returns its record.
fn record_of(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let out = ovbench(args, &path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn bad_arguments_give_one_line_errors_and_no_record() {
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "X/14"], "unknown model"),
        (&["--batch", "0"], "batch"),
        (&["--model", "L/14", "--res", "100"], "patch size 14"),
        (&["--keep", "0"], "keep ratio"),
        (&["--keep", "1.5"], "keep ratio"),
        (&["--keep=-0.2"], "keep ratio"),
        (&["--device", "tpu"], "unknown device"),
        (&["--dtype", "f8"], "unknown dtype"),
        (&["--steps", "0"], "steps"),
        // Bounds from the machine and against overflow (issue 18's crashes and runaways).
        (&["--threads", "100000"], "--threads must be at most"),
        (&["--ew-threads", "100000"], "--ew-threads must be at most"),
        (
            &["--warmup", "18446744073709551615", "--steps", "1"],
            "--warmup must be at most",
        ),
        (&["--batch", "100000000"], "--batch must be at most"),
        (&["--res", "1000000"], "--res must be at most"),
        (
            &["--mem-cap", "99999999999999999999999GiB"],
            "more bytes than any machine",
        ),
    ];
    for (args, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = ovbench(args, dir.path());
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: stderr was {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        // clap adds a usage hint after its one-line error; our own errors are one line.
        assert!(lines.len() <= 4, "{args:?}: {err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "{args:?} wrote a record"
        );
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ovbench(&["--device", "cuda:0"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("without CUDA support"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The CUDA build on a machine without a driver: still one line, and no record.
#[cfg(feature = "cuda")]
#[test]
fn cuda_without_a_driver_is_a_one_line_error() {
    if matches!(
        ovbench_harness::gpu::snapshot(0),
        ovbench_harness::gpu::GpuState::Available(_)
    ) {
        return; // a driver is present: this case cannot be observed here
    }
    let dir = tempfile::tempdir().unwrap();
    let out = ovbench(&["--device", "cuda:0"], dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("no usable NVIDIA driver"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_tiny_run_writes_a_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let out = ovbench(
        &[
            "--res", "32", "--batch", "2", "--steps", "2", "--warmup", "1", "--seed", "3", "-q",
        ],
        &path,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("OpenVision 2") && table.contains("OV2 / OV1"),
        "{table}"
    );
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rec["schema"], "ovbench.step/2");
    assert_eq!(rec["config"]["seed"], 3);
    assert_eq!(rec["config"]["warmup"], 1);
    for key in ["git", "host", "build", "command_line", "created_utc"] {
        assert!(
            !rec["provenance"][key].is_null(),
            "provenance.{key} missing"
        );
    }
    let runs = rec["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for r in runs {
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        let m = &r["memory"];
        assert_eq!(m["allocator_active"], true);
        let peak = m["peak_over_baseline_bytes"].as_u64().unwrap();
        let persistent =
            m["params_bytes"].as_u64().unwrap() + m["optimizer_bytes"].as_u64().unwrap();
        assert!(peak > persistent, "peak {peak} <= persistent {persistent}");
    }
    assert!(
        rec["ratios_ov2_over_ov1"]["step_time"]["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

#[test]
fn allocator_peak_is_deterministic_across_runs() {
    let peaks = || -> Vec<u64> {
        let rec = record_of(&[
            "--res",
            "32",
            "--batch",
            "2",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--recipe",
            "ov2",
            "-q",
            "--threads",
            "1",
        ]);
        rec["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["memory"]["peak_over_baseline_bytes"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(peaks(), peaks());
}

/// What the portable ops are for (they are what CUDA runs): the same losses as candle's composed
/// ops with a lower allocator peak, since the graph keeps neither the attention scores nor the
/// norms' and softmaxes' intermediates. Peaks are exact allocator counts, not timings.
#[test]
fn portable_kernels_keep_losses_and_lower_the_peak() {
    let run = |kernels: &str| -> Vec<(f64, u64)> {
        let rec = record_of(&[
            "--res",
            "64",
            "--batch",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "-q",
            "--kernels",
            kernels,
        ]);
        assert_eq!(rec["config"]["kernels"], kernels);
        rec["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["samples"][0]["loss"].as_f64().unwrap(),
                    r["memory"]["peak_over_baseline_bytes"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let (portable, composed) = (run("portable"), run("composed"));
    for ((lp, pp), (lc, pc)) in portable.iter().zip(&composed) {
        assert!((lp - lc).abs() <= 1e-5 * lc.abs(), "loss {lp} vs {lc}");
        assert!(pp < pc, "portable peak {pp} >= composed peak {pc}");
    }
}

#[test]
fn repro_refuses_out_of_bounds_arguments_before_any_work() {
    for (args, needle) in [
        (&["--threads", "100000"][..], "--threads must be at most"),
        (&["--steps", "0"][..], "--steps must be at least 1"),
        (
            &["--warmup", "18446744073709551615"][..],
            "--warmup must be at most",
        ),
        (&["--batch", "1"][..], "--batch must be at least 2"),
        (
            &["--mem-cap", "99999999999999999999999GiB"][..],
            "more bytes than any machine",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ovbench"))
            .arg("repro")
            .args(args)
            .arg("--out")
            .arg(dir.path())
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
