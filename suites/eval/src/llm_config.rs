//! A Llama `config.json` read the way transformers reads it, in both layouts: the older one
//! (top-level `rope_theta`, `rope_scaling: {type | rope_type, ...}`) and transformers 5's
//! (`rope_parameters: {rope_type, rope_theta, ...}`). Every field that changes the function is
//! either taken (with transformers' `LlamaConfig` default when absent, and the source recorded)
//! or refused with an error naming it when ovbench cannot compute it (candle's Llama has no
//! attention / MLP biases, a fixed head width of hidden / heads, SiLU, and the `default` and
//! `llama3` rotary embeddings only). Fields that cannot change the output are listed as ignored.
//! LLaVA's `mm_*` fields are checked against the options that implement them.

use crate::error::{EvalError, Result};
use candle_transformers::models::llama::{Config, Llama3RopeConfig, Llama3RopeType, LlamaEosToks};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// transformers' `LlamaConfig` defaults for fields a config may leave out.
const DEFAULT_RMS_NORM_EPS: f64 = 1e-6;
const DEFAULT_MAX_POSITIONS: usize = 2048;
const DEFAULT_ROPE_THETA: f64 = 10_000.0;
const DEFAULT_BOS: u32 = 1;
const DEFAULT_EOS: u32 = 2;

/// The function-relevant content of `config.json`, ready for candle, and what was read.
#[derive(Debug, Clone)]
pub struct LlamaSettings {
    pub config: Config,
    /// Each function field, its value and where it came from (`config.json: <field>` or
    /// `default`), for the record.
    pub read: Value,
    /// Fields present but not used (function-neutral or LLaVA bookkeeping).
    pub ignored: Vec<String>,
    pub raw: Value,
}

struct Reader<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
    read: Map<String, Value>,
}

impl<'a> Reader<'a> {
    fn err(&self, field: &str, msg: impl Into<String>) -> EvalError {
        EvalError::Config {
            path: self.path.to_path_buf(),
            field: field.into(),
            msg: msg.into(),
        }
    }

    fn note(&mut self, name: &str, value: Value, source: &str) {
        self.read
            .insert(name.into(), json!({"value": value, "source": source}));
    }

    fn usize_field(&mut self, name: &str, default: Option<usize>) -> Result<usize> {
        match self.obj.get(name) {
            Some(v) if !v.is_null() => {
                let n = v.as_u64().ok_or_else(|| {
                    self.err(name, format!("{v}: expected a non-negative integer"))
                })?;
                self.note(name, json!(n), &format!("config.json: {name}"));
                Ok(n as usize)
            }
            _ => match default {
                Some(d) => {
                    self.note(name, json!(d), "default");
                    Ok(d)
                }
                None => Err(self.err(name, "missing (required)")),
            },
        }
    }

    fn f64_at(&self, obj: &Map<String, Value>, name: &str, shown: &str) -> Result<Option<f64>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(shown, format!("{v}: expected a number"))),
        }
    }
}

fn token_ids(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Number(n) => n.as_u64().map(|x| vec![x as u32]),
        Value::Array(a) => a.iter().map(|x| x.as_u64().map(|x| x as u32)).collect(),
        _ => None,
    }
}

/// Reads `config.json` (text `text`, at `path`).
pub fn parse(path: &Path, text: &str) -> Result<LlamaSettings> {
    let raw: Value = serde_json::from_str(text).map_err(|e| EvalError::Config {
        path: path.into(),
        field: format!("line {}, column {}", e.line(), e.column()),
        msg: e.to_string(),
    })?;
    let obj = raw.as_object().ok_or_else(|| EvalError::Config {
        path: path.into(),
        field: "(top level)".into(),
        msg: "expected a JSON object".into(),
    })?;
    let mut r = Reader {
        path,
        obj,
        read: Map::new(),
    };
    if let Some(a) = obj.get("architectures").and_then(|a| a.as_array()) {
        let names: Vec<&str> = a.iter().filter_map(|x| x.as_str()).collect();
        if !names
            .iter()
            .any(|n| n.contains("Llama") || n.contains("Llava"))
        {
            return Err(r.err(
                "architectures",
                format!("{names:?}: only the Llama family is supported"),
            ));
        }
    }
    if obj.contains_key("text_config") {
        return Err(r.err(
            "text_config",
            "a nested (llava-hf) layout; give the Llama folder of an original LLaVA checkpoint",
        ));
    }
    let hidden = r.usize_field("hidden_size", None)?;
    let inter = r.usize_field("intermediate_size", None)?;
    let vocab = r.usize_field("vocab_size", None)?;
    let layers = r.usize_field("num_hidden_layers", None)?;
    let heads = r.usize_field("num_attention_heads", None)?;
    let kv = r.usize_field("num_key_value_heads", Some(heads))?;
    if heads == 0 || hidden % heads != 0 || kv == 0 || heads % kv != 0 {
        return Err(r.err(
            "num_attention_heads",
            "hidden_size, num_attention_heads and num_key_value_heads do not divide",
        ));
    }
    let head_dim = r.usize_field("head_dim", Some(hidden / heads))?;
    if head_dim != hidden / heads {
        return Err(r.err(
            "head_dim",
            format!(
                "{head_dim}, but hidden_size / num_attention_heads is {}: a separate head width is not implemented",
                hidden / heads
            ),
        ));
    }
    let max_pos = r.usize_field("max_position_embeddings", Some(DEFAULT_MAX_POSITIONS))?;
    let eps = match r.f64_at(obj, "rms_norm_eps", "rms_norm_eps")? {
        Some(e) => {
            r.note("rms_norm_eps", json!(e), "config.json: rms_norm_eps");
            e
        }
        None => {
            r.note("rms_norm_eps", json!(DEFAULT_RMS_NORM_EPS), "default");
            DEFAULT_RMS_NORM_EPS
        }
    };
    let act = obj
        .get("hidden_act")
        .and_then(|v| v.as_str())
        .unwrap_or("silu");
    if !matches!(act, "silu" | "swish") {
        return Err(r.err("hidden_act", format!("'{act}': only silu is implemented")));
    }
    r.note(
        "hidden_act",
        json!(act),
        if obj.contains_key("hidden_act") {
            "config.json: hidden_act"
        } else {
            "default"
        },
    );
    for flag in ["attention_bias", "mlp_bias"] {
        match obj.get(flag) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(v) => {
                return Err(r.err(
                    flag,
                    format!("{v}: biases in the Llama layers are not implemented"),
                ))
            }
        }
    }
    let tie = match obj.get("tie_word_embeddings") {
        None | Some(Value::Null) => {
            r.note("tie_word_embeddings", json!(false), "default");
            false
        }
        Some(Value::Bool(b)) => {
            r.note(
                "tie_word_embeddings",
                json!(b),
                "config.json: tie_word_embeddings",
            );
            *b
        }
        Some(v) => {
            return Err(r.err(
                "tie_word_embeddings",
                format!("{v}: expected true or false"),
            ))
        }
    };

    // The rotary embedding, from either layout; the two must agree where both are given.
    let empty = Map::new();
    let params = match obj.get("rope_parameters") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(v) => return Err(r.err("rope_parameters", format!("{v}: expected an object"))),
    };
    let scaling = match obj.get("rope_scaling") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(v) => return Err(r.err("rope_scaling", format!("{v}: expected an object or null"))),
    };
    if let Some(p) = params {
        if p.values().any(|v| v.is_object()) {
            return Err(r.err(
                "rope_parameters",
                "per-layer-type rotary parameters are not implemented for Llama",
            ));
        }
    }
    let theta_new = r.f64_at(
        params.unwrap_or(&empty),
        "rope_theta",
        "rope_parameters.rope_theta",
    )?;
    let theta_old = r.f64_at(obj, "rope_theta", "rope_theta")?;
    let theta = match (theta_new, theta_old) {
        (Some(a), Some(b)) if a != b => {
            return Err(r.err(
                "rope_parameters.rope_theta",
                format!("{a}, but the top-level rope_theta is {b}"),
            ))
        }
        (Some(a), _) => {
            r.note(
                "rope_theta",
                json!(a),
                "config.json: rope_parameters.rope_theta",
            );
            a
        }
        (None, Some(b)) => {
            r.note("rope_theta", json!(b), "config.json: rope_theta");
            b
        }
        (None, None) => {
            r.note("rope_theta", json!(DEFAULT_ROPE_THETA), "default");
            DEFAULT_ROPE_THETA
        }
    };
    let kind_of = |m: &Map<String, Value>| -> Option<String> {
        m.get("rope_type")
            .or_else(|| m.get("type"))
            .and_then(|v| v.as_str())
            .map(String::from)
    };
    let (kind, kind_field, src) = match (params.and_then(kind_of), scaling.and_then(kind_of)) {
        (Some(a), Some(b)) if a != b => {
            return Err(r.err(
                "rope_parameters.rope_type",
                format!("'{a}', but rope_scaling says '{b}'"),
            ))
        }
        (Some(a), _) => (a, "rope_parameters.rope_type", params.unwrap_or(&empty)),
        (None, Some(b)) => (b, "rope_scaling.rope_type", scaling.unwrap_or(&empty)),
        (None, None) => {
            if let Some(m) = scaling.or(params.filter(|p| p.keys().any(|k| k != "rope_theta"))) {
                return Err(r.err(
                    "rope_scaling",
                    format!("{}: no rope_type / type given", Value::Object(m.clone())),
                ));
            }
            ("default".to_string(), "default", &empty)
        }
    };
    let prefix = kind_field.split('.').next().unwrap_or("rope_parameters");
    if let Some(f) = r.f64_at(
        src,
        "partial_rotary_factor",
        &format!("{prefix}.partial_rotary_factor"),
    )? {
        if f != 1.0 {
            return Err(r.err(
                &format!("{prefix}.partial_rotary_factor"),
                format!("{f}: a partial rotary embedding is not implemented"),
            ));
        }
    }
    let rope_scaling = match kind.as_str() {
        "default" => None,
        "llama3" => {
            let need = |r: &Reader, name: &str| -> Result<f64> {
                r.f64_at(src, name, &format!("{prefix}.{name}"))?
                    .ok_or_else(|| {
                        r.err(
                            &format!("{prefix}.{name}"),
                            "missing (needed by rope_type llama3)",
                        )
                    })
            };
            let c = Llama3RopeConfig {
                factor: need(&r, "factor")? as f32,
                low_freq_factor: need(&r, "low_freq_factor")? as f32,
                high_freq_factor: need(&r, "high_freq_factor")? as f32,
                original_max_position_embeddings: need(&r, "original_max_position_embeddings")?
                    as usize,
                rope_type: Llama3RopeType::Llama3,
            };
            if let Some(a) = r.f64_at(
                src,
                "attention_factor",
                &format!("{prefix}.attention_factor"),
            )? {
                if a != 1.0 {
                    return Err(r.err(
                        &format!("{prefix}.attention_factor"),
                        format!("{a}: only 1 is implemented for llama3"),
                    ));
                }
            }
            r.note(
                "rope_scaling",
                json!({"rope_type": "llama3", "factor": c.factor, "low_freq_factor": c.low_freq_factor,
                       "high_freq_factor": c.high_freq_factor,
                       "original_max_position_embeddings": c.original_max_position_embeddings}),
                &format!("config.json: {prefix}"),
            );
            Some(c)
        }
        other => {
            return Err(r.err(
                kind_field,
                format!("'{other}' is not implemented (supported: default, llama3)"),
            ))
        }
    };
    r.note(
        "rope_type",
        json!(kind),
        if kind_field == "default" {
            "default"
        } else {
            kind_field
        },
    );

    let bos = match obj.get("bos_token_id") {
        Some(v) if !v.is_null() => Some(
            v.as_u64()
                .ok_or_else(|| r.err("bos_token_id", format!("{v}: expected an integer")))?
                as u32,
        ),
        Some(_) => None,
        None => Some(DEFAULT_BOS),
    };
    let eos = match obj.get("eos_token_id") {
        Some(Value::Null) => None,
        Some(v) => Some(token_ids(v).ok_or_else(|| {
            r.err(
                "eos_token_id",
                format!("{v}: expected an integer or a list"),
            )
        })?),
        None => Some(vec![DEFAULT_EOS]),
    };
    r.note(
        "bos_token_id",
        json!(bos),
        if obj.contains_key("bos_token_id") {
            "config.json: bos_token_id"
        } else {
            "default"
        },
    );
    r.note(
        "eos_token_id",
        json!(eos),
        if obj.contains_key("eos_token_id") {
            "config.json: eos_token_id"
        } else {
            "default"
        },
    );

    let used: Vec<&str> = r.read.keys().map(String::as_str).collect::<Vec<_>>();
    let handled = [
        "rope_parameters",
        "rope_scaling",
        "rope_theta",
        "attention_bias",
        "mlp_bias",
        "text_config",
    ];
    let mut ignored: Vec<String> = obj
        .keys()
        .filter(|k| !used.contains(&k.as_str()) && !handled.contains(&k.as_str()))
        .cloned()
        .collect();
    ignored.sort();
    let config = Config {
        hidden_size: hidden,
        intermediate_size: inter,
        vocab_size: vocab,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        use_flash_attn: false,
        rms_norm_eps: eps,
        rope_theta: theta as f32,
        bos_token_id: bos,
        eos_token_id: eos.map(|v| {
            if v.len() == 1 {
                LlamaEosToks::Single(v[0])
            } else {
                LlamaEosToks::Multiple(v)
            }
        }),
        rope_scaling,
        max_position_embeddings: max_pos,
        tie_word_embeddings: tie,
    };
    let read = Value::Object(r.read);
    Ok(LlamaSettings {
        config,
        read,
        ignored,
        raw,
    })
}

/// The token ids `generate` stops at: `generation_config.json`'s `eos_token_id` when the
/// folder has one (transformers loads it with the model), else `config.json`'s. Returns the
/// ids and where they came from.
pub fn stop_ids(dir: &Path, settings: &LlamaSettings) -> Result<(Vec<u32>, String)> {
    let gc: PathBuf = dir.join("generation_config.json");
    if gc.exists() {
        let text = crate::error::read_config(&gc)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| EvalError::Config {
            path: gc.clone(),
            field: format!("line {}, column {}", e.line(), e.column()),
            msg: e.to_string(),
        })?;
        if let Some(e) = v.get("eos_token_id").filter(|e| !e.is_null()) {
            let ids = token_ids(e).ok_or_else(|| EvalError::Config {
                path: gc.clone(),
                field: "eos_token_id".into(),
                msg: format!("{e}: expected an integer or a list"),
            })?;
            return Ok((ids, "generation_config.json: eos_token_id".into()));
        }
    }
    let ids = match &settings.config.eos_token_id {
        Some(LlamaEosToks::Single(t)) => vec![*t],
        Some(LlamaEosToks::Multiple(v)) => v.clone(),
        None => Vec::new(),
    };
    let src = settings.read["eos_token_id"]["source"]
        .as_str()
        .unwrap_or("config.json")
        .to_string();
    Ok((ids, src))
}

/// LLaVA's own fields in `config.json` that decide the pipeline: each must agree with the
/// option that implements it (`--select-layer`, `--no-pad`) or be one ovbench implements.
pub fn check_llava_fields(
    path: &Path,
    raw: &Value,
    select_layer: i64,
    pad_to_square: bool,
) -> Result<()> {
    let err = |field: &str, msg: String| EvalError::Config {
        path: path.into(),
        field: field.into(),
        msg,
    };
    let s = |k: &str| raw.get(k).and_then(|v| v.as_str());
    if let Some(p) = s("mm_projector_type") {
        if p != "mlp2x_gelu" {
            return Err(err(
                "mm_projector_type",
                format!("'{p}': only mlp2x_gelu is implemented"),
            ));
        }
    }
    if let Some(f) = s("mm_vision_select_feature") {
        if f != "patch" {
            return Err(err(
                "mm_vision_select_feature",
                format!("'{f}': only patch is implemented"),
            ));
        }
    }
    if raw.get("mm_use_im_start_end").and_then(|v| v.as_bool()) == Some(true) {
        return Err(err(
            "mm_use_im_start_end",
            "true: image start / end tokens are not implemented".into(),
        ));
    }
    if let Some(m) = s("mm_patch_merge_type") {
        if m != "flat" {
            return Err(err(
                "mm_patch_merge_type",
                format!("'{m}': only flat is implemented"),
            ));
        }
    }
    if let Some(l) = raw.get("mm_vision_select_layer").and_then(|v| v.as_i64()) {
        if l != select_layer {
            return Err(err(
                "mm_vision_select_layer",
                format!("{l}, but --select-layer is {select_layer} (pass --select-layer {l})"),
            ));
        }
    }
    if let Some(a) = s("image_aspect_ratio") {
        match (a, pad_to_square) {
            ("pad", true) => {}
            ("pad", false) => {
                return Err(err(
                    "image_aspect_ratio",
                    "'pad', but --no-pad was given".into(),
                ))
            }
            ("square" | "", false) => {}
            ("square" | "", true) => {
                return Err(err(
                    "image_aspect_ratio",
                    format!("'{a}' means no padding: pass --no-pad"),
                ))
            }
            (other, _) => {
                return Err(err(
                    "image_aspect_ratio",
                    format!("'{other}': only pad (and no padding) are implemented"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({"hidden_size": 64, "intermediate_size": 128, "vocab_size": 300,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "rms_norm_eps": 1e-5, "max_position_embeddings": 4096})
    }

    fn with(extra: Value) -> Result<LlamaSettings> {
        let mut v = base();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        parse(Path::new("config.json"), &v.to_string())
    }

    fn err(extra: Value) -> String {
        with(extra).expect_err("an error").to_string()
    }

    #[test]
    fn rope_theta_from_either_layout() {
        let new =
            with(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}))
                .unwrap();
        let old = with(json!({"rope_theta": 500000.0})).unwrap();
        let old_null = with(json!({"rope_theta": 500000.0, "rope_scaling": null})).unwrap();
        for s in [&new, &old, &old_null] {
            assert_eq!(s.config.rope_theta, 500000.0);
            assert!(s.config.rope_scaling.is_none());
        }
        assert_eq!(
            new.read["rope_theta"]["source"],
            "config.json: rope_parameters.rope_theta"
        );
        assert_eq!(with(json!({})).unwrap().config.rope_theta, 10000.0);
        assert!(
            err(json!({"rope_theta": 10000.0, "rope_parameters": {"rope_theta": 500000.0}}))
                .contains("rope_parameters.rope_theta")
        );
    }

    #[test]
    fn llama3_scaling_from_either_layout_and_unknown_types_refused() {
        let p = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 1024});
        let mut newp = p.clone();
        newp["rope_theta"] = json!(500000.0);
        let a = with(json!({"rope_parameters": newp})).unwrap();
        let b = with(json!({"rope_theta": 500000.0, "rope_scaling": p})).unwrap();
        let mut oldp = p.clone();
        oldp.as_object_mut().unwrap().remove("rope_type");
        oldp["type"] = json!("llama3");
        let c = with(json!({"rope_theta": 500000.0, "rope_scaling": oldp})).unwrap();
        for s in [&a, &b, &c] {
            let r = s.config.rope_scaling.as_ref().unwrap();
            assert_eq!((r.factor, r.original_max_position_embeddings), (8.0, 1024));
            assert_eq!(s.config.rope_theta, 500000.0);
        }
        for kind in ["linear", "dynamic", "yarn", "longrope", "made-up"] {
            let e = err(
                json!({"rope_parameters": {"rope_type": kind, "factor": 2.0, "rope_theta": 1e4}}),
            );
            assert!(
                e.contains("rope_parameters.rope_type") && e.contains(kind),
                "{e}"
            );
            let e = err(json!({"rope_scaling": {"type": kind, "factor": 2.0}}));
            assert!(
                e.contains("rope_scaling.rope_type") && e.contains(kind),
                "{e}"
            );
        }
        let e = err(json!({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}));
        assert!(e.contains("low_freq_factor"), "{e}");
        let e = err(json!({"rope_scaling": {"factor": 8.0}}));
        assert!(e.contains("rope_scaling"), "{e}");
    }

    #[test]
    fn function_fields_refused_or_defaulted_like_transformers() {
        assert!(err(json!({"head_dim": 32})).contains("'head_dim'"));
        assert!(with(json!({"head_dim": 16})).is_ok());
        assert!(err(json!({"attention_bias": true})).contains("'attention_bias'"));
        assert!(err(json!({"mlp_bias": true})).contains("'mlp_bias'"));
        assert!(err(json!({"hidden_act": "gelu"})).contains("'hidden_act'"));
        assert!(err(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}}))
            .contains("partial_rotary_factor"));
        let mut v = base();
        v.as_object_mut().unwrap().remove("rms_norm_eps");
        v.as_object_mut().unwrap().remove("num_key_value_heads");
        let s = parse(Path::new("c.json"), &v.to_string()).unwrap();
        assert_eq!(s.config.rms_norm_eps, 1e-6);
        assert_eq!(s.config.num_key_value_heads, 4);
        assert_eq!(s.config.bos_token_id, Some(1));
        assert!(matches!(
            s.config.eos_token_id,
            Some(LlamaEosToks::Single(2))
        ));
        let t =
            with(json!({"tie_word_embeddings": true, "eos_token_id": [5, 7], "pretraining_tp": 1}))
                .unwrap();
        assert!(t.config.tie_word_embeddings);
        assert!(matches!(&t.config.eos_token_id, Some(LlamaEosToks::Multiple(v)) if v == &[5, 7]));
        assert!(t.ignored.contains(&"pretraining_tp".to_string()));
    }

    #[test]
    fn llava_fields_checked_against_options() {
        let p = Path::new("config.json");
        assert!(check_llava_fields(
            p,
            &json!({"mm_vision_select_layer": -2, "image_aspect_ratio": "pad",
            "mm_projector_type": "mlp2x_gelu"}),
            -2,
            true
        )
        .is_ok());
        let e = check_llava_fields(p, &json!({"mm_vision_select_layer": -1}), -2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mm_vision_select_layer"), "{e}");
        let e = check_llava_fields(p, &json!({"image_aspect_ratio": "anyres"}), -2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("image_aspect_ratio"), "{e}");
        let e = check_llava_fields(p, &json!({"mm_projector_type": "linear"}), -2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mm_projector_type"), "{e}");
        let e = check_llava_fields(p, &json!({"mm_use_im_start_end": true}), -2, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mm_use_im_start_end"), "{e}");
    }
}
