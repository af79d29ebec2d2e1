//! The language model: a Hugging Face Llama-family directory (`config.json`,
//! `model.safetensors` or `model-*.safetensors`, `tokenizer.json`) run with
//! candle-transformers' Llama. Every tensor is checked (name, shape, dtype) before the
//! model is built, so bad files give an error that names them rather than a panic.

use crate::error::{io, CandleCtx, EvalError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Config, Llama};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::Tokenizer;

pub struct Llm {
    pub model: Llama,
    pub config: Config,
    pub tokenizer: Tokenizer,
    pub dir: PathBuf,
    pub weight_files: Vec<PathBuf>,
    pub tokenizer_file: PathBuf,
    pub config_file: PathBuf,
    pub dtype: DType,
    pub device: Device,
    /// The tokenizer's BOS (what LLaVA's `tokenizer_image_token` compares with) and its text.
    pub bos: Option<u32>,
    pub bos_token: Option<String>,
    pub bos_source: String,
    /// What `generate` stops at, and where that came from.
    pub eos: Vec<u32>,
    pub eos_source: String,
    pub settings: crate::llm_config::LlamaSettings,
    template: Cache,
}

/// What one generation produced, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Decoded (special tokens skipped), cut at the first stop string.
    pub text: String,
    pub prompt_tokens: usize,
    pub prefill_s: f64,
    pub decode_s: f64,
    /// `eos`, `stop-string` or `max-new-tokens`.
    pub stop: &'static str,
    /// At each step, the largest logit minus the second largest (how close greedy decoding
    /// was to choosing another token; the reference check reads it).
    pub top2_gaps: Vec<f32>,
}

/// The tokenizer's BOS as transformers' `AutoTokenizer` knows it: `bos_token` of
/// `tokenizer_config.json`, else of `special_tokens_map.json`. A folder with neither (not a
/// saved tokenizer) falls back to `config.json`'s `bos_token_id`; the source is recorded.
fn tokenizer_bos(
    dir: &Path,
    tok: &Tokenizer,
    config: &Config,
) -> Result<(Option<(String, u32)>, String)> {
    for name in ["tokenizer_config.json", "special_tokens_map.json"] {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        let text = crate::error::read_config(&p)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| EvalError::Config {
            path: p.clone(),
            field: format!("line {}, column {}", e.line(), e.column()),
            msg: e.to_string(),
        })?;
        let Some(b) = v.get("bos_token") else {
            continue;
        };
        let s = match b {
            serde_json::Value::Null => return Ok((None, format!("{name}: bos_token null"))),
            serde_json::Value::String(s) => s.clone(),
            other => match other.get("content").and_then(|c| c.as_str()) {
                Some(s) => s.to_string(),
                None => {
                    return Err(EvalError::Config {
                        path: p,
                        field: "bos_token".into(),
                        msg: format!("{other}: expected a string or {{\"content\": ...}}"),
                    })
                }
            },
        };
        let id = tok.token_to_id(&s).ok_or_else(|| EvalError::Config {
            path: p.clone(),
            field: "bos_token".into(),
            msg: format!("'{s}' is not a token of tokenizer.json"),
        })?;
        return Ok((Some((s, id)), format!("{name}: bos_token")));
    }
    let b = config
        .bos_token_id
        .and_then(|id| tok.id_to_token(id).map(|t| (t, id)));
    Ok((
        b,
        "config.json: bos_token_id (no tokenizer_config.json or special_tokens_map.json)".into(),
    ))
}

/// `tokenizer.json`, read through the safe reader (regular file, bounded size). The tokenizers
/// crate is third-party code that panics on some inconsistent files (a post-processor naming
/// a special token the vocabulary lacks panics at the first encode): the file is parsed and
/// then tried on a probe text, each under `catch_unwind`, so such a file is refused here with
/// its name instead of crashing the run later.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = ovbench_harness::io::read_regular(path, ovbench_harness::io::limit::CONFIG)?;
    let err = |msg: String| EvalError::Tokenizer {
        path: path.into(),
        msg,
    };
    let tok = match quiet_catch_unwind(|| Tokenizer::from_bytes(&bytes)) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(err(e.to_string())),
        Err(_) => {
            return Err(err(
                "the tokenizers library cannot parse it (it panicked)".into()
            ))
        }
    };
    let probe = quiet_catch_unwind(|| {
        let enc = tok.encode("USER: <image>\nWhat is 12.5%? ASSISTANT:", true)?;
        tok.decode(enc.get_ids(), true)
    });
    match probe {
        Ok(Ok(_)) => Ok(tok),
        Ok(Err(e)) => Err(err(format!("cannot encode a probe text: {e}"))),
        Err(_) => Err(err(
            "the tokenizers library panics encoding a probe text (an inconsistent file, e.g. a special token the vocabulary lacks)".into(),
        )),
    }
}

/// `catch_unwind` without the panic hook's report on stderr (see `ovbench_harness::guard`).
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    ovbench_harness::guard::catch_quietly(f)
}

/// Runs a tokenizer call, turning a panic inside the library into an error naming the file.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> tokenizers::Result<T>) -> Result<T> {
    match quiet_catch_unwind(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(EvalError::Tokenizer {
            path: path.into(),
            msg: format!("{what}: {e}"),
        }),
        Err(_) => Err(EvalError::Tokenizer {
            path: path.into(),
            msg: format!("{what}: the tokenizers library panicked"),
        }),
    }
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("model") && n.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EvalError::Usage(format!(
            "{}: no model.safetensors or model-*.safetensors inside",
            dir.display()
        )));
    }
    Ok(files)
}

impl Llm {
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config_file = dir.join("config.json");
        let text = crate::error::read_config(&config_file)?;
        let settings = crate::llm_config::parse(&config_file, &text)?;
        let config = settings.config.clone();
        let files = weight_files(dir)?;
        for f in &files {
            crate::tensors::sniff(f)?;
        }
        let st =
            unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.map_err(|e| {
                EvalError::Format {
                    path: files[0].clone(),
                    msg: format!("cannot read the safetensors files: {e}"),
                }
            })?;
        check_tensors(&st, &config, &files)?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .ctx(|| format!("{}: opening weights", dir.display()))?;
        let model =
            Llama::load(vb, &config).ctx(|| format!("{}: building Llama", dir.display()))?;
        let tokenizer_file = dir.join("tokenizer.json");
        if !tokenizer_file.exists() {
            return Err(EvalError::Tokenizer {
                path: tokenizer_file,
                msg: "not found (the directory needs a tokenizer.json)".into(),
            });
        }
        let tokenizer = load_tokenizer(&tokenizer_file)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(EvalError::Tokenizer {
                path: tokenizer_file,
                msg: format!(
                    "{vocab} tokens, more than the model's vocab_size {}",
                    config.vocab_size
                ),
            });
        }
        let template =
            Cache::new(true, dtype, &config, device).ctx(|| "building the rotary tables".into())?;
        let (eos, eos_source) = crate::llm_config::stop_ids(dir, &settings)?;
        let (bos_token, bos_source) = tokenizer_bos(dir, &tokenizer, &config)?;
        Ok(Llm {
            model,
            bos: bos_token.as_ref().map(|(_, id)| *id),
            bos_token: bos_token.map(|(t, _)| t),
            bos_source,
            eos_source,
            settings,
            config,
            tokenizer,
            dir: dir.into(),
            weight_files: files,
            tokenizer_file,
            config_file: dir.join("config.json"),
            dtype,
            device: device.clone(),
            eos,
            template,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Token embeddings of `ids`: (1, T, H).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .ctx(|| "token ids".into())?;
        self.model.embed(&t).ctx(|| "token embedding".into())
    }

    /// Greedy decoding from the prompt embeddings `prompt` (1, T, H). With `kv_cache` the
    /// prompt is run once and each new token attends to cached keys and values; without,
    /// the whole sequence is run again for every token (the reference the cache must match).
    pub fn generate(
        &self,
        prompt: &Tensor,
        max_new_tokens: usize,
        stop_tokens: &[u32],
        stop_strings: &[String],
        kv_cache: bool,
    ) -> Result<Generation> {
        let ctx = || "LLM forward".to_string();
        let prompt_len = prompt.dim(1).ctx(ctx)?;
        if prompt_len + max_new_tokens > self.config.max_position_embeddings {
            return Err(EvalError::Usage(format!(
                "prompt of {prompt_len} tokens + {max_new_tokens} new ones exceeds the model's {} positions",
                self.config.max_position_embeddings
            )));
        }
        let mut cache = self.template.clone();
        cache.use_kv_cache = kv_cache;
        let t0 = Instant::now();
        let mut logits = self
            .model
            .forward_input_embed(&prompt.to_dtype(self.dtype).ctx(ctx)?, 0, &mut cache)
            .ctx(ctx)?;
        let prefill_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut tokens: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut stop = "max-new-tokens";
        let mut top2_gaps = Vec::new();
        while tokens.len() < max_new_tokens {
            let (next, gap) = argmax(&logits, tokens.len())?;
            top2_gaps.push(gap);
            if self.eos.contains(&next) || stop_tokens.contains(&next) {
                stop = "eos";
                break;
            }
            tokens.push(next);
            text = self.decode(&tokens)?;
            if let Some(cut) = cut_at_stop(&text, stop_strings) {
                text.truncate(cut);
                stop = "stop-string";
                break;
            }
            if tokens.len() == max_new_tokens {
                break;
            }
            logits = if kv_cache {
                let pos = prompt_len + tokens.len() - 1;
                self.model
                    .forward(
                        &Tensor::new(&[next], &self.device)
                            .and_then(|t| t.unsqueeze(0))
                            .ctx(ctx)?,
                        pos,
                        &mut cache,
                    )
                    .ctx(ctx)?
            } else {
                let gen = self.embed(&tokens)?;
                let all =
                    Tensor::cat(&[&prompt.to_dtype(gen.dtype()).ctx(ctx)?, &gen], 1).ctx(ctx)?;
                self.model
                    .forward_input_embed(&all, 0, &mut cache)
                    .ctx(ctx)?
            };
        }
        Ok(Generation {
            tokens,
            text,
            prompt_tokens: prompt_len,
            prefill_s,
            decode_s: t1.elapsed().as_secs_f64(),
            stop,
            top2_gaps,
        })
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        guarded(&self.tokenizer_file, "decoding", || {
            self.tokenizer.decode(ids, true)
        })
    }

    /// Token ids of `text` (`special`: let the tokenizer add BOS etc. as it is configured to).
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        Ok(guarded(&self.tokenizer_file, "encoding", || {
            self.tokenizer.encode(text, special)
        })?
        .get_ids()
        .to_vec())
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }
}

/// Byte offset at which to cut `text` at the earliest stop string, if any occurs.
pub fn cut_at_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// Index of the largest logit (the first one on ties, as torch.argmax) and its lead over
/// the second largest. NaN or +inf anywhere is an error: greedy decoding over them picks an
/// arbitrary token (often EOS, an empty answer that would be scored as wrong).
fn argmax(logits: &Tensor, step: usize) -> Result<(u32, f32)> {
    let v: Vec<f32> = logits
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1())
        .ctx(|| "logits".into())?;
    if let Some(i) = v.iter().position(|x| x.is_nan() || *x == f32::INFINITY) {
        return Err(EvalError::NonFinite {
            item: String::new(),
            what: format!("logits at generated token {step} (vocabulary entry {i})"),
        });
    }
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] || (v[best].is_nan() && !x.is_nan()) {
            best = i;
        }
    }
    let second = v
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, x)| *x)
        .fold(f32::NEG_INFINITY, f32::max);
    Ok((best as u32, v[best] - second))
}

/// Every tensor `Llama::load` reads, with its shape.
fn expected(c: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let kv = c.num_key_value_heads * (h / c.num_attention_heads);
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, h]),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".into(), vec![v, h]));
    }
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (n, s) in [
            ("self_attn.q_proj.weight", vec![h, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, h]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            out.push((format!("{p}.{n}"), s));
        }
    }
    out
}

fn check_tensors(
    st: &candle_core::safetensors::MmapedSafetensors,
    c: &Config,
    files: &[PathBuf],
) -> Result<()> {
    let where_ = if files.len() == 1 {
        files[0].clone()
    } else {
        files[0].parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    for (name, shape) in expected(c) {
        let view = st.get(&name).map_err(|_| EvalError::MissingTensor {
            path: where_.clone(),
            name: name.clone(),
            hint: String::new(),
        })?;
        let dt = view.dtype();
        if !matches!(
            dt,
            safetensors::Dtype::F16
                | safetensors::Dtype::BF16
                | safetensors::Dtype::F32
                | safetensors::Dtype::F64
        ) {
            return Err(EvalError::DType {
                path: where_.clone(),
                name,
                found: format!("{dt:?}"),
            });
        }
        if view.shape() != shape.as_slice() {
            return Err(EvalError::Shape {
                path: where_.clone(),
                name,
                found: view.shape().to_vec(),
                expected: format!("{shape:?} (from config.json)"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tokenizer_that_panics_on_encode_is_refused_at_load() {
        // Found by scripts/fuzz.sh (target tokenizer): a template post-processor naming a
        // special token that is not in the vocabulary panics inside the tokenizers crate.
        let (mut tok, _) = crate::fixture::tokenizer_json();
        tok["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<nope>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {}
        });
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokenizer.json");
        std::fs::write(&p, tok.to_string()).unwrap();
        let e = match load_tokenizer(&p) {
            Ok(_) => panic!("an inconsistent tokenizer was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("tokenizer.json") && e.contains("panic"), "{e}");
        let (good, _) = crate::fixture::tokenizer_json();
        std::fs::write(&p, good.to_string()).unwrap();
        assert!(load_tokenizer(&p).is_ok());
    }

    #[test]
    fn argmax_refuses_nan_and_infinity_but_not_masked_entries() {
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        assert_eq!(argmax(&t(&[1.0, 3.0, f32::NEG_INFINITY]), 0).unwrap().0, 1);
        for bad in [f32::NAN, f32::INFINITY] {
            let e = argmax(&t(&[1.0, bad, 2.0]), 4).unwrap_err().to_string();
            assert!(
                e.contains("not finite") && e.contains("generated token 4"),
                "{e}"
            );
        }
    }
}
