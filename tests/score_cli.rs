//! End-to-end tests of `ovbench score`: real files in, records and exit codes out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ovbench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ovbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Asserts a clean failure: exit code 2, no panic, and every `needle` in stderr.
fn fails_with(o: &Output, needles: &[&str]) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "stdout:\n{out}\nstderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}:\n{err}");
    }
}

fn write(dir: &Path, name: &str, body: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// A four-question TextVQA annotation file, one item per line.
fn textvqa(dir: &Path) -> PathBuf {
    let ten = |a: &str| serde_json::json!(vec![a; 10]);
    let mut exit = vec!["only exit"; 8];
    exit.extend(["exit", "exit"]);
    let items = [
        serde_json::json!({"question_id": 1, "question": "q", "answers": ten("cat")}),
        serde_json::json!({"question_id": 2, "question": "q", "answers": ten("10")}),
        serde_json::json!({"question_id": 3, "question": "q", "answers": ten("new york")}),
        serde_json::json!({"question_id": 4, "question": "q", "answers": exit}),
    ];
    let body = format!(
        "{{\"dataset_name\": \"textvqa\",\n\"data\": [\n{}\n]}}\n",
        items
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",\n")
    );
    write(dir, "TextVQA_0.5.1_val.json", body)
}

fn preds(dir: &Path, name: &str, rows: &[(i64, &str)]) -> PathBuf {
    let body: String = rows
        .iter()
        .map(|(i, p)| serde_json::json!({"question_id": i, "prediction": p}).to_string() + "\n")
        .collect();
    write(dir, name, body)
}

fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

#[test]
fn scores_textvqa_and_writes_record_and_items() {
    let d = tempfile::tempdir().unwrap();
    let ann = textvqa(d.path());
    let p = preds(
        d.path(),
        "p.jsonl",
        &[(4, "exit"), (1, "Cat"), (2, "ten"), (3, "boston")],
    );
    let out = d.path().join("res");
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            ann.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        d.path(),
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("exact_match,none") && stdout.contains("0.65"),
        "{stdout}"
    );
    assert!(stdout.contains("95 % CI"), "{stdout}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(only_file(&out, ".json")).unwrap()).unwrap();
    assert_eq!(rec["schema"], "ovbench.score/2");
    assert_eq!(rec["workload"]["task"], "textvqa");
    let score = rec["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "score/toolkit")
        .unwrap();
    assert_eq!(score["value"], 0.65);
    assert_eq!(rec["compat"], "lmms-eval");
    assert_eq!(rec["scorer_version"], "ovbench-score/1");
    assert_eq!(rec["report"]["toolkit"]["value"], 0.65);
    assert_eq!(rec["report"]["n_scored"], 4);
    let inputs = rec["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert!(inputs
        .iter()
        .all(|i| i["sha256"].as_str().unwrap().len() == 64));
    let csv = std::fs::read_to_string(only_file(&out, ".items.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.lines().nth(4).unwrap().starts_with("4,3,,0.6,exit"),
        "{csv}"
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2);

    // The same file under LLaVA's rules: the ulp case differs, as the spec documents.
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--compat",
            "llava",
            "--annotations",
            ann.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        d.path(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn bad_inputs_fail_cleanly_naming_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ann = textvqa(dir);
    let a = ann.to_str().unwrap();
    let run = |p: &Path, extra: &[&str]| {
        let mut args = vec![
            "score",
            "--task",
            "textvqa",
            "--annotations",
            a,
            "--predictions",
            p.to_str().unwrap(),
            "--out",
            "res",
        ];
        args.extend_from_slice(extra);
        ovbench(&args, dir)
    };

    let p = write(
        dir,
        "malformed.jsonl",
        "{\"question_id\": 1, \"prediction\": \"a\"}\n{\"question_id\": 2, \"prediction\": \n",
    );
    fails_with(&run(&p, &[]), &["malformed.jsonl:2", "malformed JSON"]);

    let p = write(dir, "utf8.jsonl", b"{\"question_id\": 1, \"prediction\": \"a\"}\n{\"question_id\": 2, \"prediction\": \"\xc3\x28\"}\n");
    fails_with(&run(&p, &[]), &["utf8.jsonl:2", "invalid UTF-8"]);

    let p = write(dir, "empty.jsonl", "");
    fails_with(&run(&p, &[]), &["empty.jsonl", "empty"]);

    let p = preds(dir, "dup.jsonl", &[(1, "a"), (2, "b"), (1, "c")]);
    fails_with(
        &run(&p, &[]),
        &["dup.jsonl:3", "duplicate question id '1'", "dup.jsonl:1"],
    );
    let o = run(&p, &["--allow-duplicates"]);
    let (out, _) = text(&o);
    assert!(o.status.success() && out.contains("duplicate-id"), "{out}");

    let p = preds(dir, "unknown.jsonl", &[(1, "a"), (99, "b")]);
    fails_with(
        &run(&p, &[]),
        &["unknown.jsonl:2", "'99'", "not in the annotations"],
    );
    let o = run(&p, &["--allow-unknown"]);
    let (out, _) = text(&o);
    assert!(
        o.status.success() && out.contains("unknown-id") && out.contains("missing-prediction"),
        "{out}"
    );

    // An annotation without answers, and a TextVQA item with 9 answers.
    let bad = write(
        dir,
        "noans.json",
        "{\"data\": [\n{\"question_id\": 1, \"answers\": [\"a\"]},\n{\"question_id\": 2}\n]}",
    );
    let p = preds(dir, "ok.jsonl", &[(1, "a")]);
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            bad.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
        ],
        dir,
    );
    fails_with(&o, &["noans.json:3", "answers", "no answers"]);
    let nine = write(
        dir,
        "nine.json",
        format!(
            "{{\"data\": [\n{}\n]}}",
            serde_json::json!({"question_id": 1, "answers": vec!["a"; 9]})
        ),
    );
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--compat",
            "llava",
            "--annotations",
            nine.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
            "--out",
            "res",
        ],
        dir,
    );
    fails_with(
        &o,
        &["nine.json:2", "9 answers", "llava requires exactly 10"],
    );
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            nine.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
            "--out",
            "res",
        ],
        dir,
    );
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains("1 × answers-not-10") && out.contains("nine.json:2"),
        "{out}{err}"
    );

    // Duplicate ids in the annotations.
    let dupann = write(dir, "dupann.json", "{\"data\": [\n{\"question_id\": 1, \"answers\": [\"a\"]},\n{\"question_id\": 1, \"answers\": [\"b\"]}\n]}");
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--annotations",
            dupann.to_str().unwrap(),
            "--predictions",
            p.to_str().unwrap(),
        ],
        dir,
    );
    fails_with(
        &o,
        &[
            "dupann.json:3",
            "duplicate question id '1'",
            "dupann.json:2",
        ],
    );

    // A label the task does not document.
    let o = ovbench(
        &[
            "score",
            "--task",
            "textvqa",
            "--compat",
            "pix2struct",
            "--annotations",
            a,
            "--predictions",
            p.to_str().unwrap(),
        ],
        dir,
    );
    fails_with(&o, &["pix2struct", "llava", "vqa-official<2021"]);
    let o = ovbench(
        &[
            "score",
            "--task",
            "docvqa",
            "--annotations",
            a,
            "--predictions",
            p.to_str().unwrap(),
        ],
        dir,
    );
    fails_with(&o, &["unknown task 'docvqa'"]);
    assert!(
        !dir.join("res").exists()
            || std::fs::read_dir(dir.join("res")).unwrap().all(|e| {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                !n.ends_with(".tmp")
            })
    );
}

#[test]
fn paired_mode_reports_difference_and_equivalence() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // 200 ChartQA questions; B differs from A on 4 of them, two each way.
    let human: Vec<serde_json::Value> = (0..200)
        .map(|i| serde_json::json!({"imgname": "x.png", "query": "q", "label": i.to_string()}))
        .collect();
    let ann = write(
        dir,
        "test_human.json",
        serde_json::to_string_pretty(&human).unwrap(),
    );
    let mk = |name: &str, flip: &[usize]| {
        let body: String = (0..200)
            .map(|i| {
                let right = (i % 3 != 0) ^ flip.contains(&i);
                let p = if right { i.to_string() } else { "wrong".into() };
                serde_json::json!({"question_id": format!("human-{i}"), "prediction": p})
                    .to_string()
                    + "\n"
            })
            .collect();
        write(dir, name, body)
    };
    let a = mk("a.jsonl", &[]);
    let b = mk("b.jsonl", &[0, 1, 3, 4]);
    let out = dir.join("res");
    let o = ovbench(
        &[
            "score",
            "--task",
            "chartqa",
            "--annotations",
            ann.to_str().unwrap(),
            "--paired",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--margin",
            "0.05",
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("equivalent: the difference lies within ±5.00 points"),
        "{stdout}"
    );
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(only_file(&out, ".json")).unwrap()).unwrap();
    assert_eq!(rec["mode"], "paired");
    assert_eq!(rec["paired"]["n"], 200);
    assert_eq!(rec["paired"]["diff"], 0.0);
    assert_eq!(rec["paired"]["b_better"], 2);
    assert_eq!(rec["paired"]["equivalence"]["equivalent"], true);
    assert_eq!(rec["inputs"].as_array().unwrap().len(), 3);
    // A 1-point margin cannot be met with 200 questions and this much disagreement.
    let o = ovbench(
        &[
            "score",
            "--task",
            "chartqa",
            "--annotations",
            ann.to_str().unwrap(),
            "--paired",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--margin",
            "0.01",
            "--out",
            out.to_str().unwrap(),
        ],
        dir,
    );
    assert!(
        text(&o).0.contains("not shown equivalent"),
        "{:?}",
        text(&o)
    );
    let o = ovbench(
        &[
            "score",
            "--task",
            "chartqa",
            "--annotations",
            ann.to_str().unwrap(),
            "--paired",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--margin",
            "-1",
        ],
        dir,
    );
    fails_with(&o, &["--margin must be a positive number"]);
    let o = ovbench(
        &[
            "score",
            "--task",
            "chartqa",
            "--annotations",
            ann.to_str().unwrap(),
            "--predictions",
            a.to_str().unwrap(),
            "--paired",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap rejects --predictions with --paired"
    );
}
