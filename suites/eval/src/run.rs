//! The evaluation loop: for each question, image → tower features (penultimate block, patch
//! tokens) → projector → spliced into the prompt's embeddings at `<image>` → greedy decoding;
//! then the predictions are made into JSONL, read back with `ovbench score`'s reader and
//! scored with the task's scorer; the caller writes that JSONL beside the record.

use crate::cache::{self, Entry, ResponseCache};
use crate::data::{self, Dataset, Item};
use crate::error::{CandleCtx, EvalError, Result};
use crate::llm::Llm;
use crate::openclip::{self, TowerOptions, VisionTower};
use crate::preprocess::{self, Preprocess, Resample};
use crate::projector::Projector;
use crate::prompt::{BosMode, Conv, PromptStyle, TaskConfig, IMAGE_PLACEHOLDER};
use crate::record::{
    CacheInfo, Counts, DataInfo, EvalMemory, EvalRecord, EvalTiming, HashedFile, ItemLine,
    LlmShape, ModelInfo, ProjectorShape, Throughput,
};
use candle_core::{DType, Device, Tensor};
use ovbench_harness::progress::Progress;
use ovbench_score::{Compat, MatchPolicy, Report, Task};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `ovbench eval` takes.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub task: Task,
    pub data: PathBuf,
    pub images: Option<PathBuf>,
    pub encoder: PathBuf,
    pub tower: TowerOptions,
    pub projector: PathBuf,
    pub llm: PathBuf,
    pub limit: Option<usize>,
    pub style: PromptStyle,
    pub ocr: bool,
    /// `None`: Llama-3 headers when the tokenizer has them, else `vicuna_v1`.
    pub conv: Option<Conv>,
    pub max_new_tokens: Option<usize>,
    /// BOS tokens of the Llama-3 prompt (`--bos`).
    pub bos: BosMode,
    /// Stop at the task's `until` strings (lmms-eval's LLaVA adapter does not).
    pub apply_until: bool,
    pub resample: Resample,
    /// Where to write per-item prompt ids, tokens, logit gaps and pixels (`--trace`).
    pub trace: Option<PathBuf>,
    pub select_layer: i64,
    pub pad_to_square: bool,
    pub compat: Compat,
    /// Where the predictions JSONL goes.
    pub predictions: PathBuf,
    /// `None`: no response cache (`--no-cache`).
    pub cache: Option<PathBuf>,
    pub kv_cache: bool,
    pub llm_dtype: DType,
    pub device: Device,
    /// Test hook: exit the process (code 3) right after this many newly computed items,
    /// as a kill would (`OVBENCH_EVAL_EXIT_AFTER`).
    pub exit_after: Option<usize>,
}

/// One evaluated question.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    pub id: String,
    pub prediction: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop: String,
    pub cached: bool,
    pub encode_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
}

pub struct Outcome {
    /// The record body (wrap it in `ovbench_harness::Record`).
    pub body: EvalRecord,
    /// The predictions JSONL for `EvalOptions::predictions`, not yet written: the caller
    /// commits it together with the record (both or neither).
    pub predictions_jsonl: String,
    pub report: Report,
    pub items: Vec<ItemResult>,
    pub computed: usize,
    pub cached: usize,
}

/// The loaded model: tower, projector, LLM.
pub struct Model {
    pub tower: VisionTower,
    pub projector: Projector,
    pub llm: Llm,
}

impl Model {
    pub fn load(o: &EvalOptions) -> Result<Model> {
        let tower = openclip::load(&o.encoder, &o.tower, &o.device)?;
        let llm = Llm::load(&o.llm, o.llm_dtype, &o.device)?;
        let projector =
            Projector::load(&o.projector, tower.cfg.width, llm.hidden_size(), &o.device)?;
        Ok(Model {
            tower,
            projector,
            llm,
        })
    }

    /// Prompt token ids before and after the image, as LLaVA's `tokenizer_image_token`
    /// makes them: each chunk tokenised on its own (with the tokenizer's special tokens);
    /// when the first chunk starts with the tokenizer's BOS, the first token of the second
    /// chunk is dropped (whatever it is, as the reference does).
    pub fn prompt_ids(&self, rendered: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let chunks: Vec<&str> = rendered.split(IMAGE_PLACEHOLDER).collect();
        if chunks.len() != 2 {
            return Err(EvalError::Usage(format!(
                "the prompt must hold exactly one {IMAGE_PLACEHOLDER}, it holds {}",
                chunks.len() - 1
            )));
        }
        let before = self.llm.encode(chunks[0], true)?;
        let mut after = self.llm.encode(chunks[1], true)?;
        let offset = usize::from(before.first().is_some_and(|&t| Some(t) == self.llm.bos));
        after.drain(..offset.min(after.len()));
        Ok((before, after))
    }

    /// The rendered prompt for one question's user text.
    pub fn render(&self, tc: &TaskConfig, user: &str, bos: BosMode) -> Result<String> {
        let bos_text = match (tc.conv, bos) {
            (Conv::Llama3, BosMode::Llava) => Some(self.llm.bos_token.as_deref().ok_or_else(|| {
                EvalError::Usage(format!(
                    "{}: the tokenizer has no bos_token for the llama_3 chat template (use --bos single)",
                    self.llm.dir.display()
                ))
            })?),
            _ => None,
        };
        Ok(tc.conv.render(user, bos_text))
    }

    /// Image features in the LLM's embedding space: (1, N, H).
    pub fn image_embeddings(&self, pixels: &Tensor, select_layer: i64) -> Result<Tensor> {
        let f = self.tower.features(pixels, select_layer)?;
        self.projector.forward(&f)
    }
}

fn sha256_bytes(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

fn hash_file(path: &Path) -> Result<String> {
    Ok(ovbench_harness::record::sha256_file(path)?)
}

/// Runs the evaluation.
/// [`run_with`] reporting no progress.
pub fn run(o: &EvalOptions) -> Result<Outcome> {
    run_with(o, &mut ovbench_harness::progress::Silent)
}

/// Evaluates every item of the task, reporting one unit of `progress` per question.
pub fn run_with(o: &EvalOptions, progress: &mut dyn Progress) -> Result<Outcome> {
    let start_mem = ovbench_harness::alloc::snapshot();
    ovbench_harness::alloc::reset_peak();
    let t_start = Instant::now();
    let ds: Dataset = data::load(o.task, &o.data, o.images.as_deref())?;
    let n_total = ds.items.len();
    let items: Vec<&Item> = ds
        .items
        .iter()
        .take(o.limit.unwrap_or(usize::MAX))
        .collect();

    let t_load = Instant::now();
    let model = Model::load(o)?;
    let load_s = t_load.elapsed().as_secs_f64();

    let conv = o.conv.unwrap_or_else(|| {
        if model.llm.token_id("<|start_header_id|>").is_some() {
            Conv::Llama3
        } else {
            Conv::VicunaV1
        }
    });
    crate::llm_config::check_llava_fields(
        &model.llm.config_file,
        &model.llm.settings.raw,
        o.select_layer,
        o.pad_to_square,
    )?;
    if !o.pad_to_square && model.tower.cfg.resize_mode != "squash" {
        return Err(EvalError::Config {
            path: model.tower.cfg.config_file.clone().unwrap_or_default(),
            field: "preprocess_cfg.resize_mode".into(),
            msg: format!(
                "'{}' with --no-pad: only squash is implemented for unpadded images",
                model.tower.cfg.resize_mode
            ),
        });
    }
    let mut tc = TaskConfig::new(o.task, o.style, o.ocr, conv, o.apply_until);
    if let Some(m) = o.max_new_tokens {
        tc.max_new_tokens = m;
    }
    let pre = Preprocess {
        size: model.tower.cfg.image_size,
        mean: model.tower.cfg.mean,
        std: model.tower.cfg.std,
        pad_fill: model.tower.cfg.pad_fill,
        interpolation: model.tower.cfg.interpolation.clone(),
        pad_to_square: o.pad_to_square,
        resample: o.resample,
        jpeg_decoder: ovbench_jpeg::DECODER,
    };
    // Generation stops at the model's EOS ids only, as transformers' `generate` does with
    // the generation config (lmms-eval's LLaVA adapter passes no template stop tokens).
    let stop_tokens: Vec<u32> = Vec::new();

    // Hashes of every weight file and of the configuration that decides the answers.
    let t_hash = Instant::now();
    let hashed = |role: &str, path: &Path| -> Result<HashedFile> {
        Ok(HashedFile {
            role: role.into(),
            path: path.to_path_buf(),
            sha256: hash_file(path)?,
        })
    };
    let mut weights = vec![hashed("encoder", &o.encoder)?];
    if let Some(c) = &model.tower.cfg.config_file {
        weights.push(hashed("encoder-config", c)?);
    }
    weights.push(hashed("projector", &o.projector)?);
    for f in &model.llm.weight_files {
        weights.push(hashed("llm", f)?);
    }
    weights.push(hashed("llm-config", &model.llm.config_file)?);
    weights.push(hashed("tokenizer", &model.llm.tokenizer_file)?);
    for (role, name) in [
        ("generation-config", "generation_config.json"),
        ("tokenizer-config", "tokenizer_config.json"),
        ("special-tokens-map", "special_tokens_map.json"),
    ] {
        let p = model.llm.dir.join(name);
        if p.exists() {
            weights.push(hashed(role, &p)?);
        }
    }
    let task_config = json!({
        "task": tc,
        "preprocess": pre,
        "select_layer": o.select_layer,
        "select_feature": "patch",
        "vision_gelu": format!("{:?}", o.tower.gelu).to_lowercase(),
        "vision_heads": model.tower.cfg.heads,
        "llm_dtype": format!("{:?}", o.llm_dtype).to_lowercase(),
        "decoding": "greedy",
        "bos": o.bos,
        "bos_token": {"id": model.llm.bos, "text": model.llm.bos_token, "source": model.llm.bos_source},
        "eos_token_ids": {"ids": model.llm.eos, "source": model.llm.eos_source},
        "llm_config": model.llm.settings.read,
        "llm_config_ignored": model.llm.settings.ignored,
    });
    let task_config_sha256 = sha256_bytes(task_config.to_string().as_bytes());
    let weight_hashes: Vec<&str> = weights.iter().map(|w| w.sha256.as_str()).collect();
    let run_key =
        sha256_bytes(format!("{}\n{}", weight_hashes.join("\n"), task_config_sha256).as_bytes());
    let hash_s = t_hash.elapsed().as_secs_f64();

    let mut trace = match &o.trace {
        Some(d) => Some(Trace::open(d)?),
        None => None,
    };
    let mut cache = match &o.cache {
        Some(p) => Some(ResponseCache::open(p)?),
        None => None,
    };
    progress.begin(o.task.name(), items.len() as u64);
    let (mut encode_s, mut prefill_s, mut decode_s, mut cache_s) = (0.0, 0.0, 0.0, 0.0);
    let (mut new_tokens, mut prompt_tokens) = (0usize, 0usize);
    let (mut computed, mut from_cache) = (0usize, 0usize);
    let mut results = Vec::with_capacity(items.len());
    let t_loop = Instant::now();
    for item in &items {
        let tc0 = Instant::now();
        let key = match &cache {
            Some(_) => cache::item_key(&run_key, &item.id),
            None => String::new(),
        };
        let hit = cache.as_ref().and_then(|c| c.get(&key)).cloned();
        cache_s += tc0.elapsed().as_secs_f64();
        if let Some(e) = hit {
            from_cache += 1;
            results.push(ItemResult {
                id: e.id,
                prediction: e.prediction,
                tokens: e.tokens,
                prompt_tokens: e.prompt_tokens,
                stop: e.stop,
                cached: true,
                encode_s: e.encode_s,
                prefill_s: e.prefill_s,
                decode_s: e.decode_s,
            });
            progress.advance("from the response cache");
            continue;
        }
        let (r, detail) =
            eval_item(&model, item, &tc, &pre, &stop_tokens, o).map_err(|e| match e {
                EvalError::NonFinite { what, .. } => EvalError::NonFinite {
                    item: format!("{} (question '{}')", item.loc, item.id),
                    what,
                },
                e => e,
            })?;
        if let Some(t) = trace.as_mut() {
            t.write(results.len(), &r, detail)?;
        }
        encode_s += r.encode_s;
        prefill_s += r.prefill_s;
        decode_s += r.decode_s;
        new_tokens += r.tokens.len();
        prompt_tokens += r.prompt_tokens;
        computed += 1;
        if let Some(c) = cache.as_mut() {
            let tc1 = Instant::now();
            c.append(Entry {
                key,
                id: r.id.clone(),
                prediction: r.prediction.clone(),
                tokens: r.tokens.clone(),
                prompt_tokens: r.prompt_tokens,
                stop: r.stop.clone(),
                encode_s: r.encode_s,
                prefill_s: r.prefill_s,
                decode_s: r.decode_s,
            })?;
            cache_s += tc1.elapsed().as_secs_f64();
        }
        results.push(r);
        progress.advance("answered");
        if o.exit_after == Some(computed) {
            std::process::exit(3);
        }
    }
    progress.end();
    let loop_s = t_loop.elapsed().as_secs_f64();

    // Predictions, in dataset order, in the plain JSONL `ovbench score` reads.
    let mut jsonl = String::new();
    for r in &results {
        jsonl.push_str(&json!({"question_id": r.id, "prediction": r.prediction}).to_string());
        jsonl.push('\n');
    }
    // Scored from memory by the very reader `ovbench score` uses on the file.
    let preds = ovbench_score::readers::parse_predictions_jsonl(&o.predictions, &jsonl)?;
    let report = ovbench_score::score(
        o.task,
        o.compat,
        &ds.annotations,
        &preds,
        MatchPolicy::default(),
    )?;
    let end_mem = ovbench_harness::alloc::snapshot();
    let total_s = t_start.elapsed().as_secs_f64();

    let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let body = EvalRecord {
        task: o.task.name().into(),
        compat: o.compat.label().into(),
        data: DataInfo {
            path: o.data.clone(),
            format: ds.format.to_string(),
            questions: n_total,
            evaluated: items.len(),
            annotation_sha256: ds
                .annotations
                .files
                .iter()
                .map(|f| hash_file(f))
                .collect::<Result<Vec<_>>>()?,
        },
        weights,
        task_config,
        task_config_sha256,
        run_key,
        model: ModelInfo {
            vision: serde_json::to_value(&model.tower.cfg).expect("configs serialise"),
            llm: LlmShape {
                hidden_size: model.llm.config.hidden_size,
                layers: model.llm.config.num_hidden_layers,
                vocab_size: model.llm.config.vocab_size,
                heads: model.llm.config.num_attention_heads,
                kv_heads: model.llm.config.num_key_value_heads,
            },
            projector: ProjectorShape {
                kind: "mlp2x_gelu".into(),
                in_dim: model.projector.in_dim,
                out_dim: model.projector.out_dim,
            },
            device: format!("{:?}", o.device),
        },
        predictions: o.predictions.clone(),
        cache: CacheInfo {
            path: o.cache.clone(),
            enabled: o.cache.is_some(),
            kv_cache: o.kv_cache,
            loaded_entries: cache.as_ref().map(|c| c.loaded),
            dropped_partial_line: cache.as_ref().map(|c| c.dropped_partial),
            bookkeeping_s: cache_s,
        },
        counts: Counts {
            computed,
            from_cache,
        },
        timing_s: EvalTiming {
            total: total_s,
            load_models: load_s,
            hash_files: hash_s,
            r#loop: loop_s,
            image_encoding: encode_s,
            prefill: prefill_s,
            decode: decode_s,
            cache_bookkeeping: cache_s,
        },
        throughput: Throughput {
            new_tokens,
            prompt_tokens,
            decode_tokens_per_s: per_s(new_tokens, decode_s),
            prefill_tokens_per_s: per_s(prompt_tokens, prefill_s),
            items_per_s: per_s(computed, loop_s),
        },
        memory: EvalMemory {
            allocator_active: ovbench_harness::alloc::is_active(),
            peak_bytes_over_start: end_mem.peak_bytes.saturating_sub(start_mem.current_bytes),
            peak_rss_bytes: peak_rss(),
        },
        report: (&report).into(),
        items: results
            .iter()
            .map(|r| ItemLine {
                id: r.id.clone(),
                prompt_tokens: r.prompt_tokens,
                new_tokens: r.tokens.len(),
                stop: r.stop.clone(),
                cached: r.cached,
                encode_s: r.encode_s,
                prefill_s: r.prefill_s,
                decode_s: r.decode_s,
            })
            .collect(),
    };
    Ok(Outcome {
        body,
        predictions_jsonl: jsonl,
        report,
        items: results,
        computed,
        cached: from_cache,
    })
}

fn eval_item(
    model: &Model,
    item: &Item,
    tc: &TaskConfig,
    pre: &Preprocess,
    stop_tokens: &[u32],
    o: &EvalOptions,
) -> Result<(ItemResult, TraceDetail)> {
    let t0 = Instant::now();
    let bytes = item.image.bytes(&item.loc)?;
    let img = preprocess::decode(&bytes).map_err(|msg| EvalError::Dataset {
        loc: item.loc.clone(),
        msg,
    })?;
    pre.check(&img).map_err(|msg| EvalError::Dataset {
        loc: item.loc.clone(),
        msg,
    })?;
    let pixels = pre.pixels(&img, &model.tower.device)?;
    let pixel_values: Vec<f32> = if o.trace.is_some() {
        pixels
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .ctx(|| "pixels".into())?
    } else {
        Vec::new()
    };
    let image_emb = model.image_embeddings(&pixels, o.select_layer)?;
    let finite = image_emb
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .ctx(|| "image features".into())?
        .iter()
        .all(|x| x.is_finite());
    if !finite {
        return Err(EvalError::NonFinite {
            item: String::new(),
            what: "image features (vision tower and projector)".into(),
        });
    }
    let encode_s = t0.elapsed().as_secs_f64();
    let user = tc.user_text(&item.question, item.ocr_tokens.as_deref());
    let rendered = model.render(tc, &user, o.bos)?;
    let (ids_before, ids_after) = model.prompt_ids(&rendered)?;
    let ctx = || format!("{}: building the prompt", item.loc);
    let before = model.llm.embed(&ids_before)?;
    let after = model.llm.embed(&ids_after)?;
    let image_tokens = image_emb.dim(1).ctx(ctx)?;
    let prompt = Tensor::cat(
        &[
            &before,
            &image_emb.to_dtype(before.dtype()).ctx(ctx)?,
            &after,
        ],
        1,
    )
    .ctx(ctx)?;
    let g = model.llm.generate(
        &prompt,
        tc.max_new_tokens,
        stop_tokens,
        &tc.stop_strings,
        o.kv_cache,
    )?;
    let detail = TraceDetail {
        rendered,
        ids_before,
        ids_after,
        image_tokens,
        top2_gaps: g.top2_gaps.clone(),
        raw_text: g.text.clone(),
        pixels: pixel_values,
    };
    Ok((
        ItemResult {
            id: item.id.clone(),
            prediction: ovbench_score::py::strip(&g.text).to_string(),
            tokens: g.tokens,
            prompt_tokens: g.prompt_tokens,
            stop: g.stop.into(),
            cached: false,
            encode_s,
            prefill_s: g.prefill_s,
            decode_s: g.decode_s,
        },
        detail,
    ))
}

/// What the trace keeps of one item beyond its result.
pub struct TraceDetail {
    pub rendered: String,
    pub ids_before: Vec<u32>,
    pub ids_after: Vec<u32>,
    pub image_tokens: usize,
    pub top2_gaps: Vec<f32>,
    pub raw_text: String,
    pub pixels: Vec<f32>,
}

/// `--trace DIR`: `DIR/items.jsonl` (one line per computed item: index, id, rendered
/// prompt, prompt ids around the image, generated ids, per-step top-2 logit gaps, text) and
/// `DIR/pixels-<index>.f32` (the tower's input, little-endian f32, 3 x S x S). For the
/// reference check (scripts/eval-reference.sh).
struct Trace {
    dir: PathBuf,
    lines: String,
}

impl Trace {
    fn open(dir: &Path) -> Result<Trace> {
        std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
        Ok(Trace {
            dir: dir.into(),
            lines: String::new(),
        })
    }

    fn write(&mut self, index: usize, r: &ItemResult, d: TraceDetail) -> Result<()> {
        let px = self.dir.join(format!("pixels-{index}.f32"));
        let bytes: Vec<u8> = d.pixels.iter().flat_map(|x| x.to_le_bytes()).collect();
        ovbench_harness::write_atomic(&px, &bytes)?;
        self.lines.push_str(
            &json!({"index": index, "id": r.id, "rendered": d.rendered, "ids_before": d.ids_before,
                    "ids_after": d.ids_after, "image_tokens": d.image_tokens, "tokens": r.tokens,
                    "top2_gaps": d.top2_gaps, "text": d.raw_text, "prediction": r.prediction,
                    "stop": r.stop})
            .to_string(),
        );
        self.lines.push('\n');
        let p = self.dir.join("items.jsonl");
        ovbench_harness::write_atomic(&p, self.lines.as_bytes())?;
        Ok(())
    }
}

/// Kernel high-water mark of resident memory (Linux), if readable.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
