//! The `ovbench.score` record: what was scored (inputs and their hashes), the scores, and what
//! readers gate on (see `ovbench_harness::envelope`).

use crate::scorer::{CategoryScore, Report, ToolkitScore};
use crate::stats::{MeanCi, PairedStats};
use crate::PairedReport;
use ovbench_harness::envelope::{Direction, Metric, RecordBody, Workload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One input file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    /// `annotations` or `predictions`.
    pub role: String,
    pub path: String,
    pub format: String,
    pub sha256: String,
}

/// What a record keeps of a [`Report`] (the per-item scores go to the items CSV).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSummary {
    pub n_annotations: usize,
    pub n_scored: usize,
    /// Annotation ids with no prediction.
    pub missing: Vec<String>,
    pub unmatched: usize,
    pub duplicates: usize,
    /// Mean per-item score in 0..1 with its standard error and 95 % interval.
    pub summary: Option<MeanCi>,
    pub toolkit: ToolkitScore,
    pub categories: Vec<CategoryScore>,
    pub warning_counts: BTreeMap<String, usize>,
}

impl From<&Report> for ScoreSummary {
    fn from(r: &Report) -> Self {
        ScoreSummary {
            n_annotations: r.n_annotations,
            n_scored: r.n_scored,
            missing: r.missing.clone(),
            unmatched: r.unmatched,
            duplicates: r.duplicates,
            summary: r.summary,
            toolkit: r.toolkit.clone(),
            categories: r.categories.clone(),
            warning_counts: r
                .warning_counts
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }
}

impl ScoreSummary {
    /// The summary's metrics, each name prefixed with `prefix` (`""`, `"a/"`, `"b/"`).
    pub fn metrics(&self, prefix: &str, out: &mut Vec<Metric>) {
        use Direction::*;
        let m = |name: &str, unit: &str, dir, v: f64| {
            Metric::deterministic(format!("{prefix}{name}"), unit, dir, v)
        };
        if let Some(s) = &self.summary {
            out.push(m("score", "score", BiggerIsBetter, s.mean));
        }
        out.push(m(
            "score/toolkit",
            "score",
            BiggerIsBetter,
            self.toolkit.value,
        ));
        for c in &self.categories {
            out.push(m(
                &format!("score/category/{}", c.name),
                "score",
                BiggerIsBetter,
                c.toolkit_value,
            ));
        }
        out.push(m("items/scored", "count", Neither, self.n_scored as f64));
        out.push(m(
            "items/missing",
            "count",
            SmallerIsBetter,
            self.missing.len() as f64,
        ));
        out.push(m(
            "items/unmatched",
            "count",
            SmallerIsBetter,
            self.unmatched as f64,
        ));
        out.push(m(
            "items/duplicates",
            "count",
            SmallerIsBetter,
            self.duplicates as f64,
        ));
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreTiming {
    /// Reading the annotations and predictions.
    pub read: f64,
    /// Scoring and averaging.
    pub score: f64,
}

/// One prediction file scored, or two scored on the same items and compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
// One value per run: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ScoreResult {
    Single {
        report: ScoreSummary,
        timing_s: ScoreTiming,
        /// The first 200 warnings, in words.
        warnings: Vec<String>,
    },
    Paired {
        a: ScoreSummary,
        b: ScoreSummary,
        paired: PairedStats,
        only_in_a: usize,
        only_in_b: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    pub task: String,
    /// The toolkit whose rules scored it (`lmms-eval`, ...).
    pub compat: String,
    pub scorer_version: String,
    pub inputs: Vec<InputFile>,
    /// File name of the per-item CSV written beside the record.
    pub items_csv: Option<String>,
    #[serde(flatten)]
    pub result: ScoreResult,
}

impl ScoreRecord {
    pub fn single(
        report: &Report,
        inputs: Vec<InputFile>,
        timing_s: ScoreTiming,
        items_csv: Option<String>,
    ) -> Self {
        ScoreRecord {
            task: report.task.name().into(),
            compat: report.compat.label().into(),
            scorer_version: report.scorer_version.into(),
            inputs,
            items_csv,
            result: ScoreResult::Single {
                report: report.into(),
                timing_s,
                warnings: report
                    .warnings
                    .iter()
                    .take(200)
                    .map(|w| w.to_string())
                    .collect(),
            },
        }
    }

    pub fn paired(
        a: &Report,
        b: &Report,
        paired: &PairedReport,
        inputs: Vec<InputFile>,
        items_csv: Option<String>,
    ) -> Self {
        ScoreRecord {
            task: a.task.name().into(),
            compat: a.compat.label().into(),
            scorer_version: a.scorer_version.into(),
            inputs,
            items_csv,
            result: ScoreResult::Paired {
                a: a.into(),
                b: b.into(),
                paired: paired.stats.clone(),
                only_in_a: paired.only_in_a,
                only_in_b: paired.only_in_b,
            },
        }
    }

    fn mode(&self) -> &'static str {
        match self.result {
            ScoreResult::Single { .. } => "single",
            ScoreResult::Paired { .. } => "paired",
        }
    }
}

impl RecordBody for ScoreRecord {
    const KIND: &'static str = "score";
    /// 2: the envelope beside the body; the report keeps only its summary fields.
    const VERSION: u32 = 2;

    fn workload(&self) -> Workload {
        // Scores of different annotation files, scorer versions or toolkits are not comparable.
        let annotations: Vec<&str> = self
            .inputs
            .iter()
            .filter(|i| i.role == "annotations")
            .map(|i| i.sha256.as_str())
            .collect();
        [
            ("task", self.task.clone()),
            ("compat", self.compat.clone()),
            ("mode", self.mode().to_string()),
            ("scorer_version", self.scorer_version.clone()),
            ("annotations_sha256", annotations.join(",")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        match &self.result {
            ScoreResult::Single { report, .. } => report.metrics("", &mut out),
            ScoreResult::Paired { a, b, paired, .. } => {
                a.metrics("a/", &mut out);
                b.metrics("b/", &mut out);
                out.push(Metric::deterministic(
                    "b_minus_a",
                    "score",
                    Direction::Neither,
                    paired.diff,
                ));
                out.push(Metric::deterministic(
                    "items/paired",
                    "count",
                    Direction::Neither,
                    paired.n as f64,
                ));
            }
        }
        out
    }
}
