//! LLaVA-1.5's `mlp2x_gelu` projector: Linear(vision width → LLM width), GELU (exact erf,
//! PyTorch `nn.GELU()`), Linear(LLM width → LLM width). Read from LLaVA's `mm_projector.bin`
//! (or a safetensors file) with the names `model.mm_projector.{0,2}.{weight,bias}`; the
//! `model.` prefix is optional.

use crate::error::{CandleCtx, EvalError, Result};
use crate::tensors;
use candle_core::{Device, Module, Tensor};
use std::path::Path;

pub struct Projector {
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Projector {
    /// `in_dim`: the vision tower's width; `out_dim`: the LLM's hidden size.
    pub fn load(path: &Path, in_dim: usize, out_dim: usize, device: &Device) -> Result<Self> {
        let file = tensors::load(path)?;
        let prefix = ["model.mm_projector.", "mm_projector.", ""]
            .into_iter()
            .find(|p| file.tensors.contains_key(&format!("{p}0.weight")))
            .ok_or_else(|| EvalError::MissingTensor {
                path: path.into(),
                name: "model.mm_projector.0.weight".into(),
                hint: " (not an mlp2x_gelu projector)".into(),
            })?;
        if file.tensors.contains_key(&format!("{prefix}4.weight")) {
            return Err(EvalError::Unexpected {
                path: path.into(),
                name: format!("{prefix}4.weight"),
                msg: "a deeper MLP than mlp2x_gelu".into(),
            });
        }
        let get = |n: &str, s: &[usize]| -> Result<Tensor> {
            file.get(&format!("{prefix}{n}"), s)?
                .to_device(device)
                .ctx(|| format!("{}: {prefix}{n}", path.display()))
        };
        Ok(Projector {
            fc1: candle_nn::Linear::new(
                get("0.weight", &[out_dim, in_dim])?,
                Some(get("0.bias", &[out_dim])?),
            ),
            fc2: candle_nn::Linear::new(
                get("2.weight", &[out_dim, out_dim])?,
                Some(get("2.bias", &[out_dim])?),
            ),
            in_dim,
            out_dim,
        })
    }

    /// (B, N, in_dim) -> (B, N, out_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ctx = || "projector forward".to_string();
        let h = self.fc1.forward(x).ctx(ctx)?.gelu_erf().ctx(ctx)?;
        self.fc2.forward(&h).ctx(ctx)
    }
}
