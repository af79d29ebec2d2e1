//! Each fused kernel against candle's composed ops, forward alone and forward + backward, at
//! the shapes of the default step (Ti/16, 112 px, batch 8) and of the decoder's vocabulary head.
//! `cargo bench -p ovbench-train --bench fused`

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion};
use ovbench_train::fused::{self, Kernels};
use ovbench_train::layers::{mask_from, Exec, LayerNorm};
use std::hint::black_box;

fn randn(shape: &[usize]) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

type Op = Box<dyn Fn(&Tensor, Kernels) -> Tensor>;

fn bench_op(c: &mut Criterion, name: &str, shape: &[usize], op: Op) {
    let x = randn(shape);
    let mut g = c.benchmark_group(name);
    g.sample_size(20);
    for k in [Kernels::Composed, Kernels::Fused] {
        let label = format!("{k:?}").to_lowercase();
        g.bench_function(format!("{label}/forward"), |b| {
            b.iter(|| black_box(op(&x, k)))
        });
        let v = Var::from_tensor(&x).unwrap();
        g.bench_function(format!("{label}/forward+backward"), |b| {
            b.iter(|| {
                let y = op(v.as_tensor(), k);
                black_box(fused::grads::backward(&y.sum_all().unwrap()).unwrap())
            })
        });
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let d = 192;
    let ln = LayerNorm {
        gamma: Var::from_tensor(&randn(&[d])).unwrap().as_tensor().clone(),
        beta: Var::from_tensor(&randn(&[d])).unwrap().as_tensor().clone(),
    };
    bench_op(
        c,
        "layer_norm 8x50x192",
        &[8, 50, d],
        Box::new(move |x, k| ln.forward(x, Exec::F32.with_kernels(k)).unwrap()),
    );
    let mask = mask_from(128, |i, j| j <= i, DType::F32, &Device::Cpu).unwrap();
    bench_op(
        c,
        "masked_softmax 8x4x128x128",
        &[8, 4, 128, 128],
        Box::new(move |x, k| {
            if fused::applies(x, k) {
                fused::softmax(x, Some(&mask)).unwrap()
            } else {
                candle_nn::ops::softmax(&x.broadcast_add(&mask).unwrap(), candle_core::D::Minus1)
                    .unwrap()
            }
        }),
    );
    bench_op(
        c,
        "gelu 8x50x768",
        &[8, 50, 768],
        Box::new(|x, k| {
            if fused::applies(x, k) {
                fused::gelu(x).unwrap()
            } else {
                x.gelu().unwrap()
            }
        }),
    );
    let (rows, vocab) = (8 * 79, 32_000);
    let targets = Tensor::from_vec(
        (0..rows as u32)
            .map(|i| (i * 7919) % vocab as u32)
            .collect::<Vec<_>>(),
        (8, 79),
        &Device::Cpu,
    )
    .unwrap();
    let weights = Tensor::ones((8, 79), DType::F32, &Device::Cpu).unwrap();
    let weights2 = weights.clone();
    bench_op(
        c,
        "cross_entropy 8x79x32000",
        &[8, 79, vocab],
        Box::new(move |x, k| ovbench_train::loss::caption_xent(x, &targets, &weights, k).unwrap()),
    );
    // The vocabulary head and its loss together: (8·79, 192) hidden states (the default step's
    // OpenVision 2 decoder), a (192, 32000) head.
    let head = ovbench_train::layers::Linear {
        w: Var::from_tensor(&(randn(&[192, vocab]) * 0.02).unwrap())
            .unwrap()
            .as_tensor()
            .clone(),
        b: None,
    };
    let targets = Tensor::from_vec(
        (0..rows as u32)
            .map(|i| (i * 7919) % vocab as u32)
            .collect::<Vec<_>>(),
        (8, 79),
        &Device::Cpu,
    )
    .unwrap();
    bench_op(
        c,
        "head+cross_entropy 8x79x192 -> 32000",
        &[8, 79, 192],
        Box::new(move |x, k| {
            ovbench_train::loss::caption_loss(
                x,
                &head,
                &targets,
                &weights2,
                Exec::F32.with_kernels(k),
            )
            .unwrap()
        }),
    );
}

criterion_group!(benches, kernels);
criterion_main!(benches);
