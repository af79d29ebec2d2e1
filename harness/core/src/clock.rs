//! Wall-clock timing that waits for asynchronous devices before reading the clock.

use std::time::{Duration, Instant};

/// Something that can wait for all queued work to finish (a GPU stream); a no-op on CPU.
pub trait Sync {
    fn synchronize(&self);
}

/// For work that is finished when the call returns.
pub struct HostSync;

impl Sync for HostSync {
    fn synchronize(&self) {}
}

/// Times `f`, synchronising the device before both clock reads.
pub fn timed<T>(sync: &dyn Sync, f: impl FnOnce() -> T) -> (T, Duration) {
    sync.synchronize();
    let start = Instant::now();
    let out = f();
    sync.synchronize();
    (out, start.elapsed())
}
