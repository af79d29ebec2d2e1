// TextVQA accuracy as it was before the allocation-free rewrite (commit bda4e25), verbatim.
#![allow(dead_code)]

use super::old_normalize::{self as normalize, PeriodRule};
use ovbench_score::py;
use ovbench_score::Compat;

/// Why an item could not be scored, or how it deviates from the benchmark's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextVqaIssue {
    /// LLaVA asserts exactly 10 answers.
    NotTenAnswers(usize),
    /// No answers: every toolkit raises (or, for numpy, returns NaN).
    NoAnswers,
}

/// Per-item VQA accuracy. `Ok((score, tolerated))`: `tolerated` is set when the item does
/// not have 10 answers but the toolkit scores it anyway (a counted warning).
pub fn accuracy(
    compat: Compat,
    prediction: &str,
    answers: &[String],
) -> Result<(f64, Option<TextVqaIssue>), TextVqaIssue> {
    if answers.is_empty() {
        return Err(TextVqaIssue::NoAnswers);
    }
    let odd = (answers.len() != 10).then_some(TextVqaIssue::NotTenAnswers(answers.len()));
    let score = match compat {
        Compat::Llava => {
            if let Some(issue) = odd {
                return Err(issue);
            }
            let p = normalize::evalai(prediction);
            let g = normalize_all(answers, normalize::evalai);
            py::plain_sum(&leave_one_out(&p, &g)) / g.len() as f64
        }
        Compat::LmmsEval => {
            // lmms-eval strips every generation before process_results (api/task.py).
            let p = normalize::evalai(py::strip(prediction));
            let g = normalize_all(answers, normalize::evalai);
            py::exact_mean(&leave_one_out(&p, &g)).ok_or(TextVqaIssue::NoAnswers)?
        }
        Compat::Vlmevalkit | Compat::VlmevalkitXlsx | Compat::VlmevalkitPre20250513 => {
            let rule = if compat == Compat::VlmevalkitPre20250513 {
                PeriodRule::NotBeforeDigit
            } else {
                PeriodRule::NotBesideDigit
            };
            let p = normalize::vlmevalkit(prediction, rule);
            let g: Vec<String> = answers
                .iter()
                .map(|a| normalize::vlmevalkit(a, rule))
                .collect();
            py::numpy_mean(&leave_one_out(&p, &g))
        }
        Compat::VqaOfficial => {
            let mut p = normalize::newline_tab_strip(prediction);
            let mut g: Vec<String> = answers
                .iter()
                .map(|a| normalize::newline_tab_strip(a))
                .collect();
            // Normalisation runs only when the (stripped) answers are not all identical.
            if !all_same(&g) {
                g = g.iter().map(|a| normalize::vqaeval_full(a)).collect();
                p = normalize::vqaeval_full(&p);
            }
            py::plain_sum(&leave_one_out(&p, &g)) / g.len() as f64
        }
        Compat::VqaOfficialPre2021 => {
            let p = normalize::vqaeval_full(&normalize::newline_tab_strip(prediction));
            let g: Vec<String> = if all_same(answers) {
                answers.to_vec()
            } else {
                answers
                    .iter()
                    .map(|a| normalize::vqaeval_punctuation(a))
                    .collect()
            };
            py::plain_sum(&leave_one_out(&p, &g)) / g.len() as f64
        }
        other => unreachable!("{other} is not a TextVQA label; Compat::parse rejects it"),
    };
    Ok((score, odd))
}

/// Normalises each answer, reusing the result for repeated answers (annotators often agree).
fn normalize_all(answers: &[String], f: impl Fn(&str) -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(answers.len());
    for (i, a) in answers.iter().enumerate() {
        match answers[..i].iter().position(|b| b == a) {
            Some(j) => out.push(out[j].clone()),
            None => out.push(f(a)),
        }
    }
    out
}

fn all_same(xs: &[String]) -> bool {
    xs.iter().all(|x| x == &xs[0])
}

/// `acc_i = min(1, #{j != i : g_j == p} / 3)` for every answer i, in answer order.
fn leave_one_out(p: &str, g: &[String]) -> Vec<f64> {
    let m = g.iter().filter(|a| a.as_str() == p).count();
    g.iter()
        .map(|a| {
            let others = m - usize::from(a.as_str() == p);
            (others as f64 / 3.0).min(1.0)
        })
        .collect()
}
