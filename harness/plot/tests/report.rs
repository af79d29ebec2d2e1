//! Plots for records made here: files exist, are valid SVG / PNG, and name their series.

use ovbench_harness::envelope::{Direction::*, Envelope, Metric, Schema};
use ovbench_plot::{report, PaperPoint, Published, PublishedRatio, Quantity, ReportOptions};
use std::path::{Path, PathBuf};

fn envelope(batch: u64, hw: &str) -> Envelope {
    let provenance = serde_json::from_value(serde_json::json!({
        "created_utc": "2026-01-01T00:00:00Z", "command_line": ["ovbench", "step"],
        "git": {"commit": "0353d5e0353d5e0353d5e0353d5e0353d5e0353d", "dirty": false, "note": null},
        "host": {"hostname": null, "cpu_model": hw, "physical_cores": 1, "logical_cpus": 2,
                 "memory_bytes": 1000, "os": "Linux", "kernel": null},
        "build": {"crate_version": "0.1.0", "rustc": "1.95", "profile": "release", "opt_level": "3",
                  "target": "x86_64", "features": []}
    }))
    .unwrap();
    let mut metrics = Vec::new();
    for (recipe, step, per_image) in [("ov1", 0.1, 3.0e6), ("ov2", 0.06, 1.6e6)] {
        let step = step * batch as f64;
        metrics.push(Metric::timed(
            format!("{recipe}/step_s"),
            "s",
            SmallerIsBetter,
            (0..6).map(|i| step * (1.0 + 0.01 * i as f64)).collect(),
            2,
        ));
        metrics.push(Metric::deterministic(
            format!("{recipe}/memory/peak_over_baseline_bytes"),
            "bytes",
            SmallerIsBetter,
            40e6 + batch as f64 * per_image,
        ));
    }
    metrics.push(Metric::deterministic(
        "ov2_over_ov1/peak_memory",
        "ratio",
        SmallerIsBetter,
        0.7,
    ));
    metrics.push(Metric::deterministic(
        "ov2_over_ov1/forward_flops",
        "ratio",
        SmallerIsBetter,
        0.7,
    ));
    Envelope {
        schema: Schema::new("step", 2),
        provenance,
        workload: [
            ("model", "Ti/16"),
            ("resolution", "112"),
            ("batch", &batch.to_string()),
            ("kernels", "fused"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        hardware: hw.into(),
        metrics,
        conditions: Vec::new(),
    }
}

fn record(batch: u64, hw: &str) -> (PathBuf, Envelope) {
    (
        Path::new(&format!("step-b{batch}-{hw}.json")).to_path_buf(),
        envelope(batch, hw),
    )
}

/// Stand-in published figures (the real ones live in ovbench-reference, not here).
fn paper() -> Published {
    let ratio = |q, setting: &str, value| PublishedRatio {
        quantity: q,
        setting: setting.into(),
        value,
        band: Some((value * 0.9, value * 1.1)),
    };
    let point = |recipe: &str, b: f64, gb: Option<f64>| PaperPoint {
        recipe: recipe.into(),
        setting: "L/14@224".into(),
        per_chip_batch: b,
        peak_gb: gb,
    };
    Published {
        ratios: vec![
            ratio(Quantity::Time, "L/14@224", 0.69),
            ratio(Quantity::PeakMemory, "L/14@224", 0.56),
            ratio(Quantity::Time, "SoViT-400M/14@384", 0.5),
        ],
        memory: vec![
            point("ov1", 64.0, Some(24.5)),
            point("ov2", 64.0, Some(13.8)),
            point("ov1", 128.0, None),
        ],
        memory_cap_gb: 32.0,
        memory_source: "Table 4, per TPU v4 chip".into(),
        hardware: "TPU v4 chip".into(),
        source: "test figures".into(),
    }
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
    let views: Vec<_> = [4, 8, 16].iter().map(|&b| record(b, "Test CPU")).collect();
    // OVBENCH_PLOT_KEEP=DIR keeps the pictures for a look.
    let out = std::env::var_os("OVBENCH_PLOT_KEEP")
        .map(Into::into)
        .unwrap_or_else(|| dir.path().join("plots"));
    let r = report(
        &views,
        &paper(),
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
    let views = vec![record(8, "CPU A"), record(8, "CPU B")];
    let out = dir.path().join("plots");
    let r = report(&views, &paper(), &out, &ReportOptions::default()).unwrap();
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
    assert!(report(&[], &paper(), dir.path(), &ReportOptions::default()).is_err());
}

#[test]
fn different_workloads_are_labelled_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut composed) = record(8, "CPU A");
    composed
        .workload
        .insert("kernels".into(), "composed".into());
    let views = vec![record(8, "CPU A"), (p, composed)];
    let out = dir.path().join("plots");
    report(&views, &paper(), &out, &ReportOptions::default()).unwrap();
    let svg = std::fs::read_to_string(out.join("memory.svg")).unwrap();
    assert!(svg.contains("kernels=fused") && svg.contains("kernels=composed"));
}
