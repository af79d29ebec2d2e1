//! Counts the multiply-adds of the matrix products a forward pass executes, so the analytic
//! FLOP model can be checked against what actually ran. Off unless a counting scope is open.

use std::cell::Cell;

thread_local! {
    static COUNT: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Adds `macs` to the open scope of this thread, if any.
pub fn record(macs: usize) {
    COUNT.with(|c| {
        if let Some(n) = c.get() {
            c.set(Some(n + macs as u64));
        }
    });
}

/// Runs `f` and returns its result with the multiply-adds its matmuls recorded.
pub fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(Some(0)));
    let out = f();
    let n = COUNT.with(|c| c.replace(None)).unwrap_or(0);
    (out, n)
}
