//! The memory model against real allocator counts (this test binary installs the counting
//! allocator, so peaks are exact).

use ovbench_harness::CountingAlloc;
use ovbench_train::memory::{MemoryModel, MemoryPoint};
use ovbench_train::recipe::{Recipe, Remat};
use ovbench_train::step::{self, NoProgress, StepConfig};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn peak(batch: usize, remat: Remat) -> Vec<(Recipe, MemoryPoint)> {
    CountingAlloc::activate();
    let cfg = StepConfig {
        model: "Ti/16".parse().unwrap(),
        resolution: 48,
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
            (
                r.recipe,
                MemoryPoint {
                    batch,
                    peak_bytes: r.memory.peak_over_baseline_bytes,
                    persistent_bytes: r.memory.params_bytes + r.memory.optimizer_bytes,
                },
            )
        })
        .collect()
}

/// Fitted at batches 2 and 4, the model predicts the peak at batch 7 within 5 %; and full
/// recomputation lowers the peak without touching the persistent state.
#[test]
fn memory_model_predicts_an_unmeasured_batch_and_remat_lowers_the_peak() {
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
    let remat = peak(4, Remat::Full);
    for ((r, full), (_, none)) in remat.iter().zip(&b) {
        assert_eq!(full.persistent_bytes, none.persistent_bytes);
        assert!(
            full.peak_bytes < none.peak_bytes,
            "{r:?}: remat {} vs {}",
            full.peak_bytes,
            none.peak_bytes
        );
    }
}
