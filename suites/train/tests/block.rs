//! The fused transformer block against the same block composed from candle ops: output and
//! the gradients of the input and all twelve weights, with and without attention masks, on odd
//! shapes and on more rows than one parallel chunk; finite differences in f64; and clear errors
//! where the gradients could otherwise be lost.

use candle_core::{DType, Device, Tensor, Var};
use ovbench_train::config::StackDims;
use ovbench_train::fused::{self, grads, Kernels};
use ovbench_train::layers::{mask_from, Block, Exec};
use ovbench_train::params::{Init, ParamStore};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn randn(shape: &[usize], seed: u64, std: f64, dtype: DType) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let normal = Normal::new(0.0f64, std).unwrap();
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| normal.sample(&mut rng)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// A block whose every weight (biases and norms included) is random, so that no gradient
/// term vanishes by initialisation.
fn block(d: StackDims, dtype: DType, seed: u64) -> (Block, ParamStore) {
    let mut ps = ParamStore::with(seed, &Device::Cpu, dtype, Init::Seeded);
    let b = Block::new(&mut ps, "b", d).unwrap();
    for (i, p) in ps.params.iter().enumerate() {
        let std = if p.name.ends_with(".w") { 0.3 } else { 0.5 };
        let base = if p.name.ends_with("scale") { 1.0 } else { 0.0 };
        let v = (randn(p.var.dims(), seed * 100 + i as u64, std, dtype) + base).unwrap();
        p.var.set(&v).unwrap();
    }
    (b, ps)
}

/// The largest absolute entry of `t`, in f64.
fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .and_then(|t| t.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>())
        .unwrap()
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    max_abs(&(a - &b).unwrap()) / max_abs(&b).max(1e-6)
}

struct Case {
    name: &'static str,
    dims: StackDims,
    batch: usize,
    tokens: usize,
    mask: Option<fn(usize, usize) -> bool>,
}

fn cases() -> Vec<Case> {
    let odd = StackDims {
        width: 12,
        depth: 1,
        heads: 3,
        mlp_dim: 20,
    };
    let wide = StackDims {
        width: 16,
        depth: 1,
        heads: 2,
        mlp_dim: 64,
    };
    vec![
        Case {
            name: "odd shapes, no mask",
            dims: odd,
            batch: 3,
            tokens: 7,
            mask: None,
        },
        Case {
            name: "causal mask",
            dims: odd,
            batch: 2,
            tokens: 9,
            mask: Some(|i, j| j <= i),
        },
        Case {
            name: "prefix mask, more rows than one chunk",
            dims: wide,
            batch: 3,
            tokens: 41,
            mask: Some(|i, j| j < 5 || j <= i),
        },
    ]
}

/// Output and gradients (input first, then the weights in store order) of Σ block(x)·w.
fn run(case: &Case, dtype: DType, kernels: Kernels) -> (Tensor, Vec<Tensor>) {
    let (blk, ps) = block(case.dims, dtype, 5);
    let x = Var::from_tensor(&randn(
        &[case.batch, case.tokens, case.dims.width],
        1,
        1.0,
        dtype,
    ))
    .unwrap();
    let mask = case
        .mask
        .map(|m| mask_from(case.tokens, m, dtype, &Device::Cpu).unwrap());
    let p = Exec {
        compute: dtype,
        master: dtype,
        kernels,
        ..Exec::F32
    };
    let w = randn(&[case.batch, case.tokens, case.dims.width], 2, 1.0, dtype);
    {
        let y = blk.forward(x.as_tensor(), mask.as_ref(), p).unwrap();
        let g = grads::backward(&(&y * &w).unwrap().sum_all().unwrap()).unwrap();
        let mut out = vec![g.get(x.as_tensor()).expect("input gradient").clone()];
        for p in &ps.params {
            out.push(
                g.get(p.var.as_tensor())
                    .unwrap_or_else(|| panic!("{}: no gradient for {}", case.name, p.name))
                    .clone(),
            );
        }
        (y.detach(), out)
    }
}

/// `kernels` against the composed block: output and all thirteen gradients, per dtype.
fn agrees_with_composed(kernels: Kernels, tolerances: [(DType, f64); 2]) {
    for case in cases() {
        for (dtype, tol) in tolerances {
            let (yk, gk) = run(&case, dtype, kernels);
            let (yc, gc) = run(&case, dtype, Kernels::Composed);
            let d = max_rel_diff(&yk, &yc);
            assert!(
                d < tol,
                "{} {kernels:?} {dtype:?}: output differs by {d}",
                case.name
            );
            assert_eq!(gk.len(), 13);
            for (i, (a, b)) in gk.iter().zip(&gc).enumerate() {
                let d = max_rel_diff(a, b);
                assert!(
                    d < tol,
                    "{} {kernels:?} {dtype:?}: gradient {i} (0 = input, then weights) differs by {d}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn fused_block_matches_composed_block() {
    // candle's composed GELU backward uses constants rounded to six digits, so in f64 the
    // two differ by ~1e-7; the finite differences below check the fused block tightly.
    agrees_with_composed(Kernels::Fused, [(DType::F64, 1e-5), (DType::F32, 2e-4)]);
}

/// The portable ops (what CUDA runs: single-op layer norm, softmax and dense layers, attention recomputed in
/// the backward pass) give the composed block's output and every gradient.
#[test]
fn portable_block_matches_composed_block() {
    agrees_with_composed(Kernels::Portable, [(DType::F64, 1e-10), (DType::F32, 2e-4)]);
}

#[test]
fn fused_block_gradients_match_finite_differences() {
    let case = &cases()[1];
    let dtype = DType::F64;
    let (blk, ps) = block(case.dims, dtype, 5);
    let x = randn(&[case.batch, case.tokens, case.dims.width], 1, 1.0, dtype);
    let mask = mask_from(case.tokens, case.mask.unwrap(), dtype, &Device::Cpu).unwrap();
    let w = randn(x.dims(), 2, 1.0, dtype);
    let objective = |x: &Tensor| -> f64 {
        (blk.forward(x, Some(&mask), Exec::F64).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let (_, g) = run(case, dtype, Kernels::Fused);
    // The input.
    let x0: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let gx: Vec<f64> = g[0].flatten_all().unwrap().to_vec1().unwrap();
    // h balances truncation (∝ h²) against rounding (∝ 1/h) at about 1e-8 relative.
    let h = 1e-4;
    for i in (0..x0.len()).step_by(17) {
        let at = |delta: f64| {
            let mut v = x0.clone();
            v[i] += delta;
            objective(&Tensor::from_vec(v, x.shape(), &Device::Cpu).unwrap())
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        let err = (numeric - gx[i]).abs() / numeric.abs().max(1e-3);
        assert!(err < 1e-7, "input {i}: numeric {numeric}, fused {}", gx[i]);
    }
    // One element of every weight.
    for (k, p) in ps.params.iter().enumerate() {
        let orig = p
            .var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let gk: Vec<f64> = g[k + 1].flatten_all().unwrap().to_vec1().unwrap();
        let i = orig.len() / 2;
        let at = |delta: f64| {
            let mut v = orig.clone();
            v[i] += delta;
            p.var
                .set(&Tensor::from_vec(v, p.var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let out = objective(&x);
            p.var
                .set(&Tensor::from_vec(orig.clone(), p.var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            out
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        let err = (numeric - gk[i]).abs() / numeric.abs().max(1e-3);
        assert!(
            err < 1e-7,
            "{}[{i}]: numeric {numeric}, fused {}",
            p.name,
            gk[i]
        );
    }
}

#[test]
fn fused_block_is_deterministic() {
    let case = &cases()[2];
    let (y1, g1) = run(case, DType::F32, Kernels::Fused);
    let (y2, g2) = run(case, DType::F32, Kernels::Fused);
    assert_eq!(max_rel_diff(&y1, &y2), 0.0);
    for (a, b) in g1.iter().zip(&g2) {
        assert_eq!(max_rel_diff(a, b), 0.0);
    }
}

#[test]
fn bare_backward_and_second_backward_fail_with_errors() {
    let case = &cases()[0];
    let (blk, _ps) = block(case.dims, DType::F32, 5);
    let x = Var::from_tensor(&randn(&[2, 5, 12], 1, 1.0, DType::F32)).unwrap();
    let y = blk.forward(x.as_tensor(), None, Exec::F32).unwrap();
    let loss = y.sum_all().unwrap();
    let err = loss.backward().unwrap_err().to_string();
    assert!(err.contains("grads::backward"), "{err}");
    let y = blk.forward(x.as_tensor(), None, Exec::F32).unwrap();
    let loss = y.sum_all().unwrap();
    grads::backward(&loss).unwrap();
    let err = grads::backward(&loss).unwrap_err().to_string();
    assert!(err.contains("ran twice"), "{err}");
}

#[test]
fn fused_block_refuses_a_mask_of_the_wrong_size() {
    let case = &cases()[0];
    let (blk, _ps) = block(case.dims, DType::F32, 5);
    let x = randn(&[2, 5, 12], 1, 1.0, DType::F32);
    let mask = mask_from(4, |i, j| j <= i, DType::F32, &Device::Cpu).unwrap();
    let err = blk.forward(&x, Some(&mask), Exec::F32).unwrap_err();
    assert!(err.to_string().contains("mask"), "{err}");
    assert!(fused::block::applies(&blk.view(), &x, Kernels::Fused));
}
