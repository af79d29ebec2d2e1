//! Using the trained [`VisionTransformer`] as a frozen feature extractor (LLaVA-style
//! evaluation): filling its [`ParamStore`] from named tensors loaded from a checkpoint, and
//! a forward pass that returns the hidden states after a chosen block.
//!
//! Additive to `vit.rs`: the same modules (`Linear`, `LayerNorm`, `Attention`, `Block`) and
//! the same patch layout; nothing here changes how `ovbench step` trains.

use crate::config::StackDims;
use crate::layers::{Block, Exec};
use crate::params::{Init, ParamStore};
use crate::vit::VisionTransformer;
use candle_core::{DType, Device, Result, Tensor};
use std::collections::HashMap;

/// The MLP activation of a loaded tower. The JAX training code uses the tanh approximation
/// (what [`Block::forward`] computes); OpenCLIP's PyTorch towers use `nn.GELU()`, the exact
/// erf form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    Tanh,
    Erf,
}

/// The names and shapes of every parameter of a tower of this size, in creation order
/// (`patch_embed.w` is `(patch·patch·3, width)`, channels last; linear weights are `(in, out)`).
pub fn param_shapes(
    d: StackDims,
    patch: usize,
    resolution: usize,
) -> Result<Vec<(String, Vec<usize>)>> {
    let mut ps = ParamStore::with(0, &Device::Cpu, DType::F32, Init::Shapes);
    VisionTransformer::new(&mut ps, d, patch, resolution)?;
    Ok(ps
        .params
        .iter()
        .map(|p| (p.name.clone(), p.var.dims().to_vec()))
        .collect())
}

/// Builds the tower over `ps` and overwrites every parameter with the tensor of the same
/// name in `named` (shape checked). `posemb` replaces the fixed sin-cos table when given
/// (a checkpoint's learned table, `(N, width)`, patch positions only).
///
/// Errors name the parameter that is missing or has the wrong shape. `named` may hold
/// more tensors than the tower uses; those are ignored.
pub fn from_named(
    ps: &mut ParamStore,
    d: StackDims,
    patch: usize,
    resolution: usize,
    named: &HashMap<String, Tensor>,
    posemb: Option<Tensor>,
) -> Result<VisionTransformer> {
    let first = ps.params.len();
    let mut vit = VisionTransformer::new(ps, d, patch, resolution)?;
    for p in &ps.params[first..] {
        let t = named.get(&p.name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "vision tower: no tensor for parameter '{}'",
                p.name
            ))
        })?;
        if t.dims() != p.var.dims() {
            return Err(candle_core::Error::Msg(format!(
                "vision tower: parameter '{}' has shape {:?}, expected {:?}",
                p.name,
                t.dims(),
                p.var.dims()
            )));
        }
        p.var
            .set(&t.to_dtype(p.var.dtype())?.to_device(p.var.device())?)?;
    }
    if let Some(pe) = posemb {
        if pe.dims() != vit.posemb.dims() {
            return Err(candle_core::Error::Msg(format!(
                "vision tower: position embedding has shape {:?}, expected {:?}",
                pe.dims(),
                vit.posemb.dims()
            )));
        }
        vit.posemb = pe
            .to_dtype(vit.posemb.dtype())?
            .to_device(vit.posemb.device())?;
    }
    Ok(vit)
}

/// One pre-LN block with a chosen GELU (the same weights and modules as [`Block::forward`]).
pub fn block_forward(b: &Block, x: &Tensor, gelu: Gelu, p: Exec) -> Result<Tensor> {
    if gelu == Gelu::Tanh {
        return b.forward(x, None, p);
    }
    let x = (x + b
        .attn
        .forward(&b.ln1.forward(x, p)?, None, p)?
        .to_dtype(p.master)?)?;
    let h = b.mlp.fc1.forward(&b.ln2.forward(&x, p)?, p)?.gelu_erf()?;
    let y = b.mlp.fc2.forward(&h, p)?.to_dtype(p.master)?;
    x + y
}

impl VisionTransformer {
    /// Hidden states after `layers` blocks (1 ≤ layers ≤ depth), all tokens with CLS first:
    /// (B, 1 + N, D). LLaVA's `mm_vision_select_layer = -2` is `layers = depth - 1`.
    pub fn hidden_states(
        &self,
        images: &Tensor,
        layers: usize,
        gelu: Gelu,
        p: Exec,
    ) -> Result<Tensor> {
        if layers == 0 || layers > self.blocks.blocks.len() {
            return Err(candle_core::Error::Msg(format!(
                "vision tower: cannot take the output of block {layers} of {}",
                self.blocks.blocks.len()
            )));
        }
        let mut x = self.embed(images, p)?;
        for b in &self.blocks.blocks[..layers] {
            x = block_forward(b, &x, gelu, p)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> StackDims {
        StackDims {
            width: 16,
            depth: 2,
            heads: 2,
            mlp_dim: 32,
        }
    }

    #[test]
    fn filled_tower_matches_its_source_and_training_forward() {
        let mut src = ParamStore::new(7, &Device::Cpu);
        let vit = VisionTransformer::new(&mut src, dims(), 4, 8).unwrap();
        let named: HashMap<String, Tensor> = src
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect();
        let mut ps = ParamStore::with(0, &Device::Cpu, DType::F32, Init::Shapes);
        let loaded = from_named(&mut ps, dims(), 4, 8, &named, None).unwrap();
        let img = Tensor::randn(0f32, 1.0, (1, 3, 8, 8), &Device::Cpu).unwrap();
        let a = vit.forward(&img, Exec::F32, false).unwrap().patches;
        let h = loaded
            .hidden_states(&img, 2, Gelu::Tanh, Exec::F32)
            .unwrap();
        let b = h.narrow(1, 1, 4).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let shapes = param_shapes(dims(), 4, 8).unwrap();
        assert_eq!(shapes.len(), named.len());
    }

    #[test]
    fn missing_and_misshapen_parameters_are_named() {
        let mut src = ParamStore::new(7, &Device::Cpu);
        VisionTransformer::new(&mut src, dims(), 4, 8).unwrap();
        let mut named: HashMap<String, Tensor> = src
            .params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect();
        named.insert(
            "blocks.block1.ln2.scale".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let mut ps = ParamStore::with(0, &Device::Cpu, DType::F32, Init::Shapes);
        let e = from_named(&mut ps, dims(), 4, 8, &named, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("blocks.block1.ln2.scale"), "{e}");
        named.remove("cls");
        let mut ps = ParamStore::with(0, &Device::Cpu, DType::F32, Init::Shapes);
        let e = from_named(&mut ps, dims(), 4, 8, &named, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'cls'"), "{e}");
    }
}
