//! VQA answer normalisation: the EvalAI processor (LLaVA, lmms-eval), VLMEvalKit's
//! `process_answer`, and the two GT-Vision-Lab `vqaEval.py` revisions (spec §1.3, §1.5).

use crate::py;
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

/// The contraction table sorted by key (for a binary search, no hashing per word), and for
/// each key length the set of first bytes that keys of that length start with.
struct ContractionTable {
    sorted: Vec<(&'static str, &'static str)>,
    /// `first[len]` bit `b` (of 128) is set when some key of `len` bytes starts with byte `b`.
    first: Vec<u128>,
}

fn contraction_table() -> &'static ContractionTable {
    static TABLE: OnceLock<ContractionTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut sorted = CONTRACTIONS.to_vec();
        sorted.sort_unstable_by_key(|&(k, _)| k);
        let max = sorted.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut first = vec![0u128; max + 1];
        for (k, _) in &sorted {
            // Every key is ASCII.
            first[k.len()] |= 1u128 << (k.as_bytes()[0] & 0x7f);
        }
        ContractionTable { sorted, first }
    })
}

/// The contraction table's value for `w`, if `w` is one of its keys.
fn contraction(w: &str) -> Option<&'static str> {
    let t = contraction_table();
    // Most words are not keys; their length and first byte rule them out at once.
    match (t.first.get(w.len()), w.as_bytes().first()) {
        (Some(set), Some(&b)) if b < 128 && set & (1u128 << b) != 0 => {}
        _ => return None,
    }
    t.sorted
        .binary_search_by(|&(k, _)| k.cmp(w))
        .ok()
        .map(|i| t.sorted[i].1)
}

fn number_map(w: &str) -> Option<&'static str> {
    // Byte-string patterns compile to inline length and byte compares.
    Some(match w.as_bytes() {
        b"none" | b"zero" => "0",
        b"one" => "1",
        b"two" => "2",
        b"three" => "3",
        b"four" => "4",
        b"five" => "5",
        b"six" => "6",
        b"seven" => "7",
        b"eight" => "8",
        b"nine" => "9",
        b"ten" => "10",
        _ => return None,
    })
}

fn is_article(w: &str) -> bool {
    matches!(w.as_bytes(), b"a" | b"an" | b"the")
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
    #[inline]
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

/// For each ASCII byte: 1 + its index in [`PUNCTUATION`], or 0 if it is not a mark.
const PUNCT_LUT: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < PUNCTUATION.len() {
        t[PUNCTUATION[i] as usize] = (i + 1) as u8;
        i += 1;
    }
    t
};

#[inline]
fn punct_index(c: char) -> Option<usize> {
    let cp = c as u32;
    if cp < 128 {
        match PUNCT_LUT[cp as usize] {
            0 => None,
            i => Some(i as usize - 1),
        }
    } else {
        None
    }
}

/// Whether any of the 21 marks occurs (they are all ASCII, so a byte scan is exact).
#[inline]
fn has_punctuation(s: &str) -> bool {
    s.bytes().any(|b| b < 128 && PUNCT_LUT[b as usize] != 0)
}

/// Reusable buffers, so that normalising many strings allocates only while they grow.
#[derive(Debug, Default)]
pub struct Scratch {
    a: String,
    b: String,
    c: String,
    d: String,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are already in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// The punctuation pass (step 4 of spec §1.3, and its VLMEvalKit / vqaEval variants).
pub fn process_punctuation(
    in_text: &str,
    comma: CommaRule,
    period: PeriodRule,
    digits: Digits,
) -> String {
    let mut s = Scratch::default();
    punctuation_then_periods(in_text, comma, period, digits, &mut s.b, &mut s.c).to_string()
}

/// The punctuation pass writing into the caller's buffers; returns the text it leaves (which
/// is `in_text` itself, `marks_out` or `periods_out`).
fn punctuation_then_periods<'a>(
    in_text: &'a str,
    comma: CommaRule,
    period: PeriodRule,
    digits: Digits,
    marks_out: &'a mut String,
    periods_out: &'a mut String,
) -> &'a str {
    let t: &str = if has_punctuation(in_text) {
        marks_out.clear();
        replace_marks(in_text, comma, digits, marks_out);
        marks_out
    } else {
        in_text
    };
    if t.contains('.') {
        periods_out.clear();
        if strip_periods_into(t, period, digits, periods_out) {
            return periods_out;
        }
    }
    t
}

/// The comma rule and the 21 mark replacements of the punctuation pass, into `out`.
fn replace_marks(in_text: &str, comma: CommaRule, digits: Digits, out: &mut String) {
    let comma_fires = match comma {
        // `(?<=\d)(\,)+(?=\d)`: a digit, one or more commas, a digit.
        CommaRule::EvalAi => {
            let mut prev: Option<char> = None;
            in_text.char_indices().any(|(i, c)| {
                let hit = c == ','
                    && prev.is_some_and(|p| digits.is(p))
                    && in_text[i..]
                        .chars()
                        .find(|&n| n != ',')
                        .is_some_and(|n| digits.is(n));
                prev = Some(c);
                hit
            })
        }
        CommaRule::DigitCommaDigit => {
            let (mut a, mut b): (Option<char>, Option<char>) = (None, None);
            in_text.chars().any(|c| {
                let hit = b == Some(',') && a.is_some_and(|x| digits.is(x)) && digits.is(c);
                a = b;
                b = Some(c);
                hit
            })
        }
    };
    // One pass finds, for each punctuation mark, whether it occurs next to a space anywhere in
    // the input; a second pass applies all 21 replacements at once. This equals the toolkits'
    // 21 sequential `str.replace` calls because a replacement never creates a mark.
    let mut touches = [false; PUNCTUATION.len()];
    let mut prev: Option<char> = None;
    for c in in_text.chars() {
        if let Some(i) = punct_index(c) {
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
    out.reserve(in_text.len());
    for c in in_text.chars() {
        match punct_index(c) {
            Some(i) if touches[i] || comma_fires => {}
            Some(_) => out.push(' '),
            None => out.push(c),
        }
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

/// The period regex applied to `s`, into `out`; false (and `out` unspecified) when no period
/// is removed.
fn strip_periods_into(s: &str, rule: PeriodRule, digits: Digits, out: &mut String) -> bool {
    out.reserve(s.len());
    let mut removed = 0;
    let mut prev: Option<char> = None;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '.' && removed < PERIOD_SUB_COUNT {
            let next_digit = it.peek().is_some_and(|&n| digits.is(n));
            let prev_digit = prev.is_some_and(|p| digits.is(p));
            let matches = match rule {
                PeriodRule::NotBeforeDigit => !next_digit,
                PeriodRule::NotBesideDigit => !next_digit && !prev_digit,
            };
            if matches {
                removed += 1;
                prev = Some(c);
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
    }
    removed > 0
}

/// The digit/article pass (step 5 of spec §1.3): lower-case, split, number map, drop
/// articles, contractions, join.
pub fn process_digit_article(in_text: &str) -> String {
    let mut out = String::with_capacity(in_text.len());
    digit_article_into(in_text, &mut out);
    out
}

/// [`process_digit_article`], appended to `out`.
fn digit_article_into(in_text: &str, out: &mut String) {
    let lowered: std::borrow::Cow<str> = if in_text.is_ascii() {
        if in_text.bytes().any(|b| b.is_ascii_uppercase()) {
            in_text.to_ascii_lowercase().into()
        } else {
            in_text.into()
        }
    } else {
        in_text.to_lowercase().into()
    };
    // Number map, articles and contractions are one word at a time, so one pass does all
    // three in the toolkits' order and joins with single spaces.
    let mut first = true;
    let mut push = |w: &str| {
        let w = number_map(w).unwrap_or(w);
        if is_article(w) {
            return;
        }
        let w = contraction(w).unwrap_or(w);
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(w);
    };
    if lowered.is_ascii() {
        // Python's whitespace among ASCII: \t \n \x0b \x0c \r, \x1c..\x1f and the space.
        let mut start = None;
        for (i, &b) in lowered.as_bytes().iter().enumerate() {
            match (py::is_ascii_py_space(b), start) {
                (true, Some(s)) => {
                    push(&lowered[s..i]);
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            push(&lowered[s..]);
        }
    } else {
        for w in py::split(&lowered) {
            push(w);
        }
    }
}

/// `EvalAIAnswerProcessor.__call__` (LLaVA `m4c_evaluator.py`, lmms-eval `vqa_eval_metric.py`).
pub fn evalai(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    with_scratch(|sc| evalai_into(s, sc, &mut out));
    out
}

/// [`evalai`], appended to `out`, using `scratch` for the intermediate steps.
pub fn evalai_into(s: &str, scratch: &mut Scratch, out: &mut String) {
    let Scratch { a, b, c, d } = scratch;
    // Lower-case, then delete ',' and '?' (lower-casing never makes or removes either).
    a.clear();
    if s.is_ascii() {
        a.extend(
            s.bytes()
                .filter(|&x| x != b',' && x != b'?')
                .map(|x| x.to_ascii_lowercase() as char),
        );
    } else {
        a.push_str(&s.to_lowercase());
        a.retain(|c| c != ',' && c != '?');
    }
    if a.as_bytes().contains(&b'\'') && a.contains("'s") {
        b.clear();
        let mut last = 0;
        for (i, _) in a.match_indices("'s") {
            b.push_str(&a[last..i]);
            b.push_str(" 's");
            last = i + 2;
        }
        b.push_str(&a[last..]);
        std::mem::swap(a, b);
    }
    let mut t: &str = py::strip(a);
    if t.contains(['\n', '\t']) {
        b.clear();
        b.extend(
            t.chars()
                .map(|c| if c == '\n' || c == '\t' { ' ' } else { c }),
        );
        t = py::strip(b);
    }
    let t = punctuation_then_periods(
        t,
        CommaRule::EvalAi,
        PeriodRule::NotBeforeDigit,
        Digits::Unicode,
        c,
        d,
    );
    digit_article_into(t, out);
}

/// Replace `\n` and `\t` by spaces and strip (the first step of VLMEvalKit and vqaEval).
pub fn newline_tab_strip(s: &str) -> String {
    py::strip(&s.replace(['\n', '\t'], " ")).to_string()
}

/// VLMEvalKit `process_answer` with the period rule of the chosen revision.
pub fn vlmevalkit(s: &str, period: PeriodRule) -> String {
    let mut out = String::with_capacity(s.len());
    with_scratch(|sc| vlmevalkit_into(s, period, sc, &mut out));
    out
}

/// [`vlmevalkit`], appended to `out`, using `scratch` for the intermediate steps.
pub fn vlmevalkit_into(s: &str, period: PeriodRule, scratch: &mut Scratch, out: &mut String) {
    let Scratch { a, b, c, .. } = scratch;
    let t: &str = if s.contains(['\n', '\t']) {
        a.clear();
        a.extend(
            s.chars()
                .map(|c| if c == '\n' || c == '\t' { ' ' } else { c }),
        );
        py::strip(a)
    } else {
        py::strip(s)
    };
    let t = punctuation_then_periods(t, CommaRule::DigitCommaDigit, period, Digits::Unicode, b, c);
    digit_article_into(t, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evalai_examples_from_the_spec() {
        assert_eq!(evalai("mcdonald's"), "mcdonald 's");
        assert_eq!(evalai("3."), "3");
        assert_eq!(evalai("The New York Times"), "new york times");
        assert_eq!(evalai("hello,world"), "helloworld");
        assert_eq!(evalai("1,000-2,000"), "1000 2000");
        assert_eq!(evalai("dont"), "don't");
        assert_eq!(evalai("that's"), "that 's");
        assert_eq!(evalai("thats"), "that's");
        assert_eq!(evalai("somebody'd"), "somebodyd");
        assert_eq!(evalai("new\u{1f}york"), "new york");
        assert_eq!(evalai("eleven"), "eleven");
        assert_eq!(evalai("a - b"), "b");
    }

    #[test]
    fn contraction_lookup_finds_every_key_and_nothing_else() {
        for (k, v) in CONTRACTIONS {
            assert_eq!(contraction(k), Some(v), "{k}");
        }
        for w in [
            "", "a", "x", "don", "dont's", "thatss", "é", "youve've", "Im'", "im",
        ] {
            assert_eq!(contraction(w), None, "{w}");
        }
    }

    #[test]
    fn period_count_is_capped_at_32() {
        let s = ".".repeat(40) + "x";
        assert_eq!(evalai(&s), format!("{}x", ".".repeat(8)));
    }

    #[test]
    fn vlmevalkit_differs_where_documented() {
        assert_eq!(
            vlmevalkit("hello,world", PeriodRule::NotBesideDigit),
            "hello world"
        );
        assert_eq!(vlmevalkit("a,b", PeriodRule::NotBesideDigit), "b");
        assert_eq!(
            vlmevalkit("1,000-2,000", PeriodRule::NotBesideDigit),
            "10002000"
        );
        assert_eq!(vlmevalkit("3.", PeriodRule::NotBesideDigit), "3.");
        assert_eq!(vlmevalkit("3.", PeriodRule::NotBeforeDigit), "3");
        assert_eq!(vlmevalkit("thats", PeriodRule::NotBesideDigit), "that's");
    }

    #[test]
    fn unicode_digits_count_for_python3_regexes_only() {
        // Arabic-Indic digits around a comma fire VLMEvalKit's comma rule, not vqaEval's.
        assert_eq!(vlmevalkit("٣,٤-x", PeriodRule::NotBesideDigit), "٣٤x");
        assert_eq!(vqaeval_full("٣,٤-x"), "٣ ٤ x");
    }
}
