//! What VLMEvalKit's pandas round trip does to a prediction (spec §1.5, §5).

/// pandas' default NA tokens (pandas >= 2.0, which added `None`).
pub const NA_TOKENS: [&str; 19] = [
    "", "None", "NA", "N/A", "n/a", "NULL", "null", "NaN", "nan", "#N/A", "<NA>", "-NaN", "-nan",
    "1.#IND", "1.#QNAN", "-1.#IND", "-1.#QNAN", "#N/A N/A", "#NA",
];

/// Whether pandas reads this whole cell as NaN.
pub fn is_na(cell: &str) -> bool {
    NA_TOKENS.contains(&cell)
}

/// `str(cell)` after pandas read it: an NA token becomes the text `nan`.
pub fn na_to_nan(cell: &str) -> &str {
    if is_na(cell) {
        "nan"
    } else {
        cell
    }
}

/// The text xlsxwriter stores for `s`: a literal `_xHHHH_` gets its underscore escaped as
/// `_x005F`, then each control character except `\t` and `\n` becomes `_xHHHH_`.
/// openpyxl reads that text back without unescaping it.
pub fn xlsx_stored_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' && is_escape_at(b, i) {
            out.push_str("_x005F");
        }
        let c = s[i..].chars().next().expect("in bounds");
        let cp = c as u32;
        if cp <= 0x08 || (0x0b..=0x1f).contains(&cp) {
            out.push_str(&format!("_x{cp:04X}_"));
        } else {
            out.push(c);
        }
        i += c.len_utf8();
    }
    out
}

fn is_escape_at(b: &[u8], i: usize) -> bool {
    b.len() >= i + 7
        && b[i + 1] == b'x'
        && b[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit())
        && b[i + 6] == b'_'
}

/// The whole xlsx round trip VLMEvalKit applies to a prediction: stored text, then NA.
pub fn xlsx_roundtrip(s: &str) -> String {
    let stored = xlsx_stored_text(s);
    na_to_nan(&stored).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_examples() {
        assert_eq!(xlsx_roundtrip("None"), "nan");
        assert_eq!(xlsx_roundtrip(""), "nan");
        assert_eq!(xlsx_roundtrip("N/A"), "nan");
        assert_eq!(xlsx_roundtrip("none"), "none");
        assert_eq!(xlsx_roundtrip("new\u{1f}york"), "new_x001F_york");
        assert_eq!(xlsx_roundtrip("A\r\nB"), "A_x000D_\nB");
        assert_eq!(xlsx_roundtrip("a\tb"), "a\tb");
        assert_eq!(xlsx_roundtrip("_x001F_"), "_x005F_x001F_");
        assert_eq!(xlsx_roundtrip("_x00G1_"), "_x00G1_");
    }
}
