//! Execution policies as data: how each recipe runs, module by module (compute and parameter
//! dtypes, activation recomputation), what its optimizer keeps, and what its attention and loss
//! keep for the backward pass. A named preset resolves, for each recipe, to one [`Execution`]
//! (one shape, sent as JSON to the torch engine), and every field of
//! every preset carries its source: a file and line of the released OpenVision code
//! (UCSC-VLAA/OpenVision at 6c24e45) or "assumption: ...".
//!
//! Abbreviations in the sources: S1 / S2 = `scripts/project/openvision{,2}/train.sh`,
//! C1 / C2 = `src/configs/openvision{,2}.py`.

use crate::device::{DTypeArg, DeviceArg};
use crate::fused::Kernels;
use crate::optim::AdamWConfig;
use crate::recipe::{Recipe, Remat};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The named presets of `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// What the released scripts and configs set: OpenVision in bf16 with f32 parameters,
    /// OpenVision 2 in f32; both recompute their encoders, keep Adam's first moment in bf16,
    /// decay only kernels, keep attention probabilities and materialise the loss buffers.
    Released,
    /// As `released`, both recipes computing in bf16 (OpenVision's released precision).
    MatchedBf16,
    /// As `released`, both recipes computing in f32 (OpenVision 2's released precision).
    MatchedF32,
    /// ovbench's own replay before policies existed (`--dtype`, `--remat`, `--kernels` decide),
    /// kept for the CI baseline.
    Ovbench,
}

impl PolicyName {
    pub const ALL: [PolicyName; 4] = [
        PolicyName::Released,
        PolicyName::MatchedBf16,
        PolicyName::MatchedF32,
        PolicyName::Ovbench,
    ];

    pub fn key(self) -> &'static str {
        match self {
            PolicyName::Released => "released",
            PolicyName::MatchedBf16 => "matched-bf16",
            PolicyName::MatchedF32 => "matched-f32",
            PolicyName::Ovbench => "ovbench",
        }
    }

    /// Records made before policies existed ran ovbench's own.
    pub fn legacy() -> Self {
        PolicyName::Ovbench
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for PolicyName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PolicyName::ALL
            .into_iter()
            .find(|p| p.key() == s)
            .ok_or_else(|| {
                format!("unknown policy '{s}' (expected released, matched-bf16, matched-f32 or ovbench)")
            })
    }
}

/// The storage dtype of an optimizer moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MomentDtype {
    F32,
    Bf16,
}

impl MomentDtype {
    pub fn size_in_bytes(self) -> usize {
        match self {
            MomentDtype::F32 => 4,
            MomentDtype::Bf16 => 2,
        }
    }
}

/// Which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecaySet {
    /// Only the matrices of dense (and convolution) layers: the released `.*/kernel$`.
    Kernels,
    /// Also token embeddings, text positions and the v1 queries (ovbench before policies).
    MatricesAndEmbeddings,
}

/// What attention keeps for its backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionProbs {
    /// The (B, H, T, T) probabilities are kept, in the compute dtype (XLA without flash attention).
    Keep,
    /// Scores and probabilities are recomputed in the backward pass (flash attention, SDPA).
    Recompute,
}

/// What the caption loss keeps for its backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossBuffers {
    /// f32 logits, their log-softmax and a one-hot target, each (N, V), built and kept (the
    /// released JAX loss).
    Materialized,
    /// One (N, V) buffer (ovbench's fused CPU kernel, a fused cross-entropy).
    Fused,
}

/// One module's precision and recomputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleExec {
    /// Activations and matrix products.
    pub compute: DTypeArg,
    /// Master weights.
    pub params: DTypeArg,
    /// Activation recomputation of the whole module in the backward pass, block by block.
    pub recompute: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modules {
    pub image_encoder: ModuleExec,
    /// OpenVision's text tower; absent for OpenVision 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder: Option<ModuleExec>,
    /// The v1 decoder for OpenVision, the v2 decoder for OpenVision 2.
    pub decoder: ModuleExec,
    /// The 32,000-way vocabulary head and the caption loss.
    pub head: ModuleExec,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerExec {
    pub mu: MomentDtype,
    pub nu: MomentDtype,
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decay_set: DecaySet,
}

/// How one recipe runs: the object both engines consume (the torch engine as JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub modules: Modules,
    pub optimizer: OptimizerExec,
    pub attention_probs: AttentionProbs,
    pub loss_buffers: LossBuffers,
}

impl Execution {
    /// The same execution with every module computing in f32 (the engines' same-function check).
    pub fn in_f32(mut self) -> Execution {
        let f32 = |m: &mut ModuleExec| m.compute = DTypeArg::F32;
        f32(&mut self.modules.image_encoder);
        if let Some(t) = self.modules.text_encoder.as_mut() {
            f32(t);
        }
        f32(&mut self.modules.decoder);
        f32(&mut self.modules.head);
        self
    }
}

/// A preset resolved for both recipes, with the source of every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolvedPolicy {
    pub name: PolicyName,
    pub description: String,
    pub recipes: BTreeMap<Recipe, Execution>,
    /// Field path (`ov1.modules.image_encoder.compute`, ...) → where its value comes from:
    /// `file:line (what it sets)` in the released code, or `assumption: ...`.
    pub sources: BTreeMap<String, String>,
}

impl ResolvedPolicy {
    pub fn execution(&self, recipe: Recipe) -> &Execution {
        &self.recipes[&recipe]
    }
}

/// The settings the `ovbench` preset is made of (the step's `--dtype`, `--remat`, `--kernels`,
/// device and optimizer hyperparameters).
#[derive(Debug, Clone, Copy)]
pub struct OvbenchKnobs {
    pub dtype: DTypeArg,
    pub remat: Remat,
    pub kernels: Kernels,
    pub device: DeviceArg,
    pub optimizer: AdamWConfig,
}

/// Every leaf path of an execution, in a fixed order: the keys [`ResolvedPolicy::sources`]
/// must cover.
pub fn field_paths(recipe: Recipe) -> Vec<String> {
    let mut modules = vec!["image_encoder"];
    if recipe == Recipe::Ov1 {
        modules.push("text_encoder");
    }
    modules.extend(["decoder", "head"]);
    let k = recipe.key();
    let mut out = Vec::new();
    for m in modules {
        for f in ["compute", "params", "recompute"] {
            out.push(format!("{k}.modules.{m}.{f}"));
        }
    }
    for f in ["mu", "nu", "b1", "b2", "eps", "weight_decay", "decay_set"] {
        out.push(format!("{k}.optimizer.{f}"));
    }
    out.push(format!("{k}.attention_probs"));
    out.push(format!("{k}.loss_buffers"));
    out
}

/// Sources of one recipe's fields, filled in by the presets below.
struct Sources<'a> {
    key: &'static str,
    map: &'a mut BTreeMap<String, String>,
}

impl Sources<'_> {
    fn set(&mut self, field: &str, source: impl Into<String>) {
        self.map
            .insert(format!("{}.{field}", self.key), source.into());
    }
}

const OPTAX_EPS: &str = "assumption: optax.scale_by_adam's default eps (1e-8); the configs pass only mu_dtype, b1 and b2 (src/configs/openvision.py:289, src/configs/openvision2.py:231, applied by src/optim/build_optax.py:220-221)";
const NU_F32: &str = "assumption: optax keeps the second moment in the gradients' dtype, f32 with f32 parameters; the configs set only mu_dtype (src/configs/openvision.py:289, src/configs/openvision2.py:231)";
const HEAD_RECOMPUTE: &str =
    "assumption: the head is part of the decoder module, whose remat_policy is 'none'";

/// The released settings of one recipe, with `compute` overriding the compute dtype of every
/// module but the head where a matched preset asks for it.
fn released(recipe: Recipe, matched: Option<DTypeArg>, src: &mut Sources<'_>) -> Execution {
    let (bf16, f32) = (DTypeArg::Bf16, DTypeArg::F32);
    let released_compute = match recipe {
        Recipe::Ov1 => bf16,
        Recipe::Ov2 => f32,
    };
    let compute = matched.unwrap_or(released_compute);
    let matched_note = |what: &str| match matched {
        Some(d) if d != released_compute => Some(format!(
            "assumption: matched precision: {} computes in {} as {what}",
            recipe.label(),
            d.name()
        )),
        _ => None,
    };
    let module = |recompute: bool| ModuleExec {
        compute,
        params: f32,
        recompute,
    };
    let optimizer = OptimizerExec {
        mu: MomentDtype::Bf16,
        nu: MomentDtype::F32,
        b1: 0.9,
        b2: 0.95,
        eps: 1e-8,
        weight_decay: 0.2,
        decay_set: DecaySet::Kernels,
    };
    let head = ModuleExec {
        compute: f32,
        params: f32,
        recompute: false,
    };
    match recipe {
        Recipe::Ov1 => {
            let m = |s: &str| {
                matched_note("OpenVision 2's released script sets (scripts/project/openvision2/train.sh:123)")
                    .unwrap_or_else(|| s.to_string())
            };
            src.set("modules.image_encoder.compute", m("scripts/project/openvision/train.sh:71 (--config.model.image.dtype=bfloat16; :103 in fine-tuning)"));
            src.set("modules.image_encoder.params", "src/configs/openvision.py:232 ('param_dtype': 'float32'; scripts/project/openvision/train.sh:106 in fine-tuning)");
            src.set("modules.image_encoder.recompute", "src/configs/openvision.py:41 (remat='full') through :226 ('remat_policy': arg.remat)");
            src.set(
                "modules.text_encoder.compute",
                m("scripts/project/openvision/train.sh:72 (--config.model.text.dtype=bfloat16)"),
            );
            src.set(
                "modules.text_encoder.params",
                "scripts/project/openvision/train.sh:74 (--config.model.text.param_dtype=float32)",
            );
            src.set("modules.text_encoder.recompute", "src/configs/openvision.py:41 (remat='full') through :241 ('remat_policy': arg.remat)");
            src.set("modules.decoder.compute", m("scripts/project/openvision/train.sh:73 (--config.model.text_decoder_config.dtype=bfloat16)"));
            src.set(
                "modules.decoder.params",
                "src/configs/openvision.py:212 ('param_dtype': 'float32')",
            );
            src.set(
                "modules.decoder.recompute",
                "src/configs/openvision.py:213 ('remat_policy': 'none')",
            );
            src.set(
                "modules.head.compute",
                "src/models/text_decoder.py:567 (head Dense dtype=jnp.float32)",
            );
            src.set("modules.head.params", "src/models/text_decoder.py:568 (param_dtype of the decoder, src/configs/openvision.py:212)");
            src.set("modules.head.recompute", HEAD_RECOMPUTE);
            src.set(
                "optimizer.mu",
                "src/configs/openvision.py:289 (mu_dtype='bfloat16')",
            );
            src.set("optimizer.nu", NU_F32);
            src.set("optimizer.b1", "src/configs/openvision.py:289 (b1=0.9)");
            src.set("optimizer.b2", "src/configs/openvision.py:289 (b2=0.95)");
            src.set("optimizer.eps", OPTAX_EPS);
            src.set("optimizer.weight_decay", "src/configs/openvision.py:282 (config.wd = 0.2), applied as wd x lr by src/optim/build_optax.py:264 and :272-278");
            src.set(
                "optimizer.decay_set",
                "src/optim/build_optax.py:261 (wd_mults default [('.*/kernel$', 1.0)])",
            );
            src.set("attention_probs", "scripts/project/openvision/train.sh:69-70 (use_flash_attn=False) and src/configs/openvision.py:210 (decoder 'use_flash_attn': False): flax attention keeps its probabilities");
            src.set("loss_buffers", "src/losses/common.py:232-240 (one_hot, log_softmax, -sum(one_hot * log_p)) called at src/main_clip.py:460");
            Execution {
                modules: Modules {
                    image_encoder: module(true),
                    text_encoder: Some(module(true)),
                    decoder: module(false),
                    head,
                },
                optimizer,
                attention_probs: AttentionProbs::Keep,
                loss_buffers: LossBuffers::Materialized,
            }
        }
        Recipe::Ov2 => {
            let m = |s: &str| {
                matched_note(
                    "OpenVision's released script sets (scripts/project/openvision/train.sh:71-73)",
                )
                .unwrap_or_else(|| s.to_string())
            };
            src.set("modules.image_encoder.compute", m("scripts/project/openvision2/train.sh:123 (--config.model.image.dtype=float32; :157 in fine-tuning)"));
            src.set("modules.image_encoder.params", "scripts/project/openvision2/train.sh:124 (--config.model.image.param_dtype=float32)");
            src.set("modules.image_encoder.recompute", "src/configs/openvision2.py:52 (remat='full') through :183 ('remat_policy': arg.remat)");
            src.set("modules.decoder.compute", m("src/models/text_decoder_v2.py:381 (dtype default jnp.float32; src/configs/openvision2.py:173-179 sets none)"));
            src.set(
                "modules.decoder.params",
                "src/models/text_decoder_v2.py:382 (param_dtype default jnp.float32)",
            );
            src.set(
                "modules.decoder.recompute",
                "src/configs/openvision2.py:176 ('remat_policy': 'none')",
            );
            src.set(
                "modules.head.compute",
                "src/models/text_decoder_v2.py:442 (head Dense dtype=jnp.float32)",
            );
            src.set(
                "modules.head.params",
                "src/models/text_decoder_v2.py:443 (param_dtype of the decoder)",
            );
            src.set("modules.head.recompute", HEAD_RECOMPUTE);
            src.set(
                "optimizer.mu",
                "src/configs/openvision2.py:231 (mu_dtype='bfloat16')",
            );
            src.set("optimizer.nu", NU_F32);
            src.set("optimizer.b1", "src/configs/openvision2.py:231 (b1=0.9)");
            src.set("optimizer.b2", "src/configs/openvision2.py:231 (b2=0.95)");
            src.set("optimizer.eps", OPTAX_EPS);
            src.set("optimizer.weight_decay", "src/configs/openvision2.py:221 (config.wd = 0.2), applied as wd x lr by src/optim/build_optax.py:264 and :272-278");
            src.set(
                "optimizer.decay_set",
                "src/optim/build_optax.py:261 (wd_mults default [('.*/kernel$', 1.0)])",
            );
            src.set("attention_probs", "scripts/project/openvision2/train.sh:122 (use_flash_attn=False) and src/models/text_decoder_v2.py:380 (decoder use_flash_attn default False): flax attention keeps its probabilities");
            src.set("loss_buffers", "src/losses/common.py:232-240 (one_hot, log_softmax, -sum(one_hot * log_p)) called at src/main_openvision2.py:284");
            Execution {
                modules: Modules {
                    image_encoder: module(true),
                    text_encoder: None,
                    decoder: module(false),
                    head,
                },
                optimizer,
                attention_probs: AttentionProbs::Keep,
                loss_buffers: LossBuffers::Materialized,
            }
        }
    }
}

/// Whether ovbench's fused CPU transformer block runs under these settings (it keeps the
/// attention probabilities); elsewhere the portable ops recompute them, and candle's composed
/// ops keep everything.
fn ovbench_attention(k: &OvbenchKnobs) -> AttentionProbs {
    match k.kernels {
        Kernels::Composed => AttentionProbs::Keep,
        Kernels::Portable => AttentionProbs::Recompute,
        Kernels::Fused if k.device == DeviceArg::Cpu && k.dtype == DTypeArg::F32 => {
            AttentionProbs::Keep
        }
        Kernels::Fused => AttentionProbs::Recompute,
    }
}

fn ovbench(recipe: Recipe, k: &OvbenchKnobs, src: &mut Sources<'_>) -> Execution {
    let module = |recompute: bool| ModuleExec {
        compute: k.dtype,
        params: DTypeArg::F32,
        recompute,
    };
    let dtype = "assumption: ovbench's replay: one --dtype for every module of both recipes (f32 by default)";
    let params = "assumption: ovbench's replay keeps f32 master weights (layers::Exec.master)";
    let mut modules = vec!["image_encoder", "decoder"];
    if recipe == Recipe::Ov1 {
        modules.push("text_encoder");
    }
    for m in modules {
        src.set(&format!("modules.{m}.compute"), dtype);
        src.set(&format!("modules.{m}.params"), params);
    }
    src.set(
        "modules.image_encoder.recompute",
        "assumption: ovbench's replay: --remat recomputes the image encoder only",
    );
    if recipe == Recipe::Ov1 {
        src.set(
            "modules.text_encoder.recompute",
            "assumption: ovbench's replay never recomputes the text tower",
        );
    }
    src.set(
        "modules.decoder.recompute",
        "assumption: ovbench's replay never recomputes the decoder",
    );
    src.set(
        "modules.head.compute",
        "assumption: ovbench's replay: the head multiplies in --dtype and takes its loss in f32",
    );
    src.set("modules.head.params", params);
    src.set(
        "modules.head.recompute",
        "assumption: ovbench's replay never recomputes the head",
    );
    src.set(
        "optimizer.mu",
        "assumption: ovbench's replay keeps both moments in f32 (optim.rs)",
    );
    src.set(
        "optimizer.nu",
        "assumption: ovbench's replay keeps both moments in f32 (optim.rs)",
    );
    for f in ["b1", "b2", "eps", "weight_decay"] {
        src.set(
            &format!("optimizer.{f}"),
            "assumption: ovbench's AdamWConfig (optim.rs; --config optimizer in the record)",
        );
    }
    src.set("optimizer.decay_set", "assumption: ovbench's replay decays every matrix: dense kernels, token embeddings, text positions and v1 queries");
    src.set("attention_probs", "assumption: follows from --kernels, --device and --dtype: the fused CPU block (f32) and composed ops keep them, the portable ops recompute them");
    src.set("loss_buffers", "assumption: follows from --kernels: the fused and portable cross-entropy keep one (N, V) buffer, composed ops materialise log-probabilities");
    Execution {
        modules: Modules {
            image_encoder: module(k.remat == Remat::Full),
            text_encoder: (recipe == Recipe::Ov1).then(|| module(false)),
            decoder: module(false),
            head: ModuleExec {
                compute: k.dtype,
                params: DTypeArg::F32,
                recompute: false,
            },
        },
        optimizer: OptimizerExec {
            mu: MomentDtype::F32,
            nu: MomentDtype::F32,
            b1: k.optimizer.beta1,
            b2: k.optimizer.beta2,
            eps: k.optimizer.eps,
            weight_decay: k.optimizer.weight_decay,
            decay_set: DecaySet::MatricesAndEmbeddings,
        },
        attention_probs: ovbench_attention(k),
        loss_buffers: match k.kernels {
            Kernels::Composed => LossBuffers::Materialized,
            Kernels::Fused | Kernels::Portable => LossBuffers::Fused,
        },
    }
}

/// Resolves a preset for both recipes. `knobs` matter only to `ovbench`.
pub fn resolve(name: PolicyName, knobs: &OvbenchKnobs) -> ResolvedPolicy {
    let mut sources = BTreeMap::new();
    let mut recipes = BTreeMap::new();
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let mut src = Sources {
            key: recipe.key(),
            map: &mut sources,
        };
        let exec = match name {
            PolicyName::Released => released(recipe, None, &mut src),
            PolicyName::MatchedBf16 => released(recipe, Some(DTypeArg::Bf16), &mut src),
            PolicyName::MatchedF32 => released(recipe, Some(DTypeArg::F32), &mut src),
            PolicyName::Ovbench => ovbench(recipe, knobs, &mut src),
        };
        recipes.insert(recipe, exec);
    }
    let description = match name {
        PolicyName::Released => "what the released scripts and configs set, recipe by recipe",
        PolicyName::MatchedBf16 => "the released settings with both recipes computing in bf16",
        PolicyName::MatchedF32 => "the released settings with both recipes computing in f32",
        PolicyName::Ovbench => {
            "ovbench's replay before policies (--dtype, --remat, --kernels), the CI baseline's"
        }
    }
    .to_string();
    ResolvedPolicy {
        name,
        description,
        recipes,
        sources,
    }
}

/// One line: each module's compute dtype (and recomputation), the moments, the decay set and
/// what attention and the loss keep.
pub fn summary(e: &Execution) -> String {
    let m = |name: &str, x: &ModuleExec| {
        format!(
            "{name} {}{}",
            x.compute.name(),
            if x.recompute { " recomputed" } else { "" }
        )
    };
    let mut parts = vec![m("image encoder", &e.modules.image_encoder)];
    if let Some(t) = &e.modules.text_encoder {
        parts.push(m("text tower", t));
    }
    parts.push(m("decoder", &e.modules.decoder));
    parts.push(m("head", &e.modules.head));
    let dt = |d: MomentDtype| match d {
        MomentDtype::F32 => "f32",
        MomentDtype::Bf16 => "bf16",
    };
    format!(
        "{}; Adam moments {} / {}, decay on {}; attention probabilities {}, loss buffers {}",
        parts.join(", "),
        dt(e.optimizer.mu),
        dt(e.optimizer.nu),
        match e.optimizer.decay_set {
            DecaySet::Kernels => "dense kernels",
            DecaySet::MatricesAndEmbeddings => "matrices and embeddings",
        },
        match e.attention_probs {
            AttentionProbs::Keep => "kept",
            AttentionProbs::Recompute => "recomputed",
        },
        match e.loss_buffers {
            LossBuffers::Materialized => "materialized",
            LossBuffers::Fused => "fused",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knobs() -> OvbenchKnobs {
        OvbenchKnobs {
            dtype: DTypeArg::F32,
            remat: Remat::None,
            kernels: Kernels::Fused,
            device: DeviceArg::Cpu,
            optimizer: AdamWConfig::default(),
        }
    }

    /// Every field of every preset names a file and line of the released code or says it is an
    /// assumption, and no source is left over for a field that does not exist.
    #[test]
    fn every_preset_field_names_a_source() {
        for name in PolicyName::ALL {
            let p = resolve(name, &knobs());
            let mut want: Vec<String> = [Recipe::Ov1, Recipe::Ov2]
                .into_iter()
                .flat_map(field_paths)
                .collect();
            want.sort();
            let have: Vec<String> = p.sources.keys().cloned().collect();
            assert_eq!(have, want, "{name}: sources and fields differ");
            for (field, source) in &p.sources {
                let first = source.split(' ').next().unwrap_or_default();
                let cited = (first.starts_with("src/") || first.starts_with("scripts/"))
                    && (first.contains(".py:") || first.contains(".sh:"));
                assert!(
                    cited || source.starts_with("assumption: "),
                    "{name} {field}: '{source}' names neither a file:line nor an assumption"
                );
            }
        }
    }

    #[test]
    fn released_differs_by_recipe_and_matched_presets_do_not() {
        let r = resolve(PolicyName::Released, &knobs());
        let (v1, v2) = (r.execution(Recipe::Ov1), r.execution(Recipe::Ov2));
        assert_eq!(v1.modules.image_encoder.compute, DTypeArg::Bf16);
        assert_eq!(v2.modules.image_encoder.compute, DTypeArg::F32);
        assert!(v1.modules.text_encoder.unwrap().recompute);
        assert!(v2.modules.text_encoder.is_none());
        assert_eq!(v1.optimizer.mu, MomentDtype::Bf16);
        assert_eq!(v1.optimizer.decay_set, DecaySet::Kernels);
        for (name, d) in [
            (PolicyName::MatchedBf16, DTypeArg::Bf16),
            (PolicyName::MatchedF32, DTypeArg::F32),
        ] {
            let p = resolve(name, &knobs());
            for r in [Recipe::Ov1, Recipe::Ov2] {
                let e = p.execution(r);
                assert_eq!(e.modules.image_encoder.compute, d);
                assert_eq!(e.modules.decoder.compute, d);
                assert_eq!(e.modules.head.compute, DTypeArg::F32, "logits are f32");
            }
        }
    }

    /// The ovbench preset is what the step ran before policies: its fields follow the knobs.
    #[test]
    fn ovbench_follows_the_knobs() {
        let p = resolve(PolicyName::Ovbench, &knobs());
        let e = p.execution(Recipe::Ov1);
        assert_eq!(e.optimizer.mu, MomentDtype::F32);
        assert_eq!(e.optimizer.decay_set, DecaySet::MatricesAndEmbeddings);
        assert_eq!(e.attention_probs, AttentionProbs::Keep);
        assert_eq!(e.loss_buffers, LossBuffers::Fused);
        assert!(!e.modules.image_encoder.recompute);
        let k = OvbenchKnobs {
            dtype: DTypeArg::Bf16,
            remat: Remat::Full,
            ..knobs()
        };
        let e = *resolve(PolicyName::Ovbench, &k).execution(Recipe::Ov2);
        assert_eq!(e.attention_probs, AttentionProbs::Recompute);
        assert!(e.modules.image_encoder.recompute);
        assert_eq!(e.modules.decoder.compute, DTypeArg::Bf16);
    }

    #[test]
    fn names_round_trip() {
        for n in PolicyName::ALL {
            assert_eq!(n.key().parse::<PolicyName>().unwrap(), n);
            assert_eq!(
                serde_json::to_string(&n).unwrap(),
                format!("\"{}\"", n.key())
            );
        }
        assert!("fast".parse::<PolicyName>().is_err());
    }

    /// The execution object serialises in the shape of the shared spec.
    #[test]
    fn execution_has_the_shared_shape() {
        let p = resolve(PolicyName::Released, &knobs());
        let v = serde_json::to_value(p.execution(Recipe::Ov1)).unwrap();
        assert_eq!(v["modules"]["image_encoder"]["compute"], "bf16");
        assert_eq!(v["modules"]["head"]["compute"], "f32");
        assert_eq!(v["optimizer"]["mu"], "bf16");
        assert_eq!(v["optimizer"]["decay_set"], "kernels");
        assert_eq!(v["attention_probs"], "keep");
        assert_eq!(v["loss_buffers"], "materialized");
        let v2 = serde_json::to_value(p.execution(Recipe::Ov2)).unwrap();
        assert!(v2["modules"].get("text_encoder").is_none());
        let whole = serde_json::to_value(&p).unwrap();
        assert!(whole["recipes"]["ov1"].is_object() && whole["recipes"]["ov2"].is_object());
    }
}
