//! Scoring 5,000 TextVQA predictions (the size of the val split) under lmms-eval rules.
//!
//! The items are synthetic but shaped like TextVQA: 10 answers drawn from a small vocabulary
//! with mixed case, punctuation, articles and number words, so normalisation does real work.

use criterion::{criterion_group, criterion_main, Criterion};
use ovbench_score::readers::{self, ReadOptions};
use ovbench_score::{
    score, Annotation, Annotations, Compat, Loc, MatchPolicy, Origin, PredKey, Prediction,
    Predictions, Task,
};
use std::hint::black_box;
use std::path::{Path, PathBuf};

const WORDS: [&str; 16] = [
    "Coca-Cola",
    "the stop sign",
    "two",
    "10:30",
    "new york",
    "McDonald's",
    "yes",
    "no",
    "3.",
    "a,b",
    "EXIT",
    "\"quoted\"",
    "snake_case",
    "dont",
    "12%",
    "café",
];

/// A fixed xorshift stream: the same items on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn data(n: usize) -> (Annotations, Predictions) {
    let mut rng = Rng(0x5eed_0b0e);
    let path = Path::new("synthetic");
    let mut ann = Vec::with_capacity(n);
    let mut preds = Vec::with_capacity(n);
    for i in 0..n {
        let answers: Vec<String> = (0..10)
            .map(|_| WORDS[rng.next(4) + rng.next(WORDS.len() - 4)].to_string())
            .collect();
        let pred = if rng.next(2) == 0 {
            answers[rng.next(10)].to_uppercase()
        } else {
            WORDS[rng.next(WORDS.len())].to_string()
        };
        ann.push(Annotation {
            id: i.to_string(),
            answers,
            category: None,
            dataset_name: None,
            question: None,
            image: None,
            loc: Loc::line(path, i + 1),
        });
        preds.push(Prediction {
            key: PredKey::Id(i.to_string()),
            text: pred,
            loc: Loc::line(path, i + 1),
            witness: None,
        });
    }
    (
        Annotations {
            task: Task::TextVqa,
            format: "synthetic",
            files: vec![],
            items: ann,
            warnings: vec![],
        },
        Predictions {
            format: "synthetic",
            origin: Origin::Plain,
            path: path.into(),
            items: preds,
            warnings: vec![],
        },
    )
}

/// Writes `ann` and `preds` as `TextVQA_0.5.1_val.json` and a predictions JSONL, shaped like
/// the files `scripts/score_vs_lmms_eval.py` generates.
fn write_files(dir: &Path, ann: &Annotations, preds: &Predictions) -> (PathBuf, PathBuf) {
    let data: Vec<serde_json::Value> = ann
        .items
        .iter()
        .enumerate()
        .map(|(i, a)| {
            serde_json::json!({"question_id": 34602 + i, "question": "what is written?",
                "image_id": format!("{i:016x}"), "answers": a.answers, "set_name": "val"})
        })
        .collect();
    let doc = serde_json::json!({"dataset_type": "val", "dataset_name": "textvqa",
        "dataset_version": "0.5.1", "data": data});
    let ann_path = dir.join("TextVQA_0.5.1_val.json");
    std::fs::write(&ann_path, doc.to_string()).unwrap();
    let lines: String = preds
        .items
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"question_id": 34602 + i, "prediction": p.text}).to_string() + "\n"
        })
        .collect();
    let pred_path = dir.join("predictions.jsonl");
    std::fs::write(&pred_path, lines).unwrap();
    (ann_path, pred_path)
}

fn bench(c: &mut Criterion) {
    let (ann, preds) = data(5000);
    // Reading both files and scoring: the span `ovbench score` reports as "read" + "score".
    let dir = tempfile::tempdir().unwrap();
    let (ann_path, pred_path) = write_files(dir.path(), &ann, &preds);
    c.bench_function("textvqa_5000_read_and_score_lmms-eval", |b| {
        b.iter(|| {
            let a = readers::read_annotations(
                Task::TextVqa,
                std::slice::from_ref(&ann_path),
                &ReadOptions::default(),
            )
            .unwrap();
            let p = readers::read_predictions(&pred_path).unwrap();
            score(
                Task::TextVqa,
                Compat::LmmsEval,
                &a,
                &p,
                MatchPolicy::default(),
            )
            .unwrap()
        })
    });
    for compat in [Compat::LmmsEval, Compat::Vlmevalkit] {
        c.bench_function(&format!("textvqa_5000_{}", compat.label()), |b| {
            b.iter(|| {
                score(
                    Task::TextVqa,
                    compat,
                    black_box(&ann),
                    black_box(&preds),
                    MatchPolicy::default(),
                )
                .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
