//! A counting global allocator: exact, deterministic byte counts of host memory.
//!
//! The binary installs it with `#[global_allocator]`; libraries only read the counters.
//! Counting costs a few relaxed atomic adds per allocation, far below the noise of a step.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Wraps the system allocator and counts live bytes, the high-water mark and calls.
pub struct CountingAlloc;

static CURRENT: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);
static RETAIN: AtomicBool = AtomicBool::new(false);

#[inline]
fn add(bytes: u64) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
    CALLS.fetch_add(1, Ordering::Relaxed);
    TOTAL.fetch_add(bytes, Ordering::Relaxed);
}

#[inline]
fn sub(bytes: u64) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            add(layout.size() as u64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            add(layout.size() as u64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        sub(layout.size() as u64);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            sub(layout.size() as u64);
            add(new_size as u64);
        }
        p
    }
}

impl CountingAlloc {
    /// Marks the counters as meaningful; call once from the binary that installs the allocator.
    pub fn activate() {
        ACTIVE.store(true, Ordering::Relaxed);
    }
}

/// A reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AllocSnapshot {
    pub current_bytes: u64,
    pub peak_bytes: u64,
    pub calls: u64,
    /// Bytes allocated so far, freed or not (a realloc counts its new size).
    #[serde(default)]
    pub allocated_bytes: u64,
}

/// Whether a counting allocator is installed in this process.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

pub fn snapshot() -> AllocSnapshot {
    AllocSnapshot {
        current_bytes: CURRENT.load(Ordering::Relaxed),
        peak_bytes: PEAK.load(Ordering::Relaxed),
        calls: CALLS.load(Ordering::Relaxed),
        allocated_bytes: TOTAL.load(Ordering::Relaxed),
    }
}

/// Starts a new high-water mark at the bytes live now, so a later peak is that of one region.
pub fn reset_peak() {
    PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Tells glibc malloc to keep freed memory for reuse instead of returning it to the kernel.
///
/// A training step allocates and frees the same large temporaries every step; by default
/// glibc maps and unmaps each one, and page faults plus page clearing then cost more than
/// the arithmetic on CPU. With this, steady-state steps reuse the heap. Live-byte counts are
/// unaffected; call [`release_freed_memory`] between workloads so that one's retained heap
/// does not count in the next one's RSS. Returns whether the settings were applied.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // No mmap for large blocks, never trim the heap top, grow it in large steps.
        let ok = libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
            && libc::mallopt(libc::M_TOP_PAD, 256 << 20) == 1;
        RETAIN.store(ok, Ordering::Relaxed);
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns retained free memory to the kernel (glibc `malloc_trim`).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether [`retain_freed_memory`] is in force.
pub fn malloc_retains() -> bool {
    RETAIN.load(Ordering::Relaxed)
}
