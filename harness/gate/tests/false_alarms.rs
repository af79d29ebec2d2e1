//! The timed gate's error rates on synthetic samples with a known truth.
//!
//! Noise model: step times `1 s x (1 + e)`, `e ~ Normal(0, 3 %)`, 20 measured steps per side
//! (a quiet machine's spread for the default job). Each trial draws fresh seeded samples.
//! * An injected 10 % slowdown must be flagged as a regression in at least 95 % of trials.
//! * Pure noise (same spread, no slowdown) must be flagged in fewer than 1 % of trials at
//!   the default 5 % threshold (stated level: the one-sided 2.5 % of a 95 % interval, and
//!   far less because the interval must clear 1.05, not 1.0).
//! * With the threshold at 0 (pure significance) the rate must stay under 5 %, the
//!   nominal one-sided level 2.5 % plus slack for the percentile bootstrap of a median.

use ovbench_gate::config::GateConfig;
use ovbench_gate::verdict::{gate, judge_timed, Outcome, Verdict};
use ovbench_gate::Direction;
use ovbench_gate::LoadedRecord;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::json;
use std::path::Path;

const TRIALS: usize = 400;
const N: usize = 20;
const SPREAD: f64 = 0.03;

fn draw(rng: &mut ChaCha8Rng, scale: f64) -> Vec<f64> {
    let noise = Normal::new(0.0, SPREAD).unwrap();
    (0..N)
        .map(|_| scale * (1.0 + noise.sample(rng)).max(0.5))
        .collect()
}

fn rate(slowdown: f64, threshold: f64, want: Verdict) -> f64 {
    let mut cfg = GateConfig::default();
    cfg.defaults.threshold = threshold;
    let rule = cfg.rule_for("step_s");
    let mut hits = 0;
    for trial in 0..TRIALS {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + trial as u64);
        let b = draw(&mut rng, 1.0);
        let c = draw(&mut rng, slowdown);
        let (v, ..) = judge_timed(&b, &c, Direction::SmallerIsBetter, &rule, trial as u64);
        hits += (v == want) as usize;
    }
    hits as f64 / TRIALS as f64
}

#[test]
fn ten_percent_slowdown_is_flagged() {
    let r = rate(1.10, 0.05, Verdict::Regression);
    eprintln!(
        "10 % slowdown flagged as regression in {:.1} % of {TRIALS} trials",
        r * 100.0
    );
    assert!(r >= 0.95, "detection rate {r}");
}

#[test]
fn pure_noise_is_not_flagged() {
    let r = rate(1.0, 0.05, Verdict::Regression);
    eprintln!(
        "pure noise flagged at the 5 % threshold in {:.2} % of {TRIALS} trials",
        r * 100.0
    );
    assert!(r < 0.01, "false-alarm rate {r}");
    let r0 = rate(1.0, 0.0, Verdict::Regression);
    eprintln!(
        "pure noise flagged at threshold 0 in {:.2} % of {TRIALS} trials",
        r0 * 100.0
    );
    assert!(r0 < 0.05, "false-alarm rate at threshold 0: {r0}");
}

#[test]
fn small_slowdown_inside_threshold_is_not_a_regression() {
    // A real 2 % slowdown is under the 5 % threshold: never a regression.
    let r = rate(1.02, 0.05, Verdict::Regression);
    assert!(r < 0.01, "{r}");
}

fn step_record(path: &str, rng: &mut ChaCha8Rng, scale: f64) -> LoadedRecord {
    let run = |recipe: &str, rng: &mut ChaCha8Rng, base: f64| {
        let samples: Vec<_> = draw(rng, scale * base)
            .into_iter()
            .enumerate()
            .map(|(i, t)| json!({"step": i + 2, "total_s": t, "forward_s": t * 0.4, "backward_s": t * 0.5, "optimizer_s": t * 0.1}))
            .collect();
        json!({"recipe": recipe, "params_total": 5_000_000, "forward_flops_per_image_total": 1.2e9,
               "memory": {"allocator_active": true, "peak_over_baseline_bytes": 123_456_789, "transient_peak_bytes": 1_000_000},
               "samples": samples})
    };
    let v = json!({
        "schema": "ovbench.step/1",
        "provenance": {
            "created_utc": "2026-01-01T00:00:00Z", "command_line": ["ovbench", "step"],
            "git": {"commit": "0353d5e0353d5e0353d5e0353d5e0353d5e0353d", "dirty": false, "note": null},
            "host": {"hostname": null, "cpu_model": "Synthetic CPU", "physical_cores": 1, "logical_cpus": 2,
                     "memory_bytes": 1000, "os": "Linux", "kernel": null},
            "build": {"crate_version": "0.1.0", "rustc": "1.95", "profile": "release", "opt_level": "3",
                      "target": "x86_64", "features": []}
        },
        "config": {"model": "Ti/16", "resolution": 112, "batch": 8, "keep_ratio": 0.35, "dtype": "f32",
                   "device": {"kind": "cpu"}, "steps": N, "warmup": 2, "seed": 0},
        "runs": [run("ov1", rng, 1.0), run("ov2", rng, 0.6)]
    });
    LoadedRecord::from_value(Path::new(path), &v).unwrap()
}

#[test]
fn whole_records_with_a_slowdown_fail_and_noise_passes() {
    let mut flagged = 0;
    let mut false_alarms = 0;
    let trials = 50;
    for t in 0..trials {
        let mut rng = ChaCha8Rng::seed_from_u64(77 + t);
        let base = step_record("b.json", &mut rng, 1.0);
        let slow = step_record("slow.json", &mut rng, 1.10);
        let same = step_record("same.json", &mut rng, 1.0);
        let cfg = GateConfig::default();
        let r = gate(&base, &slow, &cfg, &[]).unwrap();
        if r.outcome() == Outcome::Regression {
            flagged += 1;
        }
        // Deterministic metrics are equal: only timed ones can fail the slow record.
        assert!(r
            .results
            .iter()
            .filter(|m| !m.timed)
            .all(|m| m.verdict == Verdict::Pass));
        let r = gate(&base, &same, &cfg, &[]).unwrap();
        if r.outcome() != Outcome::Pass {
            false_alarms += 1;
        }
    }
    eprintln!(
        "whole records: slowdown flagged {flagged}/{trials}, noise flagged {false_alarms}/{trials}"
    );
    assert!(flagged >= 48, "{flagged}");
    assert_eq!(false_alarms, 0);
}
