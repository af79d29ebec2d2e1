//! The one record type every suite writes and every reader reads.
//!
//! A record is a JSON object: the [`Envelope`] fields (`schema`, `provenance`, `workload`,
//! `hardware`, `metrics`, `conditions`) beside the suite's own typed body, flattened. Writers
//! implement [`RecordBody`] once for their body type, stating its workload key and its metrics
//! beside the type; [`Record::new`] fills the envelope from it. Readers (gate, compare, report,
//! check) use only the envelope, never paths into a body, so a body can grow without breaking
//! them, and one [`validate`] judges every record the same way.

use crate::provenance::Provenance;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// `ovbench.<kind>/<version>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Schema {
    pub kind: String,
    pub version: u32,
}

impl Schema {
    pub fn new(kind: &str, version: u32) -> Self {
        Schema {
            kind: kind.into(),
            version,
        }
    }

    /// Parses `ovbench.<kind>/<version>`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("ovbench.")?;
        let (kind, version) = rest.split_once('/')?;
        let ok = !kind.is_empty()
            && kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok || version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(Schema::new(kind, version.parse().ok()?))
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ovbench.{}/{}", self.kind, self.version)
    }
}

impl Serialize for Schema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schema::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("'{s}' is not of the form ovbench.<kind>/<version>"))
        })
    }
}

/// Everything that makes two measurements comparable (model, resolution, batch, engine, ...),
/// as short strings. Two records are compared, pooled or gated only when their keys agree.
pub type Workload = BTreeMap<String, String>;

/// Which way is worse. Counts that should never move (parameters, tokens) have no better
/// direction: any change beyond tolerance is reported as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    SmallerIsBetter,
    BiggerIsBetter,
    Neither,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measurement {
    /// A value that the same build and configuration reproduce exactly (FLOPs, parameters,
    /// allocator peak bytes, scores, completion).
    Deterministic { value: f64 },
    /// Repeated timings (or values derived one per repetition), compared through their
    /// medians; `warmup` repetitions ran before them and are not among the samples.
    Timed { samples: Vec<f64>, warmup: usize },
}

impl Measurement {
    pub fn is_timed(&self) -> bool {
        matches!(self, Measurement::Timed { .. })
    }

    /// The value itself, or the median of the samples.
    pub fn central(&self) -> Option<f64> {
        match self {
            Measurement::Deterministic { value } => Some(*value),
            Measurement::Timed { samples, .. } if !samples.is_empty() => {
                Some(crate::stats::median(samples))
            }
            Measurement::Timed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Stable, `/`-separated name: `ov1/step_s`, `ov2/memory/peak_over_baseline_bytes`.
    pub name: String,
    /// `s`, `bytes`, `FLOP`, `params`, `tokens`, `bool`, `ratio`, `score`, ...
    pub unit: String,
    pub direction: Direction,
    #[serde(flatten)]
    pub measurement: Measurement,
}

impl Metric {
    pub fn deterministic(name: impl Into<String>, unit: &str, dir: Direction, value: f64) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            direction: dir,
            measurement: Measurement::Deterministic { value },
        }
    }

    pub fn timed(
        name: impl Into<String>,
        unit: &str,
        dir: Direction,
        samples: Vec<f64>,
        warmup: usize,
    ) -> Self {
        Metric {
            name: name.into(),
            unit: unit.into(),
            direction: dir,
            measurement: Measurement::Timed { samples, warmup },
        }
    }
}

/// Something that must hold for the record's numbers to mean anything (for example, that two
/// engines computed the same function before their times are compared). A record with a
/// condition that does not hold fails `ovbench check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub name: String,
    pub holds: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The typed body of one kind of record, with what readers need to know about it.
pub trait RecordBody: Serialize + DeserializeOwned {
    /// The `<kind>` of `ovbench.<kind>/<version>`.
    const KIND: &'static str;
    /// Bumped whenever a field's meaning changes or a field readers rely on moves.
    const VERSION: u32;
    /// The keys that must agree before two records of this kind are compared.
    fn workload(&self) -> Workload;
    /// Every metric of the record.
    fn metrics(&self) -> Vec<Metric>;
    /// Column label of the measuring machine, when the body knows better than the host
    /// facts in the provenance (a GPU's name).
    fn hardware(&self, provenance: &Provenance) -> String {
        host_label(provenance)
    }
    /// What must hold for the numbers to mean anything.
    fn conditions(&self) -> Vec<Condition> {
        Vec::new()
    }
}

/// `<CPU model> (<n> threads)` from the provenance.
pub fn host_label(p: &Provenance) -> String {
    format!("{} ({} threads)", p.host.cpu_model, p.host.logical_cpus)
}

/// What every reader reads of any record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: Schema,
    pub provenance: Provenance,
    pub workload: Workload,
    pub hardware: String,
    pub metrics: Vec<Metric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl Envelope {
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// `model=L/14 resolution=224 ...`: the workload key in one line.
    pub fn workload_line(&self) -> String {
        workload_line(&self.workload)
    }
}

pub fn workload_line(w: &Workload) -> String {
    w.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One record on disk: the envelope beside the typed body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<T> {
    #[serde(flatten)]
    pub envelope: Envelope,
    #[serde(flatten)]
    pub body: T,
}

impl<T: RecordBody> Record<T> {
    /// Fills the envelope from the body.
    pub fn new(provenance: Provenance, body: T) -> Self {
        let envelope = Envelope {
            schema: Schema::new(T::KIND, T::VERSION),
            hardware: body.hardware(&provenance),
            workload: body.workload(),
            metrics: body.metrics(),
            conditions: body.conditions(),
            provenance,
        };
        Record { envelope, body }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Bodies are plain data (no maps with non-string keys): serialising cannot fail.
        serde_json::to_vec_pretty(self).expect("records serialise")
    }

    /// Reads a record of this kind and version, typed.
    pub fn read(path: &Path) -> Result<Self, EnvelopeError> {
        let value = crate::io::read_json(path).map_err(EnvelopeError::Io)?;
        let found = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        let expected = Schema::new(T::KIND, T::VERSION);
        if Schema::parse(found).as_ref() != Some(&expected) {
            return Err(EnvelopeError::Invalid {
                path: path.into(),
                message: format!(
                    "field `schema`: '{found}' is not {expected}, the version this build reads"
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| EnvelopeError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Envelope {
    /// The envelope of a record in the current layout (one written with `workload` and
    /// `metrics`); `None` when the object has neither (an older layout: see the legacy reader
    /// in `ovbench-gate`).
    pub fn from_value(
        path: &Path,
        value: &serde_json::Value,
    ) -> Option<Result<Self, EnvelopeError>> {
        let obj = value.as_object()?;
        if !obj.contains_key("metrics") && !obj.contains_key("workload") {
            return None;
        }
        Some(
            Envelope::deserialize(value).map_err(|e| EnvelopeError::Invalid {
                path: path.into(),
                message: e.to_string(),
            }),
        )
    }
}

/// Largest magnitude a metric may have: beyond it a value is a unit error or corruption
/// (10^30 bytes, seconds or FLOPs is no measurement).
pub const MAX_MAGNITUDE: f64 = 1e30;

/// One thing wrong with a record, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The one validator every reader applies: well-formed names, finite values of sane
/// magnitude, non-negative times and sizes, samples present, no duplicate metric.
pub fn validate(env: &Envelope) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut p = |field: String, message: String| out.push(Problem { field, message });
    for (k, v) in &env.workload {
        if k.is_empty() || v.is_empty() {
            p(format!("workload.{k}"), "empty key or value".into());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, m) in env.metrics.iter().enumerate() {
        let at = format!("metrics[{i}] ({})", m.name);
        if m.name.is_empty() {
            p(at.clone(), "empty name".into());
        }
        if !seen.insert(m.name.as_str()) {
            p(at.clone(), "appears twice".into());
        }
        let nonneg = matches!(
            m.unit.as_str(),
            "s" | "bytes" | "FLOP" | "FLOP/s" | "params" | "tokens" | "images/s" | "h" | "count"
        );
        let check = |x: f64| -> Option<String> {
            if !x.is_finite() {
                Some(format!("{x} is not a finite number"))
            } else if x.abs() > MAX_MAGNITUDE {
                Some(format!("{x:e} {} is beyond any real measurement", m.unit))
            } else if nonneg && x < 0.0 {
                Some(format!("{x} {} is negative", m.unit))
            } else if m.unit == "bool" && x != 0.0 && x != 1.0 {
                Some(format!("{x} is not 0 or 1"))
            } else {
                None
            }
        };
        match &m.measurement {
            Measurement::Deterministic { value } => {
                if let Some(e) = check(*value) {
                    p(format!("{at}.value"), e);
                }
            }
            Measurement::Timed { samples, .. } => {
                if samples.is_empty() {
                    p(format!("{at}.samples"), "empty".into());
                }
                if let Some((k, e)) = samples
                    .iter()
                    .enumerate()
                    .find_map(|(k, &x)| check(x).map(|e| (k, e)))
                {
                    p(format!("{at}.samples[{k}]"), e);
                }
                if m.unit == "s" && samples.contains(&0.0) {
                    p(format!("{at}.samples"), "a time of exactly 0 s".into());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Body {
        model: String,
        times: Vec<f64>,
    }

    impl RecordBody for Body {
        const KIND: &'static str = "toy";
        const VERSION: u32 = 3;
        fn workload(&self) -> Workload {
            [("model".to_string(), self.model.clone())].into()
        }
        fn metrics(&self) -> Vec<Metric> {
            vec![Metric::timed(
                "step_s",
                "s",
                Direction::SmallerIsBetter,
                self.times.clone(),
                1,
            )]
        }
    }

    fn prov() -> Provenance {
        Provenance::collect("0", &[], Path::new("."))
    }

    #[test]
    fn schema_strings() {
        assert_eq!(
            Schema::parse("ovbench.step/2"),
            Some(Schema::new("step", 2))
        );
        for bad in [
            "ovbench.step",
            "x.step/1",
            "ovbench.step/x",
            "ovbench./1",
            "ovbench.a b/1",
            "ovbench.s/+1",
        ] {
            assert_eq!(Schema::parse(bad), None, "{bad}");
        }
        assert_eq!(Schema::new("eval", 1).to_string(), "ovbench.eval/1");
    }

    #[test]
    fn a_record_round_trips_and_its_envelope_reads_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let body = Body {
            model: "L/14".into(),
            times: vec![0.5, 0.6],
        };
        let rec = Record::new(prov(), body);
        crate::io::write_atomic(&p, &rec.to_json()).unwrap();
        let back: Record<Body> = Record::read(&p).unwrap();
        assert_eq!(back.body.times, vec![0.5, 0.6]);
        assert_eq!(back.envelope, rec.envelope);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let env = Envelope::from_value(&p, &v).unwrap().unwrap();
        assert_eq!(env.metrics, rec.body.metrics());
        assert_eq!(env.workload_line(), "model=L/14");
        assert!(validate(&env).is_empty());
        // The body sits beside the envelope, as older records had it.
        assert_eq!(v["model"], "L/14");
        assert_eq!(v["schema"], "ovbench.toy/3");
    }

    #[test]
    fn typed_read_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, br#"{"schema": "ovbench.toy/2"}"#).unwrap();
        let e = Record::<Body>::read(&p).unwrap_err().to_string();
        assert!(e.contains("ovbench.toy/3") && e.contains("r.json"), "{e}");
    }

    #[test]
    fn the_validator_names_each_problem() {
        let mut env = Record::new(
            prov(),
            Body {
                model: "x".into(),
                times: vec![0.1],
            },
        )
        .envelope;
        env.metrics.push(Metric::timed(
            "t",
            "s",
            Direction::SmallerIsBetter,
            vec![-1.0],
            1,
        ));
        env.metrics.push(Metric::deterministic(
            "b",
            "bytes",
            Direction::SmallerIsBetter,
            f64::MAX,
        ));
        env.metrics.push(Metric::deterministic(
            "c",
            "bool",
            Direction::BiggerIsBetter,
            0.5,
        ));
        env.metrics.push(Metric::timed(
            "e",
            "s",
            Direction::SmallerIsBetter,
            vec![],
            1,
        ));
        env.metrics.push(Metric::deterministic(
            "b",
            "bytes",
            Direction::SmallerIsBetter,
            1.0,
        ));
        let msgs: Vec<String> = validate(&env).iter().map(|p| p.to_string()).collect();
        let has = |s: &str| msgs.iter().any(|m| m.contains(s));
        assert!(has("(t).samples[0]: -1 s is negative"), "{msgs:?}");
        assert!(
            has("(b).value") && has("beyond any real measurement"),
            "{msgs:?}"
        );
        assert!(has("not 0 or 1"), "{msgs:?}");
        assert!(has("(e).samples: empty"), "{msgs:?}");
        assert!(has("appears twice"), "{msgs:?}");
    }
}
