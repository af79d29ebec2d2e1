//! Record file names and input hashes. The record type itself is [`crate::envelope::Record`].

use crate::io::IoError;
use std::path::{Path, PathBuf};

/// A default file name for a record: `<kind>-<UTC timestamp>.json` under `dir`.
pub fn default_path(dir: &Path, kind: &str) -> PathBuf {
    let stamp = time::OffsetDateTime::now_utc();
    let name = format!(
        "{kind}-{:04}{:02}{:02}T{:02}{:02}{:02}Z.json",
        stamp.year(),
        stamp.month() as u8,
        stamp.day(),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    dir.join(name)
}

/// SHA-256 of a regular file, hex encoded, streaming.
pub fn sha256_file(path: &Path) -> Result<String, IoError> {
    use sha2::{Digest, Sha256};
    let (mut f, _) = crate::io::open_regular(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|source| IoError::Read {
        path: path.into(),
        source,
    })?;
    Ok(format!("{:x}", h.finalize()))
}
