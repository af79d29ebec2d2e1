//! The four charts, each drawn once per backend (SVG and PNG) from the same description.

use crate::font::{ensure_registered, FAMILY};
use crate::series::{step_views, PublishedRatio, Quantity, StepView};
use crate::PlotError;
use crate::Published;
use image::ImageEncoder;
use ovbench_harness::envelope::Envelope;
use ovbench_harness::io::OutputSet;
use ovbench_harness::stats::{self, Summary};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (1100, 650);
const OV1: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const OV2: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const MEASURED: [RGBColor; 4] = [
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];
const PUBLISHED: [RGBColor; 4] = [
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0xe3, 0x77, 0xc2),
];

#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Memory of the measuring device, drawn as its cap on the memory-versus-batch chart.
    pub device_cap_bytes: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// Files written, SVG and PNG of each chart, then `index.md`.
    pub files: Vec<PathBuf>,
    /// Charts skipped and why, and other remarks.
    pub notes: Vec<String>,
}

fn recipe_name(r: &str) -> String {
    match r {
        "ov1" => "OpenVision (ov1)".into(),
        "ov2" => "OpenVision 2 (ov2)".into(),
        other => other.into(),
    }
}

fn recipe_color(r: &str, i: usize) -> RGBColor {
    match r {
        "ov1" => OV1,
        "ov2" => OV2,
        _ => MEASURED[i % MEASURED.len()],
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// A value with an optional whisker (lo, hi).
type Bar = Option<(f64, Option<(f64, f64)>)>;

struct BarSeries {
    name: String,
    color: RGBColor,
    /// One entry per group.
    bars: Vec<Bar>,
}

struct BarChart {
    title: String,
    x_desc: String,
    y_desc: String,
    groups: Vec<String>,
    series: Vec<BarSeries>,
    /// A horizontal reference line.
    hline: Option<(f64, String)>,
}

struct Curve {
    name: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    /// Drawn as a line through points (measured) or as markers only (published).
    line: bool,
    cross: bool,
}

struct LineChart {
    title: String,
    x_desc: String,
    y_desc: String,
    curves: Vec<Curve>,
    hlines: Vec<(f64, String, RGBColor)>,
}

trait Chart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("{x:?}")
}

impl Chart for BarChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        let n = self.groups.len().max(1);
        let k = self.series.len().max(1);
        let top = self
            .series
            .iter()
            .flat_map(|s| s.bars.iter().flatten())
            .map(|(v, w)| w.map(|(_, hi)| hi).unwrap_or(*v).max(*v))
            .chain(self.hline.iter().map(|(y, _)| *y))
            .fold(0.0f64, f64::max);
        // Head room above the bars for the legend box, which grows with the series.
        let room = 1.25 + 0.06 * (self.series.len() + self.hline.is_some() as usize) as f64;
        let ymax = if top > 0.0 { top * room } else { 1.0 };
        let groups = self.groups.clone();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(18)
            .x_label_area_size(55)
            .y_label_area_size(85)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..ymax)
            .map_err(e)?;
        // Group names are drawn below the axis at each group's centre: plotters' own key
        // points for a continuous axis need not fall on the centres.
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(e)?;
        let width = 0.8 / k as f64;
        for (j, s) in self.series.iter().enumerate() {
            let color = s.color;
            let left = move |i: usize| i as f64 - 0.4 + j as f64 * width;
            chart
                .draw_series(s.bars.iter().enumerate().filter_map(|(i, b)| {
                    b.map(|(v, _)| {
                        Rectangle::new(
                            [(left(i) + 0.01, 0.0), (left(i) + width - 0.01, v)],
                            color.filled(),
                        )
                    })
                }))
                .map_err(e)?
                .label(&s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
                });
            let whiskers = s.bars.iter().enumerate().filter_map(|(i, b)| {
                let (_, w) = (*b)?;
                let (lo, hi) = w?;
                let c = left(i) + width / 2.0;
                let cap = width / 5.0;
                Some([
                    PathElement::new(vec![(c, lo), (c, hi)], BLACK.stroke_width(2)),
                    PathElement::new(vec![(c - cap, lo), (c + cap, lo)], BLACK.stroke_width(2)),
                    PathElement::new(vec![(c - cap, hi), (c + cap, hi)], BLACK.stroke_width(2)),
                ])
            });
            chart.draw_series(whiskers.flatten()).map_err(e)?;
        }
        if let Some((y, label)) = &self.hline {
            chart
                .draw_series(LineSeries::new(
                    vec![(-0.5, *y), (n as f64 - 0.5, *y)],
                    BLACK.stroke_width(1),
                ))
                .map_err(e)?
                .label(label)
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(1))
                });
        }
        let style =
            TextStyle::from((FAMILY, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, g) in groups.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64, 0.0));
            root.draw(&Text::new(g.clone(), (x, y + 8), style.clone()))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)
    }
}

impl Chart for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(e)?;
        let xs = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0));
        let ys = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.1))
            .chain(self.hlines.iter().map(|h| h.0));
        let (xmin, xmax) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
        let (ymin, ymax) = ys.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(18)
            .x_label_area_size(55)
            .y_label_area_size(85)
            .build_cartesian_2d(
                (xmin / 1.5..xmax * 1.5).log_scale(),
                (ymin / 2.0..ymax * 2.0).log_scale(),
            )
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| {
                if *y >= 1.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.2}")
                }
            })
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .draw()
            .map_err(e)?;
        for c in &self.curves {
            let color = c.color;
            if c.line {
                chart
                    .draw_series(LineSeries::new(c.points.clone(), color.stroke_width(2)))
                    .map_err(e)?
                    .label(&c.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(c.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(e)?;
            } else if c.cross {
                chart
                    .draw_series(
                        c.points
                            .iter()
                            .map(|&p| Cross::new(p, 7, color.stroke_width(3))),
                    )
                    .map_err(e)?
                    .label(&c.name)
                    .legend(move |(x, y)| Cross::new((x + 7, y), 6, color.stroke_width(3)));
            } else {
                chart
                    .draw_series(
                        c.points
                            .iter()
                            .map(|&p| TriangleMarker::new(p, 8, color.filled())),
                    )
                    .map_err(e)?
                    .label(&c.name)
                    .legend(move |(x, y)| TriangleMarker::new((x + 7, y), 6, color.filled()));
            }
        }
        for (y, label, color) in &self.hlines {
            let color = *color;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(xmin / 1.5, *y), (xmax * 1.5, *y)],
                    8,
                    5,
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 12))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)
    }
}

/// `<stem>.svg` and `<stem>.png` drawn in memory, as (file name, bytes): nothing reaches the
/// disk until every chart is drawn (see [`report`]).
fn render<C: Chart>(c: &C, stem: &str) -> Result<Vec<(String, Vec<u8>)>, PlotError> {
    let (svg_name, png_name) = (format!("{stem}.svg"), format!("{stem}.png"));
    let draw_err = |name: &str| {
        let path = PathBuf::from(name);
        move |message| PlotError::Draw { path, message }
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        c.draw(&root).map_err(draw_err(&svg_name))?;
    }
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        c.draw(&root).map_err(draw_err(&png_name))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&rgb, SIZE.0, SIZE.1, image::ColorType::Rgb8)
        .map_err(|e| draw_err(&png_name)(e.to_string()))?;
    Ok(vec![(svg_name, svg.into_bytes()), (png_name, png)])
}

/// Groups of views sharing (setting, hardware), in first-seen order.
fn groups(views: &[StepView]) -> Vec<(String, Vec<&StepView>)> {
    let mut out: Vec<(String, Vec<&StepView>)> = Vec::new();
    for v in views {
        let label = format!("{} · {}", v.setting(), short(&v.hardware, 26));
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, vs)) => vs.push(v),
            None => out.push((label, vec![v])),
        }
    }
    out
}

fn recipes(views: &[StepView]) -> Vec<String> {
    let mut r: Vec<String> = Vec::new();
    for v in views {
        for run in &v.runs {
            if !r.contains(&run.recipe) {
                r.push(run.recipe.clone());
            }
        }
    }
    r
}

fn step_time_chart(views: &[StepView]) -> BarChart {
    let gs = groups(views);
    let rs = recipes(views);
    let all: Vec<f64> = views
        .iter()
        .flat_map(|v| v.runs.iter().filter_map(|r| r.step_s.map(|s| s.median)))
        .collect();
    let (scale, unit) = if all.iter().cloned().fold(0.0, f64::max) < 1.0 {
        (1e3, "ms")
    } else {
        (1.0, "s")
    };
    let series = rs
        .iter()
        .enumerate()
        .map(|(i, r)| BarSeries {
            name: recipe_name(r),
            color: recipe_color(r, i),
            bars: gs
                .iter()
                .map(|(_, vs)| {
                    let runs: Vec<_> = vs.iter().filter_map(|v| v.run(r)).collect();
                    // Pool the samples of repeated records; else use the record's summary.
                    let pooled: Vec<f64> = runs
                        .iter()
                        .flat_map(|x| x.step_samples.iter().cloned())
                        .collect();
                    if let Some(s) = Summary::of(&pooled) {
                        return Some((
                            s.median * scale,
                            Some((s.ci95[0] * scale, s.ci95[1] * scale)),
                        ));
                    }
                    let s = runs.iter().find_map(|x| x.step_s)?;
                    Some((
                        s.median * scale,
                        Some((s.ci95[0] * scale, s.ci95[1] * scale)),
                    ))
                })
                .collect(),
        })
        .collect();
    BarChart {
        title: "Training step time by recipe (median; whiskers: 95 % CI of the median)".into(),
        x_desc: "workload · hardware".into(),
        y_desc: format!("step time ({unit})"),
        groups: gs.into_iter().map(|(l, _)| l).collect(),
        series,
        hline: None,
    }
}

fn memory_chart(views: &[StepView]) -> (BarChart, bool) {
    let gs = groups(views);
    let rs = recipes(views);
    let device = views
        .iter()
        .any(|v| v.runs.iter().any(|r| r.device_peak_bytes.is_some()));
    let peak = |r: &crate::series::RunView| {
        if device {
            r.device_peak_bytes
        } else {
            r.peak_bytes
        }
    };
    let max = views
        .iter()
        .flat_map(|v| v.runs.iter().filter_map(peak))
        .fold(0.0, f64::max);
    let (scale, unit) = if max >= (1u64 << 30) as f64 {
        (1.0 / (1u64 << 30) as f64, "GiB")
    } else {
        (1.0 / (1u64 << 20) as f64, "MiB")
    };
    let series = rs
        .iter()
        .enumerate()
        .map(|(i, r)| BarSeries {
            name: recipe_name(r),
            color: recipe_color(r, i),
            bars: gs
                .iter()
                .map(|(_, vs)| {
                    let xs: Vec<f64> = vs
                        .iter()
                        .filter_map(|v| v.run(r))
                        .filter_map(peak)
                        .collect();
                    if xs.is_empty() {
                        return None;
                    }
                    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min) * scale;
                    let hi = xs.iter().cloned().fold(0.0, f64::max) * scale;
                    Some((
                        stats::median(&xs) * scale,
                        (xs.len() > 1).then_some((lo, hi)),
                    ))
                })
                .collect(),
        })
        .collect();
    let what = if device {
        "device"
    } else {
        "host allocator, above the pre-run baseline"
    };
    (
        BarChart {
            title: format!(
                "Peak training memory by recipe ({what}; whiskers: min–max over records)"
            ),
            x_desc: "workload · hardware".into(),
            y_desc: format!("peak memory ({unit})"),
            groups: gs.into_iter().map(|(l, _)| l).collect(),
            series,
            hline: None,
        },
        device,
    )
}

/// A published value with its tolerance band, keyed by `backbone@resolution`.
type PublishedRatios = BTreeMap<String, (f64, Option<(f64, f64)>)>;
/// Table 4 points per (recipe, backbone@resolution): (fits, out of memory), (batch, GB).
type PaperPoints = BTreeMap<(String, String), (Vec<(f64, f64)>, Vec<(f64, f64)>)>;

/// Published ratios of one quantity, keyed by `backbone@resolution`.
fn published(all: &[PublishedRatio], q: Quantity) -> PublishedRatios {
    all.iter()
        .filter(|r| r.quantity == q)
        .map(|r| (r.setting.clone(), (r.value, r.band)))
        .collect()
}

fn ratio_chart(views: &[StepView], paper: &Published) -> Option<BarChart> {
    let cats = [
        ("time (measured: step; paper: schedule)", Quantity::Time),
        ("peak memory", Quantity::PeakMemory),
        ("forward FLOPs / image", Quantity::Flops),
    ];
    let mut series = Vec::new();
    for (i, v) in views
        .iter()
        .filter(|v| v.step_time_ratio.is_some() || v.peak_memory_ratio.is_some())
        .enumerate()
    {
        let t = v
            .step_time_ratio
            .map(|r| (r.median, Some((r.ci95[0], r.ci95[1]))));
        let m = v
            .peak_memory_ratio
            .filter(|x| x.is_finite())
            .map(|x| (x, None));
        let f = v.flops_ratio.filter(|x| x.is_finite()).map(|x| (x, None));
        series.push(BarSeries {
            name: format!("measured {} · {}", v.setting(), short(&v.hardware, 24)),
            color: MEASURED[i % MEASURED.len()],
            bars: vec![t, m, f],
        });
    }
    if series.is_empty() {
        return None;
    }
    let per_cat: Vec<PublishedRatios> = cats
        .iter()
        .map(|(_, q)| published(&paper.ratios, *q))
        .collect();
    let mut keys: Vec<String> = per_cat.iter().flat_map(|m| m.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    for (i, k) in keys.iter().enumerate() {
        series.push(BarSeries {
            name: format!(
                "published {k} ({}; whiskers: claim tolerance)",
                paper.hardware
            ),
            color: PUBLISHED[i % PUBLISHED.len()],
            bars: per_cat.iter().map(|m| m.get(k).copied()).collect(),
        });
    }
    Some(BarChart {
        title: "OpenVision 2 / OpenVision ratios: measured (whiskers: 95 % CI) vs published".into(),
        x_desc: "quantity (OV2 / OV1; below 1 = OpenVision 2 cheaper)".into(),
        y_desc: "ratio OV2 / OV1".into(),
        groups: cats.iter().map(|(c, _)| c.to_string()).collect(),
        series,
        hline: Some((1.0, "ratio 1 (no change)".into())),
    })
}

fn memory_batch_chart(
    views: &[StepView],
    paper_data: &Published,
    opts: &ReportOptions,
    device: bool,
) -> Option<LineChart> {
    // (recipe, model@res, hardware) -> batch -> peak bytes (median over repeats).
    let mut curves: BTreeMap<(String, String, String), BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for v in views {
        let Some(b) = v.batch else { continue };
        for r in &v.runs {
            let peak = if device {
                r.device_peak_bytes
            } else {
                r.peak_bytes
            };
            if let Some(p) = peak {
                let res = v
                    .resolution
                    .map(|x| x.to_string())
                    .unwrap_or_else(|| "?".into());
                curves
                    .entry((
                        r.recipe.clone(),
                        format!("{}@{}{}", v.model, res, v.extra),
                        short(&v.hardware, 24),
                    ))
                    .or_default()
                    .entry(b)
                    .or_default()
                    .push(p);
            }
        }
    }
    curves.retain(|_, pts| pts.len() >= 2);
    if curves.is_empty() {
        return None;
    }
    const GB: f64 = 1e9;
    let mut out = Vec::new();
    for (i, ((recipe, setting, hw), pts)) in curves.iter().enumerate() {
        out.push(Curve {
            name: format!("measured {} {setting} · {hw}", recipe_name(recipe)),
            color: recipe_color(recipe, i),
            points: pts
                .iter()
                .map(|(b, ps)| (*b as f64, stats::median(ps) / GB))
                .collect(),
            line: true,
            cross: false,
        });
    }
    let cap = paper_data.memory_cap_gb;
    let mut paper: PaperPoints = BTreeMap::new();
    for p in &paper_data.memory {
        let e = paper
            .entry((p.recipe.clone(), p.setting.clone()))
            .or_default();
        match p.peak_gb {
            Some(gb) => e.0.push((p.per_chip_batch, gb)),
            None => e.1.push((p.per_chip_batch, cap)),
        }
    }
    for (i, ((recipe, setting), (fits, ooms))) in paper.into_iter().enumerate() {
        let color = PUBLISHED[i % PUBLISHED.len()];
        out.push(Curve {
            name: format!(
                "paper {} {setting} ({})",
                recipe_name(&recipe),
                paper_data.memory_source
            ),
            color,
            points: fits,
            line: false,
            cross: false,
        });
        if !ooms.is_empty() {
            out.push(Curve {
                name: format!("paper {} {setting}: out of memory", recipe_name(&recipe)),
                color,
                points: ooms,
                line: false,
                cross: true,
            });
        }
    }
    let mut hlines = vec![(
        cap,
        format!("paper cap: {cap} GB per {}", paper_data.hardware),
        BLACK,
    )];
    if let Some(c) = opts.device_cap_bytes {
        hlines.push((
            c / GB,
            format!("measuring device cap: {:.1} GB", c / GB),
            RED,
        ));
    }
    let what = if device { "device" } else { "host allocator" };
    Some(LineChart {
        title: "Peak memory versus batch, measured and published".into(),
        x_desc: "batch per device (images, log scale; paper: global batch / 32 chips)".into(),
        y_desc: format!("peak memory (GB = 1e9 bytes, log scale; measured: {what})"),
        curves: out,
        hlines,
    })
}

/// Draws every chart the step records among `records` allow, and writes them with an
/// `index.md` into `out`, all or none (a failed write leaves no partial picture behind).
pub fn report(
    records: &[(PathBuf, Envelope)],
    paper: &Published,
    out: &Path,
    opts: &ReportOptions,
) -> Result<Report, PlotError> {
    let (views, others) = step_views(records);
    if views.is_empty() {
        return Err(PlotError::NoRecords);
    }
    ensure_registered().map_err(PlotError::Font)?;
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    let mut notes: Vec<String> = others
        .iter()
        .map(|p| format!("{}: not a step record, not plotted", p.display()))
        .collect();
    let mut index = String::from("# ovbench report\n\n");
    let mut add = |title: &str, files: Vec<(String, Vec<u8>)>| {
        index.push_str(&format!(
            "## {title}\n\n![{title}]({})\n\n[SVG]({})\n\n",
            files[1].0, files[0].0
        ));
        written.extend(files);
    };
    add(
        "Step time by recipe",
        render(&step_time_chart(&views), "step_time")?,
    );
    let (mem, device) = memory_chart(&views);
    add("Peak memory by recipe", render(&mem, "memory")?);
    match ratio_chart(&views, paper) {
        Some(c) => add("OV2 / OV1 ratios vs published", render(&c, "ratios")?),
        None => notes
            .push("ratios: no record measured both recipes, so no OV2/OV1 ratio to plot".into()),
    }
    match memory_batch_chart(&views, paper, opts, device) {
        Some(c) => add("Memory versus batch", render(&c, "memory_vs_batch")?),
        None => notes.push(
            "memory_vs_batch: needs records of one workload at two or more batches (e.g. ovbench step --batch 4, 8, 16)".into(),
        ),
    }
    index.push_str("## Sources\n\n");
    for v in &views {
        index.push_str(&format!(
            "- `{}`: {} on {}\n",
            v.path.display(),
            v.setting(),
            v.hardware
        ));
    }
    index.push_str(&format!(
        "\nPublished numbers: {}. Measured ratios on other hardware reproduce ratios, not absolute hours or GB.\n",
        paper.source
    ));
    for n in &notes {
        index.push_str(&format!("\n- {n}"));
    }
    written.push(("index.md".into(), index.into_bytes()));
    let mut set = OutputSet::default();
    let mut files = Vec::new();
    for (name, bytes) in written {
        let p = out.join(name);
        set.add(&p, bytes);
        files.push(p);
    }
    set.commit()?;
    Ok(Report { files, notes })
}
