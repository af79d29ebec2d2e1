//! The per-recipe execution object engines receive (/work/coord/execution-spec.md; field
//! names fixed there). Issue 14's named policies resolve to it; until they land, it is derived
//! from what the candle engine runs for `--dtype`, `--remat` and `--kernels`, so that the torch
//! engine runs the same precision, recomputation, optimizer state and buffers.

use crate::device::DeviceArg;
use crate::fused::Kernels;
use crate::recipe::{Recipe, Remat};
use crate::step::StepConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModuleExecution {
    /// Activations and matmuls: f32, bf16 or f16.
    pub compute: String,
    /// Master weights: f32.
    pub params: String,
    /// Recompute the module's activations in the backward pass (per block).
    pub recompute: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OptimizerExecution {
    /// First and second moments' dtypes: f32 or bf16.
    pub mu: String,
    pub nu: String,
    pub b1: f64,
    pub b2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// `kernels` or `matrices_and_embeddings`.
    pub decay_set: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Execution {
    /// `image_encoder`, `text_encoder` (OpenVision only), `decoder`, `head`.
    pub modules: BTreeMap<String, ModuleExecution>,
    pub optimizer: OptimizerExecution,
    /// `keep` or `recompute`.
    pub attention_probs: String,
    /// `materialized` or `fused`.
    pub loss_buffers: String,
}

impl Execution {
    /// What the candle engine runs for `cfg` (its `--dtype`, `--remat`, `--kernels`):
    /// - every module computes in `--dtype` (the head's matmul too; the loss is f32), master
    ///   weights f32;
    /// - `--remat full` recomputes the image encoder only;
    /// - AdamW with both moments in f32, decay on matrices and embeddings (ParamStore's flags);
    /// - the fused CPU kernels (CPU, f32) keep attention probabilities and hold one (N, V)
    ///   loss buffer; the portable ops (`--kernels portable`, or fused off the CPU's f32 path)
    ///   recompute attention and build the loss as composed ops do; composed keeps both.
    pub fn from_step_config(cfg: &StepConfig, recipe: Recipe) -> Execution {
        let dtype = cfg.dtype.name().to_string();
        let module = |recompute: bool| ModuleExecution {
            compute: dtype.clone(),
            params: "f32".into(),
            recompute,
        };
        let mut modules = BTreeMap::new();
        modules.insert("image_encoder".into(), module(cfg.remat == Remat::Full));
        if recipe == Recipe::Ov1 {
            modules.insert("text_encoder".into(), module(false));
        }
        modules.insert("decoder".into(), module(false));
        modules.insert("head".into(), module(false));
        let fused_cpu = cfg.kernels == Kernels::Fused
            && cfg.device == DeviceArg::Cpu
            && cfg.dtype.name() == "f32";
        let portable = match cfg.kernels {
            Kernels::Portable => true,
            Kernels::Fused => !fused_cpu,
            Kernels::Composed => false,
        };
        let o = cfg.optimizer;
        Execution {
            modules,
            optimizer: OptimizerExecution {
                mu: "f32".into(),
                nu: "f32".into(),
                b1: o.beta1,
                b2: o.beta2,
                eps: o.eps,
                weight_decay: o.weight_decay,
                decay_set: "matrices_and_embeddings".into(),
            },
            attention_probs: if portable { "recompute" } else { "keep" }.into(),
            loss_buffers: if fused_cpu { "fused" } else { "materialized" }.into(),
        }
    }

    /// The same execution with every module computing in f32 (the same-function check).
    pub fn in_f32(mut self) -> Execution {
        for m in self.modules.values_mut() {
            m.compute = "f32".into();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DTypeArg;

    #[test]
    fn derived_from_the_candle_flags() {
        let cfg = StepConfig::small();
        let e = Execution::from_step_config(&cfg, Recipe::Ov1);
        assert_eq!(
            e.modules.keys().collect::<Vec<_>>(),
            ["decoder", "head", "image_encoder", "text_encoder"]
        );
        assert_eq!(e.loss_buffers, "fused");
        assert_eq!(e.attention_probs, "keep");
        assert_eq!(e.optimizer.decay_set, "matrices_and_embeddings");
        let v2 = Execution::from_step_config(
            &StepConfig {
                dtype: DTypeArg::Bf16,
                remat: Remat::Full,
                ..StepConfig::small()
            },
            Recipe::Ov2,
        );
        assert!(!v2.modules.contains_key("text_encoder"));
        assert!(v2.modules["image_encoder"].recompute);
        assert!(!v2.modules["decoder"].recompute);
        assert_eq!(v2.modules["head"].compute, "bf16");
        assert_eq!(v2.attention_probs, "recompute");
        assert_eq!(v2.loss_buffers, "materialized");
        assert_eq!(v2.clone().in_f32().modules["decoder"].compute, "f32");
        // The spec's field names, as JSON.
        let j = serde_json::to_value(&v2).unwrap();
        for k in ["modules", "optimizer", "attention_probs", "loss_buffers"] {
            assert!(j.get(k).is_some(), "{k}");
        }
        for k in ["mu", "nu", "b1", "b2", "eps", "weight_decay", "decay_set"] {
            assert!(j["optimizer"].get(k).is_some(), "{k}");
        }
        for k in ["compute", "params", "recompute"] {
            assert!(j["modules"]["image_encoder"].get(k).is_some(), "{k}");
        }
    }
}
