//! Progress of long work, one interface for every suite: the training steps of `step` and
//! `repro`, the questions of `eval`. Suites report; the binary decides how to show it (a bar
//! on a terminal, lines or dots otherwise, nothing with `--quiet`), so no suite knows about
//! terminals.

/// What a suite reports while it works. Every method has a default that ignores the report.
pub trait Progress {
    /// A phase of `total` units starts: a recipe's steps, a stage's alternated steps, a task's
    /// questions.
    fn begin(&mut self, _label: &str, _total: u64) {}
    /// One more unit of the phase is done; `note` says what it was (`"warm-up 2.31 s, loss
    /// 10.3712"`), for reporters that print lines.
    fn advance(&mut self, _note: &str) {}
    /// The phase is over (also after an error stopped it).
    fn end(&mut self) {}
}

/// Reports nothing: tests, library callers, `--quiet`.
pub struct Silent;

impl Progress for Silent {}

/// The note of one training step: `"warm-up 2.31 s, loss 10.3712"` or `"1.02 s, loss 9.8"`.
pub fn step_note(warmup: bool, seconds: f64, loss: f64) -> String {
    format!(
        "{}{}, loss {loss:.4}",
        if warmup { "warm-up " } else { "" },
        crate::table::seconds(seconds)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);
    impl Progress for Log {
        fn begin(&mut self, label: &str, total: u64) {
            self.0.push(format!("begin {label} {total}"));
        }
        fn advance(&mut self, note: &str) {
            self.0.push(note.to_string());
        }
        fn end(&mut self) {
            self.0.push("end".into());
        }
    }

    #[test]
    fn a_reporter_sees_phases_and_notes() {
        let mut log = Log::default();
        let p: &mut dyn Progress = &mut log;
        p.begin("OpenVision", 2);
        p.advance(&step_note(true, 2.0, 10.5));
        p.advance(&step_note(false, 1.0, 9.25));
        p.end();
        assert_eq!(log.0[0], "begin OpenVision 2");
        assert!(log.0[1].starts_with("warm-up ") && log.0[1].ends_with("loss 10.5000"));
        assert!(!log.0[2].starts_with("warm-up") && log.0[2].ends_with("loss 9.2500"));
        assert_eq!(log.0[3], "end");
        Silent.advance("ignored");
    }
}
