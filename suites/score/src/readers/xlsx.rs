//! VLMEvalKit `.xlsx` prediction files (its default `PRED_FORMAT`).
//!
//! calamine undoes Excel's `_xHHHH_` escapes and yields the model's own text; VLMEvalKit
//! (openpyxl) does not undo them, so the VLMEvalKit labels re-apply the round trip at scoring
//! time ([`crate::pandas::xlsx_roundtrip`]), which also maps pandas' NA tokens to `nan`.

use crate::error::{Loc, ScoreError};
use crate::py;
use crate::scorer::{Origin, PredKey, Prediction, Predictions};
use calamine::{Cell, Data, DataRef, Range, Reader, Xlsx};
use std::path::Path;

/// Reads the first sheet's `index` and `prediction` columns.
pub fn read_vlmevalkit_xlsx(path: &Path) -> Result<Predictions, ScoreError> {
    let file = ovbench_harness::io::open_bounded(path, ovbench_harness::io::limit::DATA)?;
    if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(ScoreError::Empty { path: path.into() });
    }
    let mut wb: Xlsx<_> = Xlsx::new(std::io::BufReader::new(file)).map_err(|e| {
        ScoreError::input(
            Loc::file(path),
            format!("not a readable .xlsx workbook: {e}"),
        )
    })?;
    let first = wb
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| ScoreError::input(Loc::file(path), "the workbook has no sheet"))?;
    let range = read_sheet(&mut wb, &first, path)?;
    let first_row = range.start().map(|(r, _)| r as usize + 1).unwrap_or(1);
    let mut rows = range.rows();
    let header: Vec<String> = rows
        .next()
        .ok_or_else(|| ScoreError::Empty { path: path.into() })?
        .iter()
        .map(|c| cell_text(c).unwrap_or_default())
        .collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            ScoreError::input(
                Loc::row(path, first_row).with_field(name),
                format!("column missing (the header has: {})", header.join(", ")),
            )
        })
    };
    let (ci, cp) = (col("index")?, col("prediction")?);
    let mut items = Vec::new();
    for (k, row) in rows.enumerate() {
        let excel_row = first_row + 1 + k;
        let loc = Loc::row(path, excel_row);
        let get = |c: usize| row.get(c).unwrap_or(&Data::Empty);
        let id = cell_text(get(ci)).filter(|s| !s.is_empty());
        let Some(id) = id else {
            if row.iter().all(|c| matches!(c, Data::Empty)) {
                continue; // a blank row, as spreadsheets often end with
            }
            return Err(ScoreError::input(
                loc.with_field("index"),
                "empty index cell",
            ));
        };
        let text = cell_text(get(cp)).ok_or_else(|| {
            ScoreError::input(
                loc.clone().with_field("prediction"),
                "cell holds an Excel error value",
            )
        })?;
        items.push(Prediction {
            key: PredKey::Id(id),
            text,
            loc,
            witness: None,
        });
    }
    if items.is_empty() {
        return Err(ScoreError::input(
            Loc::file(path),
            "the sheet has a header but no rows",
        ));
    }
    Ok(Predictions {
        format: "vlmevalkit-xlsx",
        origin: Origin::VlmevalkitXlsx,
        path: path.into(),
        items,
        warnings: Vec::new(),
    })
}

/// The text Python's `str()` gives for the value openpyxl returns for this cell.
fn cell_text(c: &Data) -> Option<String> {
    Some(match c {
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Empty => String::new(),
        Data::Int(i) => i.to_string(),
        // openpyxl returns an int for a numeric cell without '.'/exponent; calamine cannot tell,
        // so an integral value is taken to be an int.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => py::float_repr(*f),
        Data::Bool(b) => (if *b { "True" } else { "False" }).to_string(),
        Data::DateTime(d) => d.as_f64().to_string(),
        Data::Error(_) => return None,
    })
}

/// calamine lays a sheet out densely over the span of its cells: one cell at XFD1048576 would
/// ask for 17 billion. A sheet is therefore read cell by cell and refused beyond this span.
const MAX_SPAN_CELLS: u64 = 50_000_000;

/// The sheet as calamine's `worksheet_range` builds it (non-empty cells, laid out over their
/// span), with the span bounded before anything is allocated for it.
fn read_sheet<RS: std::io::Read + std::io::Seek>(
    wb: &mut Xlsx<RS>,
    name: &str,
    path: &Path,
) -> Result<Range<Data>, ScoreError> {
    let bad = |e: calamine::XlsxError| {
        ScoreError::input(Loc::file(path), format!("cannot read sheet '{name}': {e}"))
    };
    let mut reader = wb.worksheet_cells_reader(name).map_err(bad)?;
    let (mut r0, mut r1, mut c0, mut c1) = (u32::MAX, 0u32, u32::MAX, 0u32);
    let mut cells = Vec::new();
    while let Some(cell) = reader.next_cell().map_err(bad)? {
        if matches!(cell.get_value(), DataRef::Empty) {
            continue;
        }
        let (r, c) = cell.get_position();
        (r0, r1, c0, c1) = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
        let span = (u64::from(r1 - r0) + 1) * (u64::from(c1 - c0) + 1);
        if span > MAX_SPAN_CELLS {
            return Err(ScoreError::input(
                Loc::row(path, r as usize + 1),
                format!(
                    "sheet '{name}' has a cell at row {}, column {}: its cells span {} rows x {} \
                     columns, more than {MAX_SPAN_CELLS} cells",
                    r + 1,
                    c + 1,
                    r1 - r0 + 1,
                    c1 - c0 + 1
                ),
            ));
        }
        cells.push(Cell::new((r, c), Data::from(cell.get_value().clone())));
    }
    Ok(Range::from_sparse(cells))
}
