//! TextVQA, ChartQA and OCRBench scoring that agrees with the reference toolkits.
//!
//! The rules follow `shared/reference/scoring-spec.md`; every `--compat` label of the public
//! test vectors is a [`Compat`] value, and `lmms-eval` (the paper's toolkit) is the default.
//!
//! # Stable API (used by `ovbench score`, and meant for `ovbench eval`)
//!
//! ```no_run
//! use ovbench_score::{readers, score, Compat, MatchPolicy, Task};
//! # fn main() -> Result<(), ovbench_score::ScoreError> {
//! let task = Task::TextVqa;
//! let ann = readers::read_annotations(task, &["TextVQA_0.5.1_val.json".into()], &Default::default())?;
//! let preds = readers::read_predictions(std::path::Path::new("preds.jsonl"))?;
//! let report = score(task, Compat::LmmsEval, &ann, &preds, MatchPolicy::default())?;
//! println!("{} = {}", report.toolkit.metric, report.toolkit.value);
//! # Ok(()) }
//! ```
//!
//! - [`score`] joins predictions to annotations and returns a [`Report`]: per-item scores
//!   in annotation order, the toolkit's own number ([`ToolkitScore`]), per-category scores,
//!   the mean with its standard error and 95 % interval, and counts of missing, unmatched
//!   and duplicate ids plus every tolerated oddity as a counted [`Warning`].
//! - [`score_item`] scores one prediction against one answer list (what the vectors test).
//! - [`readers`] reads every supported file format; [`readers::read_annotations`] and
//!   [`readers::read_predictions`] detect the format themselves.
//! - [`paired_report`] compares two reports on the same annotations ([`stats::paired`]).
//!
//! Errors ([`ScoreError`]) name the file, line (or row) and field; nothing panics on input.

// Errors carry the file, line and field by value: they are built once, on the failing path.
#![allow(clippy::result_large_err)]

pub mod chartqa;
pub mod compat;
pub mod error;
pub mod normalize;
pub mod ocrbench;
pub mod pandas;
pub mod py;
pub mod readers;
pub mod record;
pub mod scorer;
pub mod stats;
pub mod textvqa;

pub use compat::{Compat, Task};
pub use error::{Loc, ScoreError, Warning};
pub use scorer::{
    paired_items_csv, score, score_item, Annotation, Annotations, CategoryScore, ItemScore,
    MatchPolicy, Origin, PredKey, Prediction, Predictions, Report, ToolkitScore, Witness,
    SCORER_VERSION,
};

/// The hasher for question-id maps: FxHash (one multiply per 8 bytes) instead of SipHash.
/// Ids come from the user's own files, so resistance to crafted collisions is not needed.
pub(crate) type IdHash = std::hash::BuildHasherDefault<FxHasher>;

#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The paired comparison of two reports (B minus A) on the items both scored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairedReport {
    pub task: Task,
    pub compat: Compat,
    /// Items scored in A but not B, and in B but not A (excluded from the comparison).
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub stats: stats::PairedStats,
}

/// Pairs `a` and `b` by annotation row. Both must come from the same annotations and label.
pub fn paired_report(a: &Report, b: &Report, margin: f64) -> Result<PairedReport, ScoreError> {
    if a.task != b.task || a.compat != b.compat || a.n_annotations != b.n_annotations {
        return Err(ScoreError::Usage(
            "paired reports must share task, compat label and annotations".into(),
        ));
    }
    if !(margin > 0.0 && margin.is_finite()) {
        return Err(ScoreError::Usage(format!(
            "--margin must be a positive number, got {margin}"
        )));
    }
    let mut by_row_b = vec![None; b.n_annotations];
    for it in &b.items {
        by_row_b[it.row] = Some(it.score);
    }
    let (mut xa, mut xb) = (Vec::new(), Vec::new());
    let mut only_in_a = 0;
    let mut in_a = vec![false; a.n_annotations];
    for it in &a.items {
        in_a[it.row] = true;
        match by_row_b[it.row] {
            Some(s) => {
                xa.push(it.score);
                xb.push(s);
            }
            None => only_in_a += 1,
        }
    }
    let only_in_b = b.items.iter().filter(|it| !in_a[it.row]).count();
    let stats = stats::paired(&xa, &xb, margin).ok_or_else(|| {
        ScoreError::Usage("the two prediction files have no scored question in common".into())
    })?;
    Ok(PairedReport {
        task: a.task,
        compat: a.compat,
        only_in_a,
        only_in_b,
        stats,
    })
}
