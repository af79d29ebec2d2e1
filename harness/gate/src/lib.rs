//! Verdicts over ovbench records, for the two users who never read one: a CI pipeline
//! (regression gate with an exit code) and a team comparing machines (one table).
//!
//! * [`record`]: loads any `ovbench.<kind>/<version>` record as JSON, tolerant of new fields.
//! * [`extract`]: one [`Extractor`] per record kind turns a record into named [`Metric`]s,
//!   each deterministic (a value) or timed (samples), plus the configuration keys that must
//!   agree before two records may be compared.
//! * [`gate()`]: baseline vs current, metric by metric, under a [`GateConfig`].
//! * [`output`]: terminal table, markdown summary, github-action-benchmark JSON.
//! * [`view`], [`compare`], [`check`]: step records across machines, and a result-folder checker.

pub mod check;
pub mod compare;
pub mod config;
mod error;
pub mod extract;
pub mod metric;
pub mod output;
pub mod record;
pub mod verdict;
pub mod view;

pub use config::{GateConfig, Only, Rule};
pub use error::{GateError, KeyDiff};
pub use extract::{extractor_for, Extractor};
pub use metric::{Direction, Measurement, Metric};
pub use record::LoadedRecord;
pub use verdict::{confirm, gate, GateReport, MetricResult, Outcome, Verdict};
