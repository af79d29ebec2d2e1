//! `ovbench compare`: one table across machines and runs, grouped by workload (recipe,
//! model, resolution, batch), hardware as columns.

use crate::output::{fmt_value, si};
use crate::view::{RunView, StepView};
use ovbench_harness::{stats, table};

#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Price of one device-hour, for the cost of the full schedule.
    pub price_per_hour: Option<f64>,
    /// Currency label printed with costs.
    pub currency: String,
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

struct Cell<'a> {
    runs: Vec<&'a RunView>,
}

const DASH: &str = "—";

fn agg(values: Vec<f64>, unit: &str) -> String {
    match values.len() {
        0 => DASH.into(),
        1 => fmt_value(values[0], unit),
        n => {
            let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            format!(
                "{} ({n} runs, {}–{})",
                fmt_value(stats::median(&values), unit),
                fmt_value(lo, unit),
                fmt_value(hi, unit)
            )
        }
    }
}

fn step_cell(c: &Cell) -> String {
    let with: Vec<_> = c.runs.iter().filter_map(|r| r.step_s).collect();
    match with.len() {
        0 => DASH.into(),
        1 => format!(
            "{} [{}, {}]",
            table::seconds(with[0].median),
            table::seconds(with[0].ci95[0]),
            table::seconds(with[0].ci95[1])
        ),
        _ => agg(with.iter().map(|i| i.median).collect(), "s"),
    }
}

pub fn compare(views: &[StepView], opts: &CompareOptions) -> CompareTable {
    // Hardware columns in first-seen order.
    let mut columns: Vec<String> = Vec::new();
    for v in views {
        if !columns.contains(&v.hardware) {
            columns.push(v.hardware.clone());
        }
    }
    // Workloads in first-seen order: (recipe, setting).
    let mut workloads: Vec<(String, String)> = Vec::new();
    for v in views {
        for r in &v.runs {
            let w = (r.recipe.clone(), v.setting());
            if !workloads.contains(&w) {
                workloads.push(w);
            }
        }
    }
    let mut rows = Vec::new();
    let mut any_projection = false;
    for (recipe, setting) in &workloads {
        let cells: Vec<Cell> = columns
            .iter()
            .map(|hw| Cell {
                runs: views
                    .iter()
                    .filter(|v| &v.hardware == hw && &v.setting() == setting)
                    .filter_map(|v| v.run(recipe))
                    .collect(),
            })
            .collect();
        let workload = format!("{recipe} {setting}");
        let mut push = |metric: &str, f: &dyn Fn(&Cell) -> String| {
            rows.push(CompareRow {
                workload: workload.clone(),
                metric: metric.into(),
                cells: cells.iter().map(f).collect(),
            })
        };
        push("step time (median [95 % CI])", &step_cell);
        push("throughput (images/s)", &|c| {
            agg(
                c.runs.iter().filter_map(|r| r.images_per_s).collect(),
                "images/s",
            )
        });
        push("peak memory (host allocator)", &|c| {
            agg(
                c.runs.iter().filter_map(|r| r.peak_bytes).collect(),
                "bytes",
            )
        });
        if cells
            .iter()
            .any(|c| c.runs.iter().any(|r| r.device_peak_bytes.is_some()))
        {
            push("peak memory (device)", &|c| {
                agg(
                    c.runs.iter().filter_map(|r| r.device_peak_bytes).collect(),
                    "bytes",
                )
            });
        }
        push("achieved FLOP/s", &|c| {
            let v: Vec<f64> = c
                .runs
                .iter()
                .filter_map(|r| r.achieved_flops_per_s)
                .collect();
            if v.is_empty() {
                DASH.into()
            } else {
                format!("{} FLOP/s", si(stats::median(&v)))
            }
        });
        let hours = |c: &Cell| -> Option<f64> {
            let v: Vec<f64> = c.runs.iter().filter_map(|r| r.projected_hours).collect();
            (!v.is_empty()).then(|| stats::median(&v))
        };
        any_projection |= cells.iter().any(|c| hours(c).is_some());
        push("projected full-schedule hours", &|c| {
            hours(c)
                .map(|h| format!("{h:.1} h"))
                .unwrap_or_else(|| DASH.into())
        });
        if let Some(price) = opts.price_per_hour {
            push(
                &format!(
                    "full-schedule cost at {price} {}/device-hour",
                    opts.currency
                ),
                &|c| {
                    hours(c)
                        .map(|h| format!("{:.2} {}", h * price, opts.currency))
                        .unwrap_or_else(|| DASH.into())
                },
            );
        }
    }
    let mut notes = Vec::new();
    if !any_projection {
        notes.push(
            "no record carries a full-schedule projection, so hours and cost are blank (step records \
             time single steps; a projection needs the whole CLIPA schedule)"
                .to_string(),
        );
    }
    if opts.price_per_hour.is_some() {
        notes.push("cost = projected hours x price per device-hour x 1 device".into());
    }
    if columns.len() > 1 {
        notes.push(
            "columns differ in hardware; absolute times compare machines, not recipes".into(),
        );
    }
    CompareTable {
        columns,
        rows,
        notes,
    }
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
