//! OCRBench containment scoring (spec §3.3–§3.4).

use crate::compat::Compat;
use crate::py;

/// The ten fine-grained question types and the summary category each one counts towards.
pub const TYPES: [(&str, &str); 10] = [
    ("Regular Text Recognition", "Text Recognition"),
    ("Irregular Text Recognition", "Text Recognition"),
    ("Artistic Text Recognition", "Text Recognition"),
    ("Handwriting Recognition", "Text Recognition"),
    ("Digit String Recognition", "Text Recognition"),
    ("Non-Semantic Text Recognition", "Text Recognition"),
    ("Scene Text-centric VQA", "Scene Text-centric VQA"),
    ("Doc-oriented VQA", "Doc-oriented VQA"),
    ("Key Information Extraction", "Key Information Extraction"),
    (
        "Handwritten Mathematical Expression Recognition",
        "Handwritten Mathematical Expression Recognition",
    ),
];

/// The five summary categories, in the order the toolkits print them.
pub const SUMMARY: [&str; 5] = [
    "Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
];

pub const HME_TYPE: &str = "Handwritten Mathematical Expression Recognition";
pub const HME_DATASET: &str = "HME100k";

/// The summary category of a question type, if it is one of the ten.
pub fn summary_of(question_type: &str) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(t, _)| *t == question_type)
        .map(|(_, s)| *s)
}

/// Whether `compat` treats the item as a handwritten-math item. The official script and
/// lmms-eval look at the dataset name, VLMEvalKit at the category; each falls back to the
/// other field when its own is absent from the annotation format (they agree on OCRBench).
pub fn is_hme(compat: Compat, dataset_name: Option<&str>, category: Option<&str>) -> bool {
    let by_name = dataset_name.map(|d| d == HME_DATASET);
    let by_cat = category.map(|c| c == HME_TYPE);
    if compat.is_vlmevalkit() {
        by_cat.or(by_name).unwrap_or(false)
    } else {
        by_name.or(by_cat).unwrap_or(false)
    }
}

/// lmms-eval HEAD `_fold_fullwidth_ascii`: U+FF01..U+FF5E to ASCII, U+3000 to a space.
pub fn fold_fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        })
        .collect()
}

fn hme_norm(s: &str) -> String {
    py::strip(s).replace('\n', " ").replace(' ', "")
}

fn text_norm(s: &str) -> String {
    py::strip(&s.to_lowercase()).replace('\n', " ")
}

/// 1.0 if any answer matches the prediction under `compat`, else 0.0.
pub fn accuracy(compat: Compat, prediction: &str, answers: &[String], hme: bool) -> f64 {
    let pred: String = match compat {
        // lmms-eval strips every generation first; <= v0.7.1 also lower-cased it.
        Compat::LmmsEval | Compat::LmmsEvalV072 => py::strip(prediction).to_string(),
        Compat::LmmsEvalLeV071 => py::strip(&py::strip(prediction).to_lowercase()).to_string(),
        Compat::Official | Compat::Vlmevalkit | Compat::VlmevalkitXlsx => prediction.to_string(),
        other => unreachable!("{other} is not an OCRBench label; Compat::parse rejects it"),
    };
    let hit = if hme {
        let p = hme_norm(&pred);
        answers.iter().any(|a| p.contains(&hme_norm(a)))
    } else if compat == Compat::LmmsEval {
        let p = text_norm(&fold_fullwidth(&pred));
        answers
            .iter()
            .any(|a| p.contains(&text_norm(&fold_fullwidth(a))))
    } else {
        let p = text_norm(&pred);
        answers.iter().any(|a| p.contains(&text_norm(a)))
    };
    if hit {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_rules() {
        let a = |x: &str| vec![x.to_string()];
        assert_eq!(accuracy(Compat::Official, "620", &a("62"), false), 1.0);
        assert_eq!(
            accuracy(Compat::Official, "both\r\nsides", &a("both sides"), false),
            0.0
        );
        assert_eq!(accuracy(Compat::Official, "X+1", &a("x + 1"), true), 0.0);
        assert_eq!(
            accuracy(Compat::LmmsEvalLeV071, "X+1", &a("x + 1"), true),
            1.0
        );
        assert_eq!(
            accuracy(Compat::LmmsEval, "２５９０", &a("2590"), false),
            1.0
        );
        assert_eq!(accuracy(Compat::LmmsEval, "①", &a("1"), false), 0.0);
        assert_eq!(accuracy(Compat::Official, "anything", &a(""), false), 1.0);
    }

    #[test]
    fn type_table_totals() {
        assert_eq!(
            TYPES
                .iter()
                .filter(|(_, s)| *s == "Text Recognition")
                .count(),
            6
        );
        assert_eq!(summary_of("Doc-oriented VQA"), Some("Doc-oriented VQA"));
        assert_eq!(summary_of("Chart"), None);
    }
}
