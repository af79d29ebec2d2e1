//! One fuzz target per input reader: the file name the input is written as (readers tell
//! formats by extension), the tokens its format is made of, its seeds (valid files made by
//! the project's own fixture writers), and what runs on each input.

use anyhow::{Context, Result};
use ovbench_eval::fixture;
use ovbench_gate::{GateConfig, LoadedRecord};
use ovbench_score::readers::{self, ReadOptions};
use ovbench_score::{Annotations, MatchPolicy, Task};
use serde_json::json;
use std::path::{Path, PathBuf};

#[path = "../../suites/score/tests/common/mod.rs"]
mod score_fixtures;

pub struct Target {
    pub name: &'static str,
    /// What is fuzzed, for the report.
    pub reader: &'static str,
    /// The name each input is written as.
    pub file: &'static str,
    pub tokens: &'static [&'static str],
}

const JSON_TOKENS: &[&str] = &[
    "\"question_id\"",
    "\"question\"",
    "\"answers\"",
    "\"data\"",
    "\"prediction\"",
    "\"doc_id\"",
    "\"filtered_resps\"",
    "\"doc\"",
    "\"submission\"",
    "\"input\"",
    "\"predict\"",
    "\"type\"",
    "\"dataset_name\"",
    "\"imgname\"",
    "\"query\"",
    "\"label\"",
    "\"image_id\"",
    "\"id\"",
    ",",
    ":",
    "{",
    "}",
    "[",
    "]",
    "\"Handwritten Mathematical Expression Recognition\"",
    "\"Regular Text Recognition\"",
    "\"HME100k\"",
];
const TSV_TOKENS: &[&str] = &[
    "\t",
    "\n",
    "\r\n",
    "\"",
    "\"\"",
    "index",
    "question",
    "answer",
    "prediction",
    "category",
    "split",
    "image",
    "test_human",
    "test_augmented",
    "['a', 'b']",
    "[\"x\"]",
    "nan",
    "NA",
    "None",
    "#N/A",
    "u'x'",
    "'''",
    "[1, 2]",
    "(1,)",
];
const BINARY_TOKENS: &[&str] = &[
    "PAR1",
    "PK\u{3}\u{4}",
    "\u{0}\u{0}\u{0}\u{0}",
    "\u{ff}\u{ff}\u{ff}\u{ff}",
];
const RECORD_TOKENS: &[&str] = &[
    "\"schema\"",
    "\"ovbench.step/3\"",
    "\"ovbench.score/2\"",
    "\"ovbench.eval/1\"",
    "\"ovbench.step/99\"",
    "\"metrics\"",
    "\"value\"",
    "\"samples\"",
    "\"name\"",
    "\"unit\"",
    "\"direction\"",
    "\"workload\"",
    "\"hardware\"",
    "\"provenance\"",
    "\"conditions\"",
    "\"lower\"",
    "\"higher\"",
    "\"s\"",
    "\"bytes\"",
    "-1e-300",
    "1e300",
];
const TOML_TOKENS: &[&str] = &[
    "[defaults]",
    "[metrics.\"*\"]",
    "threshold",
    "tolerance",
    "abs_tolerance",
    "min_samples",
    "skip",
    "=",
    "\n",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "\"\"\"",
    "'''",
    "true",
    "[[a]]",
    "0x7fffffffffffffff",
    "1979-05-27T07:32:00Z",
];
const CONFIG_TOKENS: &[&str] = &[
    "\"hidden_size\"",
    "\"num_attention_heads\"",
    "\"num_key_value_heads\"",
    "\"head_dim\"",
    "\"rope_scaling\"",
    "\"rope_theta\"",
    "\"rope_type\"",
    "\"llama3\"",
    "\"factor\"",
    "\"vocab_size\"",
    "\"max_position_embeddings\"",
    "\"eos_token_id\"",
    "\"bos_token_id\"",
    "\"tie_word_embeddings\"",
    "\"rms_norm_eps\"",
    "\"vision_cfg\"",
    "\"model_cfg\"",
    "\"head_width\"",
    "\"width\"",
    "\"layers\"",
    "\"patch_size\"",
    "\"image_size\"",
    "\"preprocess_cfg\"",
    "\"mean\"",
    "\"std\"",
    "\"resize_mode\"",
    "\"interpolation\"",
    "\"norm_kwargs\"",
    "\"eps\"",
    "\"mm_vision_select_layer\"",
    "\"image_aspect_ratio\"",
];
const TOKENIZER_TOKENS: &[&str] = &[
    "\"model\"",
    "\"type\"",
    "\"BPE\"",
    "\"WordPiece\"",
    "\"Unigram\"",
    "\"WordLevel\"",
    "\"vocab\"",
    "\"merges\"",
    "\"added_tokens\"",
    "\"normalizer\"",
    "\"pre_tokenizer\"",
    "\"decoder\"",
    "\"post_processor\"",
    "\"ByteLevel\"",
    "\"Sequence\"",
    "\"Split\"",
    "\"pattern\"",
    "\"Regex\"",
    "\"(a+)+$\"",
    "\"(?<=x)\"",
    "\"\\\\p{L}\"",
    "\"TemplateProcessing\"",
    "\"special_tokens\"",
    "\"unk_token\"",
    "\"content\"",
    "\"id\"",
];
const CACHE_TOKENS: &[&str] = &[
    "\"key\"",
    "\"id\"",
    "\"prediction\"",
    "\"tokens\"",
    "\"prompt_tokens\"",
    "\"stop\"",
    "\"encode_s\"",
    "\"prefill_s\"",
    "\"decode_s\"",
    "\n",
];
const IMAGE_TOKENS: &[&str] = &[
    "\u{89}PNG\r\n\u{1a}\n",
    "IHDR",
    "IDAT",
    "IEND",
    "PLTE",
    "tRNS",
    "\u{ff}\u{d8}\u{ff}",
    "\u{ff}\u{c0}",
    "\u{ff}\u{c4}",
    "\u{ff}\u{da}",
    "\u{ff}\u{d9}",
    "\u{0}\u{0}\u{ff}\u{ff}",
    "\u{7f}\u{ff}\u{ff}\u{ff}",
];
const WEIGHT_TOKENS: &[&str] = &[
    "\"dtype\"",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"I64\"",
    "\"shape\"",
    "\"data_offsets\"",
    "\"__metadata__\"",
    "archive/data.pkl",
    "archive/data/0",
    "PK\u{3}\u{4}",
    "PK\u{1}\u{2}",
    "PK\u{5}\u{6}",
    "\u{80}\u{2}",
    "ctorch._utils\n_rebuild_tensor_v2",
];

pub const TARGETS: &[Target] = &[
    Target {
        name: "textvqa-json",
        reader: "score/eval annotations: TextVQA_0.5.1_val.json",
        file: "TextVQA_0.5.1_val.json",
        tokens: JSON_TOKENS,
    },
    Target {
        name: "chartqa-json",
        reader: "score/eval annotations: ChartQA test_human.json",
        file: "test_human.json",
        tokens: JSON_TOKENS,
    },
    Target {
        name: "ocrbench-json",
        reader: "score/eval annotations: OCRBench.json",
        file: "OCRBench.json",
        tokens: JSON_TOKENS,
    },
    Target {
        name: "vlmevalkit-tsv",
        reader: "score/eval annotations: VLMEvalKit .tsv (all three tasks, images decoded)",
        file: "data.tsv",
        tokens: TSV_TOKENS,
    },
    Target {
        name: "lmms-parquet",
        reader: "score/eval annotations: lmms-eval .parquet (all three tasks)",
        file: "validation-00000-of-00001.parquet",
        tokens: BINARY_TOKENS,
    },
    Target {
        name: "predictions-jsonl",
        reader: "score predictions: JSONL and lmms-eval logs, scored under every TextVQA label",
        file: "predictions.jsonl",
        tokens: JSON_TOKENS,
    },
    Target {
        name: "predictions-tsv",
        reader: "score predictions: VLMEvalKit .tsv, scored under every ChartQA label",
        file: "predictions.tsv",
        tokens: TSV_TOKENS,
    },
    Target {
        name: "predictions-xlsx",
        reader: "score predictions: VLMEvalKit .xlsx, scored under every ChartQA label",
        file: "predictions.xlsx",
        tokens: BINARY_TOKENS,
    },
    Target {
        name: "ocrbench-results-json",
        reader:
            "score predictions: official OCRBench result .json, scored under every OCRBench label",
        file: "results.json",
        tokens: JSON_TOKENS,
    },
    Target {
        name: "record",
        reader: "records: envelope and legacy reader, then gate, compare and check on it",
        file: "record.json",
        tokens: RECORD_TOKENS,
    },
    Target {
        name: "gate-config",
        reader: "gate --config TOML, then a gate under it",
        file: "gate.toml",
        tokens: TOML_TOKENS,
    },
    Target {
        name: "llm-config",
        reader: "eval: the LLM's config.json",
        file: "config.json",
        tokens: CONFIG_TOKENS,
    },
    Target {
        name: "openclip-config",
        reader: "eval: open_clip_config.json",
        file: "open_clip_config.json",
        tokens: CONFIG_TOKENS,
    },
    Target {
        name: "tokenizer",
        reader: "eval: tokenizer.json, then an encode and a decode",
        file: "tokenizer.json",
        tokens: TOKENIZER_TOKENS,
    },
    Target {
        name: "eval-cache",
        reader: "eval: the response cache (JSONL)",
        file: "cache.jsonl",
        tokens: CACHE_TOKENS,
    },
    Target {
        name: "image",
        reader: "eval: image files (PNG, JPEG), decoded and preprocessed",
        file: "image.bin",
        tokens: IMAGE_TOKENS,
    },
    Target {
        name: "weights",
        reader: "eval: weight files (safetensors, PyTorch zip)",
        file: "weights.bin",
        tokens: WEIGHT_TOKENS,
    },
];

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// What the targets check inputs against: annotations to score predictions on, a record to
/// gate against, the tiny models' files.
pub struct Ctx {
    pub dir: tempfile::TempDir,
    textvqa: Annotations,
    chartqa: Annotations,
    ocrbench: Annotations,
    baseline: Option<LoadedRecord>,
    models: fixture::TinyModels,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| p.display().to_string())
}

impl Ctx {
    pub fn new() -> Result<Ctx> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let models = fixture::write_models(&d.join("models"), 1)?;
        let ann = |task: Task, format: &str| -> Result<Annotations> {
            let rows = fixture::rows(task, 4, 3);
            let p = fixture::write_dataset(
                &d.join(format!("{}-{format}", task.name())),
                task,
                format,
                &rows,
            )?;
            Ok(readers::read_annotations(
                task,
                &[p],
                &ReadOptions::default(),
            )?)
        };
        let textvqa = ann(Task::TextVqa, "json")?;
        let chartqa = ann(Task::ChartQa, "tsv")?;
        let ocrbench = ann(Task::OcrBench, "json")?;
        let baseline = record_files()
            .iter()
            .find_map(|p| LoadedRecord::load(p).ok());
        Ok(Ctx {
            dir,
            textvqa,
            chartqa,
            ocrbench,
            baseline,
            models,
        })
    }
}

/// Records in the repository's results/ folder (seeds for the record target).
fn record_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut es: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        es.sort();
        for p in es {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json")
                && std::fs::metadata(&p).is_ok_and(|m| m.len() < 200_000)
            {
                out.push(p);
            }
        }
    }
    out.sort();
    // A spread of kinds, not fifty step records.
    let mut picked: Vec<PathBuf> = Vec::new();
    for p in out {
        let stem: String = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .chars()
            .take(8)
            .collect();
        let parent = p.parent().map(Path::to_path_buf);
        if picked
            .iter()
            .filter(|q| {
                q.parent().map(Path::to_path_buf) == parent
                    || q.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .starts_with(&stem)
            })
            .count()
            < 2
        {
            picked.push(p);
        }
    }
    picked.truncate(24);
    picked
}

fn lines(v: impl IntoIterator<Item = serde_json::Value>) -> Vec<u8> {
    v.into_iter()
        .map(|x| x.to_string() + "\n")
        .collect::<String>()
        .into_bytes()
}

/// Valid inputs for `t`, made by the project's own writers.
pub fn seeds(t: &Target, ctx: &Ctx) -> Result<Vec<Vec<u8>>> {
    let d = ctx.dir.path().join("seeds").join(t.name);
    std::fs::create_dir_all(&d)?;
    let mut out = Vec::new();
    let dataset = |task: Task, format: &str, n: usize, seed: u64| -> Result<PathBuf> {
        let rows = fixture::rows(task, n, seed);
        Ok(fixture::write_dataset(
            &d.join(format!("{}-{format}-{n}-{seed}", task.name())),
            task,
            format,
            &rows,
        )?)
    };
    match t.name {
        "textvqa-json" | "chartqa-json" | "ocrbench-json" => {
            let task = match t.name {
                "textvqa-json" => Task::TextVqa,
                "chartqa-json" => Task::ChartQa,
                _ => Task::OcrBench,
            };
            for (n, s) in [(1, 1), (3, 2), (6, 3)] {
                let p = dataset(task, "json", n, s)?;
                let file = if p.is_dir() {
                    std::fs::read_dir(&p)?
                        .flatten()
                        .map(|e| e.path())
                        .find(|f| {
                            f.extension().is_some_and(|e| e == "json")
                                && f.file_name()
                                    .unwrap_or_default()
                                    .to_string_lossy()
                                    .to_lowercase()
                                    .contains(if task == Task::ChartQa { "human" } else { "" })
                        })
                        .context("json inside")?
                } else {
                    p
                };
                out.push(read(&file)?);
            }
        }
        "vlmevalkit-tsv" => {
            for task in Task::ALL {
                for (n, s) in [(1, 1), (3, 2)] {
                    out.push(read(&dataset(task, "tsv", n, s)?)?);
                }
            }
        }
        "lmms-parquet" => {
            for task in Task::ALL {
                let p = dataset(task, "parquet", 2, 1)?;
                let file = if p.is_dir() {
                    std::fs::read_dir(&p)?
                        .flatten()
                        .map(|e| e.path())
                        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
                        .context("parquet inside")?
                } else {
                    p
                };
                out.push(read(&file)?);
            }
        }
        "predictions-jsonl" => {
            let a = &ctx.textvqa.items;
            out.push(lines(a.iter().map(|x| json!({"question_id": x.id.parse::<i64>().unwrap_or(0), "prediction": x.answers[0]}))));
            out.push(lines(a.iter().rev().map(|x| json!({"question_id": x.id, "prediction": format!(" {} ", x.answers[0].to_uppercase())}))));
            out.push(lines(a.iter().enumerate().map(|(i, x)| json!({"doc_id": i, "filtered_resps": [x.answers[0]], "input": format!("USER: {} ASSISTANT:", x.question.clone().unwrap_or_default()), "submission": {"question_id": x.id.parse::<i64>().unwrap_or(0), "answer": "x"}}))));
            out.push(lines(a.iter().enumerate().map(|(i, x)| json!({"doc_id": i, "filtered_resps": x.answers[0], "doc": {"question_id": x.id.parse::<i64>().unwrap_or(0), "question": x.question}}))));
        }
        "predictions-tsv" | "predictions-xlsx" => {
            let a = &ctx.chartqa.items;
            let rows: Vec<(i64, Vec<String>)> = a
                .iter()
                .map(|x| {
                    (
                        x.id.parse().unwrap_or(0),
                        vec![
                            x.question.clone().unwrap_or_default(),
                            x.answers[0].clone(),
                            format!("{}%", x.answers[0]),
                        ],
                    )
                })
                .collect();
            let header = ["index", "question", "answer", "prediction"];
            let p = d.join(t.file);
            if t.name == "predictions-tsv" {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|(i, c)| {
                        std::iter::once(i.to_string())
                            .chain(c.iter().cloned())
                            .collect()
                    })
                    .collect();
                score_fixtures::write_tsv(&p, &header, &cells);
                out.push(read(&p)?);
                let quoted: Vec<Vec<String>> = cells
                    .iter()
                    .map(|r| {
                        let mut r = r.clone();
                        r[3] = format!("two\nlines \"{}\"", r[3]);
                        r
                    })
                    .collect();
                score_fixtures::write_tsv(&p, &header, &quoted);
            } else {
                score_fixtures::write_xlsx(&p, &header, &rows);
            }
            out.push(read(&p)?);
        }
        "ocrbench-results-json" => {
            let v: Vec<serde_json::Value> = ctx
                .ocrbench
                .items
                .iter()
                .map(|x| json!({"dataset_name": x.dataset_name, "id": 0, "image_path": "a.png", "question": x.question, "answers": x.answers, "type": x.category, "predict": x.answers[0], "result": 1}))
                .collect();
            out.push(serde_json::to_vec_pretty(&v)?);
        }
        "record" => {
            // results/ also holds files that are not records (check reports, run tables).
            for p in record_files()
                .into_iter()
                .filter(|p| LoadedRecord::load(p).is_ok())
            {
                out.push(read(&p)?);
            }
        }
        "gate-config" => {
            out.push(include_bytes!("../../scripts/ci-gate.toml").to_vec());
            out.push(b"[defaults]\nthreshold = 0.05\ntolerance = 0.01\nmin_samples = 3\n\n[metrics.\"step/*\"]\nskip = true\n\n[metrics.\"memory/peak\"]\nabs_tolerance = 1048576\n".to_vec());
        }
        "llm-config" => {
            let c = fixture::llama_config(64);
            out.push(serde_json::to_vec_pretty(&c)?);
            let mut r = c.clone();
            r["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
            r["eos_token_id"] = json!([1, 2]);
            out.push(serde_json::to_vec(&r)?);
            let mut llava = c.clone();
            llava["mm_vision_select_layer"] = json!(-2);
            llava["image_aspect_ratio"] = json!("pad");
            llava["mm_projector_type"] = json!("mlp2x_gelu");
            out.push(serde_json::to_vec(&llava)?);
        }
        "openclip-config" => {
            out.push(serde_json::to_vec_pretty(&fixture::openclip_config())?);
        }
        "tokenizer" => {
            out.push(read(&ctx.models.llm.join("tokenizer.json"))?);
        }
        "eval-cache" => {
            let e = |k: &str| json!({"key": k, "id": "3", "prediction": "cat", "tokens": [5, 6], "prompt_tokens": 40, "stop": "eos", "encode_s": 0.1, "prefill_s": 0.2, "decode_s": 0.3});
            out.push(lines([e("a"), e("b")]));
            let mut partial = lines([e("a")]);
            partial.extend_from_slice(b"{\"key\": \"b\", \"id\"");
            out.push(partial);
        }
        "image" => {
            for task in Task::ALL {
                for r in fixture::rows(task, 2, 7) {
                    out.push(r.image);
                }
            }
        }
        "weights" => {
            // The projector: the smallest weight file of the tiny models, in both formats.
            let p = d.join("proj.safetensors");
            fixture::save_safetensors(&p, &fixture::projector_tensors(1))?;
            out.push(read(&p)?);
            out.push(read(&ctx.models.projector)?);
        }
        other => anyhow::bail!("no seeds for {other}"),
    }
    out.retain(|s| s.len() <= crate::engine::MAX_LEN);
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no seed within {} bytes",
        t.name,
        crate::engine::MAX_LEN
    );
    Ok(out)
}

fn score_all(task: Task, ann: &Annotations, path: &Path) -> Result<(), String> {
    let preds = readers::read_predictions(path).map_err(|e| e.to_string())?;
    let mut first_err = None;
    for &compat in task.compat_labels() {
        for policy in [
            MatchPolicy::default(),
            MatchPolicy {
                allow_duplicates: true,
                allow_unknown: true,
            },
        ] {
            match ovbench_score::score(task, compat, ann, &preds, policy) {
                Ok(r) => {
                    let _ = r.items_csv();
                }
                Err(e) => {
                    first_err.get_or_insert(e.to_string());
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `t` on the file at `path`: `Ok` when the input was accepted, `Err` with the message
/// when it was refused. A panic is a finding.
pub fn run(t: &Target, ctx: &Ctx, path: &Path) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    match t.name {
        "textvqa-json" => {
            readers::read_annotations(Task::TextVqa, &[path.into()], &ReadOptions::default())
                .map(drop)
                .map_err(|e| s(&e))
        }
        "chartqa-json" => {
            readers::read_annotations(Task::ChartQa, &[path.into()], &ReadOptions::default())
                .map(drop)
                .map_err(|e| s(&e))
        }
        "ocrbench-json" => {
            readers::read_annotations(Task::OcrBench, &[path.into()], &ReadOptions::default())
                .map(drop)
                .map_err(|e| s(&e))
        }
        "vlmevalkit-tsv" | "lmms-parquet" => {
            let mut res = Err(String::new());
            for task in Task::ALL {
                let opts = ReadOptions {
                    decode_images: t.name == "vlmevalkit-tsv",
                };
                match readers::read_annotations(task, &[path.into()], &opts) {
                    Ok(_) => res = Ok(()),
                    Err(e) if res.is_err() => res = Err(e.to_string()),
                    Err(_) => {}
                }
            }
            res
        }
        "predictions-jsonl" => score_all(Task::TextVqa, &ctx.textvqa, path),
        "predictions-tsv" | "predictions-xlsx" => score_all(Task::ChartQa, &ctx.chartqa, path),
        "ocrbench-results-json" => score_all(Task::OcrBench, &ctx.ocrbench, path),
        "record" => {
            let parsed = ovbench_harness::io::read_json(path).map_err(|e| e.to_string());
            let _ = ovbench_gate::check::check_value(path, parsed, &Default::default());
            let rec = LoadedRecord::load(path).map_err(|e| s(&e))?;
            let _ = ovbench_gate::compare::compare(std::slice::from_ref(&rec), &Default::default());
            let _ = ovbench_gate::gate(&rec, &rec, &GateConfig::default(), &[]);
            if let Some(b) = &ctx.baseline {
                let _ = ovbench_gate::gate(b, &rec, &GateConfig::default(), &[]);
            }
            Ok(())
        }
        "gate-config" => {
            let cfg = GateConfig::load(path).map_err(|e| s(&e))?;
            if let Some(b) = &ctx.baseline {
                let _ = ovbench_gate::gate(b, b, &cfg, &[]);
            }
            Ok(())
        }
        "llm-config" => {
            let text = ovbench_harness::io::read_text(path, ovbench_harness::io::limit::CONFIG)
                .map_err(|e| s(&e))?;
            ovbench_eval::llm_config::parse(path, &text)
                .map(drop)
                .map_err(|e| s(&e))
        }
        "openclip-config" => {
            let mut cfg = openclip_tower();
            ovbench_eval::openclip::apply_config(path, &mut cfg)
                .map(drop)
                .map_err(|e| s(&e))
        }
        "tokenizer" => {
            let tok = ovbench_eval::llm::load_tokenizer(path).map_err(|e| s(&e))?;
            let enc = tok
                .encode("What is 12.5%? <image>\nAnswer:", true)
                .map_err(|e| e.to_string())?;
            tok.decode(enc.get_ids(), true)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        "eval-cache" => ovbench_eval::cache::ResponseCache::open(path)
            .map(drop)
            .map_err(|e| s(&e)),
        "weights" => ovbench_eval::tensors::load(path)
            .map(drop)
            .map_err(|e| s(&e)),
        "image" => {
            let bytes = ovbench_harness::io::read_regular(path, ovbench_harness::io::limit::IMAGE)
                .map_err(|e| s(&e))?;
            let img = ovbench_eval::preprocess::decode(&bytes)?;
            for pad_to_square in [true, false] {
                let pre = ovbench_eval::preprocess::Preprocess {
                    size: 32,
                    mean: ovbench_eval::openclip::IMAGENET_MEAN,
                    std: ovbench_eval::openclip::IMAGENET_STD,
                    pad_fill: [123, 116, 103],
                    interpolation: "bicubic".into(),
                    pad_to_square,
                    resample: ovbench_eval::preprocess::Resample::Pil,
                    jpeg_decoder: ovbench_jpeg::DECODER,
                };
                pre.pixels(&img, &candle_core::Device::Cpu)
                    .map_err(|e| s(&e))?;
            }
            Ok(())
        }
        other => Err(format!("unknown target {other}")),
    }
}

/// The tiny tower's shape, for its config to be checked against.
fn openclip_tower() -> ovbench_eval::openclip::TowerConfig {
    let c = fixture::openclip_config();
    let v = &c["model_cfg"]["vision_cfg"];
    let u = |k: &str, d: u64| v[k].as_u64().unwrap_or(d) as usize;
    ovbench_eval::openclip::TowerConfig {
        width: u("width", 32),
        layers: u("layers", 2),
        heads: 0,
        mlp_dim: 4 * u("width", 32),
        patch: u("patch_size", 8),
        image_size: u("image_size", 32),
        mean: ovbench_eval::openclip::IMAGENET_MEAN,
        std: ovbench_eval::openclip::IMAGENET_STD,
        pad_fill: [0, 0, 0],
        interpolation: "bilinear".into(),
        resize_mode: "squash".into(),
        config_file: None,
        ignored_tensors: 0,
    }
}
