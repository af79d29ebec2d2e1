//! Baseline vs current, metric by metric.
//!
//! * Deterministic metrics pass when `|current - baseline| <= max(tolerance * |baseline|,
//!   abs_tolerance)`. Any larger change fails the gate, in either direction: these numbers
//!   only move when the workload or the code changed, and the baseline must then be
//!   refreshed on purpose. A move in the worse direction is a regression, any other a change.
//! * Timed metrics compare the ratio of medians current / baseline with its 95 % percentile
//!   bootstrap interval (both groups resampled). Regression only when the whole interval
//!   lies above `1 + threshold`; improvement when it lies wholly below `1 - threshold`;
//!   inconclusive when it straddles `1 + threshold`; otherwise pass. With the default 5 %
//!   threshold a pure-noise comparison is flagged only if the interval's lower edge exceeds
//!   1.05, which a 95 % interval around a true ratio of 1 does with probability well under
//!   2.5 % (one-sided); see the false-alarm test.

use crate::config::{GateConfig, Only, Rule};
use crate::error::{GateError, KeyDiff};
use crate::record::LoadedRecord;
use ovbench_harness::envelope::{Direction, Measurement, Metric};
use ovbench_harness::stats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Improvement,
    Regression,
    /// A deterministic metric moved in a direction that is not worse (or has none).
    Changed,
    Inconclusive,
    /// In the baseline, absent from the current record.
    Missing,
    /// In the current record only.
    New,
    /// Excluded by `only` or `skip`.
    Skipped,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Improvement => "improvement",
            Verdict::Regression => "REGRESSION",
            Verdict::Changed => "CHANGED",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Missing => "MISSING",
            Verdict::New => "new",
            Verdict::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub name: String,
    pub unit: String,
    pub direction: Direction,
    pub timed: bool,
    /// The value, or the median of the samples.
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// current / baseline.
    pub ratio: Option<f64>,
    /// 95 % interval of the ratio (timed metrics).
    pub ci95: Option<[f64; 2]>,
    /// Sample counts (baseline, current) of timed metrics.
    pub samples: Option<[usize; 2]>,
    /// 95 % interval of the current median (timed metrics), for charts' error bars.
    pub current_ci95: Option<[f64; 2]>,
    /// The rule applied, in words (`exact`, `±0.1 %`, `CI above +5 %`).
    pub limit: String,
    pub verdict: Verdict,
    pub note: String,
}

/// The gate's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit 0.
    Pass,
    /// Exit 1.
    Regression,
    /// Exit 2: the records could not be compared as asked.
    Unusable,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Regression => 1,
            Outcome::Unusable => 2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub kind: String,
    pub baseline: PathBuf,
    pub current: PathBuf,
    pub workload: String,
    /// Configuration keys of the current record.
    pub config: BTreeMap<String, String>,
    /// Differences allowed by `--accept-diff`.
    pub accepted_diffs: Vec<KeyDiff>,
    pub results: Vec<MetricResult>,
    pub notes: Vec<String>,
    pub fail_on_inconclusive: bool,
}

impl GateReport {
    pub fn count(&self, v: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == v).count()
    }

    pub fn outcome(&self) -> Outcome {
        let compared = self
            .results
            .iter()
            .filter(|r| {
                !matches!(
                    r.verdict,
                    Verdict::Skipped | Verdict::New | Verdict::Missing
                )
            })
            .count();
        if self.count(Verdict::Missing) > 0 || compared == 0 {
            return Outcome::Unusable;
        }
        let fails = self.count(Verdict::Regression)
            + self.count(Verdict::Changed)
            + if self.fail_on_inconclusive {
                self.count(Verdict::Inconclusive)
            } else {
                0
            };
        if fails > 0 {
            Outcome::Regression
        } else {
            Outcome::Pass
        }
    }

    /// True when a confirming rerun could change the outcome: a timed metric is a
    /// regression or inconclusive.
    pub fn needs_confirmation(&self) -> bool {
        self.results
            .iter()
            .any(|r| r.timed && matches!(r.verdict, Verdict::Regression | Verdict::Inconclusive))
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn pct(x: f64) -> String {
    let p = x * 100.0;
    if p == p.round() {
        format!("{p:.0} %")
    } else {
        format!("{p:.2} %")
    }
}

/// Verdict of one deterministic pair.
pub fn judge_deterministic(
    b: f64,
    c: f64,
    dir: Direction,
    rule: &Rule,
) -> (Verdict, String, String) {
    let allowed = (rule.tolerance * b.abs()).max(rule.abs_tolerance);
    let limit = match (rule.tolerance > 0.0, rule.abs_tolerance > 0.0) {
        (false, false) => "exact".to_string(),
        (true, false) => format!("±{}", pct(rule.tolerance)),
        (false, true) => format!("±{}", rule.abs_tolerance),
        (true, true) => format!("±max({}, {})", pct(rule.tolerance), rule.abs_tolerance),
    };
    let diff = c - b;
    if !(b.is_finite() && c.is_finite()) {
        return (Verdict::Changed, limit, "not a finite number".into());
    }
    if diff.abs() <= allowed {
        return (Verdict::Pass, limit, String::new());
    }
    let worse = match dir {
        Direction::SmallerIsBetter => Some(diff > 0.0),
        Direction::BiggerIsBetter => Some(diff < 0.0),
        Direction::Neither => None,
    };
    let by = if b != 0.0 {
        format!(" by {:+.3} %", diff / b.abs() * 100.0)
    } else {
        format!(" by {diff:+}")
    };
    match worse {
        Some(true) => (Verdict::Regression, limit, format!("worse{by}")),
        Some(false) => (
            Verdict::Changed,
            limit,
            format!("better{by}; deterministic metrics must match: refresh the baseline"),
        ),
        None => (
            Verdict::Changed,
            limit,
            format!("changed{by}; refresh the baseline if intended"),
        ),
    }
}

/// Timed verdict: (verdict, ratio current/baseline, 95 % CI of that ratio, note).
pub fn judge_timed(
    b: &[f64],
    c: &[f64],
    dir: Direction,
    rule: &Rule,
    seed: u64,
) -> (Verdict, Option<f64>, Option<[f64; 2]>, String) {
    if b.len() < rule.min_samples || c.len() < rule.min_samples {
        return (
            Verdict::Inconclusive,
            None,
            None,
            format!(
                "too few samples ({} vs {}; need {})",
                b.len(),
                c.len(),
                rule.min_samples
            ),
        );
    }
    let Some(r) = stats::ratio_of_medians(c, b, seed) else {
        return (
            Verdict::Inconclusive,
            None,
            None,
            "baseline median is zero".into(),
        );
    };
    // Orient so that "worse" is always a ratio above 1.
    let (lo, hi) = match dir {
        Direction::BiggerIsBetter => (1.0 / r.ci95[1], 1.0 / r.ci95[0]),
        _ => (r.ci95[0], r.ci95[1]),
    };
    let up = 1.0 + rule.threshold;
    let down = 1.0 - rule.threshold;
    let (v, note) = if lo > up {
        (
            Verdict::Regression,
            "whole interval beyond the threshold".to_string(),
        )
    } else if hi < down {
        (Verdict::Improvement, String::new())
    } else if hi > up {
        (
            Verdict::Inconclusive,
            "interval straddles the threshold: too noisy to tell".into(),
        )
    } else {
        (Verdict::Pass, String::new())
    };
    (v, Some(r.value), Some(r.ci95), note)
}

/// Metrics by name, in record order (names are unique: the validator checked on load).
fn by_name(rec: &LoadedRecord) -> (Vec<String>, BTreeMap<String, &Metric>) {
    let ms = &rec.envelope.metrics;
    let order = ms.iter().map(|m| m.name.clone()).collect();
    (order, ms.iter().map(|m| (m.name.clone(), m)).collect())
}

/// The workload in one line without hashes (which identify inputs, not describe them): chart
/// names and headings.
pub fn workload_label(rec: &LoadedRecord) -> String {
    let w = &rec.envelope.workload;
    let parts: Vec<String> = w
        .iter()
        .filter(|(k, _)| !k.contains("sha256") && k.as_str() != "run_key")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        rec.kind().to_string()
    } else {
        format!("{} {}", rec.kind(), parts.join(" "))
    }
}

/// Compares `current` against `baseline`. `accept` lists configuration keys allowed to
/// differ (besides those in the config file). Errors are unusable input (exit 2).
pub fn gate(
    baseline: &LoadedRecord,
    current: &LoadedRecord,
    cfg: &GateConfig,
    accept: &[String],
) -> Result<GateReport, GateError> {
    if baseline.kind() != current.kind() {
        return Err(GateError::KindMismatch {
            baseline: baseline.written_schema(),
            current: current.written_schema(),
        });
    }
    let kb = &baseline.envelope.workload;
    let kc = &current.envelope.workload;
    let accepted: Vec<&String> = cfg.defaults.accept_diff.iter().chain(accept).collect();
    for a in &accepted {
        if !kb.contains_key(*a) && !kc.contains_key(*a) {
            return Err(GateError::Config {
                at: "--accept-diff".into(),
                message: format!(
                    "unknown key '{a}' for {} records (keys: {})",
                    current.kind(),
                    kc.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let mut diffs = Vec::new();
    for key in kb.keys().chain(kc.keys().filter(|k| !kb.contains_key(*k))) {
        let (b, c) = (kb.get(key), kc.get(key));
        if b != c {
            diffs.push(KeyDiff {
                key: key.clone(),
                baseline: b.cloned().unwrap_or_else(|| "<absent>".into()),
                current: c.cloned().unwrap_or_else(|| "<absent>".into()),
            });
        }
    }
    let (accepted_diffs, refused): (Vec<KeyDiff>, Vec<KeyDiff>) =
        diffs.into_iter().partition(|d| accepted.contains(&&d.key));
    if !refused.is_empty() {
        return Err(GateError::ConfigMismatch { diffs: refused });
    }

    let (order_b, mb) = by_name(baseline);
    let (order_c, mc) = by_name(current);
    let only = cfg.defaults.only;
    let mut results = Vec::new();
    let names = order_b
        .iter()
        .chain(order_c.iter().filter(|n| !mb.contains_key(*n)));
    for name in names {
        let rule = cfg.rule_for(name);
        let (b, c) = (mb.get(name), mc.get(name));
        let any = b.or(c).expect("name comes from one side");
        let timed = any.measurement.is_timed();
        let mut res = MetricResult {
            name: name.clone(),
            unit: any.unit.clone(),
            direction: any.direction,
            timed,
            baseline: b.and_then(|m| m.measurement.central()),
            current: c.and_then(|m| m.measurement.central()),
            ratio: None,
            ci95: None,
            samples: None,
            current_ci95: None,
            limit: String::new(),
            verdict: Verdict::Pass,
            note: String::new(),
        };
        if let (Some(x), Some(y)) = (res.baseline, res.current) {
            res.ratio = (x != 0.0).then(|| y / x);
        }
        let excluded = match only {
            Only::All => false,
            Only::Deterministic => timed,
            Only::Timed => !timed,
        };
        if rule.skip || excluded {
            res.verdict = Verdict::Skipped;
            res.note = if rule.skip {
                "skip = true in the gate config".into()
            } else {
                format!("--only {}", if timed { "deterministic" } else { "timed" })
            };
            results.push(res);
            continue;
        }
        match (b.map(|m| &m.measurement), c.map(|m| &m.measurement)) {
            (Some(_), None) => {
                res.verdict = Verdict::Missing;
                res.note = "in the baseline, not in the current record".into();
            }
            (None, Some(_)) => {
                res.verdict = Verdict::New;
                res.note = "not in the baseline".into();
            }
            (
                Some(Measurement::Deterministic { value: x }),
                Some(Measurement::Deterministic { value: y }),
            ) => {
                let (v, limit, note) = judge_deterministic(*x, *y, res.direction, &rule);
                (res.verdict, res.limit, res.note) = (v, limit, note);
            }
            (
                Some(Measurement::Timed { samples: x, .. }),
                Some(Measurement::Timed { samples: y, .. }),
            ) => {
                let (v, ratio, ci, note) = judge_timed(x, y, res.direction, &rule, fnv(name));
                res.verdict = v;
                res.ratio = ratio.or(res.ratio);
                res.ci95 = ci;
                res.samples = Some([x.len(), y.len()]);
                res.current_ci95 = stats::Summary::of(y).map(|s| s.ci95);
                res.limit = match res.direction {
                    Direction::BiggerIsBetter => format!("CI below -{}", pct(rule.threshold)),
                    _ => format!("CI above +{}", pct(rule.threshold)),
                };
                res.note = note;
            }
            _ => {
                res.verdict = Verdict::Missing;
                res.note = "deterministic in one record, timed in the other".into();
            }
        }
        results.push(res);
    }

    let mut notes = Vec::new();
    let gated_timed = results
        .iter()
        .any(|r| r.timed && r.verdict != Verdict::Skipped);
    let host = |r: &LoadedRecord| Some(r.envelope.provenance.host.cpu_model.clone());
    if gated_timed && host(baseline) != host(current) {
        notes.push(format!(
            "timed metrics compared across different hosts ({} vs {}): their verdicts reflect the hardware as much as the code",
            host(baseline).unwrap_or_else(|| "unknown".into()),
            host(current).unwrap_or_else(|| "unknown".into())
        ));
    }
    if gated_timed {
        notes.push(
            "timed metrics on shared machines are noisy; gate them only on a pinned, quiet host"
                .into(),
        );
    }
    for d in &accepted_diffs {
        notes.push(format!("accepted configuration difference: {d}"));
    }
    if current.envelope.provenance.git.dirty == Some(true) {
        notes.push("the current record was made from a dirty tree".into());
    }
    Ok(GateReport {
        kind: current.kind().to_string(),
        baseline: baseline.path.clone(),
        current: current.path.clone(),
        workload: workload_label(current),
        config: kc.clone(),
        accepted_diffs,
        results,
        notes,
        fail_on_inconclusive: cfg.defaults.fail_on_inconclusive,
    })
}

/// Merges a confirming rerun into the first verdicts. For timed metrics only: a first
/// regression stands when the rerun also shows a regression and becomes inconclusive
/// otherwise; a first inconclusive takes the rerun's verdict. Everything else keeps the
/// first run's result (deterministic metrics do not change on a rerun).
pub fn confirm(first: GateReport, second: &GateReport) -> GateReport {
    let mut out = first;
    for r in out.results.iter_mut().filter(|r| r.timed) {
        let Some(s) = second.results.iter().find(|s| s.name == r.name) else {
            continue;
        };
        match (r.verdict, s.verdict) {
            (Verdict::Regression, Verdict::Regression) => {
                r.note = format!(
                    "confirmed by the rerun (rerun ratio {})",
                    fmt_ratio(s.ratio, s.ci95)
                );
            }
            (Verdict::Regression, other) => {
                r.note = format!(
                    "not confirmed: the rerun gave {} (ratio {})",
                    other.label(),
                    fmt_ratio(s.ratio, s.ci95)
                );
                r.verdict = Verdict::Inconclusive;
            }
            (Verdict::Inconclusive, _) => {
                let first_note = fmt_ratio(r.ratio, r.ci95);
                *r = s.clone();
                r.note = format!(
                    "from the rerun (first run: inconclusive, ratio {first_note}) {}",
                    r.note
                )
                .trim()
                .to_string();
            }
            _ => {}
        }
    }
    out.notes
        .push(format!("confirming rerun: {}", second.current.display()));
    out
}

fn fmt_ratio(r: Option<f64>, ci: Option<[f64; 2]>) -> String {
    match (r, ci) {
        (Some(r), Some([a, b])) => format!("{r:.3} [{a:.3}, {b:.3}]"),
        (Some(r), None) => format!("{r:.3}"),
        _ => "n/a".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        GateConfig::default().rule_for("x")
    }

    #[test]
    fn deterministic_rules() {
        let r = rule();
        assert_eq!(
            judge_deterministic(10.0, 10.0, Direction::SmallerIsBetter, &r).0,
            Verdict::Pass
        );
        assert_eq!(
            judge_deterministic(10.0, 11.0, Direction::SmallerIsBetter, &r).0,
            Verdict::Regression
        );
        assert_eq!(
            judge_deterministic(10.0, 9.0, Direction::SmallerIsBetter, &r).0,
            Verdict::Changed
        );
        assert_eq!(
            judge_deterministic(10.0, 9.0, Direction::BiggerIsBetter, &r).0,
            Verdict::Regression
        );
        assert_eq!(
            judge_deterministic(10.0, 10.5, Direction::Neither, &r).0,
            Verdict::Changed
        );
        let tol = Rule {
            tolerance: 0.01,
            ..rule()
        };
        assert_eq!(
            judge_deterministic(1000.0, 1009.0, Direction::SmallerIsBetter, &tol).0,
            Verdict::Pass
        );
        assert_eq!(
            judge_deterministic(1000.0, 1011.0, Direction::SmallerIsBetter, &tol).0,
            Verdict::Regression
        );
        let abs = Rule {
            abs_tolerance: 5.0,
            ..rule()
        };
        assert_eq!(
            judge_deterministic(0.0, 4.0, Direction::SmallerIsBetter, &abs).0,
            Verdict::Pass
        );
    }

    #[test]
    fn timed_straddle_is_inconclusive() {
        let r = rule();
        let b: Vec<f64> = (0..10).map(|i| 1.0 + 0.01 * i as f64).collect();
        // Wide spread around +5 %: the interval contains 1.05 from both sides.
        let c: Vec<f64> = (0..10).map(|i| 0.9 + 0.06 * i as f64).collect();
        assert_eq!(
            judge_timed(&b, &c, Direction::SmallerIsBetter, &r, 1).0,
            Verdict::Inconclusive
        );
        let c2: Vec<f64> = b.iter().map(|x| x * 1.5).collect();
        assert_eq!(
            judge_timed(&b, &c2, Direction::SmallerIsBetter, &r, 1).0,
            Verdict::Regression
        );
        // Throughput-like metric: bigger is better, so 1.5x is an improvement.
        assert_eq!(
            judge_timed(&b, &c2, Direction::BiggerIsBetter, &r, 1).0,
            Verdict::Improvement
        );
        assert_eq!(
            judge_timed(&b[..2], &c2, Direction::SmallerIsBetter, &r, 1).0,
            Verdict::Inconclusive
        );
    }

    fn rec(path: &str, batch: u64, dtype: &str, step: f64) -> LoadedRecord {
        let samples: Vec<f64> = (0..8).map(|i| step * (1.0 + 0.001 * i as f64)).collect();
        let batch = batch.to_string();
        crate::record::fixture(
            path,
            "step",
            &[
                ("model", "Ti/16"),
                ("resolution", "112"),
                ("batch", &batch),
                ("dtype", dtype),
                ("device", "cpu"),
            ],
            vec![
                Metric::deterministic("ov1/params_total", "params", Direction::Neither, 5.0),
                Metric::timed("ov1/step_s", "s", Direction::SmallerIsBetter, samples, 1),
            ],
        )
    }

    #[test]
    fn mismatch_names_keys_and_accept_lets_through() {
        let b = rec("b.json", 8, "f32", 1.0);
        let c = rec("c.json", 16, "bf16", 1.0);
        let e = gate(&b, &c, &GateConfig::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("batch: baseline 8 vs current 16")
                && e.contains("dtype: baseline f32 vs current bf16"),
            "{e}"
        );
        assert!(!e.contains("resolution"), "{e}");
        let e = gate(&b, &c, &GateConfig::default(), &["batch".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("dtype") && !e.contains("batch:"), "{e}");
        let r = gate(
            &b,
            &c,
            &GateConfig::default(),
            &["batch".into(), "dtype".into()],
        )
        .unwrap();
        assert_eq!(r.accepted_diffs.len(), 2);
        assert_eq!(r.outcome(), Outcome::Pass);
        let e = gate(&b, &c, &GateConfig::default(), &["colour".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key 'colour'"), "{e}");
    }

    #[test]
    fn missing_metric_is_unusable_and_rerun_confirms() {
        let b = rec("b.json", 8, "f32", 1.0);
        let mut c = rec("c.json", 8, "f32", 1.0);
        c.envelope.metrics.retain(|m| m.name != "ov1/params_total");
        let r = gate(&b, &c, &GateConfig::default(), &[]).unwrap();
        assert_eq!(r.outcome(), Outcome::Unusable);

        let slow = rec("c.json", 8, "f32", 1.3);
        let first = gate(&b, &slow, &GateConfig::default(), &[]).unwrap();
        assert_eq!(first.outcome(), Outcome::Regression);
        assert!(first.needs_confirmation());
        let fine = gate(
            &b,
            &rec("r.json", 8, "f32", 1.0),
            &GateConfig::default(),
            &[],
        )
        .unwrap();
        let merged = confirm(first.clone(), &fine);
        assert_eq!(merged.outcome(), Outcome::Pass, "{:?}", merged.results);
        let again = gate(
            &b,
            &rec("r.json", 8, "f32", 1.3),
            &GateConfig::default(),
            &[],
        )
        .unwrap();
        assert_eq!(confirm(first, &again).outcome(), Outcome::Regression);
    }

    #[test]
    fn only_deterministic_skips_timed() {
        let b = rec("b.json", 8, "f32", 1.0);
        let c = rec("c.json", 8, "f32", 2.0);
        let mut cfg = GateConfig::default();
        cfg.defaults.only = Only::Deterministic;
        let r = gate(&b, &c, &cfg, &[]).unwrap();
        assert_eq!(r.outcome(), Outcome::Pass);
        assert_eq!(r.count(Verdict::Skipped), 1);
    }
}
