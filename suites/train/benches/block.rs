//! The fused transformer block against the same block composed from candle ops (with the
//! per-op fused kernels), forward alone and forward + backward, at the shapes of the default
//! step's caption decoder (Ti, 8 × 256 tokens, causal), of Ti/16's image encoder at 224 px
//! (batch 8, 197 tokens) and of L/14's image encoder at 224 px
//! (batch 2, 257 tokens). Throughput is in tokens per second.
//! `cargo bench -p ovbench-train --bench block`

use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ovbench_train::config::StackDims;
use ovbench_train::fused::{grads, Kernels};
use ovbench_train::layers::{mask_from, Block, Exec};
use ovbench_train::params::ParamStore;
use std::hint::black_box;

fn bench_block(
    c: &mut Criterion,
    name: &str,
    d: StackDims,
    batch: usize,
    tokens: usize,
    causal: bool,
) {
    let mut ps = ParamStore::new(0, &Device::Cpu);
    let block = Block::new(&mut ps, "b", d).unwrap();
    let x = Var::from_tensor(
        &Tensor::randn(0f32, 1.0, (batch, tokens, d.width), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let mask = causal.then(|| mask_from(tokens, |i, j| j <= i, DType::F32, &Device::Cpu).unwrap());
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.throughput(Throughput::Elements((batch * tokens) as u64));
    for k in [Kernels::Composed, Kernels::Fused] {
        let label = format!("{k:?}").to_lowercase();
        g.bench_function(format!("{label}/forward"), |b| {
            b.iter(|| {
                black_box(
                    block
                        .forward(
                            &x.as_tensor().detach(),
                            mask.as_ref(),
                            Exec::F32.with_kernels(k),
                        )
                        .unwrap(),
                )
            })
        });
        g.bench_function(format!("{label}/forward+backward"), |b| {
            b.iter(|| {
                let y = block
                    .forward(x.as_tensor(), mask.as_ref(), Exec::F32.with_kernels(k))
                    .unwrap();
                black_box(grads::backward(&y.sum_all().unwrap()).unwrap())
            })
        });
    }
    g.finish();
}

fn blocks(c: &mut Criterion) {
    bench_block(
        c,
        "block Ti/16 encoder 224 px 8x197x192",
        StackDims {
            width: 192,
            depth: 1,
            heads: 3,
            mlp_dim: 768,
        },
        8,
        197,
        false,
    );
    bench_block(
        c,
        "block Ti decoder 8x256x192",
        StackDims {
            width: 192,
            depth: 1,
            heads: 3,
            mlp_dim: 768,
        },
        8,
        256,
        true,
    );
    bench_block(
        c,
        "block L/14 encoder 2x257x1024",
        StackDims {
            width: 1024,
            depth: 1,
            heads: 16,
            mlp_dim: 4096,
        },
        2,
        257,
        false,
    );
}

criterion_group!(benches, blocks);
criterion_main!(benches);
