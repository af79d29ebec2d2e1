//! The embedded font, registered once for plotters' `ab_glyph` text backend.

use plotters::style::FontStyle;
use std::sync::OnceLock;

/// DejaVu Sans, copied unmodified from Debian's fonts-dejavu-core (license beside it).
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name charts ask for.
pub const FAMILY: &str = "sans-serif";

pub fn ensure_registered() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font(FAMILY, style, DEJAVU_SANS)
                .map_err(|_| "DejaVuSans.ttf could not be parsed".to_string())?;
        }
        Ok(())
    })
    .clone()
}
