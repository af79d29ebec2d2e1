//! Plain terminal tables, shared by every command's output.

use tabled::settings::Style;

/// Renders rows (first row is the header) as a rounded-corner table.
pub fn render(rows: Vec<Vec<String>>) -> String {
    let mut b = tabled::builder::Builder::default();
    for r in rows {
        b.push_record(r);
    }
    let mut t = b.build();
    t.with(Style::rounded());
    t.to_string()
}

/// Human-readable bytes (binary units).
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Seconds with a unit that keeps three significant digits.
pub fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// Parses sizes like `32GiB`, `32 GB`, `512MiB`, `1000`: binary and decimal units.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 32GiB, 24GB, 512MiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0f64.powi(2),
        "gib" => 1024.0f64.powi(3),
        "tib" => 1024.0f64.powi(4),
        other => {
            return Err(format!(
                "'{s}': unknown unit '{other}' (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = (n * mult).round();
    // `as u64` would saturate silently: a size beyond any memory is a typo, not a cap.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is more bytes than any machine has"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_errors_not_clamped() {
        let e = parse_bytes("99999999999999999999999GiB").unwrap_err();
        assert!(e.contains("more bytes than any machine"), "{e}");
        assert!(parse_bytes("1e400").is_err());
        assert_eq!(parse_bytes("32GiB").unwrap(), 32 << 30);
    }
    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("32GiB").unwrap(), 32 * 1024u64.pow(3));
        assert_eq!(parse_bytes("24.5 GB").unwrap(), 24_500_000_000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(bytes(1536), "1.50 KiB");
    }
}
