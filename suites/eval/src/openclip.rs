//! OpenVision / OpenVision 2 vision towers as released (OpenCLIP layout, facts §7), loaded
//! into the ViT that `ovbench step` trains (`ovbench_train::vit::VisionTransformer`).
//!
//! Name mapping (PyTorch `Linear` weights are `(out, in)`; the ViT stores `(in, out)`):
//!
//! | OpenCLIP (`visual.` prefix optional) | ViT parameter |
//! |---|---|
//! | `conv1.weight` `(D, 3, p, p)` (+ `conv1.bias` if any) | `patch_embed.w` `(p·p·3, D)`, channels last (+ `patch_embed.b`, else zeros) |
//! | `class_embedding` `(D)` + `positional_embedding[0]` | `cls` `(1, 1, D)` |
//! | `positional_embedding[1..]` `(N, D)` | `posemb` (replaces the fixed sin-cos table) |
//! | `transformer.resblocks.i.ln_1` / `ln_2` | `blocks.block{i}.ln1` / `ln2` |
//! | `….attn.in_proj_weight` / `in_proj_bias` (q; k; v) | `….attn.qkv.w` (transposed) / `.b` |
//! | `….attn.out_proj` | `….attn.out` |
//! | `….mlp.c_fc` / `mlp.c_proj` | `….mlp.fc1` / `fc2` |
//! | `ln_post` | `norm` (used only for the pooled output, not by LLaVA features) |
//! | `proj` | not used (LLaVA takes hidden states) |
//!
//! OpenCLIP adds `positional_embedding[0]` to the class token; folding it into `cls` is exact.
//! Assumptions, checked where the file allows: no `ln_pre` (`no_ln_pre=true` in every
//! OpenVision config), no attention pooling, no LayerScale, LayerNorm eps 1e-6 (the ViT's
//! fixed eps), head width 64 unless `open_clip_config.json` says otherwise.

use crate::error::{CandleCtx, EvalError, Result};
use crate::tensors;
use candle_core::{DType, Device, Tensor};
use ovbench_train::config::StackDims;
use ovbench_train::layers::Exec;
use ovbench_train::params::{Init, ParamStore};
use ovbench_train::vit::VisionTransformer;
use ovbench_train::vit_pretrained::{self, Gelu};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// ImageNet mean / std (OpenVision's `open_clip_config.json`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
const IMAGENET_MEAN_F64: [f64; 3] = [0.485, 0.456, 0.406];

/// LLaVA's `tuple(int(x * 255) for x in image_mean)`, in double precision.
fn fill(mean: [f64; 3]) -> [u8; 3] {
    mean.map(|m| (m * 255.0).clamp(0.0, 255.0) as u8)
}

/// What the tower is, from its tensors and (when present) its `open_clip_config.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TowerConfig {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp_dim: usize,
    pub patch: usize,
    pub image_size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `expand2square`'s fill colour, `int(m * 255)` of the mean as Python computes it.
    pub pad_fill: [u8; 3],
    /// `bilinear` or `bicubic`.
    pub interpolation: String,
    /// open_clip's `resize_mode`: `squash` (resize to S x S), `shortest` (shortest side to S,
    /// centre crop) or `longest`; the same on the padded square image.
    pub resize_mode: String,
    pub config_file: Option<PathBuf>,
    /// Tensors of the file that the LLaVA features do not use (e.g. `proj`, the text tower).
    pub ignored_tensors: usize,
}

/// A loaded tower and how to take LLaVA features from it.
pub struct VisionTower {
    pub vit: VisionTransformer,
    pub cfg: TowerConfig,
    pub gelu: Gelu,
    pub device: Device,
}

/// Options for loading a tower.
#[derive(Debug, Clone)]
pub struct TowerOptions {
    /// `open_clip_config.json`; default: the one beside the weights, if any.
    pub config: Option<PathBuf>,
    pub heads: Option<usize>,
    pub gelu: Gelu,
}

impl Default for TowerOptions {
    fn default() -> Self {
        TowerOptions {
            config: None,
            heads: None,
            gelu: Gelu::Erf,
        }
    }
}

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// Loads an OpenCLIP vision tower (full CLIP checkpoint or vision-only) into the ViT.
pub fn load(path: &Path, opts: &TowerOptions, device: &Device) -> Result<VisionTower> {
    let file = tensors::load(path)?;
    // Full CLIP checkpoints prefix the tower with `visual.`; vision-only repos may not.
    let prefix = if file.tensors.keys().any(|k| k.starts_with("visual.")) {
        "visual."
    } else {
        ""
    };
    let missing = |name: &str, hint: &str| EvalError::MissingTensor {
        path: path.into(),
        name: key(prefix, name),
        hint: hint.into(),
    };
    let raw = |name: &str| -> Result<&Tensor> {
        file.tensors
            .get(&key(prefix, name))
            .ok_or_else(|| missing(name, ""))
    };
    for bad in ["ln_pre.weight", "attn_pool.query", "conv1.weight_v"] {
        if file.tensors.contains_key(&key(prefix, bad)) {
            return Err(EvalError::Unexpected {
                path: path.into(),
                name: key(prefix, bad),
                msg: "this layout (pre-norm / attention pooling / weight norm) is not an OpenVision tower and the ViT has no place for it".into(),
            });
        }
    }
    let conv = raw("conv1.weight").map_err(|_| {
        missing(
            "conv1.weight",
            " (is this an OpenCLIP vision tower? no patch embedding found)",
        )
    })?;
    let cdims = conv.dims().to_vec();
    if cdims.len() != 4 || cdims[1] != 3 || cdims[2] != cdims[3] {
        return Err(EvalError::Shape {
            path: path.into(),
            name: key(prefix, "conv1.weight"),
            found: cdims,
            expected: "(width, 3, patch, patch)".into(),
        });
    }
    let (width, patch) = (cdims[0], cdims[2]);
    let mut layers = 0;
    while file.tensors.contains_key(&key(
        prefix,
        &format!("transformer.resblocks.{layers}.ln_1.weight"),
    )) {
        layers += 1;
    }
    if layers == 0 {
        return Err(missing(
            "transformer.resblocks.0.ln_1.weight",
            " (no transformer blocks)",
        ));
    }
    let pos = raw("positional_embedding")?;
    let pdims = pos.dims().to_vec();
    let tokens = pdims.first().copied().unwrap_or(0);
    let side = ((tokens.saturating_sub(1)) as f64).sqrt().round() as usize;
    if pdims.len() != 2 || pdims[1] != width || side * side + 1 != tokens {
        return Err(EvalError::Shape {
            path: path.into(),
            name: key(prefix, "positional_embedding"),
            found: pdims,
            expected: format!("(1 + side², {width}) with a class token"),
        });
    }
    let mlp_name = "transformer.resblocks.0.mlp.c_fc.weight";
    let mlp_dim = raw(mlp_name)?.dims().first().copied().unwrap_or(0);

    // The config beside the weights (OpenCLIP hub layout), if any.
    let config_file = opts.config.clone().or_else(|| {
        let p = path.with_file_name("open_clip_config.json");
        p.exists().then_some(p)
    });
    let mut cfg = TowerConfig {
        width,
        layers,
        heads: 0,
        mlp_dim,
        patch,
        image_size: side * patch,
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        pad_fill: fill(IMAGENET_MEAN_F64),
        interpolation: "bilinear".into(),
        resize_mode: "squash".into(),
        config_file: config_file.clone(),
        ignored_tensors: 0,
    };
    let mut head_width = 64usize;
    if let Some(cf) = &config_file {
        head_width = apply_config(cf, &mut cfg)?.unwrap_or(64);
    }
    cfg.heads = match opts.heads {
        Some(h) => h,
        None => width / head_width.max(1),
    };
    if cfg.heads == 0 || width % cfg.heads != 0 {
        return Err(EvalError::Usage(format!(
            "{}: width {width} cannot be split into {} heads of width {head_width} (pass --vision-heads or an open_clip_config.json with head_width)",
            path.display(),
            cfg.heads
        )));
    }

    // OpenCLIP names -> ViT parameter names, shapes checked on the way.
    let mut named: HashMap<String, Tensor> = HashMap::new();
    let ctx = || format!("{}: mapping OpenCLIP tensors", path.display());
    let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = raw(name)?;
        tensors::check(path, &key(prefix, name), t, shape)?;
        Ok(t.clone())
    };
    let pe = get("conv1.weight", &[width, 3, patch, patch])?
        .permute((2, 3, 1, 0))
        .and_then(|t| t.contiguous())
        .and_then(|t| t.reshape((patch * patch * 3, width)))
        .ctx(ctx)?;
    named.insert("patch_embed.w".into(), pe);
    let pb = if file.tensors.contains_key(&key(prefix, "conv1.bias")) {
        get("conv1.bias", &[width])?
    } else {
        Tensor::zeros(width, DType::F32, &Device::Cpu).ctx(ctx)?
    };
    named.insert("patch_embed.b".into(), pb);
    let pos = get("positional_embedding", &[tokens, width])?;
    let cls = (get("class_embedding", &[width])? + pos.get(0).ctx(ctx)?)
        .and_then(|t| t.reshape((1, 1, width)))
        .ctx(ctx)?;
    named.insert("cls".into(), cls);
    let posemb = pos.narrow(0, 1, tokens - 1).ctx(ctx)?;
    let t = |x: Tensor| x.t().and_then(|t| t.contiguous());
    for i in 0..layers {
        let r = format!("transformer.resblocks.{i}");
        let b = format!("blocks.block{i}");
        for (src, dst) in [("ln_1", "ln1"), ("ln_2", "ln2")] {
            named.insert(
                format!("{b}.{dst}.scale"),
                get(&format!("{r}.{src}.weight"), &[width])?,
            );
            named.insert(
                format!("{b}.{dst}.bias"),
                get(&format!("{r}.{src}.bias"), &[width])?,
            );
        }
        let lin: [(&str, &str, usize, usize); 4] = [
            ("attn.in_proj", "attn.qkv", width, 3 * width),
            ("attn.out_proj", "attn.out", width, width),
            ("mlp.c_fc", "mlp.fc1", width, mlp_dim),
            ("mlp.c_proj", "mlp.fc2", mlp_dim, width),
        ];
        for (src, dst, inp, out) in lin {
            // `in_proj` is stored as `in_proj_weight`, the others as `<name>.weight`.
            let (wn, bn) = if src == "attn.in_proj" {
                (format!("{r}.{src}_weight"), format!("{r}.{src}_bias"))
            } else {
                (format!("{r}.{src}.weight"), format!("{r}.{src}.bias"))
            };
            named.insert(format!("{b}.{dst}.w"), t(get(&wn, &[out, inp])?).ctx(ctx)?);
            named.insert(format!("{b}.{dst}.b"), get(&bn, &[out])?);
        }
        for ls in ["ls_1.gamma", "ls_2.gamma"] {
            if file
                .tensors
                .contains_key(&key(prefix, &format!("{r}.{ls}")))
            {
                return Err(EvalError::Unexpected {
                    path: path.into(),
                    name: key(prefix, &format!("{r}.{ls}")),
                    msg: "LayerScale is not part of OpenVision towers".into(),
                });
            }
        }
    }
    named.insert("norm.scale".into(), get("ln_post.weight", &[width])?);
    named.insert("norm.bias".into(), get("ln_post.bias", &[width])?);

    // Everything else of the tower must be known (strict, like `load_state_dict`).
    for name in file.tensors.keys() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if prefix.is_empty() && !is_tower_name(rest) && rest != "proj" {
            // A vision-only file holds only tower tensors.
            return Err(EvalError::Unexpected {
                path: path.into(),
                name: name.clone(),
                msg: "not part of an OpenCLIP vision tower".into(),
            });
        }
        if rest.starts_with("transformer.resblocks.") {
            let idx: Option<usize> = rest.split('.').nth(2).and_then(|s| s.parse().ok());
            if idx.is_none_or(|i| i >= layers) {
                return Err(EvalError::Unexpected {
                    path: path.into(),
                    name: name.clone(),
                    msg: format!("block index out of the {layers} contiguous blocks found"),
                });
            }
        }
    }
    cfg.ignored_tensors = file
        .tensors
        .keys()
        .filter(|k| !k.strip_prefix(prefix).is_some_and(is_tower_name))
        .count();

    let d = StackDims {
        width,
        depth: layers,
        heads: cfg.heads,
        mlp_dim,
    };
    let mut ps = ParamStore::with(0, device, DType::F32, Init::Shapes);
    let posemb = posemb.to_device(device).ctx(ctx)?;
    let named = named
        .into_iter()
        .map(|(k, v)| v.to_device(device).map(|v| (k, v)))
        .collect::<candle_core::Result<HashMap<_, _>>>()
        .ctx(ctx)?;
    let vit = vit_pretrained::from_named(&mut ps, d, patch, cfg.image_size, &named, Some(posemb))
        .map_err(|e| EvalError::Format {
        path: path.into(),
        msg: e.to_string(),
    })?;
    drop(file);
    Ok(VisionTower {
        vit,
        cfg,
        gelu: opts.gelu,
        device: device.clone(),
    })
}

fn is_tower_name(rest: &str) -> bool {
    [
        "conv1.",
        "class_embedding",
        "positional_embedding",
        "transformer.",
        "ln_post.",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
}

/// Reads `open_clip_config.json`, checks it against the tensors and takes the
/// preprocessing from it. Returns the head width when the config gives one.
pub fn apply_config(path: &Path, cfg: &mut TowerConfig) -> Result<Option<usize>> {
    let text = crate::error::read_config(path)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| EvalError::Config {
        path: path.into(),
        field: format!("line {}, column {}", e.line(), e.column()),
        msg: format!("not valid JSON: {e}"),
    })?;
    let vision = v
        .pointer("/model_cfg/vision_cfg")
        .or_else(|| v.get("vision_cfg"));
    let cerr = |field: &str, msg: String| EvalError::Config {
        path: path.into(),
        field: field.into(),
        msg,
    };
    let mut head_width = None;
    if let Some(vc) = vision {
        let checks: [(&str, usize); 3] = [
            ("layers", cfg.layers),
            ("width", cfg.width),
            ("patch_size", cfg.patch),
        ];
        // A field that is there must be a whole number: a string or a fraction silently
        // skipped would leave the check undone.
        let uint = |field: &str| -> Result<Option<u64>> {
            match vc.get(field) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x.as_u64().map(Some).ok_or_else(|| {
                    cerr(
                        &format!("vision_cfg.{field}"),
                        format!("{x}: expected a non-negative integer"),
                    )
                }),
            }
        };
        for (field, have) in checks {
            if let Some(x) = uint(field)? {
                if x as usize != have {
                    return Err(cerr(
                        &format!("vision_cfg.{field}"),
                        format!("{x}, but the weights have {have}"),
                    ));
                }
            }
        }
        if let Some(x) = uint("image_size")? {
            if x as usize != cfg.image_size {
                return Err(cerr(
                    "vision_cfg.image_size",
                    format!(
                        "{x}, but the position embedding is for {} px",
                        cfg.image_size
                    ),
                ));
            }
        }
        head_width = match uint("head_width")? {
            None => None,
            // open_clip builds width // head_width heads: a width that does not divide
            // would run heads of another width than the config says (head_width 7 on a
            // width of 32 ran 4 heads of 8), so it is refused.
            Some(h) if h == 0 || cfg.width % h as usize != 0 => {
                return Err(cerr(
                    "vision_cfg.head_width",
                    format!(
                        "{h} does not divide the tower's width {} into whole heads",
                        cfg.width
                    ),
                ))
            }
            Some(h) => Some(h as usize),
        };
        // OpenVision's own open_clip writes `eps`; upstream open_clip `norm_kwargs.eps`
        // (whose absence means nn.LayerNorm's 1e-5).
        let eps_fields = [
            ("vision_cfg.eps", vc.get("eps")),
            ("vision_cfg.norm_kwargs.eps", vc.pointer("/norm_kwargs/eps")),
        ];
        let mut eps_given = false;
        for (field, val) in eps_fields {
            if let Some(eps) = val.and_then(|x| x.as_f64()) {
                eps_given = true;
                if (eps - ovbench_train::config::LN_EPS).abs() > 1e-12 {
                    return Err(cerr(
                        field,
                        format!("{eps}; the ViT's LayerNorm eps is fixed at 1e-6"),
                    ));
                }
            }
        }
        if !eps_given && vc.get("norm_kwargs").is_some() {
            return Err(cerr(
                "vision_cfg.norm_kwargs",
                "no eps: open_clip then uses LayerNorm's 1e-5, the ViT's is fixed at 1e-6".into(),
            ));
        }
        if vc.get("no_ln_pre").and_then(|x| x.as_bool()) == Some(false) {
            return Err(cerr(
                "vision_cfg.no_ln_pre",
                "false: the ViT has no pre-norm (OpenVision towers set it true)".into(),
            ));
        }
    }
    let pre = v.get("preprocess_cfg");
    let triple = |field: &str| -> Result<Option<[f64; 3]>> {
        match pre.and_then(|p| p.get(field)) {
            None => Ok(None),
            Some(x) => {
                let a: Vec<f64> = x
                    .as_array()
                    .map(|a| a.iter().filter_map(|y| y.as_f64()).collect())
                    .unwrap_or_default();
                if a.len() != 3 {
                    return Err(cerr(
                        &format!("preprocess_cfg.{field}"),
                        "expected three numbers".into(),
                    ));
                }
                Ok(Some([a[0], a[1], a[2]]))
            }
        }
    };
    if let Some(m) = triple("mean")? {
        cfg.mean = m.map(|x| x as f32);
        cfg.pad_fill = fill(m);
    }
    if let Some(s) = triple("std")? {
        cfg.std = s.map(|x| x as f32);
    }
    if let Some(m) = pre
        .and_then(|p| p.get("resize_mode"))
        .and_then(|x| x.as_str())
    {
        if !matches!(m, "squash" | "shortest" | "longest") {
            return Err(cerr(
                "preprocess_cfg.resize_mode",
                format!("'{m}' (supported: squash, shortest, longest)"),
            ));
        }
        cfg.resize_mode = m.into();
    }
    if let Some(i) = pre
        .and_then(|p| p.get("interpolation"))
        .and_then(|x| x.as_str())
    {
        if !matches!(i, "bilinear" | "bicubic") {
            return Err(cerr(
                "preprocess_cfg.interpolation",
                format!("'{i}' (supported: bilinear, bicubic)"),
            ));
        }
        cfg.interpolation = i.into();
    }
    Ok(head_width)
}

impl VisionTower {
    /// LLaVA features: the hidden states after `depth + select_layer + 1` blocks
    /// (`select_layer = -2` is the penultimate block), patch tokens only (CLS dropped,
    /// `mm_vision_select_feature = 'patch'`), no final norm. `pixels`: (1, 3, S, S).
    pub fn features(&self, pixels: &Tensor, select_layer: i64) -> Result<Tensor> {
        let depth = self.cfg.layers as i64;
        let layers = if select_layer < 0 {
            depth + select_layer + 1
        } else {
            select_layer
        };
        if layers < 1 || layers > depth {
            return Err(EvalError::Usage(format!(
                "--select-layer {select_layer} is outside a {depth}-block tower"
            )));
        }
        let h = self
            .vit
            .hidden_states(pixels, layers as usize, self.gelu, Exec::F32)
            .ctx(|| "vision tower forward".into())?;
        let n = h.dim(1).ctx(|| "vision tower output".into())? - 1;
        h.narrow(1, 1, n).ctx(|| "vision tower output".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tower(width: usize) -> TowerConfig {
        TowerConfig {
            width,
            layers: 2,
            heads: 0,
            mlp_dim: 4 * width,
            patch: 8,
            image_size: 32,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            pad_fill: fill(IMAGENET_MEAN_F64),
            interpolation: "bilinear".into(),
            resize_mode: "squash".into(),
            config_file: None,
            ignored_tensors: 0,
        }
    }

    fn apply(vision_cfg: serde_json::Value) -> Result<Option<usize>> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("open_clip_config.json");
        let doc = serde_json::json!({"model_cfg": {"vision_cfg": vision_cfg}});
        std::fs::write(&p, doc.to_string()).unwrap();
        apply_config(&p, &mut tower(32))
    }

    #[test]
    fn a_head_width_that_does_not_divide_the_width_is_refused() {
        // 32 / 7 would silently have run 4 heads of width 8.
        let e = apply(serde_json::json!({"width": 32, "head_width": 7}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vision_cfg.head_width") && e.contains("does not divide"),
            "{e}"
        );
        assert!(apply(serde_json::json!({"head_width": 0})).is_err());
        assert_eq!(
            apply(serde_json::json!({"head_width": 8})).unwrap(),
            Some(8)
        );
        assert_eq!(apply(serde_json::json!({"width": 32})).unwrap(), None);
    }

    #[test]
    fn fields_that_are_not_whole_numbers_are_refused() {
        for (field, v) in [
            ("head_width", serde_json::json!("8")),
            ("width", serde_json::json!(32.5)),
            ("layers", serde_json::json!(-2)),
        ] {
            let e = apply(serde_json::json!({ field: v }))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("vision_cfg.{field}")), "{e}");
        }
    }
}
