//! The memory model against real allocator counts (this test binary installs the counting
//! allocator, so peaks are exact).

use ovbench_harness::CountingAlloc;
use ovbench_train::memory::{MemoryModel, MemoryPoint};
use ovbench_train::recipe::{Recipe, Remat};

use ovbench_train::step::{self, NoProgress, StepConfig};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The allocator counts are process-wide: tests that read them must not overlap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn peak(batch: usize, remat: Remat) -> Vec<(Recipe, MemoryPoint)> {
    peak_at(48, batch, remat)
}

fn peak_at(resolution: usize, batch: usize, remat: Remat) -> Vec<(Recipe, MemoryPoint)> {
    CountingAlloc::activate();
    let cfg = StepConfig {
        model: "Ti/16".parse().unwrap(),
        resolution,
        batch,
        steps: 1,
        warmup: 0,
        remat,
        ..StepConfig::small()
    };
    let rec = step::run(&cfg, &mut NoProgress).unwrap();
    rec.runs
        .iter()
        .map(|r| {
            assert!(r.memory.allocator_active);
            let m = &r.memory;
            assert!(
                m.forward_peak_over_baseline_bytes > m.params_bytes + m.optimizer_bytes
                    && m.forward_peak_over_baseline_bytes <= m.peak_over_baseline_bytes,
                "the forward pass's peak lies between the persistent state and the step's peak"
            );
            (
                r.recipe,
                MemoryPoint {
                    batch,
                    peak_bytes: r.memory.peak_over_baseline_bytes,
                    persistent_bytes: r.memory.params_bytes + r.memory.optimizer_bytes,
                    forward_peak_bytes: Some(r.memory.forward_peak_over_baseline_bytes),
                },
            )
        })
        .collect()
}

/// Fitted at batches 2 and 4, the model predicts the peak at batch 7 within 5 %.
#[test]
fn memory_model_predicts_an_unmeasured_batch() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (a, b, c) = (
        peak(2, Remat::None),
        peak(4, Remat::None),
        peak(7, Remat::None),
    );
    for recipe in [Recipe::Ov1, Recipe::Ov2] {
        let get = |v: &Vec<(Recipe, MemoryPoint)>| v.iter().find(|(r, _)| *r == recipe).unwrap().1;
        let model = MemoryModel::fit(&[get(&a), get(&b)]).unwrap();
        let measured = get(&c).peak_bytes as f64;
        let predicted = model.predict(7);
        assert!(
            (predicted / measured - 1.0).abs() < 0.05,
            "{recipe:?}: predicted {predicted:.0} B at batch 7, measured {measured:.0} B"
        );
    }
}

/// Full recomputation of the encoder lowers the step's peak and leaves the persistent state
/// alone. At 112 px (49 patches) the encoder's activations are a sizeable part of the peak.
#[test]
fn remat_lowers_the_peak() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let none = peak_at(112, 4, Remat::None);
    let full = peak_at(112, 4, Remat::Full);
    for ((r, full), (_, none)) in full.iter().zip(&none) {
        assert_eq!(full.persistent_bytes, none.persistent_bytes, "{r:?}");
        assert!(
            full.peak_bytes < none.peak_bytes,
            "{r:?}: peak with remat {} B, without {} B",
            full.peak_bytes,
            none.peak_bytes
        );
    }
}
