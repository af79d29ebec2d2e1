//! Tiny random-weight models and datasets in the real file layouts, for tests and for
//! `scripts/eval-tiny.sh` (hidden subcommand `ovbench eval-fixture`):
//!
//! - an OpenCLIP vision tower (`visual.*` names, with a stub text tower as in v1's full CLIP
//!   checkpoints) as safetensors and as a PyTorch zip checkpoint, plus `open_clip_config.json`;
//! - a LLaVA `mm_projector` (`model.mm_projector.{0,2}`), as a PyTorch zip checkpoint;
//! - a two-layer Llama directory (`config.json`, `model.safetensors`, a byte-level BPE
//!   `tokenizer.json` with Llama-3 special tokens);
//! - TextVQA, ChartQA and OCRBench in their original JSON (+ image folders), VLMEvalKit TSV
//!   and lmms-eval parquet layouts, with generated PNG / JPEG images.

use crate::error::{io, EvalError, Result};
use base64::Engine;
use candle_core::{DType, Device, Tensor};
use ovbench_score::Task;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Sizes of the tiny models.
pub const VISION_WIDTH: usize = 32;
pub const VISION_LAYERS: usize = 2;
pub const VISION_PATCH: usize = 8;
pub const VISION_SIZE: usize = 32;
pub const LLM_HIDDEN: usize = 64;
pub const LLM_LAYERS: usize = 2;

pub struct TinyModels {
    pub encoder: PathBuf,
    pub encoder_bin: PathBuf,
    pub projector: PathBuf,
    pub llm: PathBuf,
}

fn ferr(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Format {
        path: path.into(),
        msg: format!("writing fixture: {e}"),
    }
}

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], std: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // Box-Muller from the seeded generator.
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("shape matches")
}

fn ones(shape: &[usize], v: f32) -> Tensor {
    (Tensor::ones(shape, DType::F32, &Device::Cpu).expect("cpu") * v as f64).expect("cpu")
}

/// The OpenCLIP tensors of the tiny tower (names with the `visual.` prefix).
pub fn openclip_tensors(seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (d, p) = (VISION_WIDTH, VISION_PATCH);
    let n = (VISION_SIZE / p) * (VISION_SIZE / p) + 1;
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: Tensor| {
        t.insert(format!("visual.{k}"), v);
    };
    put("conv1.weight", randn(&mut rng, &[d, 3, p, p], 0.1));
    put("class_embedding", randn(&mut rng, &[d], 0.5));
    put("positional_embedding", randn(&mut rng, &[n, d], 0.5));
    for i in 0..VISION_LAYERS {
        let r = format!("transformer.resblocks.{i}");
        put(&format!("{r}.ln_1.weight"), ones(&[d], 1.0));
        put(&format!("{r}.ln_1.bias"), randn(&mut rng, &[d], 0.1));
        put(
            &format!("{r}.attn.in_proj_weight"),
            randn(&mut rng, &[3 * d, d], 0.2),
        );
        put(
            &format!("{r}.attn.in_proj_bias"),
            randn(&mut rng, &[3 * d], 0.1),
        );
        put(
            &format!("{r}.attn.out_proj.weight"),
            randn(&mut rng, &[d, d], 0.2),
        );
        put(
            &format!("{r}.attn.out_proj.bias"),
            randn(&mut rng, &[d], 0.1),
        );
        put(&format!("{r}.ln_2.weight"), ones(&[d], 1.0));
        put(&format!("{r}.ln_2.bias"), randn(&mut rng, &[d], 0.1));
        put(
            &format!("{r}.mlp.c_fc.weight"),
            randn(&mut rng, &[2 * d, d], 0.2),
        );
        put(
            &format!("{r}.mlp.c_fc.bias"),
            randn(&mut rng, &[2 * d], 0.1),
        );
        put(
            &format!("{r}.mlp.c_proj.weight"),
            randn(&mut rng, &[d, 2 * d], 0.2),
        );
        put(&format!("{r}.mlp.c_proj.bias"), randn(&mut rng, &[d], 0.1));
    }
    put("ln_post.weight", ones(&[d], 1.0));
    put("ln_post.bias", ones(&[d], 0.0));
    put("proj", randn(&mut rng, &[d, d], 0.2));
    // A stub text tower, as in v1's full CLIP checkpoints: ignored by the loader.
    t.insert(
        "token_embedding.weight".into(),
        randn(&mut rng, &[16, d], 0.2),
    );
    t.insert("logit_scale".into(), ones(&[], 2.6));
    t
}

pub fn openclip_config() -> serde_json::Value {
    json!({
        "model_cfg": {
            "embed_dim": VISION_WIDTH,
            "vision_cfg": {"image_size": VISION_SIZE, "layers": VISION_LAYERS, "width": VISION_WIDTH,
                           "head_width": VISION_WIDTH / 2, "patch_size": VISION_PATCH, "no_ln_pre": true,
                           "pool_type": "avg", "final_ln_after_pool": true, "eps": 1e-6, "output_tokens": true},
            "text_cfg": {"context_length": 77, "vocab_size": 49408}
        },
        "preprocess_cfg": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "interpolation": "bilinear", "resize_mode": "squash"}
    })
}

pub fn save_safetensors(path: &Path, t: &BTreeMap<String, Tensor>) -> Result<()> {
    let map: HashMap<String, Tensor> = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    candle_core::safetensors::save(&map, path).map_err(|e| ferr(path, e))
}

/// Writes a PyTorch zip checkpoint (`torch.save(state_dict)` layout: `archive/data.pkl`
/// holding an `OrderedDict` of `torch._utils._rebuild_tensor_v2` calls on persistent
/// `FloatStorage`s, one `archive/data/<k>` entry per storage). f32, contiguous.
pub fn save_torch_zip(path: &Path, t: &BTreeMap<String, Tensor>) -> Result<()> {
    fn unicode(out: &mut Vec<u8>, s: &str) {
        out.push(b'X');
        out.extend((s.len() as u32).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn int(out: &mut Vec<u8>, v: usize) {
        out.push(b'J');
        out.extend((v as i32).to_le_bytes());
    }
    fn global(out: &mut Vec<u8>, module: &str, name: &str) {
        out.push(b'c');
        out.extend(format!("{module}\n{name}\n").as_bytes());
    }
    let mut pkl = vec![0x80, 0x02];
    global(&mut pkl, "collections", "OrderedDict");
    pkl.extend([b')', b'R', b'(']);
    let mut storages = Vec::new();
    for (k, (name, tensor)) in t.iter().enumerate() {
        let dims = tensor.dims().to_vec();
        let numel: usize = dims.iter().product();
        unicode(&mut pkl, name);
        global(&mut pkl, "torch._utils", "_rebuild_tensor_v2");
        pkl.push(b'(');
        pkl.push(b'(');
        unicode(&mut pkl, "storage");
        global(&mut pkl, "torch", "FloatStorage");
        unicode(&mut pkl, &k.to_string());
        unicode(&mut pkl, "cpu");
        int(&mut pkl, numel);
        pkl.extend([b't', b'Q']);
        int(&mut pkl, 0);
        pkl.push(b'(');
        for d in &dims {
            int(&mut pkl, *d);
        }
        pkl.push(b't');
        pkl.push(b'(');
        let mut stride = vec![1usize; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * dims[i + 1];
        }
        for s in &stride {
            int(&mut pkl, *s);
        }
        pkl.push(b't');
        pkl.push(0x89);
        global(&mut pkl, "collections", "OrderedDict");
        pkl.extend([b')', b'R', b't', b'R']);
        let data: Vec<f32> = tensor
            .flatten_all()
            .and_then(|x| x.to_vec1())
            .map_err(|e| ferr(path, e))?;
        storages.push(
            data.iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
    }
    pkl.extend([b'u', b'.']);
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut z = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| -> Result<()> {
        z.start_file(name, opts).map_err(|e| ferr(path, e))?;
        z.write_all(bytes).map_err(io(path))
    };
    entry("archive/data.pkl", &pkl)?;
    for (k, s) in storages.iter().enumerate() {
        entry(&format!("archive/data/{k}"), s)?;
    }
    entry("archive/version", b"3\n")?;
    z.finish().map_err(|e| ferr(path, e))?;
    Ok(())
}

/// GPT-2's byte-to-character table used by byte-level BPE.
fn byte_chars() -> Vec<char> {
    let mut direct: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    direct.extend(0xA1..=0xAC);
    direct.extend(0xAE..=0xFF);
    let mut out = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        out[b as usize] = if direct.contains(&b) {
            char::from_u32(b).expect("latin-1")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("valid")
        };
    }
    out
}

pub const SPECIALS: [&str; 5] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];

/// A byte-level BPE `tokenizer.json` (Llama-3 style: BOS added by a template post-processor).
pub fn tokenizer_json() -> (serde_json::Value, usize) {
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).into(), json!(i));
        added.push(
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}),
        );
    }
    let chars = byte_chars();
    for c in &chars {
        let id = vocab.len();
        vocab.insert(c.to_string(), json!(id));
    }
    let merges = [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("i", "n"),
        ("a", "n"),
        ("e", "r"),
        ("o", "n"),
        ("Ġ", "a"),
    ];
    for (a, b) in merges {
        let id = vocab.len();
        vocab.insert(format!("{a}{b}"), json!(id));
    }
    let size = vocab.len();
    let tok = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [0], "tokens": ["<|begin_of_text|>"]}}
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()}
    });
    (tok, size)
}

/// The tiny Llama's `config.json`.
pub fn llama_config(vocab: usize) -> serde_json::Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": LLM_HIDDEN, "intermediate_size": 2 * LLM_HIDDEN, "num_hidden_layers": LLM_LAYERS,
        "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "bos_token_id": 0, "eos_token_id": 1, "max_position_embeddings": 2048,
        "tie_word_embeddings": false, "vocab_size": vocab, "torch_dtype": "float32"
    })
}

pub fn llama_tensors(vocab: usize, seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (h, i) = (LLM_HIDDEN, 2 * LLM_HIDDEN);
    let kv = 2 * (h / 4);
    let mut t = BTreeMap::new();
    t.insert(
        "model.embed_tokens.weight".into(),
        randn(&mut rng, &[vocab, h], 1.0),
    );
    t.insert("model.norm.weight".into(), ones(&[h], 1.0));
    t.insert("lm_head.weight".into(), randn(&mut rng, &[vocab, h], 0.5));
    for l in 0..LLM_LAYERS {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("self_attn.q_proj.weight", [h, h]),
            ("self_attn.k_proj.weight", [kv, h]),
            ("self_attn.v_proj.weight", [kv, h]),
            ("self_attn.o_proj.weight", [h, h]),
            ("mlp.gate_proj.weight", [i, h]),
            ("mlp.up_proj.weight", [i, h]),
            ("mlp.down_proj.weight", [h, i]),
        ] {
            t.insert(format!("{p}.{n}"), randn(&mut rng, &s, 0.2));
        }
        t.insert(format!("{p}.input_layernorm.weight"), ones(&[h], 1.0));
        t.insert(
            format!("{p}.post_attention_layernorm.weight"),
            ones(&[h], 1.0),
        );
    }
    t
}

pub fn projector_tensors(seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut t = BTreeMap::new();
    t.insert(
        "model.mm_projector.0.weight".into(),
        randn(&mut rng, &[LLM_HIDDEN, VISION_WIDTH], 0.3),
    );
    t.insert(
        "model.mm_projector.0.bias".into(),
        randn(&mut rng, &[LLM_HIDDEN], 0.1),
    );
    t.insert(
        "model.mm_projector.2.weight".into(),
        randn(&mut rng, &[LLM_HIDDEN, LLM_HIDDEN], 0.3),
    );
    t.insert(
        "model.mm_projector.2.bias".into(),
        randn(&mut rng, &[LLM_HIDDEN], 0.1),
    );
    t
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    std::fs::write(path, bytes).map_err(io(path))
}

/// Writes the tiny tower, projector and LLM under `dir`.
pub fn write_models(dir: &Path, seed: u64) -> Result<TinyModels> {
    let enc_dir = dir.join("encoder");
    std::fs::create_dir_all(&enc_dir).map_err(io(&enc_dir))?;
    let tower = openclip_tensors(seed);
    let encoder = enc_dir.join("open_clip_model.safetensors");
    save_safetensors(&encoder, &tower)?;
    let encoder_bin = enc_dir.join("open_clip_pytorch_model.bin");
    save_torch_zip(&encoder_bin, &tower)?;
    write(
        &enc_dir.join("open_clip_config.json"),
        serde_json::to_string_pretty(&openclip_config())
            .expect("json")
            .as_bytes(),
    )?;
    let projector = dir.join("projector").join("mm_projector.bin");
    std::fs::create_dir_all(projector.parent().expect("has parent")).map_err(io(dir))?;
    save_torch_zip(&projector, &projector_tensors(seed + 1))?;
    let llm = dir.join("llm");
    std::fs::create_dir_all(&llm).map_err(io(&llm))?;
    let (tok, size) = tokenizer_json();
    let vocab = size.div_ceil(8) * 8;
    write(&llm.join("tokenizer.json"), tok.to_string().as_bytes())?;
    write(
        &llm.join("config.json"),
        serde_json::to_string_pretty(&llama_config(vocab))
            .expect("json")
            .as_bytes(),
    )?;
    save_safetensors(
        &llm.join("model.safetensors"),
        &llama_tensors(vocab, seed + 2),
    )?;
    Ok(TinyModels {
        encoder,
        encoder_bin,
        projector,
        llm,
    })
}

/// A small generated image: PNG or JPEG bytes of a random size and pattern.
pub fn image_bytes(rng: &mut ChaCha8Rng, jpeg: bool) -> Vec<u8> {
    let (w, h) = (rng.random_range(20..60u32), rng.random_range(20..60u32));
    let (a, b, c) = (rng.random::<u8>(), rng.random::<u8>(), rng.random::<u8>());
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            a.wrapping_add((x * 7) as u8),
            b.wrapping_add((y * 5) as u8),
            c.wrapping_add(((x ^ y) * 3) as u8),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    let fmt = if jpeg {
        image::ImageOutputFormat::Jpeg(90)
    } else {
        image::ImageOutputFormat::Png
    };
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, fmt)
        .expect("in-memory encode");
    out.into_inner()
}

/// One generated question.
#[derive(Debug, Clone)]
pub struct Row {
    pub question: String,
    pub answers: Vec<String>,
    pub category: String,
    pub dataset: String,
    pub image: Vec<u8>,
    pub ocr: Vec<String>,
}

pub fn rows(task: Task, n: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let words = [
        "stop", "dakota", "coffee", "24", "red", "exit", "the", "bus",
    ];
    (0..n)
        .map(|i| {
            let w = words[i % words.len()].to_string();
            let (question, answers, category, dataset) = match task {
                Task::TextVqa => (
                    format!("what is written on the sign number {i}?"),
                    vec![w.clone(); 9]
                        .into_iter()
                        .chain([words[(i + 1) % 8].to_string()])
                        .collect(),
                    String::new(),
                    String::new(),
                ),
                Task::ChartQa => (
                    format!("What is the value of bar {i}?"),
                    vec![format!("{}", 10 + i)],
                    if i % 2 == 0 { "human" } else { "augmented" }.into(),
                    String::new(),
                ),
                Task::OcrBench => (
                    "what is written in the image?".to_string(),
                    vec![w.to_uppercase()],
                    "Regular Text Recognition".into(),
                    "IIIT5K".into(),
                ),
            };
            Row {
                question,
                answers,
                category,
                dataset,
                image: image_bytes(&mut rng, i % 2 == 1),
                ocr: vec![w.clone(), "exit".into()],
            }
        })
        .collect()
}

fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", inner.join(", "))
}

/// Writes `rows` for `task` in `format` (`json`, `tsv` or `parquet`) under `dir`; returns
/// the path to pass as `--data`.
pub fn write_dataset(dir: &Path, task: Task, format: &str, rows: &[Row]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let ext = |r: &Row| {
        if r.image.starts_with(b"\x89PNG") {
            "png"
        } else {
            "jpg"
        }
    };
    match format {
        "json" => match task {
            Task::TextVqa => {
                let mut data = Vec::new();
                for (i, r) in rows.iter().enumerate() {
                    let image_id = format!("{:016x}", 0xabc0 + i);
                    // TextVQA images are .jpg by name whatever their codec; the decoder sniffs.
                    write(
                        &dir.join("train_images").join(format!("{image_id}.jpg")),
                        &r.image,
                    )?;
                    data.push(json!({"question": r.question, "question_id": 34602 + i, "image_id": image_id,
                                     "answers": r.answers, "set_name": "val", "image_classes": [],
                                     "question_tokens": []}));
                }
                let p = dir.join("TextVQA_0.5.1_val.json");
                write(&p, json!({"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data}).to_string().as_bytes())?;
                Ok(p)
            }
            Task::ChartQa => {
                let (mut human, mut aug) = (Vec::new(), Vec::new());
                for (i, r) in rows.iter().enumerate() {
                    let name = format!("{}{i}.{}", 41699051005347u64 + i as u64, ext(r));
                    write(&dir.join("png").join(&name), &r.image)?;
                    let v = json!({"imgname": name, "query": r.question, "label": r.answers[0]});
                    if r.category == "human" {
                        human.push(v)
                    } else {
                        aug.push(v)
                    }
                }
                write(
                    &dir.join("test_human.json"),
                    json!(human).to_string().as_bytes(),
                )?;
                write(
                    &dir.join("test_augmented.json"),
                    json!(aug).to_string().as_bytes(),
                )?;
                Ok(dir.to_path_buf())
            }
            Task::OcrBench => {
                let mut list = Vec::new();
                for (i, r) in rows.iter().enumerate() {
                    let rel = format!("IIIT5K/test/{i}_1.{}", ext(r));
                    write(&dir.join("OCRBench_Images").join(&rel), &r.image)?;
                    list.push(json!({"dataset_name": r.dataset, "id": i, "image_path": rel, "question": r.question,
                                     "answers": r.answers[0], "type": r.category}));
                }
                let p = dir.join("OCRBench.json");
                write(
                    &p,
                    serde_json::to_string_pretty(&list)
                        .expect("json")
                        .as_bytes(),
                )?;
                Ok(p)
            }
        },
        "tsv" => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let (name, header) = match task {
                Task::TextVqa => ("TextVQA_VAL.tsv", "index\timage\tquestion\tanswer"),
                Task::ChartQa => ("ChartQA_TEST.tsv", "index\timage\tquestion\tanswer\tsplit"),
                Task::OcrBench => ("OCRBench.tsv", "index\timage\tquestion\tanswer\tcategory"),
            };
            let mut s = format!("{header}\n");
            for (i, r) in rows.iter().enumerate() {
                let img = b64.encode(&r.image);
                let line = match task {
                    Task::TextVqa => format!("{i}\t{img}\t{}\t{}", r.question, py_list(&r.answers)),
                    Task::ChartQa => format!(
                        "{i}\t{img}\t{}\t{}\ttest_{}",
                        r.question, r.answers[0], r.category
                    ),
                    Task::OcrBench => format!(
                        "{i}\t{img}\t{}\t{}\t{}",
                        r.question,
                        py_list(&r.answers),
                        r.category
                    ),
                };
                s.push_str(&line);
                s.push('\n');
            }
            let p = dir.join(name);
            write(&p, s.as_bytes())?;
            Ok(p)
        }
        "parquet" => {
            let p = dir.join("test-00000-of-00001.parquet");
            write_parquet(&p, task, rows)?;
            Ok(p)
        }
        other => Err(EvalError::Usage(format!(
            "unknown fixture format '{other}'"
        ))),
    }
}

/// lmms-eval's Hugging Face parquet layout (image as a `{bytes, path}` struct).
pub fn write_parquet(path: &Path, task: Task, rows: &[Row]) -> Result<()> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;
    let list = |name: &str| {
        format!("optional group {name} (LIST) {{ repeated group list {{ optional binary element (UTF8); }} }}")
    };
    let image = "optional group image { optional binary bytes; optional binary path (UTF8); }";
    let schema = match task {
        Task::TextVqa => format!("message schema {{ optional int32 question_id; optional binary question (UTF8); {} {image} {} }}", list("answers"), list("ocr_tokens")),
        Task::ChartQa => format!("message schema {{ optional binary type (UTF8); optional binary question (UTF8); optional binary answer (UTF8); {image} }}"),
        Task::OcrBench => format!("message schema {{ optional binary dataset (UTF8); optional binary question (UTF8); optional binary question_type (UTF8); {} {image} }}", list("answer")),
    };
    let schema = Arc::new(parse_message_type(&schema).map_err(|e| ferr(path, e))?);
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .map_err(|e| ferr(path, e))?;
    let mut rg = w.next_row_group().map_err(|e| ferr(path, e))?;
    enum Leaf {
        I32(Vec<i32>),
        Str(Vec<Vec<u8>>, i16),
        List(Vec<Vec<String>>),
    }
    let strs =
        |f: &dyn Fn(&Row) -> String| Leaf::Str(rows.iter().map(|r| f(r).into_bytes()).collect(), 1);
    let images = Leaf::Str(rows.iter().map(|r| r.image.clone()).collect(), 2);
    let paths = Leaf::Str(rows.iter().map(|_| b"img.png".to_vec()).collect(), 2);
    let leaves = match task {
        Task::TextVqa => vec![
            Leaf::I32((0..rows.len() as i32).map(|i| 34602 + i).collect()),
            strs(&|r| r.question.clone()),
            Leaf::List(rows.iter().map(|r| r.answers.clone()).collect()),
            images,
            paths,
            Leaf::List(rows.iter().map(|r| r.ocr.clone()).collect()),
        ],
        Task::ChartQa => vec![
            strs(&|r| format!("{}_test", r.category)),
            strs(&|r| r.question.clone()),
            strs(&|r| r.answers[0].clone()),
            images,
            paths,
        ],
        Task::OcrBench => vec![
            strs(&|r| r.dataset.clone()),
            strs(&|r| r.question.clone()),
            strs(&|r| r.category.clone()),
            Leaf::List(rows.iter().map(|r| r.answers.clone()).collect()),
            images,
            paths,
        ],
    };
    for leaf in leaves {
        let mut col = rg
            .next_column()
            .map_err(|e| ferr(path, e))?
            .ok_or_else(|| ferr(path, "schema has fewer columns"))?;
        let res = match leaf {
            Leaf::I32(v) => col
                .typed::<Int32Type>()
                .write_batch(&v, Some(&vec![1; v.len()]), None)
                .map(|_| ()),
            Leaf::Str(v, def) => {
                // An empty value is written as null (a row without an image, in tests).
                let defs: Vec<i16> = v
                    .iter()
                    .map(|b| if b.is_empty() { def - 1 } else { def })
                    .collect();
                let vals: Vec<ByteArray> = v
                    .into_iter()
                    .filter(|b| !b.is_empty())
                    .map(ByteArray::from)
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .map(|_| ())
            }
            Leaf::List(rows) => {
                let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    if r.is_empty() {
                        defs.push(1);
                        reps.push(0);
                    }
                    for (i, s) in r.iter().enumerate() {
                        vals.push(ByteArray::from(s.as_str()));
                        defs.push(3);
                        reps.push(if i == 0 { 0 } else { 1 });
                    }
                }
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), Some(&reps))
                    .map(|_| ())
            }
        };
        res.map_err(|e| ferr(path, e))?;
        col.close().map_err(|e| ferr(path, e))?;
    }
    rg.close().map_err(|e| ferr(path, e))?;
    w.close().map_err(|e| ferr(path, e))?;
    Ok(())
}

/// One written dataset: task, layout (`json`, `tsv`, `parquet`), the path for `--data`.
pub type DataSet = (Task, String, PathBuf);

/// Models plus every task in every format under `dir`; returns `(task, format, --data path)`.
pub fn write_all(dir: &Path, n: usize, seed: u64) -> Result<(TinyModels, Vec<DataSet>)> {
    let models = write_models(&dir.join("models"), seed)?;
    let mut sets = Vec::new();
    for task in [Task::TextVqa, Task::ChartQa, Task::OcrBench] {
        let r = rows(task, n, seed + 10);
        for format in ["json", "tsv", "parquet"] {
            let p = write_dataset(
                &dir.join("data").join(task.name()).join(format),
                task,
                format,
                &r,
            )?;
            sets.push((task, format.to_string(), p));
        }
    }
    Ok((models, sets))
}
