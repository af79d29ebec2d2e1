//! TextVQA VQA accuracy as each toolkit computes it (spec §1.3–§1.5).

use crate::compat::Compat;
use crate::normalize::{self, PeriodRule, Scratch};
use crate::py;
use std::cell::RefCell;

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
            loo_accuracies(prediction, answers, normalize::evalai_into, |accs| {
                py::plain_sum(accs) / accs.len() as f64
            })
        }
        Compat::LmmsEval => {
            // lmms-eval strips every generation before process_results (api/task.py).
            loo_accuracies(
                py::strip(prediction),
                answers,
                normalize::evalai_into,
                py::exact_mean,
            )
            .ok_or(TextVqaIssue::NoAnswers)?
        }
        Compat::Vlmevalkit | Compat::VlmevalkitXlsx | Compat::VlmevalkitPre20250513 => {
            let rule = if compat == Compat::VlmevalkitPre20250513 {
                PeriodRule::NotBeforeDigit
            } else {
                PeriodRule::NotBesideDigit
            };
            let norm = match rule {
                PeriodRule::NotBeforeDigit => vlmevalkit_before,
                PeriodRule::NotBesideDigit => vlmevalkit_beside,
            };
            loo_accuracies(prediction, answers, norm, py::numpy_mean)
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

type Normaliser = fn(&str, &mut Scratch, &mut String);

fn vlmevalkit_before(s: &str, sc: &mut Scratch, out: &mut String) {
    normalize::vlmevalkit_into(s, PeriodRule::NotBeforeDigit, sc, out)
}

fn vlmevalkit_beside(s: &str, sc: &mut Scratch, out: &mut String) {
    normalize::vlmevalkit_into(s, PeriodRule::NotBesideDigit, sc, out)
}

thread_local! {
    /// Normalisation buffers reused across items: (scratch, prediction, answer).
    static BUFFERS: RefCell<(Scratch, String, String)> = RefCell::default();
}

/// The leave-one-out accuracies `acc_i = min(1, #{j != i : norm(g_j) == norm(p)} / 3)`, in
/// answer order, handed to `reduce`. Each distinct answer is normalised once (annotators
/// often agree) and compared with the normalised prediction; once the reused buffers have
/// grown, nothing is allocated.
fn loo_accuracies<R>(
    prediction: &str,
    answers: &[String],
    norm: Normaliser,
    reduce: impl FnOnce(&[f64]) -> R,
) -> R {
    let mut flags_buf = [false; 16];
    let mut flags_vec = Vec::new();
    let eq: &mut [bool] = if answers.len() <= flags_buf.len() {
        &mut flags_buf[..answers.len()]
    } else {
        flags_vec.resize(answers.len(), false);
        &mut flags_vec
    };
    let mut fill = |sc: &mut Scratch, p: &mut String, g: &mut String| {
        p.clear();
        norm(prediction, sc, p);
        for (i, a) in answers.iter().enumerate() {
            eq[i] = match answers[..i].iter().position(|b| b == a) {
                Some(j) => eq[j],
                None => {
                    g.clear();
                    norm(a, sc, g);
                    g == p
                }
            };
        }
    };
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => {
            let (sc, p, g) = &mut *b;
            fill(sc, p, g)
        }
        Err(_) => fill(
            &mut Scratch::default(),
            &mut String::new(),
            &mut String::new(),
        ),
    });
    let m = eq.iter().filter(|&&e| e).count();
    let acc = |e: bool| ((m - usize::from(e)) as f64 / 3.0).min(1.0);
    let mut acc_buf = [0.0f64; 16];
    if eq.len() <= acc_buf.len() {
        for (a, &e) in acc_buf.iter_mut().zip(eq.iter()) {
            *a = acc(e);
        }
        reduce(&acc_buf[..eq.len()])
    } else {
        let v: Vec<f64> = eq.iter().map(|&e| acc(e)).collect();
        reduce(&v)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ans(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn closed_form_values() {
        let mut g = ans(&["dog"; 10]);
        let mut want = [0.0, 0.3, 0.6, 0.9, 1.0, 1.0];
        for (m, w) in want.iter_mut().enumerate() {
            for a in g.iter_mut().take(m) {
                *a = "cat".into();
            }
            let (s, _) = accuracy(Compat::LmmsEval, "cat", &g).unwrap();
            assert_eq!(s, *w, "m={m}");
        }
    }

    #[test]
    fn llava_requires_ten_answers_others_tolerate() {
        let g = ans(&["cat"; 9]);
        assert_eq!(
            accuracy(Compat::Llava, "cat", &g),
            Err(TextVqaIssue::NotTenAnswers(9))
        );
        let (s, w) = accuracy(Compat::LmmsEval, "cat", &g).unwrap();
        assert_eq!((s, w), (1.0, Some(TextVqaIssue::NotTenAnswers(9))));
        assert_eq!(
            accuracy(Compat::Vlmevalkit, "cat", &[]),
            Err(TextVqaIssue::NoAnswers)
        );
    }
}
