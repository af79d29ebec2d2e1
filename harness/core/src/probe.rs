//! Operating-system memory probes (Linux /proc); absent elsewhere, and said so.

use serde::{Deserialize, Serialize};

/// Peak and current resident set size of this process, in bytes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rss {
    pub peak_bytes: u64,
    pub current_bytes: u64,
}

/// Reads VmHWM and VmRSS from /proc/self/status.
pub fn rss() -> Option<Rss> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some(Rss {
        peak_bytes: field("VmHWM:")?,
        current_bytes: field("VmRSS:")?,
    })
}

/// Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0). Returns whether it worked.
pub fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}
