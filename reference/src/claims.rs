//! The claims manifest (`data/claims.json`): each efficiency claim of the
//! paper as a machine-readable check, fixed before anything is measured.
//!
//! A reviewer may edit the file (tolerances, say) and load it with
//! [`crate::load_claims`]; every error names the file and the field. Published
//! values must equal the table cell they quote (`ref`), so editing a number
//! by mistake is caught too.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fields::{At, Obj};
use crate::{Recipe, ReferenceError, TableRef};

type Result<T> = std::result::Result<T, ReferenceError>;

/// Metric keys: what a measurer must supply for a claim. Use these constants
/// rather than string literals so a rename is a compile error.
pub mod metric {
    /// Analytic forward FLOPs per image of OpenVision, in the paper's unit (GFLOPs).
    pub const FLOPS_PER_IMAGE_OV1: &str = "flops_per_image_ov1";
    /// Same for OpenVision 2.
    pub const FLOPS_PER_IMAGE_OV2: &str = "flops_per_image_ov2";
    /// FLOPs per image, OpenVision 2 / OpenVision.
    pub const FLOPS_PER_IMAGE_RATIO_OV2_OV1: &str = "flops_per_image_ratio_ov2_ov1";
    /// Projected full-CLIPA-schedule time, OpenVision 2 / OpenVision.
    pub const SCHEDULE_TIME_RATIO_OV2_OV1: &str = "schedule_time_ratio_ov2_ov1";
    /// Peak memory per device at the claim's batch, OpenVision 2 / OpenVision.
    pub const PEAK_MEMORY_RATIO_OV2_OV1: &str = "peak_memory_ratio_ov2_ov1";
    /// OpenVision 2 peak memory at `global_batch` / at `reference_global_batch`.
    pub const PEAK_MEMORY_GROWTH_OV2: &str = "peak_memory_growth_ov2";
    /// Whether OpenVision fits under the cap at the claim's batch.
    pub const FITS_OV1_AT_BATCH: &str = "fits_ov1_at_batch";
    /// Whether OpenVision 2 fits under the cap at the claim's batch.
    pub const FITS_OV2_AT_BATCH: &str = "fits_ov2_at_batch";

    /// Every key the shipped manifest uses.
    pub const ALL: &[&str] = &[
        FLOPS_PER_IMAGE_OV1,
        FLOPS_PER_IMAGE_OV2,
        FLOPS_PER_IMAGE_RATIO_OV2_OV1,
        SCHEDULE_TIME_RATIO_OV2_OV1,
        PEAK_MEMORY_RATIO_OV2_OV1,
        PEAK_MEMORY_GROWTH_OV2,
        FITS_OV1_AT_BATCH,
        FITS_OV2_AT_BATCH,
    ];
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSet {
    pub title: String,
    /// Set when the tolerances were fixed before any measurement.
    pub fixed_before_measurement: bool,
    /// The verdict rule in words (the code in `verdict` is authoritative).
    pub rule: String,
    pub claims: Vec<Claim>,
}

impl ClaimSet {
    pub fn get(&self, id: &str) -> Option<&Claim> {
        self.claims.iter().find(|c| c.id == id)
    }

    /// The claims that need `metric` measured.
    pub fn for_metric<'a>(&'a self, metric: &'a str) -> impl Iterator<Item = &'a Claim> + 'a {
        self.claims.iter().filter(move |c| c.metric == metric)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// A ratio of two published numbers, OV2 / OV1 or batch / batch.
    Ratio,
    /// One published number.
    Value,
    /// A published fits / out-of-memory outcome under the chip's memory cap.
    FitsUnderCap,
}

impl ClaimKind {
    pub fn key(self) -> &'static str {
        match self {
            Self::Ratio => "ratio",
            Self::Value => "value",
            Self::FitsUnderCap => "fits_under_cap",
        }
    }
}

impl fmt::Display for ClaimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Stable slug, e.g. `time-ratio-l14-224`.
    pub id: String,
    /// The paper's words (quoted) and the table it rests on.
    pub statement: String,
    pub kind: ClaimKind,
    /// What must be measured; see [`metric`].
    pub metric: String,
    pub setting: Setting,
    pub published: Published,
    /// Required for `ratio` and `value`, absent for `fits_under_cap`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<Tolerance>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The paper's setting for a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    /// `L/14` or `SoViT-400M/14`.
    pub backbone: String,
    pub resolution: u32,
    /// The recipes the claim involves (both for OV2/OV1 ratios).
    pub recipes: Vec<Recipe>,
    /// Platform id in `hardware.json`.
    pub hardware: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chips: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_batch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_label: Option<String>,
    /// Per-chip batch under the UNVERIFIED global-batch reading of Table 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_chip_batch: Option<u64>,
    /// For growth ratios: the batch of the denominator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_global_batch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_cap_gb: Option<f64>,
}

/// A published number and the table cell it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datum {
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(rename = "ref")]
    pub table_ref: TableRef,
}

/// What the paper published, by claim kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Published {
    Ratio {
        numerator: Datum,
        denominator: Datum,
    },
    Value(Datum),
    Fits {
        fits: bool,
        #[serde(rename = "ref")]
        table_ref: TableRef,
    },
}

/// How far a measurement may be from the published value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tolerance {
    #[serde(flatten)]
    pub bound: Bound,
    /// One line on why this width.
    pub justification: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Fraction of the published value, e.g. 0.15 for +/-15 %.
    Relative(f64),
    /// In the published value's unit.
    Absolute(f64),
}

/// The closed interval of accepted values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub lo: f64,
    pub hi: f64,
}

impl Tolerance {
    /// The band around `published`.
    pub fn band(&self, published: f64) -> Band {
        let half = match self.bound {
            Bound::Relative(r) => r * published.abs(),
            Bound::Absolute(a) => a,
        };
        Band {
            lo: published - half,
            hi: published + half,
        }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bound {
            Bound::Relative(r) => write!(f, "±{}%", trim(r * 100.0)),
            Bound::Absolute(a) => write!(f, "±{}", trim(a)),
        }
    }
}

/// Shortest decimal that round-trips, without float noise such as 15.000000000000002.
fn trim(x: f64) -> String {
    let s = format!("{:.6}", x);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Claim {
    /// The published value a measurement is compared with: the ratio
    /// numerator / denominator is computed here, never written by hand.
    /// `None` for fits claims and for an unusable ratio.
    pub fn published_value(&self) -> Option<f64> {
        let v = match &self.published {
            Published::Ratio {
                numerator,
                denominator,
            } => numerator.value / denominator.value,
            Published::Value(d) => d.value,
            Published::Fits { .. } => return None,
        };
        v.is_finite().then_some(v)
    }

    /// The published fits outcome of a `fits_under_cap` claim.
    pub fn published_fits(&self) -> Option<bool> {
        match &self.published {
            Published::Fits { fits, .. } => Some(*fits),
            _ => None,
        }
    }

    /// The accepted band, for `ratio` and `value` claims with a tolerance.
    pub fn band(&self) -> Option<Band> {
        Some(self.tolerance.as_ref()?.band(self.published_value()?))
    }

    /// The table cells this claim quotes.
    pub fn table_refs(&self) -> Vec<&TableRef> {
        match &self.published {
            Published::Ratio {
                numerator,
                denominator,
            } => vec![&numerator.table_ref, &denominator.table_ref],
            Published::Value(d) => vec![&d.table_ref],
            Published::Fits { table_ref, .. } => vec![table_ref],
        }
    }
}

// ---- parsing with field paths -------------------------------------------

/// Parses a claims manifest. `file` names the source in errors. Table
/// references are not resolved here; [`crate::Reference::check_claims`] does that.
pub fn parse_claims(text: &str, file: &str) -> Result<ClaimSet> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ReferenceError::from_serde(file, &e))?;
    let root = At {
        file,
        path: "",
        value: &value,
    }
    .object(&["title", "fixed_before_measurement", "rule", "claims"])?;
    let claims = root.array("claims", parse_claim)?;
    let mut seen = BTreeSet::new();
    for (i, c) in claims.iter().enumerate() {
        if !seen.insert(c.id.as_str()) {
            return Err(ReferenceError::field_error(
                file,
                format!("claims[{i}].id"),
                format!("duplicate claim id `{}`", c.id),
            ));
        }
    }
    Ok(ClaimSet {
        title: root.string("title")?,
        fixed_before_measurement: root.bool("fixed_before_measurement")?,
        rule: root.string("rule")?,
        claims,
    })
}

fn parse_claim(at: At<'_>) -> Result<Claim> {
    let o = at.object(&[
        "id",
        "statement",
        "kind",
        "metric",
        "setting",
        "published",
        "tolerance",
        "source",
        "unverified",
        "notes",
    ])?;
    let id = o.string("id")?;
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(o.err("id", "must be a slug of a-z, 0-9 and '-'"));
    }
    // Name the claim in every later error: paths alone are hard to map back
    // to an entry in a long file.
    parse_claim_body(&o, id.clone()).map_err(|e| match e {
        ReferenceError::Field {
            file,
            field,
            message,
        } => ReferenceError::Field {
            file,
            field,
            message: format!("{message} (claim `{id}`)"),
        },
        other => other,
    })
}

fn parse_claim_body(o: &Obj<'_>, id: String) -> Result<Claim> {
    let kind = match o.string("kind")?.as_str() {
        "ratio" => ClaimKind::Ratio,
        "value" => ClaimKind::Value,
        "fits_under_cap" => ClaimKind::FitsUnderCap,
        other => {
            return Err(o.err(
                "kind",
                format!("unknown kind `{other}`; expected ratio, value or fits_under_cap"),
            ))
        }
    };
    let published = o.child("published", |at| parse_published(at, kind))?;
    let tolerance = o.opt_child("tolerance", parse_tolerance)?;
    match (kind, &tolerance) {
        (ClaimKind::FitsUnderCap, Some(_)) => {
            return Err(o.err(
                "tolerance",
                "a fits_under_cap claim is judged on its outcome; remove the tolerance",
            ))
        }
        (ClaimKind::Ratio | ClaimKind::Value, None) => {
            return Err(o.err("tolerance", "missing required field"))
        }
        _ => {}
    }
    Ok(Claim {
        id,
        statement: o.string("statement")?,
        kind,
        metric: o.string("metric")?,
        setting: o.child("setting", parse_setting)?,
        published,
        tolerance,
        source: o.string("source")?,
        unverified: o.opt_string("unverified")?,
        notes: o.opt_string("notes")?,
    })
}

fn parse_setting(at: At<'_>) -> Result<Setting> {
    let o = at.object(&[
        "backbone",
        "resolution",
        "recipes",
        "hardware",
        "chips",
        "global_batch",
        "batch_label",
        "per_chip_batch",
        "reference_global_batch",
        "memory_cap_gb",
    ])?;
    let recipes = o.array("recipes", |at| {
        let s = at.value.as_str().unwrap_or_default();
        Recipe::from_key(s).ok_or_else(|| {
            ReferenceError::field_error(at.file, at.path, "expected \"ov1\" or \"ov2\"")
        })
    })?;
    if recipes.is_empty() {
        return Err(o.err("recipes", "must name at least one recipe"));
    }
    let memory_cap_gb = o.opt_f64("memory_cap_gb")?;
    if memory_cap_gb.is_some_and(|c| c <= 0.0) {
        return Err(o.err("memory_cap_gb", "must be positive"));
    }
    Ok(Setting {
        backbone: o.string("backbone")?,
        resolution: o.u32("resolution")?,
        recipes,
        hardware: o.string("hardware")?,
        chips: o.opt_u32("chips")?,
        global_batch: o.opt_u64("global_batch")?,
        batch_label: o.opt_string("batch_label")?,
        per_chip_batch: o.opt_u64("per_chip_batch")?,
        reference_global_batch: o.opt_u64("reference_global_batch")?,
        memory_cap_gb,
    })
}

fn parse_published(at: At<'_>, kind: ClaimKind) -> Result<Published> {
    match kind {
        ClaimKind::Ratio => {
            let o = at.object(&["numerator", "denominator"])?;
            let numerator = o.child("numerator", parse_datum)?;
            let denominator = o.child("denominator", parse_datum)?;
            if denominator.value == 0.0 {
                return Err(ReferenceError::field_error(
                    at.file,
                    o.path_of("denominator.value"),
                    "must not be zero",
                ));
            }
            Ok(Published::Ratio {
                numerator,
                denominator,
            })
        }
        ClaimKind::Value => parse_datum(at).map(Published::Value),
        ClaimKind::FitsUnderCap => {
            let o = at.object(&["fits", "ref"])?;
            Ok(Published::Fits {
                fits: o.bool("fits")?,
                table_ref: o.child("ref", parse_ref)?,
            })
        }
    }
}

fn parse_datum(at: At<'_>) -> Result<Datum> {
    let o = at.object(&["value", "unit", "ref"])?;
    Ok(Datum {
        value: o.f64("value")?,
        unit: o.opt_string("unit")?,
        table_ref: o.child("ref", parse_ref)?,
    })
}

fn parse_ref(at: At<'_>) -> Result<TableRef> {
    let o = at.object(&["table", "row", "field"])?;
    Ok(TableRef {
        table: o.string("table")?,
        row: o.string("row")?,
        field: o.string("field")?,
    })
}

fn parse_tolerance(at: At<'_>) -> Result<Tolerance> {
    let o = at.object(&["relative", "absolute", "justification"])?;
    let bound = match (o.opt_f64("relative")?, o.opt_f64("absolute")?) {
        (Some(r), None) => {
            // A relative band of 100 % or more would accept a zero or a
            // sign flip, i.e. it would not test the claim at all.
            if !(r > 0.0 && r < 1.0) {
                return Err(o.err("relative", "must be in (0, 1)"));
            }
            Bound::Relative(r)
        }
        (None, Some(a)) => {
            if a <= 0.0 {
                return Err(o.err("absolute", "must be positive"));
            }
            Bound::Absolute(a)
        }
        (Some(_), Some(_)) => {
            return Err(o.err("absolute", "give either relative or absolute, not both"))
        }
        (None, None) => return Err(o.err("relative", "missing: give relative or absolute")),
    };
    Ok(Tolerance {
        bound,
        justification: o.string("justification")?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{json, Value};

    use super::*;
    use crate::{claims, load_claims, reference};

    const EMBEDDED: &str = include_str!("../data/claims.json");

    #[test]
    fn required_claims_are_present_with_their_metrics() {
        let set = &reference().unwrap().claims;
        assert!(set.fixed_before_measurement);
        for (id, metric, kind) in [
            (
                "flops-per-image-ov1-l14-224",
                metric::FLOPS_PER_IMAGE_OV1,
                ClaimKind::Value,
            ),
            (
                "flops-per-image-ov2-l14-224",
                metric::FLOPS_PER_IMAGE_OV2,
                ClaimKind::Value,
            ),
            (
                "flops-per-image-ov1-so400m-384",
                metric::FLOPS_PER_IMAGE_OV1,
                ClaimKind::Value,
            ),
            (
                "flops-per-image-ov2-so400m-384",
                metric::FLOPS_PER_IMAGE_OV2,
                ClaimKind::Value,
            ),
            (
                "flops-ratio-l14-224",
                metric::FLOPS_PER_IMAGE_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "flops-ratio-so400m-384",
                metric::FLOPS_PER_IMAGE_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "time-ratio-l14-224",
                metric::SCHEDULE_TIME_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "time-ratio-so400m-384",
                metric::SCHEDULE_TIME_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "memory-ratio-l14-224-2k",
                metric::PEAK_MEMORY_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "memory-ratio-so400m-384-512",
                metric::PEAK_MEMORY_RATIO_OV2_OV1,
                ClaimKind::Ratio,
            ),
            (
                "ov1-oom-l14-224-4k",
                metric::FITS_OV1_AT_BATCH,
                ClaimKind::FitsUnderCap,
            ),
            (
                "ov2-fits-l14-224-8k",
                metric::FITS_OV2_AT_BATCH,
                ClaimKind::FitsUnderCap,
            ),
            (
                "ov1-oom-so400m-384-1k",
                metric::FITS_OV1_AT_BATCH,
                ClaimKind::FitsUnderCap,
            ),
            (
                "ov2-fits-so400m-384-1k",
                metric::FITS_OV2_AT_BATCH,
                ClaimKind::FitsUnderCap,
            ),
            (
                "memory-growth-ov2-l14-224-8k-over-2k",
                metric::PEAK_MEMORY_GROWTH_OV2,
                ClaimKind::Ratio,
            ),
        ] {
            let c = set.get(id).unwrap_or_else(|| panic!("missing claim {id}"));
            assert_eq!((c.metric.as_str(), c.kind), (metric, kind), "{id}");
        }
        for c in &set.claims {
            assert!(
                metric::ALL.contains(&c.metric.as_str()),
                "{}: unknown metric",
                c.id
            );
            assert!(!c.statement.is_empty() && !c.source.is_empty());
            if let Some(t) = &c.tolerance {
                assert!(!t.justification.is_empty(), "{}", c.id);
            }
        }
    }

    #[test]
    fn published_values_are_computed_from_the_tables() {
        let set = &reference().unwrap().claims;
        let p = |id: &str| set.get(id).unwrap().published_value().unwrap();
        assert_eq!(p("flops-ratio-l14-224"), 208.90 / 271.75);
        assert_eq!(p("flops-ratio-so400m-384"), 1017.74 / 1636.75);
        assert_eq!(p("time-ratio-l14-224"), 57.0 / 83.0);
        assert_eq!(p("time-ratio-so400m-384"), 121.0 / 241.0);
        assert_eq!(p("memory-ratio-l14-224-2k"), 13.8 / 24.5);
        assert_eq!(p("memory-ratio-so400m-384-512"), 14.5 / 27.4);
        assert_eq!(p("memory-growth-ov2-l14-224-4k-over-2k"), 22.1 / 13.8);
        assert_eq!(p("memory-growth-ov2-l14-224-8k-over-2k"), 28.4 / 13.8);
        assert_eq!(p("flops-per-image-ov2-l14-224"), 208.90);
        let fits = |id: &str| set.get(id).unwrap().published_fits().unwrap();
        assert!(!fits("ov1-oom-l14-224-4k"));
        assert!(fits("ov2-fits-l14-224-8k"));
        assert!(!fits("ov1-oom-so400m-384-1k"));
        assert!(fits("ov2-fits-so400m-384-1k"));
        // Bands: FLOP values +/-2 %, time ratios +/-15 %.
        let band = set
            .get("flops-per-image-ov2-l14-224")
            .unwrap()
            .band()
            .unwrap();
        assert!((band.lo - 204.722).abs() < 1e-9 && (band.hi - 213.078).abs() < 1e-9);
        let band = set.get("time-ratio-l14-224").unwrap().band().unwrap();
        assert!((band.lo - 0.85 * 57.0 / 83.0).abs() < 1e-12);
        assert!((band.hi - 1.15 * 57.0 / 83.0).abs() < 1e-12);
    }

    #[test]
    fn derived_serde_agrees_with_the_path_aware_parser() {
        let parsed = parse_claims(EMBEDDED, "claims.json").unwrap();
        let derived: ClaimSet = serde_json::from_str(EMBEDDED).unwrap();
        assert_eq!(parsed, derived);
        let text = serde_json::to_string_pretty(&parsed).unwrap();
        assert_eq!(parse_claims(&text, "roundtrip.json").unwrap(), parsed);
        assert_eq!(claims().unwrap(), parsed.claims.as_slice());
    }

    /// Writes `value` to a fresh temporary file and loads it as a manifest.
    fn load_value(value: &Value) -> (PathBuf, Result<ClaimSet>) {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ovbench-reference-{}-{}-claims.json",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
        let result = load_claims(&path);
        let _ = std::fs::remove_file(&path);
        (path, result)
    }

    fn index_of(v: &Value, id: &str) -> usize {
        v["claims"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["id"] == id)
            .unwrap()
    }

    #[test]
    fn edited_file_with_new_tolerance_loads() {
        let mut v: Value = serde_json::from_str(EMBEDDED).unwrap();
        let i = index_of(&v, "time-ratio-l14-224");
        v["claims"][i]["tolerance"]["relative"] = json!(0.25);
        let (_, result) = load_value(&v);
        let set = result.unwrap();
        let c = set.get("time-ratio-l14-224").unwrap();
        assert_eq!(c.tolerance.as_ref().unwrap().bound, Bound::Relative(0.25));
    }

    #[test]
    fn malformed_claims_name_the_file_and_the_field() {
        let base: Value = serde_json::from_str(EMBEDDED).unwrap();
        let t = index_of(&base, "time-ratio-l14-224");
        let f = index_of(&base, "flops-ratio-l14-224");
        let o = index_of(&base, "ov1-oom-l14-224-4k");
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(Edit, String, &str)> = vec![
            (
                Box::new(move |v| v["claims"][t]["tolerance"]["relative"] = json!("0.15")),
                format!("claims[{t}].tolerance.relative"),
                "expected a number",
            ),
            (
                Box::new(move |v| {
                    v["claims"][t]["tolerance"]
                        .as_object_mut()
                        .unwrap()
                        .remove("justification");
                }),
                format!("claims[{t}].tolerance.justification"),
                "missing",
            ),
            (
                Box::new(move |v| {
                    let tol = v["claims"][t]["tolerance"].as_object_mut().unwrap();
                    let r = tol.remove("relative").unwrap();
                    tol.insert("relativ".into(), r);
                }),
                format!("claims[{t}].tolerance.relativ"),
                "unknown field",
            ),
            (
                Box::new(move |v| v["claims"][t]["tolerance"]["relative"] = json!(1.5)),
                format!("claims[{t}].tolerance.relative"),
                "(0, 1)",
            ),
            (
                Box::new(move |v| {
                    v["claims"][t].as_object_mut().unwrap().remove("tolerance");
                }),
                format!("claims[{t}].tolerance"),
                "missing",
            ),
            (
                Box::new(move |v| v["claims"][t]["kind"] = json!("ratioo")),
                format!("claims[{t}].kind"),
                "unknown kind",
            ),
            (
                Box::new(move |v| {
                    v["claims"][t].as_object_mut().unwrap().remove("metric");
                }),
                format!("claims[{t}].metric"),
                "missing",
            ),
            (
                Box::new(move |v| v["claims"][t]["setting"]["recipes"] = json!(["ov3"])),
                format!("claims[{t}].setting.recipes[0]"),
                "ov1",
            ),
            (
                Box::new(move |v| v["claims"][t]["id"] = json!("flops-ratio-l14-224")),
                format!("claims[{}].id", t.max(f)),
                "duplicate",
            ),
            (
                Box::new(move |v| v["claims"][f]["published"]["numerator"]["value"] = json!(209.0)),
                format!("claims[{f}].published.numerator.value"),
                "differs from table3#ov2-l14-224.flops_per_image",
            ),
            (
                Box::new(move |v| v["claims"][f]["published"]["denominator"]["value"] = json!(0)),
                format!("claims[{f}].published.denominator.value"),
                "zero",
            ),
            (
                Box::new(move |v| {
                    v["claims"][f]["published"]["denominator"]["ref"]["row"] = json!("nope")
                }),
                format!("claims[{f}].published.denominator.ref"),
                "does not exist",
            ),
            (
                Box::new(move |v| v["claims"][o]["published"]["fits"] = json!(true)),
                format!("claims[{o}].published.fits"),
                "disagrees",
            ),
            (
                Box::new(move |v| {
                    v["claims"][o]["tolerance"] = json!({"relative": 0.1, "justification": "x"})
                }),
                format!("claims[{o}].tolerance"),
                "fits_under_cap",
            ),
            (
                Box::new(move |v| v["claims"][o]["setting"]["hardware"] = json!("tpu-v5")),
                format!("claims[{o}].setting.hardware"),
                "unknown platform",
            ),
            (
                Box::new(|v| v["claims"] = json!({})),
                "claims".to_owned(),
                "expected an array",
            ),
        ];
        for (edit, field, needle) in cases {
            let mut v = base.clone();
            edit(&mut v);
            let (path, result) = load_value(&v);
            let err = result.expect_err(&field);
            let file = path.display().to_string();
            assert_eq!(err.file(), file, "{err}");
            assert_eq!(err.field(), Some(field.as_str()), "{err}");
            let text = err.to_string();
            assert!(text.contains(&file) && text.contains(&field), "{text}");
            assert!(text.contains(needle), "`{text}` lacks `{needle}`");
        }
    }

    #[test]
    fn unreadable_and_invalid_files_name_the_file() {
        let missing = std::env::temp_dir().join("ovbench-reference-no-such-claims.json");
        let err = load_claims(&missing).unwrap_err();
        assert!(matches!(err, ReferenceError::Read { .. }));
        assert!(err
            .to_string()
            .contains("ovbench-reference-no-such-claims.json"));

        let err = parse_claims("{\n  \"claims\": [\n    {,\n", "broken.json").unwrap_err();
        match &err {
            ReferenceError::Parse { file, line, .. } => {
                assert_eq!((file.as_str(), *line), ("broken.json", 3))
            }
            other => panic!("{other}"),
        }
    }
}
