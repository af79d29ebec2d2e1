//! Renderings of a gate report: terminal table, markdown for a pull-request comment, and
//! github-action-benchmark's custom JSON (`customSmallerIsBetter` / `customBiggerIsBetter`:
//! an array of `{name, unit, value, range?, extra?}`).

use crate::verdict::{GateReport, MetricResult, Outcome, Verdict};
use ovbench_harness::envelope::Direction;
use ovbench_harness::table;
use serde::{Deserialize, Serialize};

/// A number in its unit, for people.
pub fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "s" => table::seconds(v),
        "bytes" if v >= 0.0 && v.fract() == 0.0 => table::bytes(v as u64),
        "FLOP" | "FLOP/s" => format!("{} {unit}", si(v)),
        "images/s" if v < 10.0 => format!("{v:.2}"),
        "images/s" => format!("{v:.1}"),
        _ if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        _ => format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

/// SI prefix with three significant digits (G, T, ...).
pub fn si(v: f64) -> String {
    const P: [(f64, &str); 5] = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")];
    for (scale, p) in P {
        if v.abs() >= scale {
            return format!("{:.3}{p}", v / scale);
        }
    }
    format!("{v:.3}")
}

fn change(r: &MetricResult) -> String {
    match r.ratio {
        Some(x) => format!("{:+.2} %", (x - 1.0) * 100.0),
        None => "—".into(),
    }
}

fn ci(r: &MetricResult) -> String {
    match r.ci95 {
        Some([a, b]) => format!("[{:+.1} %, {:+.1} %]", (a - 1.0) * 100.0, (b - 1.0) * 100.0),
        None => "—".into(),
    }
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| fmt_value(x, unit)).unwrap_or_else(|| "—".into())
}

fn outcome_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Regression => "REGRESSION",
        Outcome::Unusable => "UNUSABLE INPUT",
    }
}

fn counts(report: &GateReport) -> String {
    [
        Verdict::Regression,
        Verdict::Changed,
        Verdict::Missing,
        Verdict::Inconclusive,
        Verdict::Improvement,
        Verdict::Pass,
        Verdict::New,
        Verdict::Skipped,
    ]
    .iter()
    .filter_map(|&v| {
        let n = report.count(v);
        (n > 0).then(|| format!("{n} {}", v.label().to_lowercase()))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Regression | Verdict::Changed | Verdict::Missing => 0,
        Verdict::Inconclusive => 1,
        Verdict::Improvement | Verdict::New => 2,
        Verdict::Pass => 3,
        Verdict::Skipped => 4,
    }
}

/// The terminal table, problems first.
pub fn terminal(report: &GateReport) -> String {
    let mut rows = vec![[
        "metric", "baseline", "current", "change", "95 % CI", "limit", "verdict", "note",
    ]
    .map(String::from)
    .to_vec()];
    let mut sorted: Vec<&MetricResult> = report.results.iter().collect();
    sorted.sort_by_key(|r| severity(r.verdict));
    for r in sorted {
        rows.push(vec![
            r.name.clone(),
            opt(r.baseline, &r.unit),
            opt(r.current, &r.unit),
            change(r),
            ci(r),
            r.limit.clone(),
            r.verdict.label().to_string(),
            r.note.clone(),
        ]);
    }
    let mut s = format!(
        "gate {} ({}): {}\n  baseline {}\n  current  {}\n",
        report.workload,
        report.kind,
        outcome_word(report.outcome()),
        report.baseline.display(),
        report.current.display()
    );
    s.push_str(&table::render(rows));
    s.push_str(&format!("\n{}\n", counts(report)));
    for n in &report.notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A markdown summary fit for a pull-request comment.
pub fn markdown(report: &GateReport) -> String {
    let o = report.outcome();
    let mut s = format!(
        "### ovbench gate: {} (exit {})\n\n`{}` · {} record · baseline `{}` · current `{}`\n\n**{}**\n\n",
        outcome_word(o),
        o.exit_code(),
        md_cell(&report.workload),
        report.kind,
        md_cell(&report.baseline.display().to_string()),
        md_cell(&report.current.display().to_string()),
        counts(report)
    );
    let head = "| Metric | Baseline | Current | Change | 95 % CI | Limit | Verdict | Note |\n|---|---:|---:|---:|---|---|---|---|\n";
    let row = |r: &MetricResult| {
        format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
            md_cell(&r.name),
            opt(r.baseline, &r.unit),
            opt(r.current, &r.unit),
            change(r),
            ci(r),
            md_cell(&r.limit),
            if severity(r.verdict) == 0 {
                format!("**{}**", r.verdict.label())
            } else {
                r.verdict.label().to_string()
            },
            md_cell(&r.note)
        )
    };
    let (attention, rest): (Vec<&MetricResult>, Vec<&MetricResult>) = report
        .results
        .iter()
        .partition(|r| severity(r.verdict) <= 1);
    if !attention.is_empty() {
        s.push_str(head);
        attention.iter().for_each(|r| s.push_str(&row(r)));
        s.push('\n');
    }
    if !rest.is_empty() {
        s.push_str(&format!(
            "<details><summary>{} other metrics</summary>\n\n{head}",
            rest.len()
        ));
        rest.iter().for_each(|r| s.push_str(&row(r)));
        s.push_str("\n</details>\n\n");
    }
    if !report.notes.is_empty() {
        for n in &report.notes {
            s.push_str(&format!("- {}\n", md_cell(n)));
        }
        s.push('\n');
    }
    s.push_str(
        "Deterministic metrics must match exactly or within the stated tolerance; timed metrics \
         regress only when the whole 95 % bootstrap interval of the median ratio lies beyond the threshold.\n",
    );
    s
}

/// One entry of github-action-benchmark's custom JSON format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GabEntry {
    pub name: String,
    pub unit: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// The current record's metrics as github-action-benchmark entries: `bigger == false` gives
/// the `customSmallerIsBetter` file (times, bytes, FLOPs, and counts with no direction),
/// `bigger == true` the `customBiggerIsBetter` file (scores, completion flags).
pub fn github_action_benchmark(report: &GateReport, bigger: bool) -> Vec<GabEntry> {
    report
        .results
        .iter()
        .filter(|r| (r.direction == Direction::BiggerIsBetter) == bigger)
        .filter_map(|r| {
            let value = r.current.filter(|v| v.is_finite())?;
            let range = r
                .current_ci95
                .map(|[a, b]| format!("± {}", trim(((b - a) / 2.0).abs())));
            let mut extra = vec![format!("verdict: {}", r.verdict.label())];
            if let Some(b) = r.baseline {
                extra.push(format!("baseline: {}", trim(b)));
            }
            if let Some([a, b]) = r.ci95 {
                extra.push(format!("ratio 95% CI: [{a:.4}, {b:.4}]"));
            }
            if let Some([_, n]) = r.samples {
                extra.push(format!("samples: {n} (median)"));
            }
            Some(GabEntry {
                name: format!("{} - {}", report.workload, r.name),
                unit: r.unit.clone(),
                value,
                range,
                extra: Some(extra.join("\n")),
            })
        })
        .collect()
}

fn trim(x: f64) -> String {
    let s = format!("{x:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_in_units() {
        assert_eq!(fmt_value(1536.0, "bytes"), "1.50 KiB");
        assert_eq!(fmt_value(0.0123, "s"), "12.30 ms");
        assert_eq!(fmt_value(2.5e9, "FLOP"), "2.500G FLOP");
        assert_eq!(fmt_value(42.0, "params"), "42");
        assert_eq!(fmt_value(0.25, "score"), "0.25");
        assert_eq!(trim(0.5), "0.5");
        assert_eq!(trim(0.0), "0");
    }
}
