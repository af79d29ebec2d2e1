//! Plots for records made here: files exist, are valid SVG / PNG, and name their series.

use ovbench_gate::view::StepView;
use ovbench_gate::LoadedRecord;
use ovbench_plot::{report, ReportOptions};
use serde_json::json;
use std::path::Path;

fn run(recipe: &str, batch: u64, step: f64) -> serde_json::Value {
    let samples: Vec<_> = (0..6)
        .map(|i| json!({"step": i + 2, "total_s": step * (1.0 + 0.01 * i as f64)}))
        .collect();
    let per_image = if recipe == "ov1" { 3.0e6 } else { 1.6e6 };
    json!({
        "recipe": recipe,
        "params_total": 6_000_000,
        "forward_flops_per_image_total": if recipe == "ov1" { 1.0e9 } else { 0.7e9 },
        "samples": samples,
        "summary": {"step_s": {"n": 6, "median": step * 1.025, "ci95": [step, step * 1.05]},
                    "images_per_s": batch as f64 / step, "achieved_flops_per_s": 2.0e10},
        "memory": {"allocator_active": true, "peak_over_baseline_bytes": 40_000_000 + batch * per_image as u64}
    })
}

fn record(dir: &Path, batch: u64, hw: &str) -> StepView {
    let v = json!({
        "schema": "ovbench.step/1",
        "provenance": {"host": {"cpu_model": hw, "logical_cpus": 2}},
        "config": {"model": {"size": "Ti", "patch": 16}, "resolution": 112, "batch": batch, "keep_ratio": 0.35,
                   "dtype": "f32", "device": {"kind": "cpu"}, "steps": 6, "warmup": 2, "seed": 0},
        "runs": [run("ov1", batch, 0.1 * batch as f64), run("ov2", batch, 0.06 * batch as f64)],
        "ratios_ov2_over_ov1": {"step_time": {"value": 0.6, "ci95": [0.57, 0.63]}, "peak_memory": 0.7, "forward_flops": 0.7}
    });
    let path = dir.join(format!("step-b{batch}-{hw}.json"));
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    StepView::from_record(&LoadedRecord::load(&path).unwrap()).unwrap()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

#[test]
fn all_charts_for_records_at_several_batches() {
    let dir = tempfile::tempdir().unwrap();
    let views: Vec<StepView> = [4, 8, 16]
        .iter()
        .map(|&b| record(dir.path(), b, "Test CPU"))
        .collect();
    // OVBENCH_PLOT_KEEP=DIR keeps the pictures for a look.
    let out = std::env::var_os("OVBENCH_PLOT_KEEP")
        .map(Into::into)
        .unwrap_or_else(|| dir.path().join("plots"));
    let r = report(
        &views,
        &out,
        &ReportOptions {
            device_cap_bytes: Some(2e9),
        },
    )
    .unwrap();
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    let expect: &[(&str, &[&str])] = &[
        (
            "step_time",
            &[
                "OpenVision (ov1)",
                "OpenVision 2 (ov2)",
                "step time (s)",
                "Training step time",
            ],
        ),
        (
            "memory",
            &[
                "OpenVision (ov1)",
                "OpenVision 2 (ov2)",
                "peak memory (MiB)",
            ],
        ),
        (
            "ratios",
            &[
                "measured Ti/16@112px b4",
                "published L/14@224",
                "published SoViT-400M/14@384",
                "ratio 1 (no change)",
            ],
        ),
        (
            "memory_vs_batch",
            &[
                "measured OpenVision (ov1)",
                "paper OpenVision 2 (ov2) L/14@224",
                "paper cap: 32 GB",
                "measuring device cap: 2.0 GB",
                "out of memory",
            ],
        ),
    ];
    for (stem, series) in expect {
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{stem}.svg is not an SVG document"
        );
        assert!(svg.contains("<text"), "{stem}.svg has no text");
        for s in *series {
            assert!(svg.contains(s), "{stem}.svg lacks '{s}'");
        }
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(png_size(&png), (1100, 650), "{stem}.png");
        assert!(
            png.len() > 10_000,
            "{stem}.png looks empty ({} bytes)",
            png.len()
        );
    }
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert!(index.contains("memory_vs_batch.png"));
    assert_eq!(r.files.len(), 9);
}

#[test]
fn single_batch_skips_the_curve_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let views = vec![
        record(dir.path(), 8, "CPU A"),
        record(dir.path(), 8, "CPU B"),
    ];
    let out = dir.path().join("plots");
    let r = report(&views, &out, &ReportOptions::default()).unwrap();
    assert!(!out.join("memory_vs_batch.svg").exists());
    assert!(
        r.notes.iter().any(|n| n.contains("two or more batches")),
        "{:?}",
        r.notes
    );
    let svg = std::fs::read_to_string(out.join("step_time.svg")).unwrap();
    assert!(svg.contains("CPU A") && svg.contains("CPU B"));
}

#[test]
fn no_records_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(report(&[], dir.path(), &ReportOptions::default()).is_err());
}
