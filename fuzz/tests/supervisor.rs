//! The supervisor catches every kind of finding: a worker that aborts (a crash), one that
//! hangs past the timeout, and a panic; each is counted, its input saved, and the run exits 1.

use std::process::Command;

fn run(kind: &str) -> (i32, String, std::path::PathBuf, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("fz");
    let o = Command::new(env!("CARGO_BIN_EXE_ovbench-fuzz"))
        .args([
            "run",
            "gate-config",
            "--secs",
            "3",
            "--timeout-ms",
            "300",
            "--out",
        ])
        .arg(&out)
        .env("OVBENCH_FUZZ_SELFTEST", kind)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.code().unwrap_or(-1), text, out, d)
}

fn summary(out: &std::path::Path) -> serde_json::Value {
    let s = std::fs::read_to_string(out.join("summary.jsonl")).unwrap();
    serde_json::from_str(s.lines().next().unwrap()).unwrap()
}

#[test]
fn crashes_hangs_and_panics_are_findings() {
    for (kind, field) in [("abort", "crashes"), ("hang", "hangs"), ("panic", "panics")] {
        let (code, text, out, _d) = run(kind);
        assert_eq!(code, 1, "{kind}: {text}");
        let s = summary(&out);
        assert!(s[field].as_u64().unwrap() >= 1, "{kind}: {s}");
        // Fuzzing went on after the finding (the worker restarted, or kept going).
        assert!(s["executions"].as_u64().unwrap() > 10, "{kind}: {s}");
        let saved = s["findings"].as_array().unwrap();
        assert!(!saved.is_empty(), "{kind}: {s}");
        let input = std::path::Path::new(saved[0].as_str().unwrap());
        assert!(
            input.exists() && input.with_extension("txt").exists(),
            "{kind}: {s}"
        );
    }
}

#[test]
fn a_clean_run_exits_0() {
    let (code, text, out, _d) = run("");
    assert_eq!(code, 0, "{text}");
    let s = summary(&out);
    assert_eq!(s["panics"], 0);
    assert!(s["executions"].as_u64().unwrap() > 10, "{s}");
}
