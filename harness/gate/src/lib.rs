//! Verdicts over ovbench records, for the two users who never read one: a CI pipeline
//! (regression gate with an exit code) and a team comparing machines (one table).
//!
//! Readers see only a record's envelope (`ovbench_harness::envelope`): its workload key,
//! metrics, hardware and provenance.
//! * [`record`]: loads and validates any record; [`legacy`] upgrades the layouts written
//!   before the envelope existed.
//! * [`gate()`]: baseline vs current, metric by metric, under a [`GateConfig`].
//! * [`output`]: terminal table, markdown summary, github-action-benchmark JSON.
//! * [`compare`], [`check`]: records across machines, and a result-folder checker.

pub mod check;
pub mod compare;
pub mod config;
mod error;
pub mod legacy;
pub mod output;
pub mod record;
pub mod verdict;

pub use config::{GateConfig, Only, Rule};
pub use error::{GateError, KeyDiff};
pub use ovbench_harness::envelope::{Direction, Measurement, Metric};
pub use record::LoadedRecord;
pub use verdict::{confirm, gate, GateReport, MetricResult, Outcome, Verdict};
