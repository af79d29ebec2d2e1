//! Typed rows of the paper's tables, as stored in `reference/data/*.json`.
//!
//! Every row carries the `source` it was copied from (IDs defined in
//! `shared/reference/openvision-facts.md`: P2 = OpenVision 2 paper, PP2 = its
//! project page, R = released code, P1 = OpenVision paper) and, where the facts
//! say UNVERIFIED, an `unverified` note.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The two training recipes compared by the paper: the one recipe type of the whole workspace
/// (the training suite replays them, the reference data and the plots name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Recipe {
    /// OpenVision (v1): contrastive + captioning, no token masking.
    #[serde(rename = "ov1")]
    Ov1,
    /// OpenVision 2: captioning only, visual tokens masked before the decoder.
    #[serde(rename = "ov2")]
    Ov2,
}

impl Recipe {
    /// The key used in the JSON files.
    pub fn key(self) -> &'static str {
        match self {
            Self::Ov1 => "ov1",
            Self::Ov2 => "ov2",
        }
    }

    /// The model name as the paper prints it.
    pub fn paper_name(self) -> &'static str {
        match self {
            Self::Ov1 => "OpenVision",
            Self::Ov2 => "OpenVision 2",
        }
    }

    /// The name tables and progress lines show (the paper's).
    pub fn label(self) -> &'static str {
        self.paper_name()
    }

    pub(crate) fn from_key(s: &str) -> Option<Self> {
        match s {
            "ov1" => Some(Self::Ov1),
            "ov2" => Some(Self::Ov2),
            _ => None,
        }
    }
}

impl std::str::FromStr for Recipe {
    type Err = String;
    /// The key (`ov1`, `ov2`) or the lower-case name (`openvision`, `openvision2`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "openvision" => Ok(Self::Ov1),
            "openvision2" => Ok(Self::Ov2),
            _ => Self::from_key(s)
                .ok_or_else(|| format!("unknown recipe '{s}' (expected ov1 or ov2)")),
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// `hardware.json`: the machines the efficiency tables were measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    pub title: String,
    /// The paper's own sentence about the hardware.
    pub statement: String,
    pub source: String,
    pub platforms: Vec<Platform>,
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Hardware {
    pub fn platform(&self, id: &str) -> Option<&Platform> {
        self.platforms.iter().find(|p| p.id == id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Stable key, e.g. `tpu-v4-512`, used by tables and claims.
    pub id: String,
    pub name: String,
    /// The number in the pod's name (Cloud TPU v4 names count TensorCores).
    pub tensorcores: u32,
    /// Chips in the pod (2 TensorCores per chip) [derived].
    pub chips: u32,
    pub chips_source: String,
    /// HBM per chip in GB, as the paper writes it ("32GB").
    pub memory_per_chip_gb: f64,
    pub memory_source: String,
    pub used_for: Vec<String>,
    pub source: String,
}

/// `table3.json`: P2 Table 3, training hours on a v4-512 and FLOPs per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table3 {
    pub title: String,
    pub source: String,
    /// Platform id in `hardware.json`.
    pub hardware: String,
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
    pub rows: Vec<Table3Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table3Row {
    pub id: String,
    pub model: String,
    pub recipe: Recipe,
    pub backbone: String,
    pub resolution: u32,
    pub v4_512_hours: f64,
    /// As printed; unit not stated in P2 (forward GFLOPs by inference).
    pub flops_per_image: f64,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

/// `table4.json`: P2 Table 4, peak memory per chip on a v4-64 by batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table4 {
    pub title: String,
    pub source: String,
    pub hardware: String,
    /// Chips of the v4-64 the batch is spread over [derived].
    pub chips: u32,
    /// The per-chip memory limit the paper names ("32GB").
    pub memory_cap_gb: f64,
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
    pub rows: Vec<Table4Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table4Row {
    pub id: String,
    pub model: String,
    pub recipe: Recipe,
    pub backbone: String,
    pub resolution: u32,
    /// As printed: "2k", "4k", "8k", "512", "1k".
    pub batch_label: String,
    /// The label with k = 1024 [derived].
    pub global_batch: u64,
    /// `global_batch / chips`, under the UNVERIFIED global-batch reading.
    pub per_chip_batch: u64,
    /// `None` where the paper prints OOM.
    pub peak_memory_gb: Option<f64>,
    pub oom: bool,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

/// What Table 4 reports for one model and batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemoryOutcome {
    PeakGb(f64),
    OutOfMemory,
}

impl Table4Row {
    pub fn outcome(&self) -> MemoryOutcome {
        match (self.oom, self.peak_memory_gb) {
            (false, Some(gb)) => MemoryOutcome::PeakGb(gb),
            // Load-time validation rules out the inconsistent combinations.
            _ => MemoryOutcome::OutOfMemory,
        }
    }
}

/// `table5.json`: P2 Table 5, the CLIPA / token-masking ablation (hours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table5 {
    pub title: String,
    pub source: String,
    pub hardware: String,
    pub backbone: String,
    pub resolution: u32,
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
    pub rows: Vec<Table5Row>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table5Row {
    pub id: String,
    pub method: String,
    pub clipa: bool,
    pub token_mask: bool,
    pub hours: f64,
    pub source: String,
}

/// `downstream_table1.json` / `downstream_table2.json`: P2 Tables 1 and 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamTable {
    pub title: String,
    pub framework: String,
    pub source: String,
    pub protocol: String,
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
    pub rows: Vec<DownstreamRow>,
}

/// One row of a downstream table. Column names follow the facts file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamRow {
    pub id: String,
    pub method: String,
    pub encoder: String,
    pub params_label: String,
    pub resolution: u32,
    #[serde(rename = "TextVQA")]
    pub text_vqa: f64,
    #[serde(rename = "ChartQA")]
    pub chart_qa: f64,
    #[serde(rename = "OCRBench")]
    pub ocr_bench: f64,
    #[serde(rename = "MME_P")]
    pub mme_p: f64,
    #[serde(rename = "MME_C")]
    pub mme_c: f64,
    #[serde(rename = "SEED")]
    pub seed: f64,
    #[serde(rename = "SQA")]
    pub sqa: f64,
    #[serde(rename = "GQA")]
    pub gqa: f64,
    #[serde(rename = "POPE")]
    pub pope: f64,
    pub source: String,
}

impl DownstreamRow {
    /// A benchmark column by the name used in the JSON (`"TextVQA"`, ...).
    pub fn column(&self, name: &str) -> Option<f64> {
        Some(match name {
            "TextVQA" => self.text_vqa,
            "ChartQA" => self.chart_qa,
            "OCRBench" => self.ocr_bench,
            "MME_P" => self.mme_p,
            "MME_C" => self.mme_c,
            "SEED" => self.seed,
            "SQA" => self.sqa,
            "GQA" => self.gqa,
            "POPE" => self.pope,
            _ => return None,
        })
    }

    /// The benchmark columns, in table order.
    pub const COLUMNS: [&'static str; 9] = [
        "TextVQA", "ChartQA", "OCRBench", "MME_P", "MME_C", "SEED", "SQA", "GQA", "POPE",
    ];
}

/// Points at one number of one table, so a claim's published value can be
/// checked against the table it quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRef {
    /// `table3`, `table4` or `table5`.
    pub table: String,
    /// The row's `id`.
    pub row: String,
    /// The column, e.g. `flops_per_image`, `v4_512_hours`, `peak_memory_gb`, `hours`.
    pub field: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}.{}", self.table, self.row, self.field)
    }
}

/// The content of one table cell that a claim can point at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Number(f64),
    OutOfMemory,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::Value;

    use crate::*;

    /// The facts file lives in `shared/reference/` beside the checkout
    /// (`../../shared` from this crate). Some setups put `shared/` inside the
    /// workspace root instead; try both.
    fn facts() -> Option<Value> {
        let dir = env!("CARGO_MANIFEST_DIR");
        let candidates = [
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/reference/openvision-facts.json"
            )),
            PathBuf::from(dir).join("../shared/reference/openvision-facts.json"),
        ];
        for path in &candidates {
            if let Ok(text) = std::fs::read_to_string(path) {
                return Some(serde_json::from_str(&text).expect("facts file is valid JSON"));
            }
        }
        println!(
            "NOTE: openvision-facts.json not found at {candidates:?}; skipping the cross-check against it"
        );
        None
    }

    fn num(v: &Value) -> f64 {
        v.as_f64()
            .unwrap_or_else(|| panic!("expected a number, got {v}"))
    }

    #[test]
    fn embedded_data_loads() {
        let r = load().expect("embedded reference data loads");
        assert_eq!(r.table3.rows.len(), 4);
        assert_eq!(r.table4.rows.len(), 9);
        assert_eq!(r.table5.rows.len(), 4);
        assert_eq!(r.downstream_table1.rows.len(), 17);
        assert_eq!(r.downstream_table2.rows.len(), 17);
        assert_eq!(r.schedules.recipes.len(), 2);
        assert_eq!(r.hardware.platforms.len(), 2);
        // The cached accessors agree with a fresh load.
        assert_eq!(reference().unwrap(), &r);
        assert_eq!(table3().unwrap(), &r.table3);
        assert_eq!(table4().unwrap(), &r.table4);
        assert_eq!(table5().unwrap(), &r.table5);
        assert_eq!(downstream_table1().unwrap(), &r.downstream_table1);
        assert_eq!(downstream_table2().unwrap(), &r.downstream_table2);
        assert_eq!(hardware().unwrap(), &r.hardware);
        assert_eq!(schedule(Recipe::Ov2).unwrap().recipe, Recipe::Ov2);
        assert_eq!(claims().unwrap(), r.claims.claims.as_slice());
    }

    #[test]
    fn every_entry_has_a_source() {
        let r = reference().unwrap();
        let sources = r.sources();
        // 2 platforms + hardware, 3 x (table + rows), 2 x (17 + 1), 2 recipes + 6 stages, claims.
        assert!(sources.len() >= 3 + 5 + 10 + 5 + 36 + 8 + r.claims.claims.len());
        for (file, path, source) in sources {
            assert!(!source.trim().is_empty(), "{file}: {path} has no source");
            // Every source names one of the IDs of the facts file.
            assert!(
                ["P2", "PP2", "R", "P1", "derived"]
                    .iter()
                    .any(|id| source.contains(id)),
                "{file}: {path}: source `{source}` names no known source ID"
            );
        }
    }

    #[test]
    fn unverified_items_are_flagged() {
        let r = reference().unwrap();
        for row in &r.table4.rows {
            assert!(
                row.unverified.is_some(),
                "{}: per-chip batch is an interpretation",
                row.id
            );
            assert_eq!(row.per_chip_batch * 32, row.global_batch);
        }
        assert!(
            !r.table3.unverified.is_empty(),
            "FLOP unit and phases are unverified"
        );
        assert!(!r.table5.unverified.is_empty());
        let ov2 = schedule(Recipe::Ov2).unwrap();
        let third = ov2.stages.iter().find(|s| s.stage == 3).unwrap();
        assert!(third.unverified.is_some() && third.samples.is_none());
        for c in &r.claims.claims {
            if c.setting.per_chip_batch.is_some() {
                assert!(
                    c.unverified.is_some(),
                    "{}: per-chip batch is unverified",
                    c.id
                );
            }
        }
    }

    #[test]
    fn spot_checks() {
        let t3 = table3().unwrap();
        let row = |id: &str| t3.rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("ov2-l14-224").flops_per_image, 208.90);
        assert_eq!(row("ov1-l14-224").flops_per_image, 271.75);
        assert_eq!(row("ov1-l14-224").v4_512_hours, 83.0);
        assert_eq!(row("ov2-so400m-384").v4_512_hours, 121.0);
        assert_eq!(t3.hardware, "tpu-v4-512");

        let t4 = table4().unwrap();
        let row = |id: &str| t4.rows.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("ov1-l14-224-2k").outcome(), MemoryOutcome::PeakGb(24.5));
        assert_eq!(row("ov1-l14-224-4k").outcome(), MemoryOutcome::OutOfMemory);
        assert_eq!(row("ov2-l14-224-8k").outcome(), MemoryOutcome::PeakGb(28.4));
        assert_eq!(row("ov2-l14-224-8k").per_chip_batch, 256);
        assert_eq!(
            row("ov1-so400m-384-1k").outcome(),
            MemoryOutcome::OutOfMemory
        );
        assert_eq!(
            (t4.hardware.as_str(), t4.chips, t4.memory_cap_gb),
            ("tpu-v4-64", 32, 32.0)
        );

        let t5 = table5().unwrap();
        let hours: Vec<f64> = t5.rows.iter().map(|r| r.hours).collect();
        assert_eq!(hours, [217.0, 190.0, 67.0, 55.0]);

        let d1 = downstream_table1().unwrap();
        let ov2 = d1
            .rows
            .iter()
            .find(|r| r.id == "openvision-2-l-14-224")
            .unwrap();
        assert_eq!(
            (ov2.text_vqa, ov2.ocr_bench, ov2.mme_p, ov2.mme_c),
            (59.0, 327.0, 1460.0, 312.0)
        );
        let d2 = downstream_table2().unwrap();
        let ov2 = d2
            .rows
            .iter()
            .find(|r| r.id == "openvision-2-so400m-14-384")
            .unwrap();
        assert_eq!(ov2.ocr_bench, 549.0);

        let hw = hardware().unwrap();
        assert_eq!(hw.platform("tpu-v4-512").unwrap().chips, 256);
        assert_eq!(hw.platform("tpu-v4-64").unwrap().chips, 32);
        assert_eq!(hw.platform("tpu-v4-64").unwrap().memory_per_chip_gb, 32.0);
    }

    #[test]
    fn cells_resolve() {
        let r = reference().unwrap();
        let at = |table: &str, row: &str, field: &str| {
            r.cell(&TableRef {
                table: table.into(),
                row: row.into(),
                field: field.into(),
            })
        };
        assert_eq!(
            at("table3", "ov2-l14-224", "flops_per_image"),
            Some(Cell::Number(208.90))
        );
        assert_eq!(
            at("table4", "ov1-l14-224-4k", "peak_memory_gb"),
            Some(Cell::OutOfMemory)
        );
        assert_eq!(at("table5", "ov2-both", "hours"), Some(Cell::Number(55.0)));
        assert_eq!(at("table3", "ov2-l14-224", "nope"), None);
        assert_eq!(at("table9", "x", "y"), None);
    }

    #[test]
    fn tables_3_4_5_match_the_facts_file() {
        let Some(f) = facts() else { return };
        let te = &f["training_efficiency"];

        let facts3 = te["table3_time_flops_v4_512"].as_array().unwrap();
        let t3 = table3().unwrap();
        assert_eq!(facts3.len(), t3.rows.len());
        for fr in facts3 {
            let row = t3
                .rows
                .iter()
                .find(|r| {
                    r.model == fr["model"].as_str().unwrap()
                        && r.backbone == fr["backbone"].as_str().unwrap()
                        && u64::from(r.resolution) == fr["resolution"].as_u64().unwrap()
                })
                .unwrap_or_else(|| panic!("table3 lacks {fr}"));
            assert_eq!(row.v4_512_hours, num(&fr["v4_512_hours"]), "{}", row.id);
            assert_eq!(
                row.flops_per_image,
                num(&fr["flops_per_image"]),
                "{}",
                row.id
            );
            assert_eq!(row.model, row.recipe.paper_name());
        }

        let facts4 = te["table4_peak_memory_gb_per_chip_v4_64"]
            .as_array()
            .unwrap();
        let t4 = table4().unwrap();
        assert_eq!(facts4.len(), t4.rows.len());
        for fr in facts4 {
            let row = t4
                .rows
                .iter()
                .find(|r| {
                    r.model == fr["model"].as_str().unwrap()
                        && r.backbone == fr["backbone"].as_str().unwrap()
                        && r.global_batch == fr["batch_size"].as_u64().unwrap()
                })
                .unwrap_or_else(|| panic!("table4 lacks {fr}"));
            assert_eq!(row.batch_label, fr["batch_label"].as_str().unwrap());
            assert_eq!(
                u64::from(row.resolution),
                fr["resolution"].as_u64().unwrap()
            );
            match &fr["peak_memory_gb"] {
                Value::String(s) if s == "OOM" => {
                    assert_eq!(row.outcome(), MemoryOutcome::OutOfMemory, "{}", row.id)
                }
                v => assert_eq!(row.outcome(), MemoryOutcome::PeakGb(num(v)), "{}", row.id),
            }
        }
        assert_eq!(
            te["devices_derived"]["v4-64_chips"].as_u64(),
            Some(u64::from(t4.chips))
        );

        let facts5 = te["table5_strategy_ablation_vitl14_224_v4_64_hours"]
            .as_array()
            .unwrap();
        let t5 = table5().unwrap();
        assert_eq!(facts5.len(), t5.rows.len());
        for fr in facts5 {
            let row = t5
                .rows
                .iter()
                .find(|r| {
                    r.clipa == fr["clipa"].as_bool().unwrap()
                        && r.token_mask == fr["token_mask"].as_bool().unwrap()
                })
                .unwrap();
            assert_eq!(row.hours, num(&fr["hours"]), "{}", row.id);
        }

        let hw = hardware().unwrap();
        for (id, key) in [("tpu-v4-512", "v4-512_chips"), ("tpu-v4-64", "v4-64_chips")] {
            assert_eq!(
                te["devices_derived"][key].as_u64(),
                Some(u64::from(hw.platform(id).unwrap().chips))
            );
        }

        // The facts file rounds the derived ratios to 4 decimals; the claims
        // compute them from the table values.
        let derived = &te["derived_ratios_ov2_over_ov1"];
        for (claim, key) in [
            ("time-ratio-l14-224", "time_L14_224"),
            ("time-ratio-so400m-384", "time_SoViT_384"),
            ("flops-ratio-l14-224", "flops_L14_224"),
            ("flops-ratio-so400m-384", "flops_SoViT_384"),
            ("memory-ratio-l14-224-2k", "mem_L14_224_bs2k"),
            ("memory-ratio-so400m-384-512", "mem_SoViT_384_bs512"),
        ] {
            let c = reference().unwrap().claims.get(claim).unwrap();
            let p = c.published_value().unwrap();
            assert!(
                (p - num(&derived[key])).abs() < 5e-5,
                "{claim}: {p} vs {}",
                derived[key]
            );
        }
    }

    #[test]
    fn downstream_tables_match_the_facts_file() {
        let Some(f) = facts() else { return };
        let rows = f["downstream_results_ov2_paper"].as_array().unwrap();
        for (framework, table) in [
            ("LLaVA-1.5", downstream_table1().unwrap()),
            ("Open-LLaVA-Next", downstream_table2().unwrap()),
        ] {
            assert_eq!(table.framework, framework);
            let facts: Vec<&Value> = rows
                .iter()
                .filter(|r| r["framework"] == framework)
                .collect();
            assert_eq!(facts.len(), table.rows.len());
            for (fr, row) in facts.iter().zip(&table.rows) {
                assert_eq!(row.method, fr["method"].as_str().unwrap());
                assert_eq!(row.encoder, fr["vision_encoder"].as_str().unwrap());
                assert_eq!(row.params_label, fr["params_label"].as_str().unwrap());
                assert_eq!(
                    u64::from(row.resolution),
                    fr["resolution"].as_u64().unwrap()
                );
                for col in DownstreamRow::COLUMNS {
                    assert_eq!(
                        row.column(col),
                        Some(num(&fr[col])),
                        "{framework} {} {col}",
                        row.id
                    );
                }
            }
        }
    }

    #[test]
    fn schedules_match_the_facts_file() {
        let Some(f) = facts() else { return };
        let cur = &f["curriculum"];
        let v1 = schedule(Recipe::Ov1).unwrap();
        let v2 = schedule(Recipe::Ov2).unwrap();
        for (fs, st) in cur["v1"]["stages"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&v1.stages)
        {
            assert_eq!(st.samples_paper.as_deref(), fs["samples"].as_str());
            assert_eq!(
                st.global_batch_paper.as_deref(),
                fs["global_batch"].as_str()
            );
            assert_eq!(st.base_lr, fs["base_lr"].as_f64());
            assert_eq!(st.peak_lr_code, fs["peak_lr_code"].as_f64());
            assert_eq!(st.warmup_samples_code, fs["warmup_samples_code"].as_u64());
        }
        let fv2 = cur["v2"]["stages"].as_array().unwrap();
        assert_eq!(fv2.len(), v2.stages.len());
        for (fs, st) in fv2.iter().zip(&v2.stages) {
            assert_eq!(st.samples, fs["samples_code"].as_u64());
            assert_eq!(st.global_batch, fs["global_batch_code"].as_u64());
            assert_eq!(st.base_lr, fs["base_lr"].as_f64());
            assert_eq!(st.peak_lr_code, fs["peak_lr_code"].as_f64());
            assert_eq!(st.keep_ratio, fs["keep_ratio"].as_f64());
            assert_eq!(st.warmup_samples_code, fs["warmup_samples_code"].as_u64());
        }
        // The v1 code sample counts are 10,000 / 800 / 200 ImageNet epochs.
        let epochs: Vec<u64> = v1
            .stages
            .iter()
            .map(|s| s.samples.unwrap() / 1_281_167)
            .collect();
        assert_eq!(epochs, [10_000, 800, 200]);
        assert!(v1
            .stages
            .iter()
            .all(|s| s.samples.unwrap() % 1_281_167 == 0));
    }
}
