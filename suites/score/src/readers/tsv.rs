//! VLMEvalKit TSV files: benchmark TSVs (annotations) and `PRED_FORMAT=tsv` predictions.
//! The base64 `image` column is skipped unless images are asked for.

use super::ReadOptions;
use crate::compat::Task;
use crate::error::{Loc, ScoreError, Warning};
use crate::pandas;
use crate::py::{self, LiteralError, PyValue};
use crate::scorer::{Annotation, Annotations, Origin, PredKey, Prediction, Predictions};
use base64::Engine;
use std::collections::HashMap;
use std::path::Path;

struct Table {
    header: Vec<String>,
    /// (line, cells of the wanted columns); `None` for a column the file lacks.
    rows: Vec<(usize, Vec<Option<String>>)>,
}

/// Streams a tab-separated file with pandas' default quoting, keeping only `wanted` columns.
fn read_table(path: &Path, wanted: &[&str]) -> Result<Table, ScoreError> {
    let file = ovbench_harness::io::open_bounded(path, ovbench_harness::io::limit::DATA)?;
    if file.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(ScoreError::Empty { path: path.into() });
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .has_headers(true)
        .from_reader(std::io::BufReader::with_capacity(
            1 << 16,
            QuoteScan::new(file, b'\t'),
        ));
    let header_rec = rdr.byte_headers().map_err(|e| csv_err(path, e))?.clone();
    let header: Vec<String> = header_rec
        .iter()
        .map(|h| {
            String::from_utf8(h.to_vec()).map_err(|_| ScoreError::Utf8 {
                loc: Loc::line(path, 1),
                offset: 0,
            })
        })
        .collect::<Result<_, _>>()?;
    let cols: Vec<Option<usize>> = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w))
        .collect();
    let mut rows = Vec::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(path, e)),
        }
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
        let mut cells = Vec::with_capacity(cols.len());
        for (c, name) in cols.iter().zip(wanted) {
            cells.push(match c {
                None => None,
                Some(i) => {
                    let raw = rec.get(*i).unwrap_or_default();
                    Some(
                        String::from_utf8(raw.to_vec()).map_err(|e| ScoreError::Utf8 {
                            loc: Loc::line(path, line).with_field(name),
                            offset: rec.position().map(|p| p.byte() as usize).unwrap_or(0)
                                + e.utf8_error().valid_up_to(),
                        })?,
                    )
                }
            });
        }
        rows.push((line, cells));
    }
    rdr.into_inner().into_inner().finish(path)?;
    if rows.is_empty() {
        return Err(ScoreError::input(
            Loc::file(path),
            "the table has a header but no rows",
        ));
    }
    Ok(Table { header, rows })
}

/// Follows the quoting of a delimited file as its bytes pass to the parser (pandas' and the
/// csv crate's rules: a quote opens a quoted cell only at the start of a cell, `""` inside
/// is a literal quote) to catch the two ways a stray quote silently loses rows: a quoted cell
/// still open at the end of the file (it swallowed everything after it), and a quoted cell
/// spanning lines of which one looks like a row of its own (as many delimiters as the header
/// and an integer in the `index` column).
pub(crate) struct QuoteScan<R> {
    inner: R,
    delim: u8,
    /// 1-based line of the byte about to be read.
    line: usize,
    state: QState,
    /// Line where the open quoted cell began.
    opened_at: usize,
    /// Header: its bytes while the first line is read, then its cell count and where `index` is.
    header: Vec<u8>,
    header_done: bool,
    ncols: usize,
    index_col: Option<usize>,
    /// The current line inside a quoted cell (after a newline in it): delimiters seen, the
    /// cell at the index column, whether it is all digits so far.
    seg: Option<Segment>,
    /// First finding: (line where the quoted cell opened, line that looks like a row).
    found: Option<(usize, usize, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QState {
    CellStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted cell: `""` (literal) or the end of the quoting.
    QuoteInQuoted,
    /// After the closing quote, up to the delimiter.
    AfterQuoted,
}

struct Segment {
    line: usize,
    delims: usize,
    index_cell: String,
}

impl<R: std::io::Read> QuoteScan<R> {
    pub(crate) fn new(inner: R, delim: u8) -> Self {
        QuoteScan {
            inner,
            delim,
            line: 1,
            state: QState::CellStart,
            opened_at: 0,
            header: Vec::new(),
            header_done: false,
            ncols: 0,
            index_col: None,
            seg: None,
            found: None,
        }
    }

    fn end_segment(&mut self) {
        if let Some(s) = self.seg.take() {
            let index_ok = match self.index_col {
                Some(_) => {
                    !s.index_cell.is_empty() && s.index_cell.bytes().all(|b| b.is_ascii_digit())
                }
                None => false,
            };
            if self.found.is_none() && self.ncols >= 2 && s.delims + 1 >= self.ncols && index_ok {
                self.found = Some((self.opened_at, s.line, s.index_cell));
            }
        }
    }

    fn byte(&mut self, b: u8) {
        if !self.header_done {
            if b == b'\n' {
                self.header_done = true;
                let h = std::mem::take(&mut self.header);
                let h = h.strip_suffix(b"\r").unwrap_or(&h);
                let cells: Vec<&[u8]> = h.split(|&c| c == self.delim).collect();
                self.ncols = cells.len();
                self.index_col = cells.iter().position(|c| *c == b"index");
            } else {
                self.header.push(b);
            }
        }
        match self.state {
            QState::CellStart | QState::Unquoted | QState::AfterQuoted => {
                if b == b'\n' || b == self.delim {
                    self.state = QState::CellStart;
                } else if self.state == QState::CellStart && b == b'"' {
                    self.state = QState::Quoted;
                    self.opened_at = self.line;
                } else if self.state == QState::CellStart {
                    self.state = QState::Unquoted;
                }
            }
            QState::Quoted => {
                if b == b'"' {
                    self.state = QState::QuoteInQuoted;
                } else {
                    self.in_quoted(b);
                }
            }
            QState::QuoteInQuoted => {
                if b == b'"' {
                    self.state = QState::Quoted;
                    self.in_quoted(b'"');
                } else {
                    self.end_segment();
                    self.state = if b == b'\n' || b == self.delim {
                        QState::CellStart
                    } else {
                        QState::AfterQuoted
                    };
                }
            }
        }
        if b == b'\n' {
            self.line += 1;
        }
    }

    fn in_quoted(&mut self, b: u8) {
        if b == b'\n' {
            self.end_segment();
            self.seg = Some(Segment {
                line: self.line + 1,
                delims: 0,
                index_cell: String::new(),
            });
            return;
        }
        if let Some(s) = self.seg.as_mut() {
            if b == self.delim {
                s.delims += 1;
            } else if Some(s.delims) == self.index_col && s.index_cell.len() < 32 {
                s.index_cell.push(b as char);
            }
        }
    }

    /// The verdict once the parser has read everything.
    pub(crate) fn finish(mut self, path: &Path) -> Result<(), ScoreError> {
        // A closing quote as the file's last byte leaves QuoteInQuoted: closed.
        if self.state == QState::Quoted {
            return Err(ScoreError::input(
                Loc::line(path, self.opened_at),
                "a quoted cell opened here is never closed: it runs to the end of the file and swallows every row after it (an unbalanced quote?)",
            ));
        }
        self.end_segment();
        if let Some((opened, row_line, index)) = self.found {
            return Err(ScoreError::input(
                Loc::line(path, opened),
                format!(
                    "a quoted cell opened here runs over line {row_line}, which looks like a row of its own (index {index}): rows would be lost (an unbalanced quote?)"
                ),
            ));
        }
        Ok(())
    }
}

impl<R: std::io::Read> std::io::Read for QuoteScan<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            // Inside an unquoted cell nothing matters before the next delimiter or newline
            // (long base64 image cells pass here).
            if self.header_done && matches!(self.state, QState::Unquoted | QState::AfterQuoted) {
                let d = self.delim;
                match buf[i..n].iter().position(|&c| c == d || c == b'\n') {
                    Some(k) => i += k,
                    None => break,
                }
            }
            self.byte(buf[i]);
            i += 1;
        }
        Ok(n)
    }
}

fn csv_err(path: &Path, e: csv::Error) -> ScoreError {
    let line = e.position().map(|p| p.line() as usize);
    let loc = match line {
        Some(l) => Loc::line(path, l),
        None => Loc::file(path),
    };
    match e.kind() {
        csv::ErrorKind::Io(_) => ScoreError::input(loc, format!("cannot read: {e}")),
        _ => ScoreError::input(loc, format!("malformed TSV: {e}")),
    }
}

fn require<'a>(
    t: &Table,
    cell: &'a Option<String>,
    name: &str,
    path: &Path,
    line: usize,
) -> Result<&'a str, ScoreError> {
    cell.as_deref().ok_or_else(|| {
        ScoreError::input(
            Loc::line(path, line).with_field(name),
            format!("column missing (the header has: {})", t.header.join(", ")),
        )
    })
}

/// A VLMEvalKit benchmark TSV (`TextVQA_VAL.tsv`, `ChartQA_TEST.tsv`, `OCRBench.tsv`).
/// Ids are the `index` column.
pub fn read_vlmevalkit_tsv(
    task: Task,
    path: &Path,
    opts: &ReadOptions,
) -> Result<Annotations, ScoreError> {
    let extra = match task {
        Task::TextVqa => "question",
        Task::ChartQa => "split",
        Task::OcrBench => "category",
    };
    let mut wanted = vec!["index", "question", "answer", extra];
    if opts.decode_images {
        wanted.push("image");
    }
    let t = read_table(path, &wanted)?;
    let mut items = Vec::with_capacity(t.rows.len());
    let mut warnings = Vec::new();
    let mut image_cells: Vec<Option<String>> = Vec::new();
    for (line, cells) in &t.rows {
        let line = *line;
        let loc = Loc::line(path, line);
        let id = require(&t, &cells[0], "index", path, line)?.to_string();
        let answer = require(&t, &cells[2], "answer", path, line)?;
        if pandas::is_na(answer) {
            if answer.is_empty() {
                return Err(ScoreError::input(
                    loc.with_field("answer"),
                    "annotation has no answer (empty cell)",
                ));
            }
            warnings.push(Warning {
                code: "na-answer",
                loc: Some(loc.clone().with_field("answer")),
                message: format!(
                    "answer '{answer}' is a pandas NA token; VLMEvalKit reads it as 'nan'"
                ),
            });
        }
        let answers = match task {
            Task::TextVqa => textvqa_answers(answer, &loc)?,
            Task::OcrBench => ocrbench_answers(answer, &loc)?,
            Task::ChartQa => vec![answer.to_string()],
        };
        let category = match task {
            Task::TextVqa => None,
            Task::ChartQa => {
                let s = require(&t, &cells[3], "split", path, line)?;
                Some(match s {
                    "test_human" => "human".to_string(),
                    "test_augmented" => "augmented".to_string(),
                    other => {
                        return Err(ScoreError::input(
                            loc.with_field("split"),
                            format!("'{other}' is not test_human or test_augmented"),
                        ))
                    }
                })
            }
            Task::OcrBench => Some(require(&t, &cells[3], "category", path, line)?.to_string()),
        };
        if opts.decode_images {
            image_cells.push(cells[4].clone());
        }
        items.push(Annotation {
            id,
            answers,
            category,
            dataset_name: None,
            question: cells[1].clone(),
            image: None,
            loc,
        });
    }
    if opts.decode_images {
        decode_images(path, &mut items, &image_cells)?;
    }
    Ok(Annotations {
        task,
        format: "vlmevalkit-tsv",
        files: vec![path.into()],
        items,
        warnings,
    })
}

/// Base64 images; a cell of 1..=64 characters names another row's `index` whose image it
/// reuses (VLMEvalKit `image_base.py`).
fn decode_images(
    path: &Path,
    items: &mut [Annotation],
    cells: &[Option<String>],
) -> Result<(), ScoreError> {
    let by_index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut decoded: Vec<Option<Vec<u8>>> = vec![None; items.len()];
    for (i, cell) in cells.iter().enumerate() {
        let loc = || items[i].loc.clone().with_field("image");
        let cell = cell
            .as_deref()
            .ok_or_else(|| ScoreError::input(loc(), "no 'image' column"))?;
        let src = if (1..=64).contains(&cell.len()) {
            let j = *by_index.get(cell).ok_or_else(|| {
                ScoreError::input(
                    loc(),
                    format!("refers to index '{cell}', which is not in the file"),
                )
            })?;
            cells[j].as_deref().unwrap_or_default()
        } else {
            cell
        };
        if src.starts_with('[') {
            return Err(ScoreError::input(
                loc(),
                "multi-image cells are not supported",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(src.trim())
            .map_err(|e| ScoreError::input(loc(), format!("not base64: {e}")))?;
        decoded[i] = Some(bytes);
    }
    for (a, d) in items.iter_mut().zip(decoded) {
        a.image = d;
    }
    let _ = path;
    Ok(())
}

fn str_list(v: Vec<PyValue>, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    v.into_iter()
        .enumerate()
        .map(|(i, x)| match x {
            PyValue::Str(s) => Ok(s),
            other => Err(ScoreError::input(
                loc.clone().with_field("answer"),
                format!("answer {i} is {other:?}, not a string (the toolkit would raise)"),
            )),
        })
        .collect()
}

/// TextVQA: `istype(answer, list)` then `eval`, else the cell is the single answer.
fn textvqa_answers(cell: &str, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    match py::eval_literal(cell) {
        Ok(PyValue::List(v)) if !v.is_empty() => str_list(v, loc),
        Ok(PyValue::List(_)) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            "annotation has no answers (empty list)",
        )),
        Err(LiteralError::Unsupported(why)) if cell.trim_start().starts_with('[') => {
            Err(ScoreError::input(
                loc.clone().with_field("answer"),
                format!("list-like answer this port cannot evaluate ({why})"),
            ))
        }
        _ => Ok(vec![cell.to_string()]),
    }
}

/// OCRBench: VLMEvalKit always `eval`s the cell; it must give a list of strings.
fn ocrbench_answers(cell: &str, loc: &Loc) -> Result<Vec<String>, ScoreError> {
    match py::eval_literal(cell) {
        Ok(PyValue::List(v)) if !v.is_empty() => str_list(v, loc),
        Ok(PyValue::List(_)) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            "annotation has no answers (empty list)",
        )),
        Ok(other) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            format!("expected a list literal, found {other:?}"),
        )),
        Err(e) => Err(ScoreError::input(
            loc.clone().with_field("answer"),
            format!("not a Python list literal ({e:?})"),
        )),
    }
}

/// A VLMEvalKit prediction TSV (`PRED_FORMAT=tsv`): `index` and `prediction` columns.
/// Cells are kept as written; VLMEvalKit labels then see pandas' NA tokens as `nan`.
pub fn read_vlmevalkit_predictions_tsv(path: &Path) -> Result<Predictions, ScoreError> {
    let t = read_table(path, &["index", "prediction"])?;
    let mut items = Vec::with_capacity(t.rows.len());
    for (line, cells) in &t.rows {
        let id = require(&t, &cells[0], "index", path, *line)?.to_string();
        let text = require(&t, &cells[1], "prediction", path, *line)?.to_string();
        items.push(Prediction {
            key: PredKey::Id(id),
            text,
            loc: Loc::line(path, *line),
            witness: None,
        });
    }
    Ok(Predictions {
        format: "vlmevalkit-tsv",
        origin: Origin::VlmevalkitTsv,
        path: path.into(),
        items,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(body: &str) -> Result<Predictions, ScoreError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.tsv");
        std::fs::write(&p, body).unwrap();
        read_vlmevalkit_predictions_tsv(&p)
    }

    #[test]
    fn an_unclosed_quote_is_an_error_naming_its_line() {
        let e = preds("index\tprediction\n1\tcat\n2\t\"dog\n3\tbird\n4\tfish\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.tsv:3") && e.contains("never closed"), "{e}");
    }

    #[test]
    fn a_quoted_cell_swallowing_rows_is_an_error() {
        let e = preds("index\tprediction\n1\t\"cat\n2\tdog\n3\t\"bird\"\n4\tfish\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.tsv:2") && e.contains("line 3") && e.contains("index 2"),
            "{e}"
        );
    }

    #[test]
    fn legitimate_quoting_still_reads() {
        // Multi-line cells, doubled quotes, a quote inside an unquoted cell, a closing
        // quote as the last byte, CRLF: all as pandas reads them.
        let p = preds(
            "index\tprediction\r\n1\t\"two\nlines\"\r\n2\tsay \"hi\"\r\n3\t\"a \"\"q\"\" b\"\r\n4\t\"tab\there\"",
        )
        .unwrap();
        let texts: Vec<&str> = p.items.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(
            texts,
            ["two\nlines", "say \"hi\"", "a \"q\" b", "tab\there"]
        );
    }
}
