//! Fixture files in every supported format, written here, read back to the same scores.
// Each call names its fixture paths literally; cloning them keeps the calls uniform.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use common::*;
use ovbench_score::readers::{self, ReadOptions};
use ovbench_score::{score, Compat, MatchPolicy, Report, Task};
use std::path::{Path, PathBuf};

fn s(x: &str) -> String {
    x.to_string()
}

fn run(task: Task, compat: &str, ann: &[PathBuf], pred: &Path) -> Report {
    let a = readers::read_annotations(task, ann, &ReadOptions::default()).unwrap();
    let p = readers::read_predictions(pred).unwrap();
    score(
        task,
        Compat::parse(task, compat).unwrap(),
        &a,
        &p,
        MatchPolicy::default(),
    )
    .unwrap()
}

fn scores(r: &Report) -> Vec<f64> {
    r.items.iter().map(|i| i.score).collect()
}

fn jsonl(path: &Path, rows: &[(serde_json::Value, &str)]) {
    let body: String = rows
        .iter()
        .map(|(id, p)| serde_json::json!({"question_id": id, "prediction": p}).to_string() + "\n")
        .collect();
    std::fs::write(path, body).unwrap();
}

fn samples(path: &Path, preds: &[&str]) {
    let body: String = preds
        .iter()
        .enumerate()
        .map(|(i, p)| {
            serde_json::json!({"doc_id": i, "filtered_resps": [p], "target": "x"}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(path, body).unwrap();
}

fn textvqa_fixture() -> (Vec<i32>, Vec<Vec<String>>, Vec<&'static str>) {
    let ids = vec![100, 101, 102, 103];
    // textvqa-072's order: the ulp differences between toolkits depend on it.
    let mut exit = vec![s("only exit"); 8];
    exit.extend(vec![s("exit"); 2]);
    let answers = vec![
        vec![s("cat"); 10],
        vec![s("0"); 10],
        vec![s("new york"); 10],
        exit,
    ];
    let preds = vec!["Cat", "None", "new\u{1f}york", "exit"];
    (ids, answers, preds)
}

#[test]
fn textvqa_every_format_gives_the_same_scores() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let (ids, answers, preds) = textvqa_fixture();

    let data: Vec<serde_json::Value> = ids
        .iter()
        .zip(&answers)
        .map(|(id, a)| serde_json::json!({"question_id": id, "question": "what?", "image_id": "00ab", "answers": a, "set_name": "val"}))
        .collect();
    let json = dir.join("TextVQA_0.5.1_val.json");
    let doc = serde_json::json!({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data});
    std::fs::write(&json, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let tsv = dir.join("TextVQA_VAL.tsv");
    // 60 bytes of "image" (80 base64 characters); later rows refer to row 100's image, as
    // VLMEvalKit TSVs do with cells of at most 64 characters.
    let img = [7u8; 60];
    let b64 = "BwcH".repeat(20);
    let rows: Vec<Vec<String>> = ids
        .iter()
        .zip(&answers)
        .map(|(id, a)| {
            vec![
                id.to_string(),
                if *id == 100 { b64.clone() } else { s("100") },
                s("what?"),
                py_list_repr(a),
            ]
        })
        .collect();
    write_tsv(&tsv, &["index", "image", "question", "answer"], &rows);

    let pq = dir.join("validation-00000-of-00001.parquet");
    write_parquet(
        &pq,
        "message schema { optional int32 question_id; optional binary question (STRING); optional group image { optional binary bytes; optional binary path (STRING); } optional group answers (LIST) { repeated group list { optional binary element (STRING); } } }",
        vec![
            Col::I32(ids.clone()),
            Col::Str(vec![s("what?"); 4]),
            Col::Image(vec![b"\x89PNG".to_vec(); 4]),
            Col::StrList(answers.clone()),
        ],
    );

    let pj = dir.join("preds.jsonl");
    jsonl(
        &pj,
        &ids.iter()
            .zip(&preds)
            .rev()
            .map(|(i, p)| (serde_json::json!(i), *p))
            .collect::<Vec<_>>(),
    );
    let ps = dir.join("samples_textvqa_val.jsonl");
    samples(&ps, &preds);
    let px = dir.join("model_TextVQA_VAL.xlsx");
    write_xlsx(
        &px,
        &["index", "question", "prediction"],
        &ids.iter()
            .zip(&preds)
            .map(|(i, p)| (*i as i64, vec![s("what?"), s(p)]))
            .collect::<Vec<_>>(),
    );
    let pt = dir.join("model_TextVQA_VAL.tsv");
    write_tsv(
        &pt,
        &["index", "question", "prediction"],
        &ids.iter()
            .zip(&preds)
            .map(|(i, p)| vec![i.to_string(), s("what?"), s(p)])
            .collect::<Vec<_>>(),
    );

    let lmms = vec![1.0, 1.0, 1.0, 0.6];
    for (ann, pred) in [
        (&json, &pj),
        (&tsv, &pj),
        (&pq, &ps),
        (&json, &px),
        (&tsv, &pt),
    ] {
        let r = run(Task::TextVqa, "lmms-eval", &[ann.clone()], pred);
        assert_eq!(scores(&r), lmms, "{} + {}", ann.display(), pred.display());
        assert_eq!(r.toolkit.value, 0.9);
    }
    // VLMEvalKit sees its own files through pandas; a JSONL file needs the +xlsx label.
    let xlsx_view = vec![1.0, 0.0, 0.0, 0.5999999999999999];
    assert_eq!(
        scores(&run(Task::TextVqa, "vlmevalkit", &[tsv.clone()], &px)),
        xlsx_view
    );
    assert_eq!(
        scores(&run(Task::TextVqa, "vlmevalkit+xlsx", &[tsv.clone()], &px)),
        xlsx_view
    );
    assert_eq!(
        scores(&run(Task::TextVqa, "vlmevalkit+xlsx", &[tsv.clone()], &pj)),
        xlsx_view
    );
    assert_eq!(
        scores(&run(Task::TextVqa, "vlmevalkit", &[tsv.clone()], &pt)),
        vec![1.0, 0.0, 1.0, 0.5999999999999999]
    );
    assert_eq!(
        scores(&run(Task::TextVqa, "vlmevalkit", &[tsv.clone()], &pj)),
        vec![1.0, 1.0, 1.0, 0.5999999999999999]
    );

    // Images stay unread unless asked for; when asked, they decode.
    let a = readers::read_annotations(
        Task::TextVqa,
        &[tsv.clone()],
        &ReadOptions {
            decode_images: true,
        },
    )
    .unwrap();
    assert_eq!(a.items[0].image.as_deref(), Some(&img[..]));
    assert_eq!(a.items[3].image.as_deref(), Some(&img[..]));
    let a = readers::read_annotations(Task::TextVqa, &[tsv], &ReadOptions::default()).unwrap();
    assert!(a.items[0].image.is_none());
}

#[test]
fn chartqa_every_format_gives_the_same_scores() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let human = [("12.6", "12"), ("Yes ", "Yes")];
    let aug = [("2014", "[2014, 2016]"), ("None", "None")];
    let hj = dir.join("test_human.json");
    let aj = dir.join("test_augmented.json");
    let obj = |xs: &[(&str, &str)]| {
        serde_json::to_string_pretty(
            &xs.iter()
                .map(|(_, l)| serde_json::json!({"imgname": "1.png", "query": "q?", "label": l}))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    std::fs::write(&hj, obj(&human)).unwrap();
    std::fs::write(&aj, obj(&aug)).unwrap();
    let all: Vec<(&str, &str, &str)> = human
        .iter()
        .map(|(p, l)| (*p, *l, "human"))
        .chain(aug.iter().map(|(p, l)| (*p, *l, "augmented")))
        .collect();

    let tsv = dir.join("ChartQA_TEST.tsv");
    let rows: Vec<Vec<String>> = all
        .iter()
        .enumerate()
        .map(|(i, (_, l, sp))| {
            vec![
                i.to_string(),
                s("aGk="),
                s("q?"),
                s(l),
                format!("test_{sp}"),
            ]
        })
        .collect();
    write_tsv(
        &tsv,
        &["index", "image", "question", "answer", "split"],
        &rows,
    );
    let pq = dir.join("test-00000-of-00001.parquet");
    write_parquet(
        &pq,
        "message schema { optional binary type (STRING); optional binary question (STRING); optional binary answer (STRING); }",
        vec![
            Col::Str(all.iter().map(|(_, _, sp)| format!("{sp}_test")).collect()),
            Col::Str(vec![s("q?"); 4]),
            Col::Str(all.iter().map(|(_, l, _)| s(l)).collect()),
        ],
    );
    let preds: Vec<&str> = all.iter().map(|(p, _, _)| *p).collect();
    let pj = dir.join("p.jsonl");
    jsonl(
        &pj,
        &["human-0", "human-1", "augmented-0", "augmented-1"]
            .iter()
            .zip(&preds)
            .map(|(i, p)| (serde_json::json!(i), *p))
            .collect::<Vec<_>>(),
    );
    let pj_idx = dir.join("p_idx.jsonl");
    jsonl(
        &pj_idx,
        &preds
            .iter()
            .enumerate()
            .map(|(i, p)| (serde_json::json!(i), *p))
            .collect::<Vec<_>>(),
    );
    let ps = dir.join("samples_chartqa.jsonl");
    samples(&ps, &preds);
    let px = dir.join("m_ChartQA_TEST.xlsx");
    write_xlsx(
        &px,
        &["index", "prediction"],
        &preds
            .iter()
            .enumerate()
            .map(|(i, p)| (i as i64, vec![s(p)]))
            .collect::<Vec<_>>(),
    );

    let lmms = vec![1.0, 1.0, 0.0, 1.0];
    for (ann, pred) in [
        (vec![aj.clone(), hj.clone()], &pj),
        (vec![tsv.clone()], &pj_idx),
        (vec![pq.clone()], &ps),
        (vec![dir.to_path_buf()], &pj),
    ] {
        if ann[0] == dir && ann.len() == 1 {
            // A folder holding both JSON files (and, here, other formats) is ambiguous.
            assert!(
                readers::read_annotations(Task::ChartQa, &ann, &ReadOptions::default()).is_err()
            );
            continue;
        }
        let r = run(Task::ChartQa, "lmms-eval", &ann, pred);
        assert_eq!(scores(&r), lmms, "{ann:?}");
        assert_eq!(r.toolkit.value, 0.75);
        let cats: Vec<(String, f64)> = r
            .categories
            .iter()
            .map(|c| (c.name.clone(), c.toolkit_value))
            .collect();
        assert_eq!(
            cats,
            vec![
                (s("relaxed_human_split"), 1.0),
                (s("relaxed_augmented_split"), 0.5)
            ]
        );
    }
    assert_eq!(
        scores(&run(Task::ChartQa, "vlmevalkit", &[tsv.clone()], &pj_idx)),
        vec![1.0, 1.0, 1.0, 1.0]
    );
    let x = run(Task::ChartQa, "vlmevalkit", &[tsv.clone()], &px);
    assert_eq!(scores(&x), vec![1.0, 1.0, 1.0, 0.0]);
    assert_eq!(x.toolkit.value, 75.0);
    assert_eq!(
        scores(&run(Task::ChartQa, "vlmevalkit+xlsx", &[tsv], &pj_idx)),
        scores(&x)
    );
}

#[test]
fn ocrbench_every_format_gives_the_same_scores() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let items = [
        (
            "IIIT5K",
            "Regular Text Recognition",
            vec![s("CENTRE")],
            "centre",
        ),
        (
            "HME100k",
            "Handwritten Mathematical Expression Recognition",
            vec![s("x + 1\n")],
            "X+1",
        ),
        (
            "docVQA",
            "Doc-oriented VQA",
            vec![s("2590"), s("2,590")],
            "２５９０",
        ),
    ];
    let json = dir.join("OCRBench.json");
    let list: Vec<serde_json::Value> = items
        .iter()
        .enumerate()
        .map(|(i, (ds, ty, a, _))| {
            let answers = if a.len() == 1 && i == 0 { serde_json::json!(a[0]) } else { serde_json::json!(a) };
            serde_json::json!({"dataset_name": ds, "id": 7, "image_path": "x.png", "question": "q?", "answers": answers, "type": ty})
        })
        .collect();
    std::fs::write(&json, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    let results = dir.join("results.json");
    let with_pred: Vec<serde_json::Value> = list
        .iter()
        .zip(&items)
        .map(|(v, (_, _, _, p))| {
            let mut v = v.clone();
            v["predict"] = serde_json::json!(p);
            v
        })
        .collect();
    std::fs::write(&results, serde_json::to_string_pretty(&with_pred).unwrap()).unwrap();
    let tsv = dir.join("OCRBench.tsv");
    let rows: Vec<Vec<String>> = items
        .iter()
        .enumerate()
        .map(|(i, (_, ty, a, _))| vec![i.to_string(), s("aGk="), s("q?"), py_list_repr(a), s(ty)])
        .collect();
    write_tsv(
        &tsv,
        &["index", "image", "question", "answer", "category"],
        &rows,
    );
    let pq = dir.join("test-00000-of-00001.parquet");
    write_parquet(
        &pq,
        "message schema { optional binary dataset (STRING); optional binary question (STRING); optional binary question_type (STRING); optional group answer (LIST) { repeated group list { optional binary element (STRING); } } }",
        vec![
            Col::Str(items.iter().map(|i| s(i.0)).collect()),
            Col::Str(vec![s("q?"); 3]),
            Col::Str(items.iter().map(|i| s(i.1)).collect()),
            Col::StrList(items.iter().map(|i| i.2.clone()).collect()),
        ],
    );
    let preds: Vec<&str> = items.iter().map(|i| i.3).collect();
    let pj = dir.join("p.jsonl");
    jsonl(
        &pj,
        &preds
            .iter()
            .enumerate()
            .map(|(i, p)| (serde_json::json!(i), *p))
            .collect::<Vec<_>>(),
    );
    let ps = dir.join("samples_ocrbench.jsonl");
    samples(&ps, &preds);

    for (ann, pred) in [(&json, &pj), (&json, &results), (&tsv, &pj), (&pq, &ps)] {
        let r = run(Task::OcrBench, "lmms-eval", &[ann.clone()], pred);
        assert_eq!(scores(&r), vec![1.0, 0.0, 1.0], "{}", ann.display());
        assert_eq!(r.toolkit.value, 0.002);
        let o = run(Task::OcrBench, "official", &[ann.clone()], pred);
        assert_eq!(scores(&o), vec![1.0, 0.0, 0.0]);
        assert_eq!(o.toolkit.value, 1.0);
        assert_eq!(
            scores(&run(
                Task::OcrBench,
                "lmms-eval<=v0.7.1",
                &[ann.clone()],
                pred
            )),
            vec![1.0, 1.0, 0.0]
        );
        assert_eq!(
            scores(&run(Task::OcrBench, "vlmevalkit", &[ann.clone()], pred)),
            vec![1.0, 0.0, 0.0]
        );
    }
}
