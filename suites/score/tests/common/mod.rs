//! Fixture writers shared by the integration tests: every supported format, made here.
// Fixture code favours one literal per file part over clippy's shortest spelling.
#![allow(clippy::useless_format)]
#![allow(dead_code)]

use ovbench_score::pandas;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// A parquet column to write (optional scalars, or an optional list of optional strings).
pub enum Col {
    I32(Vec<i32>),
    Str(Vec<String>),
    StrList(Vec<Vec<String>>),
    /// An HF `Image` struct column (bytes + path), to prove readers skip it.
    Image(Vec<Vec<u8>>),
}

pub fn write_parquet(path: &Path, schema: &str, cols: Vec<Col>) {
    let schema = Arc::new(parse_message_type(schema).unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut w = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut leaves = Vec::new();
    for c in cols {
        match c {
            Col::Image(v) => {
                leaves.push(Col::Str(
                    v.iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect(),
                ));
                leaves.push(Col::Str(v.iter().map(|_| "img.png".to_string()).collect()));
            }
            other => leaves.push(other),
        }
    }
    for c in leaves {
        let mut col = rg.next_column().unwrap().expect("schema has this column");
        match c {
            Col::I32(v) => {
                let defs = vec![1i16; v.len()];
                col.typed::<Int32Type>()
                    .write_batch(&v, Some(&defs), None)
                    .unwrap();
            }
            Col::Str(v) => {
                let vals: Vec<ByteArray> = v.iter().map(|s| ByteArray::from(s.as_str())).collect();
                let defs = vec![1i16; v.len()];
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .unwrap();
            }
            Col::StrList(rows) => {
                let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    for (i, s) in r.iter().enumerate() {
                        vals.push(ByteArray::from(s.as_str()));
                        defs.push(3i16);
                        reps.push(if i == 0 { 0i16 } else { 1 });
                    }
                }
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), Some(&reps))
                    .unwrap();
            }
            Col::Image(_) => unreachable!(),
        }
        col.close().unwrap();
    }
    rg.close().unwrap();
    w.close().unwrap();
}

/// Python `repr()` of a list of strings (what VLMEvalKit TSVs hold in `answer`).
pub fn py_list_repr(xs: &[String]) -> String {
    let items: Vec<String> = xs
        .iter()
        .map(|s| {
            let q = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::new();
            out.push(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c)
                    }
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push(q);
            out
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// A TSV cell as pandas `to_csv` quotes it.
pub fn tsv_cell(s: &str) -> String {
    if s.contains(['\t', '\n', '\r', '"']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub fn write_tsv(path: &Path, header: &[&str], rows: &[Vec<String>]) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "{}", header.join("\t")).unwrap();
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| tsv_cell(c)).collect();
        writeln!(f, "{}", cells.join("\t")).unwrap();
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A one-sheet .xlsx as pandas + xlsxwriter write it: numeric `index`, strings in the shared
/// string table with xlsxwriter's `_xHHHH_` escapes, empty strings as absent cells.
pub fn write_xlsx(path: &Path, header: &[&str], rows: &[(i64, Vec<String>)]) {
    let mut strings: Vec<String> = Vec::new();
    let sid = |s: &str, strings: &mut Vec<String>| {
        strings.push(s.to_string());
        strings.len() - 1
    };
    let col = |i: usize| ((b'A' + i as u8) as char).to_string();
    let mut sheet = String::from("<sheetData>");
    sheet.push_str("<row r=\"1\">");
    for (i, h) in header.iter().enumerate() {
        let k = sid(h, &mut strings);
        sheet.push_str(&format!("<c r=\"{}1\" t=\"s\"><v>{k}</v></c>", col(i)));
    }
    sheet.push_str("</row>");
    for (r, (index, cells)) in rows.iter().enumerate() {
        let rn = r + 2;
        sheet.push_str(&format!(
            "<row r=\"{rn}\"><c r=\"A{rn}\"><v>{index}</v></c>"
        ));
        for (i, c) in cells.iter().enumerate() {
            if c.is_empty() {
                continue;
            }
            let k = sid(c, &mut strings);
            sheet.push_str(&format!(
                "<c r=\"{}{rn}\" t=\"s\"><v>{k}</v></c>",
                col(i + 1)
            ));
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData>");
    let ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let sst: String = strings
        .iter()
        .map(|s| {
            format!(
                "<si><t xml:space=\"preserve\">{}</t></si>",
                xml_escape(&pandas::xlsx_stored_text(s))
            )
        })
        .collect();
    let files: Vec<(&str, String)> = vec![
        ("[Content_Types].xml", format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/><Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/><Override PartName=\"/xl/worksheets/sheet1.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/><Override PartName=\"/xl/sharedStrings.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml\"/></Types>")),
        ("_rels/.rels", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"{rel}/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>")),
        ("xl/workbook.xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><workbook xmlns=\"{ns}\" xmlns:r=\"{rel}\"><sheets><sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>")),
        ("xl/_rels/workbook.xml.rels", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"{rel}/worksheet\" Target=\"worksheets/sheet1.xml\"/><Relationship Id=\"rId2\" Type=\"{rel}/sharedStrings\" Target=\"sharedStrings.xml\"/></Relationships>")),
        ("xl/sharedStrings.xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sst xmlns=\"{ns}\" count=\"{n}\" uniqueCount=\"{n}\">{sst}</sst>", n = strings.len())),
        ("xl/worksheets/sheet1.xml", format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><worksheet xmlns=\"{ns}\">{sheet}</worksheet>")),
    ];
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in files {
        z.start_file(name, opts).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}
