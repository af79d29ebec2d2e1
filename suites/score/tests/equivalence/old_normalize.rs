// The normalisation code as it was before the allocation-free rewrite (commit bda4e25),
// kept verbatim as the reference the fast paths are checked against.
#![allow(dead_code)]

use ovbench_score::py;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The 21 punctuation characters, in the order every toolkit visits them.
pub const PUNCTUATION: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// The 120-entry contraction table (spec §1.3), identical in every toolkit.
pub const CONTRACTIONS: [(&str, &str); 120] = [
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn contractions() -> &'static HashMap<&'static str, &'static str> {
    static MAP: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    MAP.get_or_init(|| CONTRACTIONS.iter().copied().collect())
}

fn number_map(w: &str) -> Option<&'static str> {
    Some(match w {
        "none" | "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        _ => return None,
    })
}

/// Which characters the toolkit's regex `\d` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digits {
    /// Python 3 `re` on `str`: Unicode `Nd`.
    Unicode,
    /// Python 2 `re` without `re.UNICODE` in the flags (the vqaEval.py scripts): ASCII only.
    Ascii,
}

impl Digits {
    fn is(self, c: char) -> bool {
        match self {
            Digits::Unicode => py::is_nd(c),
            Digits::Ascii => c.is_ascii_digit(),
        }
    }
}

/// The period regex in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodRule {
    /// `(?!<=\d)(\.)(?!\d)`: the look-behind is really a look-ahead, so every period not
    /// followed by a digit goes.
    NotBeforeDigit,
    /// VLMEvalKit since 928a95b0: `(?<!\d)\.(?!\d)`, so a period after a digit stays.
    NotBesideDigit,
}

/// The comma regex that, when it matches anywhere, deletes every punctuation character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommaRule {
    /// EvalAI's `(?<=\d)(\,)+(?=\d)`; commas are deleted before this step, so it never fires.
    EvalAi,
    /// VLMEvalKit / vqaEval `(\d)(,)(\d)`.
    DigitCommaDigit,
}

/// Python `re.sub(..., count=re.UNICODE)` removes at most 32 periods.
const PERIOD_SUB_COUNT: usize = 32;

/// The punctuation pass (step 4 of spec §1.3, and its VLMEvalKit / vqaEval variants).
pub fn process_punctuation(
    in_text: &str,
    comma: CommaRule,
    period: PeriodRule,
    digits: Digits,
) -> String {
    // Fast path: no punctuation mark at all (the common case for short answers).
    if !in_text
        .bytes()
        .any(|b| b.is_ascii() && punct_index(b as char).is_some())
    {
        return strip_periods(in_text, period, digits);
    }
    let cs: Vec<char> = in_text.chars().collect();
    let comma_fires = match comma {
        // `(?<=\d)(\,)+(?=\d)`: a digit, one or more commas, a digit.
        CommaRule::EvalAi => cs.iter().enumerate().any(|(i, &c)| {
            c == ','
                && i > 0
                && digits.is(cs[i - 1])
                && cs[i..]
                    .iter()
                    .find(|&&n| n != ',')
                    .is_some_and(|&n| digits.is(n))
        }),
        CommaRule::DigitCommaDigit => cs
            .windows(3)
            .any(|w| digits.is(w[0]) && w[1] == ',' && digits.is(w[2])),
    };
    // One pass finds, for each punctuation mark, whether it occurs next to a space anywhere in
    // the input; a second pass applies all 21 replacements at once. This equals the toolkits'
    // 21 sequential `str.replace` calls because a replacement never creates a mark.
    let mut touches = [false; PUNCTUATION.len()];
    let mut any = false;
    let mut prev: Option<char> = None;
    for &c in &cs {
        if let Some(i) = punct_index(c) {
            any = true;
            if prev == Some(' ') {
                touches[i] = true;
            }
        }
        if c == ' ' {
            if let Some(i) = prev.and_then(punct_index) {
                touches[i] = true;
            }
        }
        prev = Some(c);
    }
    let out = if any {
        let mut out = String::with_capacity(in_text.len());
        for &c in &cs {
            match punct_index(c) {
                Some(i) if touches[i] || comma_fires => {}
                Some(_) => out.push(' '),
                None => out.push(c),
            }
        }
        out
    } else {
        in_text.to_string()
    };
    strip_periods(&out, period, digits)
}

fn punct_index(c: char) -> Option<usize> {
    if c.is_ascii() {
        PUNCTUATION.iter().position(|&p| p == c)
    } else {
        None
    }
}

/// Python `str.lower()`; ASCII text takes a cheaper path with the same result.
pub fn lower(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

fn strip_periods(s: &str, rule: PeriodRule, digits: Digits) -> String {
    if !s.contains('.') {
        return s.to_string();
    }
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut removed = 0;
    for (i, &c) in cs.iter().enumerate() {
        if c == '.' && removed < PERIOD_SUB_COUNT {
            let next_digit = cs.get(i + 1).is_some_and(|&n| digits.is(n));
            let prev_digit = i > 0 && digits.is(cs[i - 1]);
            let matches = match rule {
                PeriodRule::NotBeforeDigit => !next_digit,
                PeriodRule::NotBesideDigit => !next_digit && !prev_digit,
            };
            if matches {
                removed += 1;
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The digit/article pass (step 5 of spec §1.3): lower-case, split, number map, drop
/// articles, contractions, join.
pub fn process_digit_article(in_text: &str) -> String {
    let lowered = lower(in_text);
    let mut words: Vec<&str> = Vec::new();
    for w in py::split(&lowered) {
        let w = number_map(w).unwrap_or(w);
        if !matches!(w, "a" | "an" | "the") {
            words.push(w);
        }
    }
    let table = contractions();
    let words: Vec<&str> = words
        .into_iter()
        .map(|w| table.get(w).copied().unwrap_or(w))
        .collect();
    words.join(" ")
}

/// `EvalAIAnswerProcessor.__call__` (LLaVA `m4c_evaluator.py`, lmms-eval `vqa_eval_metric.py`).
pub fn evalai(s: &str) -> String {
    let mut t = lower(s);
    t.retain(|c| c != ',' && c != '?');
    if t.contains("'s") {
        t = t.replace("'s", " 's");
    }
    let t = py::strip(&t);
    let t = if t.contains(['\n', '\t']) {
        py::strip(&t.replace(['\n', '\t'], " ")).to_string()
    } else {
        t.to_string()
    };
    let t = process_punctuation(
        &t,
        CommaRule::EvalAi,
        PeriodRule::NotBeforeDigit,
        Digits::Unicode,
    );
    process_digit_article(&t)
}

/// Replace `\n` and `\t` by spaces and strip (the first step of VLMEvalKit and vqaEval).
pub fn newline_tab_strip(s: &str) -> String {
    py::strip(&s.replace(['\n', '\t'], " ")).to_string()
}

/// VLMEvalKit `process_answer` with the period rule of the chosen revision.
pub fn vlmevalkit(s: &str, period: PeriodRule) -> String {
    let t = newline_tab_strip(s);
    let t = process_punctuation(&t, CommaRule::DigitCommaDigit, period, Digits::Unicode);
    process_digit_article(&t)
}

/// vqaEval.py `processPunctuation` followed by `processDigitArticle` (Python 2: ASCII `\d`).
pub fn vqaeval_full(s: &str) -> String {
    let t = process_punctuation(
        s,
        CommaRule::DigitCommaDigit,
        PeriodRule::NotBeforeDigit,
        Digits::Ascii,
    );
    process_digit_article(&t)
}

/// vqaEval.py `processPunctuation` alone.
pub fn vqaeval_punctuation(s: &str) -> String {
    process_punctuation(
        s,
        CommaRule::DigitCommaDigit,
        PeriodRule::NotBeforeDigit,
        Digits::Ascii,
    )
}
