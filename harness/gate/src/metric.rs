//! What extraction produces: named metrics, deterministic or timed.

use serde::Serialize;

/// Which way is worse. Counts that should never move (parameters, tokens) have no
/// better direction: any change beyond tolerance is reported as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    SmallerIsBetter,
    BiggerIsBetter,
    Neither,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measurement {
    /// A value that the same build and configuration reproduce exactly (FLOPs, parameters,
    /// allocator peak bytes, scores).
    Deterministic { value: f64 },
    /// Repeated timings; compared through their medians.
    Timed { samples: Vec<f64> },
}

impl Measurement {
    pub fn is_timed(&self) -> bool {
        matches!(self, Measurement::Timed { .. })
    }

    /// The value to chart: the value itself, or the median of the samples.
    pub fn central(&self) -> Option<f64> {
        match self {
            Measurement::Deterministic { value } => Some(*value),
            Measurement::Timed { samples } if !samples.is_empty() => {
                Some(ovbench_harness::stats::median(samples))
            }
            Measurement::Timed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Stable, `/`-separated name, e.g. `ov1/step_s` or `ov2/memory/peak_over_baseline_bytes`.
    pub name: String,
    /// `s`, `bytes`, `FLOP`, `params`, `tokens`, ...
    pub unit: String,
    pub direction: Direction,
    pub measurement: Measurement,
}

impl Metric {
    pub fn deterministic(
        name: impl Into<String>,
        unit: &str,
        direction: Direction,
        value: f64,
    ) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            direction,
            measurement: Measurement::Deterministic { value },
        }
    }

    pub fn timed(
        name: impl Into<String>,
        unit: &str,
        direction: Direction,
        samples: Vec<f64>,
    ) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            direction,
            measurement: Measurement::Timed { samples },
        }
    }
}
