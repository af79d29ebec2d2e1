//! Third-party readers (parquet, tokenizers, ...) assert on corrupt files instead of
//! returning errors. Their calls run under [`catch_quietly`], which turns such a panic into
//! an error message the caller places (with the file's name), without the panic hook's report
//! and backtrace on stderr.

use std::cell::RefCell;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`; a panic inside it becomes `Err` with the panic's message. The panic hook is
/// process-wide, so it is swapped for one that records the message on the panicking thread
/// only; readers run on one thread while no other thread works.
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        // One line, of bounded length: it ends up inside a one-line error.
        let mut msg = msg.lines().next().unwrap_or("").to_string();
        if let Some((i, _)) = msg.char_indices().nth(200) {
            msg.truncate(i);
            msg.push('…');
        }
        LAST.with(|l| *l.borrow_mut() = Some(msg));
    }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(previous);
    r.map_err(|_| {
        LAST.with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| "a panic".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_first_line() {
        assert_eq!(catch_quietly(|| 3), Ok(3));
        let e = catch_quietly(|| -> u8 { panic!("bad file: {}\nmore", 7) }).unwrap_err();
        assert_eq!(e, "bad file: 7");
        let v: Vec<u8> = Vec::new();
        #[allow(clippy::useless_vec)]
        let e = catch_quietly(|| v[3]).unwrap_err();
        assert!(e.contains("out of bounds"), "{e}");
    }
}
