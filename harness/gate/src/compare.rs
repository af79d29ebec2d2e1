//! `ovbench compare`: one table across machines, engines and runs. Rows are (workload, metric),
//! where a workload is a record kind with its whole workload key but the engine: records whose
//! keys differ in anything else (kernels, recomputation, batch, ...) are never pooled. Columns
//! are hardware, and beside it the engine when it is not candle's single eager process, so
//! the same workload in two engines sits side by side.

use crate::config::glob_match;
use crate::output::{fmt_value, si};
use crate::record::LoadedRecord;
use ovbench_harness::envelope::{Measurement, Metric, Workload};
use ovbench_harness::{stats, table};

/// Metrics shown when none are asked for: what a team comparing machines reads first.
pub const DEFAULT_METRICS: &[&str] = &[
    "*/completed",
    "*/oom",
    "*/step_s",
    "*/images_per_s",
    "*/memory/peak_over_baseline_bytes",
    "*/memory/gpu/allocator_peak_bytes",
    "*/memory/gpu/nvml_process_peak_bytes",
    "*/projected_device_hours",
    "*_step_s",
    "score",
    "score/toolkit",
    "*/score",
    "b_minus_a",
];

#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Price of one device-hour, for the cost of projected device-hours.
    pub price_per_hour: Option<f64>,
    /// Currency label printed with costs.
    pub currency: String,
    /// Metric name patterns (`*` matches any run of characters); empty: [`DEFAULT_METRICS`].
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    pub workload: String,
    pub metric: String,
    pub cells: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompareTable {
    pub columns: Vec<String>,
    pub rows: Vec<CompareRow>,
    pub notes: Vec<String>,
}

const DASH: &str = "—";

/// Workload keys that name the engine: they go into the column, not the row.
const ENGINE_KEYS: &[&str] = &["engine", "compile", "processes"];

/// The column of a record: its hardware, with the engine unless it is candle, eager, one
/// process.
fn column(r: &LoadedRecord) -> String {
    let w = &r.envelope.workload;
    let get = |k: &str| w.get(k).map(String::as_str);
    let engine = get("engine").unwrap_or("candle");
    let compiled = get("compile") == Some("true");
    let procs = get("processes").unwrap_or("1");
    if engine == "candle" && !compiled && procs == "1" {
        return r.envelope.hardware.clone();
    }
    let mut label = format!("{} · {engine}", r.envelope.hardware);
    if compiled {
        label.push_str(".compile");
    }
    if procs != "1" {
        label.push_str(&format!(" x {procs}"));
    }
    label
}

/// The row key of a record: its kind and workload without the engine keys.
fn row_key(r: &LoadedRecord) -> (String, Workload) {
    let mut w = r.envelope.workload.clone();
    w.retain(|k, _| !ENGINE_KEYS.contains(&k.as_str()));
    (r.kind().to_string(), w)
}

/// One cell: the metric over every record of one workload on one machine.
fn cell(ms: &[&Metric]) -> String {
    let unit = match ms.first() {
        Some(m) => m.unit.as_str(),
        None => return DASH.into(),
    };
    let fmt = |v: f64| match unit {
        "bool" => (if v == 1.0 { "yes" } else { "no" }).to_string(),
        "device-h" => format!("{} device-h", si(v)),
        _ => fmt_value(v, unit),
    };
    if let [m] = ms {
        if let Measurement::Timed { samples, .. } = &m.measurement {
            if let Some(s) = stats::Summary::of(samples) {
                return format!("{} [{}, {}]", fmt(s.median), fmt(s.ci95[0]), fmt(s.ci95[1]));
            }
        }
    }
    let values: Vec<f64> = ms.iter().filter_map(|m| m.measurement.central()).collect();
    match values.len() {
        0 => DASH.into(),
        1 => fmt(values[0]),
        n => {
            let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if lo == hi {
                format!("{} ({n} runs)", fmt(lo))
            } else {
                format!(
                    "{} ({n} runs, {}–{})",
                    fmt(stats::median(&values)),
                    fmt(lo),
                    fmt(hi)
                )
            }
        }
    }
}

pub fn compare(records: &[LoadedRecord], opts: &CompareOptions) -> CompareTable {
    let patterns: Vec<&str> = if opts.metrics.is_empty() {
        DEFAULT_METRICS.to_vec()
    } else {
        opts.metrics.iter().map(String::as_str).collect()
    };
    let wanted = |name: &str| patterns.iter().any(|p| glob_match(p, name));
    let mut columns: Vec<String> = Vec::new();
    // Workloads in first-seen order; the key is the kind plus the whole workload map.
    let mut groups: Vec<((String, Workload), Vec<&LoadedRecord>)> = Vec::new();
    for r in records {
        let col = column(r);
        if !columns.contains(&col) {
            columns.push(col);
        }
        let key = row_key(r);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let mut rows = Vec::new();
    let mut any_hours = false;
    for ((kind, key), recs) in &groups {
        let workload = row_label(kind, key);
        let mut names: Vec<&str> = Vec::new();
        for r in recs {
            for m in &r.envelope.metrics {
                if wanted(&m.name) && !names.contains(&m.name.as_str()) {
                    names.push(&m.name);
                }
            }
        }
        for name in names {
            let per_column: Vec<Vec<&Metric>> = columns
                .iter()
                .map(|hw| {
                    recs.iter()
                        .filter(|r| &column(r) == hw)
                        .filter_map(|r| r.envelope.metric(name))
                        .collect()
                })
                .collect();
            rows.push(CompareRow {
                workload: workload.clone(),
                metric: name.to_string(),
                cells: per_column.iter().map(|ms| cell(ms)).collect(),
            });
            let hours = per_column.iter().flatten().any(|m| m.unit == "device-h");
            any_hours |= hours;
            if let (true, Some(price)) = (hours, opts.price_per_hour) {
                rows.push(CompareRow {
                    workload: workload.clone(),
                    metric: format!("{name} × {price} {}/device-hour", opts.currency),
                    cells: per_column
                        .iter()
                        .map(|ms| {
                            let v: Vec<f64> =
                                ms.iter().filter_map(|m| m.measurement.central()).collect();
                            if v.is_empty() {
                                DASH.into()
                            } else {
                                format!("{} {}", si(stats::median(&v) * price), opts.currency)
                            }
                        })
                        .collect(),
                });
            }
        }
    }
    let mut notes = Vec::new();
    if let Some(keys) = differing_keys(&groups) {
        notes.push(format!(
            "rows are separate workloads where any key differs (here: {keys}); they are never pooled"
        ));
    }
    if opts.price_per_hour.is_some() && !any_hours {
        notes.push(
            "no record carries projected device-hours (ovbench repro writes them), so there is no cost to show"
                .into(),
        );
    }
    if opts.price_per_hour.is_some() && any_hours {
        notes.push(
            "cost = projected device-hours (median over rounds) x price per device-hour".into(),
        );
    }
    if columns.len() > 1 {
        notes.push(
            "columns differ in hardware or engine; absolute times compare machines and engines, not recipes"
                .into(),
        );
    }
    CompareTable {
        columns,
        rows,
        notes,
    }
}

/// `kind key=value ...` without hashes (which identify inputs rather than describe them).
fn row_label(kind: &str, w: &Workload) -> String {
    let parts: Vec<String> = w
        .iter()
        .filter(|(k, _)| !k.contains("sha256") && k.as_str() != "run_key")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{kind} {}", parts.join(" ")).trim().to_string()
}

/// Workload keys whose values differ between groups of the same kind, if any.
fn differing_keys(groups: &[((String, Workload), Vec<&LoadedRecord>)]) -> Option<String> {
    let mut keys = std::collections::BTreeSet::new();
    for (i, ((ka, wa), _)) in groups.iter().enumerate() {
        for ((kb, wb), _) in &groups[i + 1..] {
            if ka != kb {
                continue;
            }
            for k in wa.keys().chain(wb.keys()) {
                if wa.get(k) != wb.get(k) {
                    keys.insert(k.clone());
                }
            }
        }
    }
    (!keys.is_empty()).then(|| keys.into_iter().collect::<Vec<_>>().join(", "))
}

impl CompareTable {
    pub fn terminal(&self) -> String {
        let mut head = vec!["workload".to_string(), "metric".to_string()];
        head.extend(self.columns.iter().cloned());
        let mut rows = vec![head];
        let mut last = String::new();
        for r in &self.rows {
            let w = if r.workload == last {
                String::new()
            } else {
                r.workload.clone()
            };
            last = r.workload.clone();
            let mut row = vec![w, r.metric.clone()];
            row.extend(r.cells.iter().cloned());
            rows.push(row);
        }
        let mut s = table::render(rows);
        s.push('\n');
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }

    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut s = format!(
            "| Workload | Metric | {} |\n|---|---|{}\n",
            self.columns
                .iter()
                .map(|c| esc(c))
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(self.columns.len())
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                esc(&r.workload),
                esc(&r.metric),
                r.cells
                    .iter()
                    .map(|c| esc(c))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n- {}", esc(n)));
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;
    use ovbench_harness::envelope::Direction::*;

    fn step(path: &str, kernels: &str, peak: f64, hw_cpu: &str) -> LoadedRecord {
        let mut r = fixture(
            path,
            "step",
            &[("model", "B/16"), ("batch", "4"), ("kernels", kernels)],
            vec![
                Metric::deterministic(
                    "ov1/memory/peak_over_baseline_bytes",
                    "bytes",
                    SmallerIsBetter,
                    peak,
                ),
                Metric::timed("ov1/step_s", "s", SmallerIsBetter, vec![1.0, 1.1, 0.9], 1),
            ],
        );
        r.envelope.hardware = hw_cpu.into();
        r
    }

    #[test]
    fn different_workload_keys_are_separate_rows_never_pooled() {
        let recs = [
            step("a.json", "fused", 4.85e9, "cpu A"),
            step("b.json", "composed", 10.88e9, "cpu A"),
            step("c.json", "fused", 4.85e9, "cpu A"),
        ];
        let t = compare(&recs, &CompareOptions::default());
        let peaks: Vec<&CompareRow> = t
            .rows
            .iter()
            .filter(|r| r.metric == "ov1/memory/peak_over_baseline_bytes")
            .collect();
        assert_eq!(peaks.len(), 2, "{:#?}", t.rows);
        assert!(peaks[0].workload.contains("kernels=fused"));
        assert!(peaks[0].cells[0].contains("2 runs"), "{:?}", peaks[0].cells);
        assert!(
            !peaks[0].cells[0].contains('–'),
            "equal values show no range"
        );
        assert!(peaks[1].workload.contains("kernels=composed"));
        assert!(
            t.notes.iter().any(|n| n.contains("here: kernels")),
            "{:?}",
            t.notes
        );
    }

    #[test]
    fn engines_of_one_workload_sit_side_by_side() {
        let candle = step("a.json", "fused", 4.85e9, "cpu A");
        let mut torch = step("b.json", "fused", 3.0e9, "cpu A");
        torch
            .envelope
            .workload
            .insert("engine".into(), "torch".into());
        torch
            .envelope
            .workload
            .insert("compile".into(), "true".into());
        let t = compare(&[candle, torch], &CompareOptions::default());
        assert_eq!(t.columns, vec!["cpu A", "cpu A · torch.compile"]);
        let peak = t
            .rows
            .iter()
            .filter(|r| r.metric == "ov1/memory/peak_over_baseline_bytes")
            .collect::<Vec<_>>();
        assert_eq!(peak.len(), 1, "one row, two columns");
        assert!(
            peak[0].cells.iter().all(|c| c != DASH),
            "{:?}",
            peak[0].cells
        );
    }

    #[test]
    fn projected_hours_get_a_cost_row() {
        let mut r = fixture(
            "r.json",
            "repro",
            &[("preset", "small")],
            vec![Metric::timed(
                "ov1/projected_device_hours",
                "device-h",
                SmallerIsBetter,
                vec![100.0, 120.0, 110.0],
                1,
            )],
        );
        r.envelope.hardware = "cpu".into();
        let t = compare(
            &[r],
            &CompareOptions {
                price_per_hour: Some(2.0),
                currency: "USD".into(),
                metrics: Vec::new(),
            },
        );
        let cost = t
            .rows
            .iter()
            .find(|r| r.metric.contains("USD/device-hour"))
            .unwrap();
        assert_eq!(cost.cells[0], "220.000 USD");
    }
}
