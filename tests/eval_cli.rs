//! End-to-end tests of `ovbench eval` through the binary: tiny random-weight models and
//! datasets written by the hidden `ovbench eval-fixture`, records and predictions out,
//! predictions rescored by `ovbench score`, and a run killed midway then resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ovbench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("runs")
}

fn ok(o: &Output) -> String {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    out
}

fn line_with<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no '{prefix}' in\n{out}"))
        .trim()
}

struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new(questions: usize) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let q = questions.to_string();
        ok(&ovbench(
            &["eval-fixture", "--out", "fx", "--questions", &q],
            dir.path(),
        ));
        Fx { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// `ovbench eval` on OCRBench (JSON layout) with the tiny models, plus `extra`.
    fn eval_args<'a>(&self, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
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
            "--out",
            out,
            "--quiet",
        ];
        a.extend_from_slice(extra);
        a
    }
}

fn record(out: &str, fx: &Fx) -> (serde_json::Value, PathBuf) {
    let rec = fx.path().join(line_with(out, "record:"));
    let preds = fx.path().join(line_with(out, "predictions:"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(rec).unwrap()).unwrap();
    (v, preds)
}

fn read_preds(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn eval_writes_a_record_and_predictions_that_score_accepts() {
    let fx = Fx::new(6);
    let out = ok(&ovbench(
        &fx.eval_args("res", &["--max-new-tokens", "12"]),
        fx.path(),
    ));
    let (rec, preds) = record(&out, &fx);
    assert_eq!(rec["schema"], "ovbench.eval/2");
    // The envelope: what gate, compare and check read.
    let names: Vec<&str> = rec["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for m in ["score", "score/toolkit", "tokens/new", "tokens/prompt"] {
        assert!(names.contains(&m), "{names:?}");
    }
    assert_eq!(rec["workload"]["task"], "ocrbench");
    assert_eq!(rec["counts"]["computed"], 6);
    for k in ["image_encoding", "prefill", "decode", "total"] {
        assert!(rec["timing_s"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(rec["throughput"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(rec["memory"]["peak_bytes_over_start"].as_u64().unwrap() > 0);
    assert_eq!(rec["memory"]["allocator_active"], true);
    let roles: Vec<&str> = rec["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["role"].as_str().unwrap())
        .collect();
    for r in [
        "encoder",
        "encoder-config",
        "projector",
        "llm",
        "llm-config",
        "tokenizer",
    ] {
        assert!(roles.contains(&r), "{roles:?}");
    }
    assert!(rec["weights"][0]["sha256"].as_str().unwrap().len() == 64);
    assert_eq!(rec["task_config_sha256"].as_str().unwrap().len(), 64);
    assert!(rec["report"]["summary"]["ci95"].is_array());
    // `ovbench score` reads the predictions and gives the same number.
    let p = preds.to_str().unwrap();
    let s = ok(&ovbench(
        &[
            "score",
            "--task",
            "ocrbench",
            "--annotations",
            "fx/data/ocrbench/json/OCRBench.json",
            "--predictions",
            p,
            "--out",
            "res-score",
        ],
        fx.path(),
    ));
    assert!(s.contains("scored / annotated"), "{s}");
    assert!(s.contains("6 / 6"), "{s}");
    // Same inputs, same predictions (greedy, deterministic), with the cache off.
    let again = ok(&ovbench(
        &fx.eval_args("res2", &["--max-new-tokens", "12", "--no-cache"]),
        fx.path(),
    ));
    let (rec2, preds2) = record(&again, &fx);
    assert_eq!(rec2["cache"]["enabled"], false);
    assert_eq!(read_preds(&preds), read_preds(&preds2));
}

#[test]
fn a_killed_run_resumes_without_redoing_finished_questions() {
    let fx = Fx::new(8);
    // Reference: one uninterrupted run without the cache.
    let full = ok(&ovbench(
        &fx.eval_args("ref", &["--max-new-tokens", "64", "--no-cache"]),
        fx.path(),
    ));
    let (_, ref_preds) = record(&full, &fx);
    let want = read_preds(&ref_preds);

    // 1. The process exits right after its third answer is on disk (as a kill would).
    let o = Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(fx.eval_args("a", &["--max-new-tokens", "64"]))
        .env("OVBENCH_EVAL_EXIT_AFTER", "3")
        .current_dir(fx.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let resumed = ok(&ovbench(
        &fx.eval_args("a", &["--max-new-tokens", "64"]),
        fx.path(),
    ));
    let (rec, preds) = record(&resumed, &fx);
    assert_eq!(
        (
            rec["counts"]["computed"].as_u64(),
            rec["counts"]["from_cache"].as_u64()
        ),
        (Some(5), Some(3))
    );
    assert_eq!(read_preds(&preds), want);

    // 2. A real SIGKILL at an arbitrary point (decoding without the KV cache, so slowly).
    let cache = fx.path().join("b/eval-cache/ocrbench.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(fx.eval_args("b", &["--max-new-tokens", "64", "--no-kv-cache"]))
        .current_dir(fx.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let lines = std::fs::read(&cache)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines >= 2 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = std::fs::read(&cache)
        .unwrap()
        .iter()
        .filter(|&&c| c == b'\n')
        .count() as u64;
    assert!(
        (2..8).contains(&done),
        "killed after {done} of 8 answers: not midway"
    );
    let resumed = ok(&ovbench(
        &fx.eval_args("b", &["--max-new-tokens", "64"]),
        fx.path(),
    ));
    let (rec, preds) = record(&resumed, &fx);
    assert_eq!(rec["counts"]["from_cache"].as_u64(), Some(done.min(8)));
    assert_eq!(rec["counts"]["computed"].as_u64(), Some(8 - done.min(8)));
    assert_eq!(
        read_preds(&preds),
        want,
        "KV cache on and off, killed and resumed: same answers"
    );
}

#[test]
fn bad_inputs_fail_cleanly_with_exit_code_2() {
    let fx = Fx::new(2);
    std::fs::write(
        fx.path().join("junk.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    let mut a = fx.eval_args("res", &[]);
    a[6] = "junk.safetensors";
    let o = ovbench(&a, fx.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("junk.safetensors") && err.contains("truncated"),
        "{err}"
    );
}
