//! The fused kernels against candle's composed ops: forward values and gradients on random
//! inputs (masked, odd shapes, more rows than one parallel chunk), finite differences in f64,
//! and whole training steps with either set of kernels.

use candle_core::{DType, Device, Tensor, Var, D};
use ovbench_train::config::{ModelConfig, PrefixAttention};
use ovbench_train::data::{Batch, TextLengths};
use ovbench_train::fused::{self, Kernels};
use ovbench_train::layers::{mask_from, Exec};
use ovbench_train::optim::{AdamW, AdamWConfig};
use ovbench_train::recipe::{build, Recipe};

fn randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let normal = Normal::new(0.0f64, 1.5).unwrap();
    let v: Vec<f64> = (0..n).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// An op under test: f(inputs) with the given kernels.
type OpFn<'a> = &'a dyn Fn(&[Tensor], Kernels) -> Tensor;

/// Value of f(inputs) and gradients of Σ f(inputs)·w with respect to every input.
fn value_and_grads(
    inputs: &[Tensor],
    w: &Tensor,
    f: OpFn<'_>,
    kernels: Kernels,
) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(t).unwrap())
        .collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts, kernels);
    let grads = fused::grads::backward(&(y.clone() * w).unwrap().sum_all().unwrap()).unwrap();
    let g = ts.iter().map(|t| grads.get(t).unwrap().clone()).collect();
    (y.detach(), g)
}

/// Fused and composed agree on the value and every gradient within `tol` (absolute, the
/// inputs are O(1)).
fn agree(name: &str, inputs: &[Tensor], out_shape: &[usize], f: OpFn<'_>) {
    agree_within(name, inputs, out_shape, f, 1e-10)
}

fn agree_within(name: &str, inputs: &[Tensor], out_shape: &[usize], f: OpFn<'_>, f64_tol: f64) {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 2e-4 } else { f64_tol };
        let xs: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(dtype).unwrap()).collect();
        let w = randn(out_shape, 99, dtype);
        let (yf, gf) = value_and_grads(&xs, &w, f, Kernels::Fused);
        let (yc, gc) = value_and_grads(&xs, &w, f, Kernels::Composed);
        let d = max_abs_diff(&yf, &yc);
        assert!(d < tol, "{name} {dtype:?}: forward differs by {d}");
        for (i, (a, b)) in gf.iter().zip(&gc).enumerate() {
            let d = max_abs_diff(a, b);
            assert!(
                d < tol,
                "{name} {dtype:?}: gradient of input {i} differs by {d}"
            );
        }
    }
}

/// The fused gradient of input 0 against central differences in f64.
fn finite_differences(name: &str, inputs: &[Tensor], f: OpFn<'_>) {
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|t| t.to_dtype(DType::F64).unwrap())
        .collect();
    let out_shape = f(&xs, Kernels::Fused).dims().to_vec();
    let w = randn(&out_shape, 7, DType::F64);
    let (_, g) = value_and_grads(&xs, &w, f, Kernels::Fused);
    let objective = |x0: &Tensor| -> f64 {
        let mut ys = xs.clone();
        ys[0] = x0.clone();
        (f(&ys, Kernels::Fused) * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let x0: Vec<f64> = xs[0].flatten_all().unwrap().to_vec1().unwrap();
    let g0: Vec<f64> = g[0].flatten_all().unwrap().to_vec1().unwrap();
    let h = 1e-6;
    for i in (0..x0.len()).step_by(x0.len().div_ceil(12)) {
        let at = |delta: f64| {
            let mut v = x0.clone();
            v[i] += delta;
            objective(&Tensor::from_vec(v, xs[0].shape(), &Device::Cpu).unwrap())
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        let err = (numeric - g0[i]).abs() / numeric.abs().max(1e-3);
        assert!(
            err < 1e-5,
            "{name}: element {i}: numeric {numeric}, fused {}",
            g0[i]
        );
    }
}

fn composed_layer_norm(x: &Tensor, g: &Tensor, b: &Tensor) -> Tensor {
    let mean = x.mean_keepdim(D::Minus1).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
    let xn = xc
        .broadcast_div(&(var + 1e-6).unwrap().sqrt().unwrap())
        .unwrap();
    xn.broadcast_mul(g).unwrap().broadcast_add(b).unwrap()
}

fn layer_norm(t: &[Tensor], k: Kernels) -> Tensor {
    if fused::applies(&t[0], k) {
        fused::layer_norm(&t[0], &t[1], &t[2], 1e-6).unwrap()
    } else {
        composed_layer_norm(&t[0], &t[1], &t[2])
    }
}

#[test]
fn layer_norm_matches_composed() {
    // 3 × 50 = 150 rows: more than two parallel chunks, the last one partial; odd width.
    for (shape, seed) in [
        (vec![3, 50, 37], 1),
        (vec![2, 1, 8], 2),
        (vec![1, 130, 64], 3),
    ] {
        let d = *shape.last().unwrap();
        let inputs = [
            randn(&shape, seed, DType::F64),
            randn(&[d], seed + 10, DType::F64),
            randn(&[d], seed + 20, DType::F64),
        ];
        agree("layer norm", &inputs, &shape, &layer_norm);
    }
    let inputs = [
        randn(&[5, 9], 4, DType::F64),
        randn(&[9], 5, DType::F64),
        randn(&[9], 6, DType::F64),
    ];
    finite_differences("layer norm", &inputs, &layer_norm);
}

fn softmax_with(mask: Option<Tensor>) -> impl Fn(&[Tensor], Kernels) -> Tensor {
    move |t: &[Tensor], k: Kernels| {
        let m = mask.as_ref().map(|m| m.to_dtype(t[0].dtype()).unwrap());
        if fused::applies(&t[0], k) {
            fused::softmax(&t[0], m.as_ref()).unwrap()
        } else {
            let x = match &m {
                Some(m) => t[0].broadcast_add(m).unwrap(),
                None => t[0].clone(),
            };
            candle_nn::ops::softmax(&x, D::Minus1).unwrap()
        }
    }
}

#[test]
fn softmax_matches_composed_with_and_without_mask() {
    let shape = [2, 3, 11, 11];
    let x = randn(&shape, 8, DType::F64);
    let causal = mask_from(11, |i, j| j <= i, DType::F64, &Device::Cpu).unwrap();
    agree(
        "softmax",
        std::slice::from_ref(&x),
        &shape,
        &softmax_with(None),
    );
    agree(
        "masked softmax",
        std::slice::from_ref(&x),
        &shape,
        &softmax_with(Some(causal.clone())),
    );
    // Rows spanning several chunks with a mask whose row index wraps inside a chunk.
    let big = randn(&[3, 2, 30, 30], 9, DType::F64);
    let prefix = mask_from(30, |i, j| j < 7 || j <= i, DType::F64, &Device::Cpu).unwrap();
    agree(
        "masked softmax, 180 rows",
        std::slice::from_ref(&big),
        &[3, 2, 30, 30],
        &softmax_with(Some(prefix)),
    );
    finite_differences(
        "masked softmax",
        &[randn(&[2, 11, 11], 10, DType::F64)],
        &softmax_with(Some(causal)),
    );
}

fn gelu(t: &[Tensor], k: Kernels) -> Tensor {
    if fused::applies(&t[0], k) {
        fused::gelu(&t[0]).unwrap()
    } else {
        t[0].gelu().unwrap()
    }
}

#[test]
fn gelu_matches_composed() {
    let shape = [3, 5, 777];
    // candle's composed GELU backward uses constants rounded to six digits (0.797885, …), so
    // in f64 the two differ by ~1e-6; the finite differences below check the fused one exactly.
    agree_within(
        "gelu",
        &[randn(&shape, 11, DType::F64)],
        &shape,
        &gelu,
        1e-5,
    );
    finite_differences("gelu", &[randn(&[4, 13], 12, DType::F64)], &gelu);
}

fn xent(targets: Tensor, weights: Tensor) -> impl Fn(&[Tensor], Kernels) -> Tensor {
    move |t: &[Tensor], k: Kernels| {
        ovbench_train::loss::caption_xent(
            &t[0],
            &targets,
            &weights.to_dtype(t[0].dtype()).unwrap(),
            k,
        )
        .unwrap()
        .reshape(1)
        .unwrap()
    }
}

#[test]
fn cross_entropy_matches_composed() {
    let (b, t, v) = (3, 29, 301);
    let targets: Vec<u32> = (0..b * t).map(|i| ((i * 37 + 5) % v) as u32).collect();
    let weights: Vec<f32> = (0..b * t).map(|i| (i % 5 != 0) as u8 as f32).collect();
    let targets = Tensor::from_vec(targets, (b, t), &Device::Cpu).unwrap();
    let weights = Tensor::from_vec(weights, (b, t), &Device::Cpu).unwrap();
    let f = xent(targets, weights);
    agree(
        "cross-entropy",
        &[randn(&[b, t, v], 13, DType::F64)],
        &[1],
        &f,
    );
    finite_differences("cross-entropy", &[randn(&[b, t, v], 14, DType::F64)], &f);
}

/// Head + cross-entropy in one op against the head's matmul then composed cross-entropy, with
/// one chunk and with several (the last partial).
#[test]
fn head_cross_entropy_matches_composed() {
    let (b, t, d, v) = (2, 13, 9, 53);
    let targets: Vec<u32> = (0..b * t).map(|i| ((i * 31 + 2) % v) as u32).collect();
    let weights: Vec<f32> = (0..b * t).map(|i| (i % 4 != 1) as u8 as f32).collect();
    let targets = Tensor::from_vec(targets, (b, t), &Device::Cpu).unwrap();
    let weights = Tensor::from_vec(weights, (b, t), &Device::Cpu).unwrap();
    {
        let (targets, weights) = (targets.clone(), weights.clone());
        let f = move |x: &[Tensor], k: Kernels| -> Tensor {
            let w = weights.to_dtype(x[0].dtype()).unwrap();
            let loss = if fused::applies(&x[0], k) {
                let nll = fused::linear_nll(
                    &x[0].reshape((b * t, d)).unwrap(),
                    &x[1],
                    &targets.flatten_all().unwrap(),
                )
                .unwrap();
                let w = w.flatten_all().unwrap();
                (nll * &w)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .div(&w.sum_all().unwrap())
                    .unwrap()
            } else {
                let logits = x[0].broadcast_matmul(&x[1]).unwrap();
                ovbench_train::loss::caption_xent(&logits, &targets, &w, k).unwrap()
            };
            loss.reshape(1).unwrap()
        };
        let inputs = [
            randn(&[b, t, d], 21, DType::F64),
            randn(&[d, v], 22, DType::F64),
        ];
        agree("head + cross-entropy", &inputs, &[1], &f);
        finite_differences("head + cross-entropy (hidden)", &inputs, &f);
        let swapped = |x: &[Tensor], k: Kernels| f(&[x[1].clone(), x[0].clone()], k);
        finite_differences(
            "head + cross-entropy (weights)",
            &[inputs[1].clone(), inputs[0].clone()],
            &swapped,
        );
    }
}

#[test]
fn fused_kernels_reject_bad_input_with_errors() {
    let x = randn(&[2, 4], 1, DType::F32);
    let bad_targets = Tensor::from_vec(vec![0u32, 9], 2, &Device::Cpu).unwrap();
    let e = fused::row_nll(&x, &bad_targets).unwrap_err().to_string();
    assert!(e.contains("outside a vocabulary of 4"), "{e}");
    let mask = randn(&[3, 4], 2, DType::F32);
    let e = fused::softmax(&x, Some(&mask)).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
    let e = fused::gelu(&x.to_dtype(DType::BF16).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("unsupported dtype"), "{e}");
}

/// Four AdamW steps of each recipe give the same losses with fused, portable and composed
/// kernels (portable: the ops CUDA runs, with attention recomputed in the backward pass).
#[test]
fn training_steps_match_composed_kernels() {
    let cfg = ModelConfig::new("Ti/16".parse().unwrap(), 32, 0.5, PrefixAttention::Causal).unwrap();
    let batch = Batch::synthetic(4, 32, &TextLengths::default(), 5, &Device::Cpu).unwrap();
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let run = |k: Kernels| -> Vec<f64> {
            let built = build(recipe, &cfg, 3, &Device::Cpu).unwrap();
            let mut opt = AdamW::new(&built.params.params, AdamWConfig::default()).unwrap();
            let exec = Exec::F32.with_kernels(k);
            (0..4)
                .map(|step| {
                    let loss = built.model.loss(&batch, exec, step).unwrap();
                    let v = loss.values().unwrap().total;
                    let grads = built.model.backward(loss, &built.params).unwrap();
                    for p in built.params.params.iter().filter(|p| p.in_objective) {
                        assert!(grads.get(p.var.as_tensor()).is_some(), "{k:?}: {}", p.name);
                    }
                    opt.step(&built.params.params, &grads).unwrap();
                    v
                })
                .collect()
        };
        let c = run(Kernels::Composed);
        for k in [Kernels::Fused, Kernels::Portable] {
            let f = run(k);
            for (a, b) in f.iter().zip(&c) {
                assert!(
                    (a - b).abs() < 1e-4 * b.abs(),
                    "{recipe:?}: {k:?} {f:?} vs composed {c:?}"
                );
            }
        }
    }
}
