//! Each field of an execution policy does what it says, on small models: recomputation of the
//! text tower, attention probabilities kept or recomputed, materialised or fused loss buffers,
//! bf16 activations, the bf16 first moment and the decay set. (What each field saves in
//! bytes is checked against the allocator in tests/footprint.rs.)

use candle_core::{DType, Device, Tensor};
use ovbench_train::config::{ModelConfig, PrefixAttention, StackDims};
use ovbench_train::data::{Batch, TextLengths};
use ovbench_train::device::{DTypeArg, DeviceArg};
use ovbench_train::fused::Kernels;
use ovbench_train::layers::Exec;
use ovbench_train::optim::{AdamW, AdamWConfig, AdamWState};
use ovbench_train::policy::{
    self, AttentionProbs, DecaySet, LossBuffers, MomentDtype, OvbenchKnobs, PolicyName,
};
use ovbench_train::recipe::{build, Recipe, RecipeExec, Remat};
use ovbench_train::step::{self, Silent, StepConfig};

/// Ti/16 at 32 px (4 patches), every stack 2 blocks deep, real vocabulary and text lengths.
fn tiny() -> ModelConfig {
    let mut c =
        ModelConfig::new("Ti/16".parse().unwrap(), 32, 0.5, PrefixAttention::Causal).unwrap();
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

fn batch(n: usize) -> Batch {
    Batch::synthetic(n, 32, &TextLengths::default(), 9, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_dtype(DType::F64).unwrap();
    let b = b.to_dtype(DType::F64).unwrap();
    let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap();
    let s = a
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    d.to_scalar::<f64>().unwrap() / s.max(1e-12)
}

/// Loss and every parameter's gradient (name, gradient) under `x`.
fn loss_and_grads(recipe: Recipe, x: &RecipeExec) -> (f32, Vec<(String, Tensor)>) {
    let built = build(recipe, &tiny(), 3, &Device::Cpu).unwrap();
    let loss = built.model.loss_with(&batch(3), x, 5).unwrap();
    let total = loss
        .total
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let grads = built.model.backward(loss, &built.params).unwrap();
    let g = built
        .params
        .params
        .iter()
        .filter(|p| p.in_objective)
        .map(|p| {
            let g = grads
                .get(p.var.as_tensor())
                .unwrap_or_else(|| panic!("{} received no gradient", p.name));
            (p.name.clone(), g.clone())
        })
        .collect();
    (total, g)
}

/// Recomputing the text tower changes neither the loss nor any gradient, to the bit (with the
/// alt-text and sentence as one batch, as the released code and the policies run them; as two
/// passes, the weights' gradients from the two uses would be summed in another order).
#[test]
fn text_tower_recomputation_leaves_losses_and_gradients_bit_identical() {
    for kernels in [Kernels::Fused, Kernels::Portable] {
        // As the policies run it: both texts through the tower as one batch.
        let x = RecipeExec {
            text_one_batch: true,
            ..RecipeExec::uniform(Exec::F32.with_kernels(kernels))
        };
        let (l0, g0) = loss_and_grads(Recipe::Ov1, &x);
        let (l1, g1) = loss_and_grads(
            Recipe::Ov1,
            &RecipeExec {
                text_remat: true,
                ..x
            },
        );
        assert_eq!(l0.to_bits(), l1.to_bits(), "{kernels:?}: loss {l0} vs {l1}");
        let differ: Vec<String> = g0
            .iter()
            .zip(&g1)
            .filter(|((_, a), (_, b))| bits(a) != bits(b))
            .map(|((name, a), (_, b))| format!("{name} (max rel {:.1e})", max_rel(a, b)))
            .collect();
        assert!(
            differ.is_empty(),
            "{kernels:?}: gradients differ: {differ:?}"
        );
    }
}

/// Kept and recomputed attention probabilities compute the same function: to the bit in the
/// fused CPU block (the recomputation repeats the forward arithmetic head by head), to rounding
/// in the portable ops (f64).
#[test]
fn kept_and_recomputed_attention_agree() {
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let with = |e: Exec, a: AttentionProbs| {
            loss_and_grads(recipe, &RecipeExec::uniform(Exec { attention: a, ..e }))
        };
        let (l0, g0) = with(Exec::F32, AttentionProbs::Keep);
        let (l1, g1) = with(Exec::F32, AttentionProbs::Recompute);
        assert_eq!(l0.to_bits(), l1.to_bits(), "{recipe:?} fused: {l0} vs {l1}");
        for ((name, a), (_, b)) in g0.iter().zip(&g1) {
            assert!(
                bits(a) == bits(b),
                "{recipe:?} fused: gradient of {name} differs"
            );
        }
        let portable = Exec::F32.with_kernels(Kernels::Portable);
        let (l0, g0) = with(portable, AttentionProbs::Keep);
        let (l1, g1) = with(portable, AttentionProbs::Recompute);
        assert!(
            (l0 - l1).abs() <= 1e-6 * l0.abs(),
            "{recipe:?} portable: {l0} vs {l1}"
        );
        for ((name, a), (_, b)) in g0.iter().zip(&g1) {
            let r = max_rel(a, b);
            assert!(
                r < 1e-5,
                "{recipe:?} portable: gradient of {name} differs by {r:.2e}"
            );
        }
    }
}

/// Materialised and fused loss buffers give the same loss and gradients to f32 rounding.
#[test]
fn materialized_and_fused_loss_agree() {
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let with = |l: LossBuffers| {
            let e = Exec {
                loss: l,
                ..Exec::F32
            };
            loss_and_grads(recipe, &RecipeExec::uniform(e))
        };
        let (l0, g0) = with(LossBuffers::Fused);
        let (l1, g1) = with(LossBuffers::Materialized);
        assert!(
            (l0 - l1).abs() <= 1e-5 * l0.abs(),
            "{recipe:?}: {l0} vs {l1}"
        );
        for ((name, a), (_, b)) in g0.iter().zip(&g1) {
            let r = max_rel(a, b);
            assert!(
                r < 1e-3,
                "{recipe:?}: gradient of {name} differs by {r:.2e}"
            );
        }
    }
}

/// bf16 activations (OpenVision under `released`, every module but the head) keep the loss
/// within bf16 tolerance of f32 (`matched-f32`), at the first step and after three AdamW steps;
/// 1e-2 as in tests/precision.rs.
#[test]
fn bf16_activations_keep_the_loss_within_bf16_tolerance() {
    let knobs = OvbenchKnobs {
        dtype: DTypeArg::F32,
        remat: Remat::None,
        kernels: Kernels::Fused,
        device: DeviceArg::Cpu,
        optimizer: AdamWConfig::default(),
    };
    let losses = |name: PolicyName| -> Vec<f64> {
        let e = *policy::resolve(name, &knobs).execution(Recipe::Ov1);
        let (x, _) = RecipeExec::from_execution(&e, Kernels::Fused, DeviceArg::Cpu);
        let built = build(Recipe::Ov1, &tiny(), 3, &Device::Cpu).unwrap();
        let mut opt = AdamW::new(&built.params.params, AdamWConfig::default()).unwrap();
        let b = batch(4);
        (0..4)
            .map(|step| {
                let loss = built.model.loss_with(&b, &x, step).unwrap();
                let v = loss.values().unwrap().total;
                let grads = built.model.backward(loss, &built.params).unwrap();
                opt.step(&built.params.params, &grads).unwrap();
                v
            })
            .collect()
    };
    let (bf16, f32) = (losses(PolicyName::Released), losses(PolicyName::MatchedF32));
    for (i, (a, b)) in f32.iter().zip(&bf16).enumerate() {
        let rel = (a - b).abs() / a.abs();
        assert!(rel <= 1e-2, "step {i}: f32 {a} vs bf16 {b} (rel {rel:.2e})");
        assert!(
            rel > 0.0,
            "step {i}: bf16 gave the f32 loss exactly: not run in bf16?"
        );
    }
}

/// Runs `steps` AdamW steps of OpenVision with the given optimizer state and returns every
/// parameter (name, values) and the optimizer's state bytes.
fn train(st: AdamWState, steps: u64) -> (Vec<(String, Vec<f32>)>, usize) {
    let built = build(Recipe::Ov1, &tiny(), 3, &Device::Cpu).unwrap();
    let mut opt = AdamW::with_state(&built.params.params, AdamWConfig::default(), st).unwrap();
    let b = batch(3);
    for step in 0..steps {
        let loss = built.model.loss(&b, Exec::F32, step).unwrap();
        let grads = built.model.backward(loss, &built.params).unwrap();
        opt.step(&built.params.params, &grads).unwrap();
    }
    let values = built
        .params
        .params
        .iter()
        .map(|p| {
            let v = p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (p.name.clone(), v)
        })
        .collect();
    (values, opt.state_bytes())
}

/// The bf16 first moment halves that moment's bytes and moves the update by bf16 rounding only.
#[test]
fn bf16_first_moment_halves_its_bytes() {
    let f32s = AdamWState::default();
    let bf16 = AdamWState {
        mu: MomentDtype::Bf16,
        ..f32s
    };
    let (a, bytes_f32) = train(f32s, 3);
    let (b, bytes_bf16) = train(bf16, 3);
    let n: usize = a.iter().map(|(_, v)| v.len()).sum();
    assert_eq!(bytes_f32, 8 * n, "two f32 moments");
    assert_eq!(
        bytes_bf16,
        6 * n,
        "the first moment in 2 bytes instead of 4"
    );
    let mut moved = false;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        for (p, q) in x.iter().zip(y) {
            moved |= p != q;
            // Three steps of at most lr = 1.024e-3 each; bf16 moves m by at most 2^-8 of itself.
            assert!((p - q).abs() < 1e-4, "{name}: {p} vs {q}");
        }
    }
    assert!(moved, "a bf16 moment changed no update at all");
}

/// The decay set changes which parameters decay and nothing else: after one step from the same
/// weights, exactly the matrices that are not dense kernels (embeddings, text positions, v1
/// queries) differ, and by lr · wd · p (the decay term alone).
#[test]
fn decay_set_changes_which_parameters_decay_and_nothing_else() {
    let all = AdamWState::default();
    let kernels = AdamWState {
        decay_set: DecaySet::Kernels,
        ..all
    };
    let (a, _) = train(all, 1);
    let (b, _) = train(kernels, 1);
    let (init, _) = train(all, 0);
    let cfg = AdamWConfig::default();
    let built = build(Recipe::Ov1, &tiny(), 3, &Device::Cpu).unwrap();
    let mut differ = Vec::new();
    for (((name, x), (_, y)), ((_, p0), param)) in
        a.iter().zip(&b).zip(init.iter().zip(&built.params.params))
    {
        let decays_only_under_all = param.decay && !param.kernel;
        if !decays_only_under_all {
            assert!(x == y, "{name}: changed although its decay did not");
            continue;
        }
        differ.push(name.clone());
        for ((p, q), w) in x.iter().zip(y).zip(p0) {
            let want = (cfg.lr * cfg.weight_decay) as f32 * w;
            assert!(
                ((q - p) - want).abs() <= 1e-6 * (1.0 + w.abs()),
                "{name}: the kernels-only update differs by {} instead of lr·wd·p = {want}",
                q - p
            );
        }
    }
    differ.sort();
    assert_eq!(
        differ,
        [
            "text_decoder.queries",
            "text_encoder.embed",
            "text_encoder.pos"
        ],
        "the parameters whose decay the sets disagree on"
    );
}

/// The record holds the fully resolved policy, every field with its source.
#[test]
fn the_record_holds_the_resolved_policy_with_sources() {
    let cfg = StepConfig {
        batch: 2,
        resolution: 32,
        steps: 1,
        warmup: 0,
        policy: PolicyName::Released,
        ..StepConfig::small()
    };
    let rec = step::run(&cfg, &mut Silent).unwrap();
    let p = rec.policy.as_ref().expect("the record holds the policy");
    assert_eq!(p.name, PolicyName::Released);
    let json = serde_json::to_value(&rec).unwrap();
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        assert_eq!(
            json["policy"]["recipes"][recipe.key()]["modules"]["image_encoder"]["recompute"],
            true
        );
        for field in policy::field_paths(recipe) {
            let s = json["policy"]["sources"][&field]
                .as_str()
                .unwrap_or_default();
            assert!(!s.is_empty(), "{field}: no source in the record");
        }
    }
    // The engine says where it routed bf16 work off the fused CPU kernels.
    let ov1 = rec.runs.iter().find(|r| r.recipe == Recipe::Ov1).unwrap();
    assert!(
        ov1.notes.iter().any(|n| n.contains("portable ops")),
        "{:?}",
        ov1.notes
    );
    // --dtype belongs to the ovbench policy.
    let bad = StepConfig {
        dtype: DTypeArg::Bf16,
        ..cfg
    };
    assert!(bad.validate().unwrap_err().contains("--policy released"));
}

/// Records written before policies existed read back as the ovbench policy.
#[test]
fn records_without_a_policy_ran_ovbench() {
    let mut v = serde_json::to_value(StepConfig::small()).unwrap();
    v.as_object_mut().unwrap().remove("policy");
    let cfg: StepConfig = serde_json::from_value(v).unwrap();
    assert_eq!(cfg.policy, PolicyName::Ovbench);
    assert_eq!(StepConfig::small().policy, PolicyName::Ovbench);
}
