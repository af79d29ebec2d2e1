//! Scoring 5,000 TextVQA predictions (the size of the val split) under lmms-eval rules.
//!
//! The items are synthetic but shaped like TextVQA: 10 answers drawn from a small vocabulary
//! with mixed case, punctuation, articles and number words, so normalisation does real work.

use criterion::{criterion_group, criterion_main, Criterion};
use ovbench_score::{
    score, Annotation, Annotations, Compat, Loc, MatchPolicy, Origin, PredKey, Prediction,
    Predictions, Task,
};
use std::hint::black_box;
use std::path::Path;

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

fn bench(c: &mut Criterion) {
    let (ann, preds) = data(5000);
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
