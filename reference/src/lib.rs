//! The OpenVision 2 paper's numbers as data, with their sources, the claims
//! manifest, and the verdict engine.
//!
//! * [`tables`]: P2 Tables 3, 4, 5 (efficiency), Tables 1 and 2 (downstream),
//!   and the hardware each was measured on.
//! * [`schedule`]: the CLIPA curriculum of both recipes.
//! * [`claims`]: each efficiency claim as a check with its tolerance.
//! * [`verdict`]: [`judge`] turns a [`Measured`] into a [`Judgement`].
//!
//! The JSON under `reference/data/` is embedded with `include_str!` and parsed
//! on first use. Nothing here panics on bad data: [`load`] and the accessors
//! return a [`ReferenceError`] naming the file and field.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

pub mod claims;
mod error;
mod fields;
pub mod schedule;
pub mod tables;
pub mod verdict;

pub use claims::{
    metric, parse_claims, Band, Bound, Claim, ClaimKind, ClaimSet, Datum, Published, Setting,
    Tolerance,
};
pub use error::ReferenceError;
pub use schedule::{PlannedStage, Schedule, ScheduleFile, Stage};
pub use tables::{
    Cell, DownstreamRow, DownstreamTable, Hardware, MemoryOutcome, Platform, Recipe, Table3,
    Table3Row, Table4, Table4Row, Table5, Table5Row, TableRef,
};
pub use verdict::{judge, judge_all, Interval, Judgement, Measured, Quantity, Verdict};

/// The embedded files: (name used in errors, contents).
mod embedded {
    pub const HARDWARE: (&str, &str) = (
        "reference/data/hardware.json",
        include_str!("../data/hardware.json"),
    );
    pub const TABLE3: (&str, &str) = (
        "reference/data/table3.json",
        include_str!("../data/table3.json"),
    );
    pub const TABLE4: (&str, &str) = (
        "reference/data/table4.json",
        include_str!("../data/table4.json"),
    );
    pub const TABLE5: (&str, &str) = (
        "reference/data/table5.json",
        include_str!("../data/table5.json"),
    );
    pub const DOWNSTREAM1: (&str, &str) = (
        "reference/data/downstream_table1.json",
        include_str!("../data/downstream_table1.json"),
    );
    pub const DOWNSTREAM2: (&str, &str) = (
        "reference/data/downstream_table2.json",
        include_str!("../data/downstream_table2.json"),
    );
    pub const SCHEDULE: (&str, &str) = (
        "reference/data/schedule.json",
        include_str!("../data/schedule.json"),
    );
    pub const CLAIMS: (&str, &str) = (
        "reference/data/claims.json",
        include_str!("../data/claims.json"),
    );
}

/// Everything in `reference/data/`, parsed and cross-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub hardware: Hardware,
    pub table3: Table3,
    pub table4: Table4,
    pub table5: Table5,
    pub downstream_table1: DownstreamTable,
    pub downstream_table2: DownstreamTable,
    pub schedules: ScheduleFile,
    pub claims: ClaimSet,
}

fn parse<T: serde::de::DeserializeOwned>((file, text): (&str, &str)) -> Result<T, ReferenceError> {
    serde_json::from_str(text).map_err(|e| ReferenceError::from_serde(file, &e))
}

/// Parses and checks the embedded data afresh. Prefer [`reference`], which
/// caches the result.
pub fn load() -> Result<Reference, ReferenceError> {
    let r = Reference {
        hardware: parse(embedded::HARDWARE)?,
        table3: parse(embedded::TABLE3)?,
        table4: parse(embedded::TABLE4)?,
        table5: parse(embedded::TABLE5)?,
        downstream_table1: parse(embedded::DOWNSTREAM1)?,
        downstream_table2: parse(embedded::DOWNSTREAM2)?,
        schedules: parse(embedded::SCHEDULE)?,
        claims: parse_claims(embedded::CLAIMS.1, embedded::CLAIMS.0)?,
    };
    r.check_tables()?;
    r.check_claims(&r.claims, embedded::CLAIMS.0)?;
    Ok(r)
}

/// The embedded data, parsed on first use and cached.
pub fn reference() -> Result<&'static Reference, ReferenceError> {
    static CACHE: OnceLock<Result<Reference, ReferenceError>> = OnceLock::new();
    CACHE.get_or_init(load).as_ref().map_err(Clone::clone)
}

pub fn hardware() -> Result<&'static Hardware, ReferenceError> {
    reference().map(|r| &r.hardware)
}

/// P2 Table 3: v4-512 hours and FLOPs per image.
pub fn table3() -> Result<&'static Table3, ReferenceError> {
    reference().map(|r| &r.table3)
}

/// P2 Table 4: peak memory per chip by batch on a v4-64.
pub fn table4() -> Result<&'static Table4, ReferenceError> {
    reference().map(|r| &r.table4)
}

/// P2 Table 5: CLIPA / token-masking ablation hours.
pub fn table5() -> Result<&'static Table5, ReferenceError> {
    reference().map(|r| &r.table5)
}

/// P2 Table 1: LLaVA-1.5 downstream results.
pub fn downstream_table1() -> Result<&'static DownstreamTable, ReferenceError> {
    reference().map(|r| &r.downstream_table1)
}

/// P2 Table 2: Open-LLaVA-Next downstream results.
pub fn downstream_table2() -> Result<&'static DownstreamTable, ReferenceError> {
    reference().map(|r| &r.downstream_table2)
}

/// The CLIPA schedule of one recipe.
pub fn schedule(recipe: Recipe) -> Result<&'static Schedule, ReferenceError> {
    let r = reference()?;
    r.schedules
        .recipes
        .iter()
        .find(|s| s.recipe == recipe)
        .ok_or_else(|| {
            ReferenceError::field_error(
                embedded::SCHEDULE.0,
                "recipes",
                format!("no schedule for recipe {recipe}"),
            )
        })
}

/// The CLIPA stages of `recipe` up to `final_resolution` for `backbone`, with
/// numbers that OpenVision 2 does not publish (its third stage) taken from
/// OpenVision's recipe and flagged in the stage caveats.
pub fn clipa_plan(
    recipe: Recipe,
    backbone: &str,
    final_resolution: u32,
) -> Result<Vec<PlannedStage>, ReferenceError> {
    let fallback = match recipe {
        Recipe::Ov1 => None,
        Recipe::Ov2 => Some(schedule(Recipe::Ov1)?),
    };
    schedule(recipe)?.plan_to(backbone, final_resolution, fallback)
}

/// The embedded claims manifest.
pub fn claims() -> Result<&'static [Claim], ReferenceError> {
    reference().map(|r| r.claims.claims.as_slice())
}

/// Loads a claims manifest from a file (e.g. one with edited tolerances) and
/// checks it against the embedded tables.
pub fn load_claims(path: &Path) -> Result<ClaimSet, ReferenceError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ReferenceError::Read {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let set = parse_claims(&text, &file)?;
    reference()?.check_claims(&set, &file)?;
    Ok(set)
}

impl Reference {
    /// The content of the table cell `r` points at, if it exists.
    pub fn cell(&self, r: &TableRef) -> Option<Cell> {
        match r.table.as_str() {
            "table3" => {
                let row = self.table3.rows.iter().find(|x| x.id == r.row)?;
                match r.field.as_str() {
                    "v4_512_hours" => Some(Cell::Number(row.v4_512_hours)),
                    "flops_per_image" => Some(Cell::Number(row.flops_per_image)),
                    _ => None,
                }
            }
            "table4" => {
                let row = self.table4.rows.iter().find(|x| x.id == r.row)?;
                match (r.field.as_str(), row.outcome()) {
                    ("peak_memory_gb", MemoryOutcome::PeakGb(gb)) => Some(Cell::Number(gb)),
                    ("peak_memory_gb", MemoryOutcome::OutOfMemory) => Some(Cell::OutOfMemory),
                    _ => None,
                }
            }
            "table5" => {
                let row = self.table5.rows.iter().find(|x| x.id == r.row)?;
                (r.field == "hours").then_some(Cell::Number(row.hours))
            }
            _ => None,
        }
    }

    /// Every row/entry in every file, as (file, JSON path, source), for
    /// provenance checks.
    pub fn sources(&self) -> Vec<(&'static str, String, &str)> {
        let mut out: Vec<(&'static str, String, &str)> = Vec::new();
        let hw = embedded::HARDWARE.0;
        out.push((hw, "source".into(), &self.hardware.source));
        for (i, p) in self.hardware.platforms.iter().enumerate() {
            out.push((hw, format!("platforms[{i}].source"), &p.source));
        }
        let t = embedded::TABLE3.0;
        out.push((t, "source".into(), &self.table3.source));
        for (i, x) in self.table3.rows.iter().enumerate() {
            out.push((t, format!("rows[{i}].source"), &x.source));
        }
        let t = embedded::TABLE4.0;
        out.push((t, "source".into(), &self.table4.source));
        for (i, x) in self.table4.rows.iter().enumerate() {
            out.push((t, format!("rows[{i}].source"), &x.source));
        }
        let t = embedded::TABLE5.0;
        out.push((t, "source".into(), &self.table5.source));
        for (i, x) in self.table5.rows.iter().enumerate() {
            out.push((t, format!("rows[{i}].source"), &x.source));
        }
        for (t, table) in [
            (embedded::DOWNSTREAM1.0, &self.downstream_table1),
            (embedded::DOWNSTREAM2.0, &self.downstream_table2),
        ] {
            out.push((t, "source".into(), &table.source));
            for (i, x) in table.rows.iter().enumerate() {
                out.push((t, format!("rows[{i}].source"), &x.source));
            }
        }
        let t = embedded::SCHEDULE.0;
        for (i, s) in self.schedules.recipes.iter().enumerate() {
            out.push((t, format!("recipes[{i}].source"), &s.source));
            for (k, st) in s.stages.iter().enumerate() {
                out.push((t, format!("recipes[{i}].stages[{k}].source"), &st.source));
            }
        }
        let t = embedded::CLAIMS.0;
        for (i, c) in self.claims.claims.iter().enumerate() {
            out.push((t, format!("claims[{i}].source"), &c.source));
        }
        out
    }

    /// Consistency of the tables: sources present, ids unique, hardware ids
    /// known, OOM entries well formed, per-chip batches derived correctly.
    fn check_tables(&self) -> Result<(), ReferenceError> {
        for (file, path, source) in self.sources() {
            if source.trim().is_empty() {
                return Err(ReferenceError::field_error(file, path, "empty source"));
            }
        }
        fn unique<'a>(
            file: &str,
            ids: impl Iterator<Item = &'a str>,
        ) -> Result<(), ReferenceError> {
            let mut seen = BTreeSet::new();
            for (i, id) in ids.enumerate() {
                if !seen.insert(id) {
                    return Err(ReferenceError::field_error(
                        file,
                        format!("rows[{i}].id"),
                        format!("duplicate id `{id}`"),
                    ));
                }
            }
            Ok(())
        }
        unique(
            embedded::TABLE3.0,
            self.table3.rows.iter().map(|r| r.id.as_str()),
        )?;
        unique(
            embedded::TABLE4.0,
            self.table4.rows.iter().map(|r| r.id.as_str()),
        )?;
        unique(
            embedded::TABLE5.0,
            self.table5.rows.iter().map(|r| r.id.as_str()),
        )?;
        unique(
            embedded::DOWNSTREAM1.0,
            self.downstream_table1.rows.iter().map(|r| r.id.as_str()),
        )?;
        unique(
            embedded::DOWNSTREAM2.0,
            self.downstream_table2.rows.iter().map(|r| r.id.as_str()),
        )?;
        for (file, hw) in [
            (embedded::TABLE3.0, &self.table3.hardware),
            (embedded::TABLE4.0, &self.table4.hardware),
            (embedded::TABLE5.0, &self.table5.hardware),
        ] {
            if self.hardware.platform(hw).is_none() {
                return Err(ReferenceError::field_error(
                    file,
                    "hardware",
                    format!("unknown platform `{hw}`"),
                ));
            }
        }
        let t4 = embedded::TABLE4.0;
        for (i, row) in self.table4.rows.iter().enumerate() {
            match (row.oom, row.peak_memory_gb) {
                (true, None) | (false, Some(_)) => {}
                _ => {
                    return Err(ReferenceError::field_error(
                        t4,
                        format!("rows[{i}].peak_memory_gb"),
                        "must be null exactly when oom is true",
                    ))
                }
            }
            if row.per_chip_batch * u64::from(self.table4.chips) != row.global_batch {
                return Err(ReferenceError::field_error(
                    t4,
                    format!("rows[{i}].per_chip_batch"),
                    "must equal global_batch / chips",
                ));
            }
        }
        Ok(())
    }

    /// Checks a manifest against the tables: every `ref` resolves, every
    /// published number equals the cell it quotes, every fits outcome agrees
    /// with Table 4, and every hardware id is known.
    pub fn check_claims(&self, set: &ClaimSet, file: &str) -> Result<(), ReferenceError> {
        for (i, c) in set.claims.iter().enumerate() {
            let at = |field: &str, message: String| {
                ReferenceError::field_error(
                    file,
                    format!("claims[{i}].{field}"),
                    format!("{message} (claim `{}`)", c.id),
                )
            };
            if self.hardware.platform(&c.setting.hardware).is_none() {
                return Err(at(
                    "setting.hardware",
                    format!("unknown platform `{}`", c.setting.hardware),
                ));
            }
            let check_number = |field: &str, d: &Datum| match self.cell(&d.table_ref) {
                Some(Cell::Number(x)) if x == d.value => Ok(()),
                Some(Cell::Number(x)) => Err(at(
                    &format!("{field}.value"),
                    format!("{} differs from {} = {x}", d.value, d.table_ref),
                )),
                Some(Cell::OutOfMemory) => Err(at(
                    &format!("{field}.ref"),
                    format!("{} is OOM, not a number", d.table_ref),
                )),
                None => Err(at(
                    &format!("{field}.ref"),
                    format!("{} does not exist", d.table_ref),
                )),
            };
            match &c.published {
                Published::Ratio {
                    numerator,
                    denominator,
                } => {
                    check_number("published.numerator", numerator)?;
                    check_number("published.denominator", denominator)?;
                }
                Published::Value(d) => check_number("published", d)?,
                Published::Fits { fits, table_ref } => {
                    let cap = c.setting.memory_cap_gb.ok_or_else(|| {
                        at("setting.memory_cap_gb", "missing for a fits claim".into())
                    })?;
                    let table_fits = match self.cell(table_ref) {
                        Some(Cell::OutOfMemory) => false,
                        Some(Cell::Number(gb)) => gb <= cap,
                        None => {
                            return Err(at("published.ref", format!("{table_ref} does not exist")))
                        }
                    };
                    if table_fits != *fits {
                        return Err(at(
                            "published.fits",
                            format!("{fits} disagrees with {table_ref} under a {cap} GB cap"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
