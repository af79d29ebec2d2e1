//! Mixed precision on CPU: bf16 / f16 matrix products with f32 master weights keep the loss
//! within a stated tolerance of the f32 loss on a fixed batch, at the first step and after
//! three AdamW steps.

use candle_core::{DType, Device};
use ovbench_train::config::{ModelConfig, PrefixAttention, StackDims};
use ovbench_train::data::{Batch, TextLengths};
use ovbench_train::layers::Exec;
use ovbench_train::optim::{AdamW, AdamWConfig};
use ovbench_train::recipe::{build, Recipe};

/// Relative tolerance of the loss against f32: bf16 keeps 8 significant bits (relative
/// rounding 2^-9 ≈ 2e-3 per product input); over a few layers and a 32 000-way softmax the
/// loss moved by under 1e-3 in trials, so 1e-2 leaves room without hiding a broken cast.
const BF16_TOL: f64 = 1e-2;
/// f16 keeps 11 significant bits: four times tighter.
const F16_TOL: f64 = 2.5e-3;

fn small() -> ModelConfig {
    let mut c =
        ModelConfig::new("Ti/16".parse().unwrap(), 32, 0.5, PrefixAttention::Causal).unwrap();
    let d = |width| StackDims {
        width,
        depth: 2,
        heads: 4,
        mlp_dim: 4 * width,
    };
    c.vision = d(64);
    c.text_encoder.dims = d(48);
    c.v1_decoder.dims = d(32);
    c.v2_decoder.dims = d(32);
    c
}

fn losses(recipe: Recipe, compute: DType) -> Vec<f64> {
    let cfg = small();
    let built = build(recipe, &cfg, 3, &Device::Cpu).unwrap();
    let b = Batch::synthetic(4, 32, &TextLengths::default(), 5, &Device::Cpu).unwrap();
    let p = Exec {
        compute,
        ..Exec::F32
    };
    let mut opt = AdamW::new(&built.params.params, AdamWConfig::default()).unwrap();
    let mut out = Vec::new();
    for step in 0..4 {
        let loss = built.model.loss(&b, p, step).unwrap();
        out.push(f64::from(loss.total.to_scalar::<f32>().unwrap()));
        let grads = built.model.backward(loss, &built.params).unwrap();
        opt.step(&built.params.params, &grads).unwrap();
    }
    out
}

#[test]
fn reduced_precision_loss_stays_within_tolerance_of_f32() {
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let f32_ = losses(recipe, DType::F32);
        for (dt, tol) in [(DType::BF16, BF16_TOL), (DType::F16, F16_TOL)] {
            let got = losses(recipe, dt);
            for (i, (a, b)) in f32_.iter().zip(&got).enumerate() {
                let rel = (a - b).abs() / a.abs();
                assert!(
                    a.is_finite() && b.is_finite() && rel <= tol,
                    "{recipe:?} {dt:?} step {i}: f32 {a} vs {b} (rel {rel:.2e} > {tol})"
                );
            }
        }
    }
}
