//! Bounds on what a run may ask of this machine, checked before any work starts: a request
//! beyond them is a typo or an attack, and must be a one-line error, not minutes of thrashing,
//! an abort in an allocator, or an overflow.

/// Logical CPUs this process may use.
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Physical memory of the host, in bytes (0 when unknown).
pub fn host_memory_bytes() -> u64 {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map(|s| s.total_memory())
    .unwrap_or(0)
}

/// `value` within `lo..=hi`, else an error naming `name` and the bounds (and why, when the
/// upper bound comes from the machine).
pub fn within(name: &str, value: u64, lo: u64, hi: u64, why_hi: &str) -> Result<(), String> {
    if value < lo {
        return Err(format!("{name} must be at least {lo}, got {value}"));
    }
    if value > hi {
        let why = if why_hi.is_empty() {
            String::new()
        } else {
            format!(" ({why_hi})")
        };
        return Err(format!("{name} must be at most {hi}{why}, got {value}"));
    }
    Ok(())
}

/// A thread count: 0 (one per CPU) up to the CPUs this machine has.
pub fn threads(name: &str, value: usize) -> Result<(), String> {
    let cpus = logical_cpus();
    within(
        name,
        value as u64,
        0,
        cpus as u64,
        &format!("the CPUs this machine has; 0 uses all {cpus}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_name_the_option_and_the_reason() {
        let e = threads("--threads", 100_000).unwrap_err();
        assert!(
            e.starts_with("--threads must be at most ") && e.contains("CPUs"),
            "{e}"
        );
        assert!(threads("--threads", 0).is_ok());
        assert!(threads("--threads", logical_cpus()).is_ok());
        let e = within("--steps", 0, 1, 10, "").unwrap_err();
        assert_eq!(e, "--steps must be at least 1, got 0");
        assert!(host_memory_bytes() > 0);
    }
}
