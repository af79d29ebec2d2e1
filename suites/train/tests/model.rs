//! Correctness of the two recipes: gradients, masking, determinism, parameter counts, FLOPs.

use candle_core::{DType, Device, Tensor};
use ovbench_train::config::{
    ModelConfig, PrefixAttention, StackDims, VitSize, CAPTION_LEN, TEXT_LEN, V1_QUERIES, VOCAB,
};
use ovbench_train::data::{Batch, TextLengths};
use ovbench_train::layers::Exec;
use ovbench_train::optim::{AdamW, AdamWConfig};
use ovbench_train::params::{Init, Module, ParamStore};
use ovbench_train::recipe::{build, build_with, Model, Recipe, RecipeExec};
use ovbench_train::step::{self, Silent, StepConfig};

/// Ti/16 at 32 px (4 patches) with every stack shrunk to 2 blocks of width 32, so a step takes
/// milliseconds; the real vocabulary and text lengths are kept.
fn tiny(keep: f64, attention: PrefixAttention) -> ModelConfig {
    let mut c = ModelConfig::new("Ti/16".parse().unwrap(), 32, keep, attention).unwrap();
    let small = |width| StackDims {
        width,
        depth: 2,
        heads: 2,
        mlp_dim: 2 * width,
    };
    c.vision = small(32);
    c.text_encoder.dims = small(24);
    c.v1_decoder.dims = small(16);
    c.v2_decoder.dims = small(16);
    c
}

fn batch(n: usize, seed: u64) -> Batch {
    Batch::synthetic(n, 32, &TextLengths::default(), seed, &Device::Cpu).unwrap()
}

#[test]
fn loss_falls_on_a_fixed_batch_for_both_recipes() {
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let cfg = tiny(0.5, PrefixAttention::Causal);
        let built = build(recipe, &cfg, 7, &Device::Cpu).unwrap();
        let lr = AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&built.params.params, lr).unwrap();
        let b = batch(4, 1);
        let mut losses = Vec::new();
        for step in 0..10 {
            let loss = built.model.loss(&b, Exec::F32, step).unwrap();
            losses.push(loss.total.to_scalar::<f32>().unwrap());
            let grads = ovbench_train::fused::grads::backward(&loss.total).unwrap();
            opt.step(&built.params.params, &grads).unwrap();
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < first - 0.5, "{recipe:?}: {losses:?}");
    }
}

#[test]
fn every_trainable_variable_receives_a_nonzero_gradient() {
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let built = build(recipe, &tiny(0.5, PrefixAttention::Causal), 3, &Device::Cpu).unwrap();
        let loss = built.model.loss(&batch(4, 2), Exec::F32, 0).unwrap();
        let grads = ovbench_train::fused::grads::backward(&loss.total).unwrap();
        let mut missing = Vec::new();
        for p in built.params.params.iter().filter(|p| p.in_objective) {
            match grads.get(p.var.as_tensor()) {
                None => missing.push(format!("{} (none)", p.name)),
                Some(g) => {
                    let n = g
                        .abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    if n == 0.0 {
                        missing.push(format!("{} (zero)", p.name));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "{recipe:?}: {missing:?}");
        // Only OpenVision 2's pooled-output norm is outside the objective.
        let outside: Vec<_> = built
            .params
            .params
            .iter()
            .filter(|p| !p.in_objective)
            .map(|p| p.name.as_str())
            .collect();
        let expect: &[&str] = match recipe {
            Recipe::Ov1 => &[],
            Recipe::Ov2 => &["image_encoder.norm.scale", "image_encoder.norm.bias"],
        };
        assert_eq!(outside, expect);
    }
}

/// Loss in f64 as a function of the current parameter values.
fn loss_f64(model: &Model, b: &Batch) -> f64 {
    let l = model.loss(b, Exec::F64, 11).unwrap();
    l.total.to_scalar::<f64>().unwrap()
}

/// Central differences against backprop, in f64, for parameters of every module.
#[test]
fn gradients_agree_with_finite_differences() {
    let cases: [(Recipe, PrefixAttention, &[&str]); 3] = [
        (
            Recipe::Ov1,
            PrefixAttention::Causal,
            &[
                "image_encoder.patch_embed.w",
                "image_encoder.blocks.block0.attn.qkv.w",
                "image_encoder.blocks.block1.mlp.fc2.b",
                "text_encoder.pos",
                "text_encoder.blocks.block1.ln1.scale",
                "text_encoder.proj.w",
                "text_decoder.queries",
                "text_decoder.txt_proj.w",
                "text_decoder.blocks.block1.attn.out.w",
                "text_decoder.head.w",
                "log_temperature",
            ],
        ),
        (
            Recipe::Ov2,
            PrefixAttention::Causal,
            &[
                "image_encoder.blocks.block0.ln2.bias",
                "image_encoder.blocks.block1.attn.qkv.w",
                "text_decoder.img_proj.w",
                "text_decoder.embed",
                "text_decoder.blocks.block0.mlp.fc1.w",
                "text_decoder.norm.bias",
                "text_decoder.head.w",
            ],
        ),
        (
            Recipe::Ov2,
            PrefixAttention::Prefix,
            &[
                "image_encoder.blocks.block1.attn.qkv.w",
                "text_decoder.img_proj.w",
            ],
        ),
    ];
    let b = batch(3, 5);
    for (recipe, attention, names) in cases {
        let cfg = tiny(0.5, attention);
        let ps = ParamStore::with(9, &Device::Cpu, DType::F64, Init::Seeded);
        let built = build_with(recipe, &cfg, ps).unwrap();
        let loss = built.model.loss(&b, Exec::F64, 11).unwrap();
        let grads = ovbench_train::fused::grads::backward(&loss.total).unwrap();
        for name in names {
            let p = built
                .params
                .params
                .iter()
                .find(|p| p.name == *name)
                .unwrap_or_else(|| panic!("no parameter {name}"));
            let g: Vec<f64> = grads
                .get(p.var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            // The element with the largest gradient, and one fixed other element.
            let big = (0..g.len())
                .max_by(|&i, &j| g[i].abs().total_cmp(&g[j].abs()))
                .unwrap();
            for idx in [big, g.len() / 3] {
                let orig: Vec<f64> = p.var.flatten_all().unwrap().to_vec1().unwrap();
                let h = 1e-5;
                let eval = |delta: f64| {
                    let mut v = orig.clone();
                    v[idx] += delta;
                    p.var
                        .set(&Tensor::from_vec(v, p.var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    loss_f64(&built.model, &b)
                };
                let numeric = (eval(h) - eval(-h)) / (2.0 * h);
                p.var
                    .set(&Tensor::from_vec(orig, p.var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let analytic = g[idx];
                // Central differences in f64 at h = 1e-5 on a loss near 20 carry ~1e-9 of rounding.
                assert!(
                    (analytic - numeric).abs() <= 1e-4 * analytic.abs() + 5e-9,
                    "{recipe:?}/{attention:?} {name}[{idx}]: backprop {analytic:e}, finite difference {numeric:e}"
                );
            }
        }
    }
}

#[test]
fn masking_keeps_floor_n_keep_distinct_patch_tokens_per_image() {
    let cfg =
        ModelConfig::new("Ti/16".parse().unwrap(), 64, 0.35, PrefixAttention::Causal).unwrap();
    assert_eq!((cfg.patches(), cfg.kept_tokens()), (16, 5));
    let built = build(Recipe::Ov2, &cfg, 1, &Device::Cpu).unwrap();
    let Model::Ov2(m) = &built.model else {
        unreachable!()
    };
    // Patch token j of image i carries the value 1000 i + j in every channel.
    let (b, n, d) = (6, cfg.patches(), 4);
    let data: Vec<f32> = (0..b * n * d)
        .map(|k| (1000 * (k / (n * d)) + (k / d) % n) as f32)
        .collect();
    let patches = Tensor::from_vec(data, (b, n, d), &Device::Cpu).unwrap();
    let kept_of = |seed| -> Vec<Vec<u32>> {
        let kept: Vec<Vec<Vec<f32>>> = m.select(&patches, seed).unwrap().to_vec3().unwrap();
        kept.iter()
            .enumerate()
            .map(|(i, img)| {
                img.iter()
                    .map(|tok| {
                        let v = tok[0] as usize;
                        assert_eq!(v / 1000, i, "token from another image");
                        (v % 1000) as u32
                    })
                    .collect()
            })
            .collect()
    };
    let a = kept_of(1);
    for img in &a {
        assert_eq!(img.len(), 5);
        let set: std::collections::HashSet<_> = img.iter().collect();
        assert_eq!(set.len(), 5, "kept tokens repeat: {img:?}");
        assert!(img.iter().all(|&j| (j as usize) < n));
    }
    let sorted = |v: &Vec<u32>| {
        let mut v = v.clone();
        v.sort();
        v
    };
    let distinct_sets: std::collections::HashSet<_> = a.iter().map(sorted).collect();
    assert!(distinct_sets.len() > 1, "every image kept the same set");
    let other = kept_of(2);
    assert_ne!(a, other, "another seed kept the same tokens");
}

/// Losses of three optimizer steps of both recipes, as bits.
fn losses(seed: u64) -> Vec<u32> {
    let mut out = Vec::new();
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let built = build(
            recipe,
            &tiny(0.5, PrefixAttention::Causal),
            seed,
            &Device::Cpu,
        )
        .unwrap();
        let mut opt = AdamW::new(&built.params.params, AdamWConfig::default()).unwrap();
        let b = Batch::synthetic(4, 32, &TextLengths::default(), seed, &Device::Cpu).unwrap();
        for step in 0..3 {
            let loss = built.model.loss(&b, Exec::F32, seed + step).unwrap();
            out.push(loss.total.to_scalar::<f32>().unwrap().to_bits());
            opt.step(
                &built.params.params,
                &ovbench_train::fused::grads::backward(&loss.total).unwrap(),
            )
            .unwrap();
        }
    }
    out
}

#[test]
fn same_seed_gives_bit_identical_losses() {
    let a = losses(4);
    assert_eq!(a, losses(4));
    let b = losses(5);
    assert!(a.iter().zip(&b).all(|(x, y)| x != y), "{a:?} vs {b:?}");
}

/// The measured step runner end to end on the smallest real preset: records every sample,
/// excludes warm-up, and reports exact allocator figures only when an allocator is installed.
#[test]
fn step_runner_records_samples_and_ratios() {
    let cfg = StepConfig {
        model: "Ti/16".parse().unwrap(),
        resolution: 32,
        batch: 2,
        steps: 2,
        warmup: 1,
        ..StepConfig::small()
    };
    let rec = step::run(&cfg, &mut Silent).unwrap();
    assert_eq!(rec.runs.len(), 2);
    for r in &rec.runs {
        assert_eq!(r.samples.len(), 2);
        assert_eq!(r.warmup_losses.len(), 1);
        assert!(r.samples.iter().all(|s| s.step >= 1 && s.total_s > 0.0));
        assert!(
            !r.memory.allocator_active,
            "no counting allocator in this test binary"
        );
    }
    let ratios = rec.ratios_ov2_over_ov1.unwrap();
    assert!(ratios.params < 1.0 && ratios.forward_flops < 1.0);
}

/// Parameter count of one pre-LN block, derived from widths alone.
fn block(w: usize, m: usize) -> usize {
    let ln = 2 * w;
    let attn = (w * 3 * w + 3 * w) + (w * w + w);
    let mlp = (w * m + m) + (m * w + w);
    2 * ln + attn + mlp
}

fn stack(d: StackDims) -> usize {
    d.depth * block(d.width, d.mlp_dim)
}

#[test]
fn parameter_counts_of_every_size_match_an_independent_derivation() {
    // ViT trunk sizes computed in the facts (§2.1, millions, no head).
    let facts_m = [5.5, 21.6, 85.6, 302.9, 412.1, 630.4, 1010.8];
    for (size, facts) in VitSize::ALL.into_iter().zip(facts_m) {
        let patch = size.default_patch();
        let cfg = ModelConfig::new(
            ovbench_train::ModelName { size, patch },
            patch * 4,
            0.35,
            PrefixAttention::Causal,
        )
        .unwrap();
        let v = cfg.vision;
        let vit = patch * patch * 3 * v.width + v.width + v.width + stack(v) + 2 * v.width;
        assert!(
            ((vit as f64) / 1e6 - facts).abs() < 0.05,
            "{size}: {vit} vs facts {facts} M"
        );
        let t = cfg.text_encoder.dims;
        let text =
            VOCAB * t.width + TEXT_LEN * t.width + stack(t) + 2 * t.width + t.width * v.width;
        let d1 = cfg.v1_decoder.dims;
        let dec1 = (v.width * d1.width + d1.width)
            + (t.width * d1.width + d1.width)
            + V1_QUERIES * d1.width
            + stack(d1)
            + 2 * d1.width
            + d1.width * VOCAB;
        let d2 = cfg.v2_decoder.dims;
        let dec2 =
            v.width * d2.width + VOCAB * d2.width + stack(d2) + 2 * d2.width + d2.width * VOCAB;
        for (recipe, want) in [
            (
                Recipe::Ov1,
                [
                    (Module::ImageEncoder, vit),
                    (Module::TextEncoder, text),
                    (Module::TextDecoder, dec1),
                    (Module::Temperature, 1),
                ]
                .to_vec(),
            ),
            (
                Recipe::Ov2,
                [(Module::ImageEncoder, vit), (Module::TextDecoder, dec2)].to_vec(),
            ),
        ] {
            let ps = ParamStore::with(0, &Device::Cpu, DType::F32, Init::Shapes);
            let built = build_with(recipe, &cfg, ps).unwrap();
            let got: Vec<(Module, usize)> = built.params.counts().into_iter().collect();
            assert_eq!(got, want, "{size} {recipe:?}");
        }
    }
    let _ = CAPTION_LEN;
}

/// The analytic FLOP model equals the multiply-adds the forward pass executes (within 1 %).
#[test]
fn flop_model_matches_executed_matmuls() {
    for (recipe, res, keep, bsz) in [
        (Recipe::Ov1, 32, 0.5, 3),
        (Recipe::Ov2, 64, 0.35, 2),
        (Recipe::Ov2, 48, 1.0, 2),
    ] {
        let cfg =
            ModelConfig::new("Ti/16".parse().unwrap(), res, keep, PrefixAttention::Causal).unwrap();
        let built = build(recipe, &cfg, 0, &Device::Cpu).unwrap();
        let b = Batch::synthetic(bsz, res, &TextLengths::default(), 0, &Device::Cpu).unwrap();
        let (_, macs) = ovbench_train::macs::count(|| built.model.loss(&b, Exec::F32, 0).unwrap());
        let model = ovbench_train::flops::forward_flops(
            recipe,
            &cfg,
            bsz,
            ovbench_train::flops::V1_TEXT_PASSES,
        )
        .total();
        let executed = 2.0 * macs as f64 / bsz as f64;
        assert!(
            (model / executed - 1.0).abs() < 0.01,
            "{recipe:?} {res}px: model {model} vs executed {executed}"
        );
    }
}

/// Recomputing the encoder's activations changes neither the loss nor any gradient.
#[test]
fn remat_gives_the_same_loss_and_gradients() {
    use ovbench_train::recipe::Remat;
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let built = build(recipe, &tiny(0.5, PrefixAttention::Causal), 3, &Device::Cpu).unwrap();
        let b = batch(3, 8);
        let run = |remat| {
            let x = RecipeExec::uniform(Exec::F32).with_remat(remat);
            let loss = built.model.loss_with(&b, &x, 5).unwrap();
            let total = loss.total.to_scalar::<f32>().unwrap();
            (total, built.model.backward(loss, &built.params).unwrap())
        };
        let (l0, g0) = run(Remat::None);
        let (l1, g1) = run(Remat::Full);
        assert_eq!(l0.to_bits(), l1.to_bits(), "{recipe:?}: loss {l0} vs {l1}");
        for p in built.params.params.iter().filter(|p| p.in_objective) {
            let a = g0
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("{} no grad", p.name));
            let c = g1
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("{} no grad with remat", p.name));
            let diff = (a - c)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let scale = a
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                diff <= 1e-5 * scale.max(1e-6),
                "{recipe:?} {}: max diff {diff} at scale {scale}",
                p.name
            );
        }
    }
}
