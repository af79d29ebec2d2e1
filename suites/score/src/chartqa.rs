//! ChartQA relaxed accuracy (pix2struct `relaxed_correctness`) and the toolkit pipelines
//! around it (spec §2.3–§2.5).

use crate::compat::Compat;
use crate::pandas;
use crate::py::{self, LiteralError, PyValue};

/// pix2struct `relaxed_correctness(target, prediction, max_relative_change=0.05)`.
pub fn relaxed_correctness(target: &str, prediction: &str) -> bool {
    let pf = to_float(prediction);
    let tf = to_float(target);
    match (pf, tf) {
        // `target_float` must be truthy: 0.0 and -0.0 are not, NaN is.
        (Some(p), Some(t)) if t != 0.0 => (p - t).abs() / t.abs() <= 0.05,
        _ => prediction.to_lowercase() == target.to_lowercase(),
    }
}

/// `_to_float`: all trailing `%` removed and the value divided by 100, else Python `float()`.
fn to_float(text: &str) -> Option<f64> {
    if text.ends_with('%') {
        py::float(text.trim_end_matches('%')).map(|v| v / 100.0)
    } else {
        py::float(text)
    }
}

/// How VLMEvalKit turned a label into answers (`istype(answer, list)` then `eval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelExpansion {
    /// Not list-like: one answer, the label itself.
    Single,
    /// Evaluated to a list: its elements, converted with Python `str()`.
    List,
    /// Looks like a list but uses Python this port does not evaluate; kept as one string.
    Unsupported(&'static str),
}

/// VLMEvalKit's answers for one label.
pub fn vlmevalkit_answers(label: &str) -> (Vec<String>, LabelExpansion) {
    match py::eval_literal(label) {
        Ok(PyValue::List(items)) => {
            let strs: Option<Vec<String>> = items.iter().map(PyValue::py_str).collect();
            match strs {
                Some(v) => (v, LabelExpansion::List),
                None => (
                    vec![label.to_string()],
                    LabelExpansion::Unsupported("nested list"),
                ),
            }
        }
        Ok(_) | Err(LiteralError::PythonRaises) => {
            (vec![label.to_string()], LabelExpansion::Single)
        }
        // Only a list display can evaluate to a list with the subset VLMEvalKit labels use;
        // other unsupported text ("Democrat (scores 60 to 100)") is plainly a string.
        Err(LiteralError::Unsupported(why))
            if label.trim_start_matches([' ', '\t']).starts_with('[') =>
        {
            (vec![label.to_string()], LabelExpansion::Unsupported(why))
        }
        Err(LiteralError::Unsupported(_)) => (vec![label.to_string()], LabelExpansion::Single),
    }
}

/// Per-item relaxed accuracy (0 or 1) as `compat` computes it; the expansion note is set for
/// VLMEvalKit labels that are list-like.
pub fn accuracy(
    compat: Compat,
    prediction: &str,
    answers: &[String],
) -> (f64, Option<LabelExpansion>) {
    let hit = |b: bool| if b { 1.0 } else { 0.0 };
    match compat {
        Compat::LmmsEval => {
            let p = py::strip(prediction);
            (hit(answers.iter().any(|a| relaxed_correctness(a, p))), None)
        }
        Compat::Pix2struct => (
            hit(answers.iter().any(|a| relaxed_correctness(a, prediction))),
            None,
        ),
        // Qwen-VL passes the stripped prediction as `target`.
        Compat::QwenVl => {
            let p = py::strip(prediction);
            (hit(answers.iter().any(|a| relaxed_correctness(p, a))), None)
        }
        Compat::Vlmevalkit | Compat::VlmevalkitXlsx | Compat::VlmevalkitPre20250901 => {
            let p = py::strip(prediction);
            let mut note = None;
            let mut any = false;
            for label in answers {
                let (xs, how) = vlmevalkit_answers(label);
                if how != LabelExpansion::Single {
                    note = Some(how);
                }
                any |= xs.iter().any(|x| {
                    if compat == Compat::VlmevalkitPre20250901 {
                        relaxed_correctness(p, x)
                    } else {
                        relaxed_correctness(x, p)
                    }
                });
            }
            (hit(any), note)
        }
        other => unreachable!("{other} is not a ChartQA label; Compat::parse rejects it"),
    }
}

/// The label as VLMEvalKit reads it back from its xlsx (the answer column round-trips too).
pub fn xlsx_label(label: &str) -> String {
    pandas::xlsx_roundtrip(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_from_the_spec() {
        assert!(relaxed_correctness("12", "12.6"));
        assert!(!relaxed_correctness("1", "1.05"));
        assert!(!relaxed_correctness("1", "0.95"));
        assert!(!relaxed_correctness("2", "2.1"));
        assert!(relaxed_correctness("100", "105"));
        assert!(relaxed_correctness("20", "21"));
        assert!(relaxed_correctness("2000", "1900"));
        assert!(!relaxed_correctness("12", "12%"));
        assert!(relaxed_correctness("0.12", "12%%"));
        assert!(!relaxed_correctness("0", "0.0"));
        assert!(relaxed_correctness("0", "0"));
        assert!(!relaxed_correctness("1234", "1,234"));
        assert!(!relaxed_correctness("nan", "nan"));
        assert!(relaxed_correctness("Heart Disease", "heart disease"));
    }

    #[test]
    fn vlmevalkit_list_labels() {
        assert_eq!(vlmevalkit_answers("[2014, 2016]").0, ["2014", "2016"]);
        assert_eq!(vlmevalkit_answers("[Gambia, Niger]").0, ["[Gambia, Niger]"]);
        assert_eq!(vlmevalkit_answers("[1.0, 2]").0, ["1.0", "2"]);
        let s = |x: &str| vec![x.to_string()];
        assert_eq!(
            accuracy(Compat::Vlmevalkit, "2014", &s("[2014, 2016]")).0,
            1.0
        );
        assert_eq!(
            accuracy(Compat::Vlmevalkit, "[2014, 2016]", &s("[2014, 2016]")).0,
            0.0
        );
        assert_eq!(
            accuracy(Compat::LmmsEval, "[2014, 2016]", &s("[2014, 2016]")).0,
            1.0
        );
    }
}
