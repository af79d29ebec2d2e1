//! Gate thresholds: defaults, per-metric overrides from a `gate.toml`, and flags.
//!
//! ```toml
//! [defaults]
//! threshold = 0.05        # timed: regression when the whole 95 % CI of current/baseline
//!                         # lies above 1 + threshold
//! tolerance = 0.0         # deterministic: allowed relative change
//! abs_tolerance = 0.0     # deterministic: allowed absolute change
//! min_samples = 3         # timed: fewer samples give "inconclusive"
//! only = "all"            # "all", "deterministic" or "timed"
//! fail_on_inconclusive = false
//! accept_diff = []        # configuration keys allowed to differ
//!
//! [metrics."*/memory/*"]  # `*` matches any run of characters; the most specific pattern wins
//! tolerance = 0.001
//!
//! [metrics."ov1/optimizer_s"]
//! skip = true
//! ```

use crate::error::GateError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Only {
    All,
    Deterministic,
    Timed,
}

impl std::str::FromStr for Only {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Only::All),
            "deterministic" => Ok(Only::Deterministic),
            "timed" => Ok(Only::Timed),
            _ => Err(format!("'{s}': expected all, deterministic or timed")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub threshold: f64,
    pub tolerance: f64,
    pub abs_tolerance: f64,
    pub min_samples: usize,
    pub only: Only,
    pub fail_on_inconclusive: bool,
    pub accept_diff: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            threshold: 0.05,
            tolerance: 0.0,
            abs_tolerance: 0.0,
            min_samples: 3,
            only: Only::All,
            fail_on_inconclusive: false,
            accept_diff: Vec::new(),
        }
    }
}

/// A per-metric override; unset fields fall back to less specific patterns and defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    pub threshold: Option<f64>,
    pub tolerance: Option<f64>,
    pub abs_tolerance: Option<f64>,
    pub min_samples: Option<usize>,
    pub skip: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub metrics: BTreeMap<String, Override>,
}

/// The thresholds in force for one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub threshold: f64,
    pub tolerance: f64,
    pub abs_tolerance: f64,
    pub min_samples: usize,
    pub skip: bool,
}

/// `*` matches any (possibly empty) run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl GateConfig {
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let text = ovbench_harness::io::read_text(path, ovbench_harness::io::limit::CONFIG)?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, file: &str) -> Result<Self, GateError> {
        // toml's own rendering spans several lines (a source snippet); one line here, with
        // the position, is what a terminal or a CI log needs.
        let cfg: GateConfig = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(s) => {
                    let before = &text.as_bytes()[..s.start.min(text.len())];
                    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
                    let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
                    format!("{file}:{line}:{col}")
                }
                None => file.to_string(),
            };
            GateError::Config {
                at,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Ranges: thresholds and tolerances are fractions, non-negative and finite.
    pub fn validate(&self, file: &str) -> Result<(), GateError> {
        let bad = |field: String, message: String| GateError::Config {
            at: format!("{file}: {field}"),
            message,
        };
        let check = |field: String, v: f64, max: Option<f64>| -> Result<(), GateError> {
            if !v.is_finite() || v < 0.0 || max.is_some_and(|m| v >= m) {
                let range = max
                    .map(|m| format!("in [0, {m})"))
                    .unwrap_or_else(|| "non-negative".into());
                return Err(bad(field, format!("{v} is not {range}")));
            }
            Ok(())
        };
        let d = &self.defaults;
        check("defaults.threshold".into(), d.threshold, Some(1.0))?;
        check("defaults.tolerance".into(), d.tolerance, Some(1.0))?;
        check("defaults.abs_tolerance".into(), d.abs_tolerance, None)?;
        if d.min_samples < 2 {
            return Err(bad(
                "defaults.min_samples".into(),
                "must be at least 2".into(),
            ));
        }
        for (pat, o) in &self.metrics {
            if let Some(v) = o.threshold {
                check(format!("metrics.\"{pat}\".threshold"), v, Some(1.0))?;
            }
            if let Some(v) = o.tolerance {
                check(format!("metrics.\"{pat}\".tolerance"), v, Some(1.0))?;
            }
            if let Some(v) = o.abs_tolerance {
                check(format!("metrics.\"{pat}\".abs_tolerance"), v, None)?;
            }
            if o.min_samples.is_some_and(|n| n < 2) {
                return Err(bad(
                    format!("metrics.\"{pat}\".min_samples"),
                    "must be at least 2".into(),
                ));
            }
        }
        Ok(())
    }

    /// Defaults, then every matching pattern from least to most specific (most literal
    /// characters), so `ov1/step_s` beats `*/step_s` beats `*`.
    pub fn rule_for(&self, name: &str) -> Rule {
        let d = &self.defaults;
        let mut r = Rule {
            threshold: d.threshold,
            tolerance: d.tolerance,
            abs_tolerance: d.abs_tolerance,
            min_samples: d.min_samples,
            skip: false,
        };
        let mut matching: Vec<(&String, &Override)> = self
            .metrics
            .iter()
            .filter(|(p, _)| glob_match(p, name))
            .collect();
        matching.sort_by_key(|(p, _)| p.chars().filter(|&c| c != '*').count());
        for (_, o) in matching {
            r.threshold = o.threshold.unwrap_or(r.threshold);
            r.tolerance = o.tolerance.unwrap_or(r.tolerance);
            r.abs_tolerance = o.abs_tolerance.unwrap_or(r.abs_tolerance);
            r.min_samples = o.min_samples.unwrap_or(r.min_samples);
            r.skip = o.skip.unwrap_or(r.skip);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "ov1/step_s"));
        assert!(glob_match("*/step_s", "ov1/step_s"));
        assert!(glob_match("ov1/*", "ov1/memory/peak"));
        assert!(glob_match("*/memory/*", "ov2/memory/peak"));
        assert!(!glob_match("*/memory/*", "ov2/step_s"));
        assert!(!glob_match("ov1/step_s", "ov1/step_sx"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn most_specific_override_wins() {
        let c = GateConfig::parse(
            r#"
            [defaults]
            threshold = 0.05
            [metrics."*"]
            threshold = 0.2
            [metrics."*/step_s"]
            threshold = 0.1
            [metrics."ov1/step_s"]
            skip = true
            "#,
            "gate.toml",
        )
        .unwrap();
        let r = c.rule_for("ov1/step_s");
        assert_eq!((r.threshold, r.skip), (0.1, true));
        assert_eq!(c.rule_for("ov2/step_s").threshold, 0.1);
        assert_eq!(c.rule_for("ov2/forward_s").threshold, 0.2);
        assert_eq!(GateConfig::default().rule_for("x").threshold, 0.05);
    }

    #[test]
    fn errors_name_file_and_field() {
        let e = GateConfig::parse("[defaults]\nthreshold = 1.5\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("g.toml") && e.contains("defaults.threshold"),
            "{e}"
        );
        let e = GateConfig::parse("[metrics.\"a\"]\ntolerance = -1\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.\"a\".tolerance"), "{e}");
        let e = GateConfig::parse("[defaults]\nthreshhold = 0.1\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.toml") && e.contains("threshhold"), "{e}");
        let e = GateConfig::parse("[defaults]\nonly = \"some\"\n", "g.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("g.toml"), "{e}");
    }
}
