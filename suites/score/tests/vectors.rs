//! Every line of the public test vectors must reproduce its `expected` score bit for bit
//! under its toolkit label. One test, so a failure lists every failing vector at once.

use ovbench_score::{score_item, Compat, Origin, Task};
use std::path::PathBuf;

fn vectors_path() -> PathBuf {
    if let Ok(p) = std::env::var("OVBENCH_SCORING_VECTORS") {
        return p.into();
    }
    // The workspace sits beside `shared/` (suites/score -> workspace root -> its parent).
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/scoring-vectors-public.jsonl")
}

#[test]
fn every_public_vector_reproduces_its_expected_score() {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the scoring vectors at {}: {e} (set OVBENCH_SCORING_VECTORS)",
            path.display()
        )
    });
    let mut failures = Vec::new();
    let mut labels = std::collections::BTreeSet::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("line {}: no string '{k}'", i + 1))
                .to_string()
        };
        let task = Task::parse(&s("benchmark")).expect("known benchmark");
        let label = s("toolkit");
        labels.insert(format!("{task}:{label}"));
        let compat = Compat::parse(task, &label).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let answers: Vec<String> = v["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .map(|a| a.as_str().expect("str").to_string())
            .collect();
        let expected = v["expected"].as_f64().expect("expected");
        let got = score_item(
            task,
            compat,
            &s("prediction"),
            Origin::Plain,
            &answers,
            v["question_type"].as_str(),
            v["dataset_name"].as_str(),
        );
        n += 1;
        match got {
            Ok((g, _, _)) if g.to_bits() == expected.to_bits() => {}
            other => failures.push(format!(
                "{} [{label}] prediction={:?} expected={expected:?} got={:?}",
                s("id"),
                s("prediction"),
                other.map(|o| o.0)
            )),
        }
    }
    assert_eq!(n, 492, "the public file has 492 lines (spec §7)");
    assert_eq!(
        labels.len(),
        19,
        "7 TextVQA + 6 ChartQA + 6 OCRBench labels: {labels:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {n} vectors fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
