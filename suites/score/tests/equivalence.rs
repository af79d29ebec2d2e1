//! The allocation-free normalisation and TextVQA scoring must equal, output for output, the
//! straightforward implementation they replaced (kept verbatim under `equivalence/`).

#[path = "equivalence/old_normalize.rs"]
mod old_normalize;
#[path = "equivalence/old_textvqa.rs"]
mod old_textvqa;

use ovbench_score::normalize::{self, CommaRule, Digits, PeriodRule};
use ovbench_score::{textvqa, Compat, Task};
use proptest::prelude::*;

/// Characters that reach every branch: case (ASCII and not), all 21 marks, periods, commas,
/// apostrophes, Python-only and Unicode whitespace, Unicode digits, multi-byte letters.
const CHARS: [char; 48] = [
    'a', 'e', 's', 't', 'n', 'o', 'A', 'S', 'T', 'I', '0', '1', '5', '9', '.', '.', ',', ',', '?',
    '\'', ';', '/', '[', '"', '(', '=', '+', '\\', '_', '-', '>', '@', '`', '!', ' ', ' ', '\n',
    '\t', '\u{1f}', '\u{a0}', '\u{3000}', 'İ', 'Σ', '１', '٣', 'é', 'ß', '\u{85}',
];
const WORDS: [&str; 22] = [
    "the",
    "a",
    "an",
    "two",
    "none",
    "ten",
    "thats",
    "dont",
    "'s",
    "hes",
    "Im",
    "yall'll",
    "somebody'd",
    "1,000",
    "3.",
    "3.5",
    ".5",
    "a.b",
    "x's",
    "Coca-Cola",
    "10:30",
    "y'all'dve",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => prop::sample::select(&CHARS[..]).prop_map(|c| c.to_string()),
        2 => prop::sample::select(&WORDS[..]).prop_map(|w| w.to_string()),
        1 => prop::sample::select(&WORDS[..]).prop_map(|w| format!(" {w} ")),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..14).prop_map(|v| v.concat())
}

fn check_text(s: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        normalize::evalai(s),
        old_normalize::evalai(s),
        "evalai {:?}",
        s
    );
    for (new, old) in [
        (
            PeriodRule::NotBeforeDigit,
            old_normalize::PeriodRule::NotBeforeDigit,
        ),
        (
            PeriodRule::NotBesideDigit,
            old_normalize::PeriodRule::NotBesideDigit,
        ),
    ] {
        prop_assert_eq!(
            normalize::vlmevalkit(s, new),
            old_normalize::vlmevalkit(s, old),
            "vlmevalkit {:?} {:?}",
            new,
            s
        );
        for (nc, oc) in [
            (CommaRule::EvalAi, old_normalize::CommaRule::EvalAi),
            (
                CommaRule::DigitCommaDigit,
                old_normalize::CommaRule::DigitCommaDigit,
            ),
        ] {
            for (nd, od) in [
                (Digits::Unicode, old_normalize::Digits::Unicode),
                (Digits::Ascii, old_normalize::Digits::Ascii),
            ] {
                prop_assert_eq!(
                    normalize::process_punctuation(s, nc, new, nd),
                    old_normalize::process_punctuation(s, oc, old, od),
                    "process_punctuation {:?} {:?} {:?} {:?}",
                    nc,
                    new,
                    nd,
                    s
                );
            }
        }
    }
    prop_assert_eq!(normalize::vqaeval_full(s), old_normalize::vqaeval_full(s));
    prop_assert_eq!(
        normalize::vqaeval_punctuation(s),
        old_normalize::vqaeval_punctuation(s)
    );
    prop_assert_eq!(
        normalize::process_digit_article(s),
        old_normalize::process_digit_article(s)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn normalisers_equal_the_reference(s in text()) {
        check_text(&s)?;
    }

    #[test]
    fn normalisers_equal_the_reference_on_any_string(s in any::<String>()) {
        check_text(&s)?;
    }

    #[test]
    fn textvqa_accuracy_equals_the_reference(
        pred in text(),
        answers in prop::collection::vec(text(), 0..20),
        pick in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        upper in any::<bool>(),
    ) {
        // Make agreement likely: some answers repeat, and the prediction is often one of them.
        let mut answers = answers;
        for (i, ix) in pick.iter().enumerate() {
            if !answers.is_empty() && i < answers.len() {
                let j = ix.index(answers.len());
                answers[i] = answers[j].clone();
            }
        }
        let pred = match (answers.first(), upper) {
            (Some(a), true) => format!(" {}\n", a.to_uppercase()),
            (Some(a), false) if pred.len() % 2 == 0 => a.clone(),
            _ => pred,
        };
        for &compat in Task::TextVqa.compat_labels() {
            let new = textvqa::accuracy(compat, &pred, &answers)
                .map(|(s, w)| (s.to_bits(), format!("{w:?}")))
                .map_err(|e| format!("{e:?}"));
            let old = old_textvqa::accuracy(compat, &pred, &answers)
                .map(|(s, w)| (s.to_bits(), format!("{w:?}")))
                .map_err(|e| format!("{e:?}"));
            match (new, old) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{} {:?} {:?}", compat, pred, answers),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "{} {:?} {:?}: {:?} vs {:?}", compat, pred, answers, a, b),
            }
        }
    }
}

#[test]
fn every_contraction_and_number_word_maps_as_before() {
    for (k, _) in old_normalize::CONTRACTIONS {
        for s in [k.to_string(), format!("the {k} a"), k.to_uppercase()] {
            assert_eq!(normalize::evalai(&s), old_normalize::evalai(&s), "{s:?}");
            assert_eq!(
                normalize::process_digit_article(&s),
                old_normalize::process_digit_article(&s),
                "{s:?}"
            );
        }
    }
    let s = ".".repeat(40) + "x" + &"3.".repeat(40);
    check_text(&s).unwrap();
    let _ = Compat::LmmsEval;
}
