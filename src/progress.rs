//! How the binary shows the suites' progress (ovbench_harness::progress): a bar on a
//! terminal, one line per unit or dots otherwise, nothing with `--quiet`. Everything goes to
//! stderr, so stdout carries only results.

use ovbench_harness::progress::Progress;
use std::io::IsTerminal;

/// One line per phase and per unit (`ovbench step`): long runs show they are alive, and the
/// lines read well in a log.
pub struct Lines {
    pub quiet: bool,
    done: u64,
    total: u64,
}

impl Lines {
    pub fn new(quiet: bool) -> Lines {
        Lines {
            quiet,
            done: 0,
            total: 0,
        }
    }
}

impl Progress for Lines {
    fn begin(&mut self, label: &str, total: u64) {
        (self.done, self.total) = (0, total);
        if !self.quiet {
            eprintln!("{label}:");
        }
    }
    fn advance(&mut self, note: &str) {
        self.done += 1;
        if !self.quiet {
            eprintln!("  {}/{}: {note}", self.done, self.total);
        }
    }
}

/// The phase's label, then a dot per unit (`ovbench repro`, whose phases are many).
pub struct Dots {
    pub quiet: bool,
}

impl Progress for Dots {
    fn begin(&mut self, label: &str, total: u64) {
        if !self.quiet {
            eprint!("{label} ({total}) ");
        }
    }
    fn advance(&mut self, _note: &str) {
        if !self.quiet {
            eprint!(".");
        }
    }
    fn end(&mut self) {
        if !self.quiet {
            eprintln!();
        }
    }
}

/// A bar with rate and ETA when stderr is a terminal, else nothing (`ovbench eval`).
pub struct Bar {
    bar: indicatif::ProgressBar,
    unit: &'static str,
    quiet: bool,
}

impl Bar {
    pub fn new(unit: &'static str, quiet: bool) -> Bar {
        Bar {
            bar: indicatif::ProgressBar::hidden(),
            unit,
            quiet: quiet || !std::io::stderr().is_terminal(),
        }
    }
}

impl Progress for Bar {
    fn begin(&mut self, label: &str, total: u64) {
        if self.quiet {
            return;
        }
        self.bar = indicatif::ProgressBar::with_draw_target(
            Some(total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let template = format!(
            "{label} {{bar:30}} {{pos}}/{{len}} {}  {{per_sec}}  ETA {{eta}}  ({{elapsed}})",
            self.unit
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
            self.bar.set_style(style);
        }
    }
    fn advance(&mut self, _note: &str) {
        self.bar.inc(1);
    }
    fn end(&mut self) {
        self.bar.finish_and_clear();
    }
}
