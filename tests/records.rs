//! The record envelope end to end: every suite's record, written by the binary and read back
//! through the envelope, gives the metrics its typed body states; the readers know every
//! schema the writers write; and the repository's own results pass `ovbench check`.

use ovbench_eval::record::EvalRecord;
use ovbench_gate::record::CURRENT_SCHEMAS;
use ovbench_gate::LoadedRecord;
use ovbench_harness::envelope::{Envelope, Record, RecordBody};
use ovbench_score::record::ScoreRecord;
use ovbench_train::repro::ReproReport;
use ovbench_train::step::StepRecord;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ovbench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("runs")
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn json_in(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a record")
}

/// The typed read and the envelope read of one file agree with what the body says.
fn round_trip<T: RecordBody + std::fmt::Debug>(path: &Path) -> Envelope {
    let typed: Record<T> = Record::read(path).unwrap();
    assert_eq!(
        typed.envelope.metrics,
        typed.body.metrics(),
        "{}",
        path.display()
    );
    assert_eq!(typed.envelope.workload, typed.body.workload());
    let loaded = LoadedRecord::load(path).unwrap();
    assert!(loaded.legacy.is_none());
    assert_eq!(loaded.envelope, typed.envelope);
    assert!(!loaded.envelope.metrics.is_empty());
    loaded.envelope
}

#[test]
fn every_schema_written_is_one_the_readers_know() {
    for (kind, version) in [
        (StepRecord::KIND, StepRecord::VERSION),
        (ReproReport::KIND, ReproReport::VERSION),
        (ScoreRecord::KIND, ScoreRecord::VERSION),
        (EvalRecord::KIND, EvalRecord::VERSION),
        (
            ovbench_train::footprint::MemoryReport::KIND,
            ovbench_train::footprint::MemoryReport::VERSION,
        ),
    ] {
        assert!(
            CURRENT_SCHEMAS.contains(&(kind, version)),
            "{kind}/{version} is written but ovbench-gate does not list it"
        );
    }
    // Besides these: engines/1, written by scripts/torch_vs_ovbench.py, and repro/3, the
    // envelope layout before execution policies.
    assert_eq!(CURRENT_SCHEMAS.len(), 7);
}

#[test]
fn step_records_round_trip_and_gate_against_their_legacy_layout() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("step.json");
    ok(&ovbench(
        &[
            "step",
            "--res",
            "32",
            "--batch",
            "2",
            "--steps",
            "2",
            "--warmup",
            "1",
            "-q",
            "--out",
            p.to_str().unwrap(),
        ],
        dir.path(),
    ));
    let env = round_trip::<StepRecord>(&p);
    for m in [
        "ov1/step_s",
        "ov2/memory/peak_over_baseline_bytes",
        "ov2/kept_tokens",
        "ov1/completed",
    ] {
        assert!(env.metric(m).is_some(), "{m}");
    }
    assert_eq!(env.workload["engine"], "candle");
    assert_eq!(env.workload["kernels"], "fused");
    // The same record in the old layout (body only, schema step/1) reads to the same envelope
    // through the legacy reader: old baselines keep gating new records.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    for k in ["workload", "metrics", "hardware"] {
        obj.remove(k);
    }
    obj.insert("schema".into(), "ovbench.step/1".into());
    let old = dir.path().join("old.json");
    std::fs::write(&old, serde_json::to_vec(&v).unwrap()).unwrap();
    let legacy = LoadedRecord::load(&old).unwrap();
    assert!(legacy.legacy.is_some());
    assert_eq!(legacy.envelope.workload, env.workload);
    assert_eq!(legacy.envelope.metrics, env.metrics);
    assert_eq!(legacy.envelope.hardware, env.hardware);
    let o = ovbench(
        &[
            "gate",
            "--baseline",
            old.to_str().unwrap(),
            "--current",
            p.to_str().unwrap(),
            "--only",
            "deterministic",
        ],
        dir.path(),
    );
    ok(&o);
}

#[test]
fn score_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let items: Vec<serde_json::Value> = (1..=3)
        .map(|i| serde_json::json!({"question_id": i, "question": "q", "answers": vec!["cat"; 10]}))
        .collect();
    std::fs::write(
        d.join("ann.json"),
        serde_json::json!({"dataset_name": "textvqa", "data": items}).to_string(),
    )
    .unwrap();
    let preds: String = (1..=3)
        .map(|i| format!("{{\"question_id\": {i}, \"prediction\": \"cat\"}}\n"))
        .collect();
    std::fs::write(d.join("p.jsonl"), &preds).unwrap();
    std::fs::write(d.join("q.jsonl"), preds.replace("\"cat\"}\n", "\"dog\"}\n")).unwrap();
    ok(&ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            "ann.json",
            "--predictions",
            "p.jsonl",
            "--out",
            "single",
        ],
        d,
    ));
    let env = round_trip::<ScoreRecord>(&json_in(&d.join("single")));
    assert_eq!(
        env.metric("score").unwrap().measurement.central(),
        Some(1.0)
    );
    ok(&ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            "ann.json",
            "--paired",
            "p.jsonl",
            "q.jsonl",
            "--out",
            "paired",
        ],
        d,
    ));
    let env = round_trip::<ScoreRecord>(&json_in(&d.join("paired")));
    assert_eq!(
        env.metric("b_minus_a").unwrap().measurement.central(),
        Some(-1.0)
    );
}

#[test]
fn eval_records_round_trip_and_gate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&ovbench(
        &["eval-fixture", "--out", "fx", "--questions", "3"],
        d,
    ));
    let eval = |out: &str| {
        ok(&ovbench(
            &[
                "eval",
                "--task",
                "ocrbench",
                "--data",
                "fx/data/ocrbench/json/OCRBench.json",
                "--encoder",
                "fx/models/encoder/open_clip_pytorch_model.bin",
                "--projector",
                "fx/models/projector/mm_projector.bin",
                "--llm",
                "fx/models/llm",
                "--max-new-tokens",
                "4",
                "--no-cache",
                "--quiet",
                "--out",
                out,
            ],
            d,
        ));
        json_in(&d.join(out))
    };
    let (a, b) = (eval("a"), eval("b"));
    let env = round_trip::<EvalRecord>(&a);
    assert!(env.metric("score/toolkit").is_some());
    // Two runs of the same model on the same questions: every deterministic metric equal.
    let o = ovbench(
        &[
            "gate",
            "--baseline",
            a.to_str().unwrap(),
            "--current",
            b.to_str().unwrap(),
        ],
        d,
    );
    ok(&o);
}

/// A repro record of today's layout, written by the binary (the small preset under one
/// policy, two rounds), reads back through the envelope with its per-policy projections, and
/// passes the checker; a memory record likewise.
#[test]
fn repro_and_memory_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("repro.json");
    let o = ovbench(
        &[
            "repro",
            "--preset",
            "small",
            "--policy",
            "matched-f32",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--quiet",
            "--out",
            p.to_str().unwrap(),
        ],
        dir.path(),
    );
    ok(&o);
    assert!(
        p.with_extension("md").is_file(),
        "the report beside the record"
    );
    let env = round_trip::<ReproReport>(&p);
    assert_eq!(env.workload["policies"], "matched-f32");
    for kind in ["steps_alone", "with_loop"] {
        let m = env
            .metric(&format!("matched-f32/ov1/projected_device_hours/{kind}"))
            .unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(m.unit, "device-h");
    }
    assert!(env.metric("matched-f32/ov2/max_batch_under_cap").is_some());
    // A test build's tree may be dirty; two rounds are what this test affords.
    let args = [
        "check",
        "--allow-dirty",
        "--min-steps",
        "2",
        p.to_str().unwrap(),
    ];
    ok(&ovbench(&args, dir.path()));

    let m = dir.path().join("memory.json");
    let o = ovbench(
        &[
            "memory",
            "--policy",
            "matched-bf16",
            "--model",
            "Ti/16",
            "--res",
            "32",
            "--batch",
            "2",
            "--check",
            "--json",
            m.to_str().unwrap(),
        ],
        dir.path(),
    );
    ok(&o);
    let env = round_trip::<ovbench_train::footprint::MemoryReport>(&m);
    assert_eq!(env.workload["policy"], "matched-bf16");
    let model = env.metric("ov1/batch_2/model_step_peak_bytes").unwrap();
    let counted = env.metric("ov1/batch_2/allocator_step_peak_bytes").unwrap();
    let value = |m: &ovbench_harness::envelope::Metric| match m.measurement {
        ovbench_harness::envelope::Measurement::Deterministic { value } => value,
        _ => panic!("{} is deterministic", m.name),
    };
    let (a, b) = (value(model), value(counted));
    assert!((a / b - 1.0).abs() < 0.05, "model {a} allocator {b}");
}

/// What CI checks: every committed record passes the project's own checker (archives are
/// listed as skipped). Only tracked files count: scratch output of local runs is not results.
#[test]
fn committed_results_pass_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = Command::new("git")
        .args(["ls-files", "-z", "results"])
        .current_dir(root)
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "not a git checkout?");
    let dir = tempfile::tempdir().unwrap();
    for f in listed.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(f).unwrap());
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), &to).unwrap();
    }
    ok(&ovbench(&["check", "results"], dir.path()));
}
