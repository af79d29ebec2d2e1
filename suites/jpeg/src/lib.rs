//! JPEG decoding that gives Pillow's pixels bit for bit.
//!
//! The reference pipeline (lmms-eval, LLaVA) opens images with Pillow and calls
//! `.convert("RGB")`; Pillow decodes JPEG with libjpeg-turbo. This crate decodes with the same
//! decoder: libjpeg-turbo's C sources as mozjpeg ships them (built by `mozjpeg-sys` with the `cc`
//! crate, without SIMD), set up as Pillow sets it up (see `src/decode.c`), and then converts to
//! RGB as Pillow's `convert("RGB")` does: grey replicated, CMYK through Pillow's `cmyk2rgb`
//! after undoing Adobe's inversion (Pillow's `CMYK;I` raw mode).
//!
//! `tests/pillow_fixtures.rs` checks the output against pixels written by Pillow
//! (`scripts/eval-reference/gen_jpeg_fixtures.py`).

use std::os::raw::{c_char, c_int, c_uint};

// Linked for its C library only: the decoder that `src/decode.c` calls.
use mozjpeg_sys as _;

/// A decoded image: `width * height` pixels of R, G, B, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbPixels {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Where the decoder's colour components come from, for callers that record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Grey,
    Rgb,
    Cmyk,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JpegError {
    /// libjpeg's own message (e.g. "Premature end of JPEG file", "Not a JPEG file: starts with
    /// 0x89 0x50").
    #[error("cannot decode the JPEG: {0}")]
    Decode(String),
}

/// What decodes JPEG, for records: the library, the IDCT arithmetic and the settings.
pub const DECODER: &str = "pillow-13: libjpeg-turbo's decoder (mozjpeg-sys 2.2.3), x86 SIMD \
                           islow IDCT arithmetic, fancy upsampling, block smoothing, \
                           64 KiB suspending reads";

extern "C" {
    fn ovb_jpeg_decode(
        data: *const u8,
        len: usize,
        flags: c_int,
        pixels: *mut *mut u8,
        width: *mut c_uint,
        height: *mut c_uint,
        components: *mut c_int,
        message: *mut c_char,
        message_len: usize,
    ) -> c_int;
    fn ovb_jpeg_free(pixels: *mut u8);
}

/// Which islow IDCT arithmetic to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idct {
    /// libjpeg-turbo's x86 SIMD (SSE2 / AVX2) arithmetic, as Pillow's x86-64 wheels run it.
    X86Simd,
    /// libjpeg's portable C code (wraps where the SIMD code saturates, on corrupt data only).
    LibjpegC,
}

/// libjpeg's `JMSG_LENGTH_MAX`.
const MESSAGE_LEN: usize = 200;

/// Pillow's test for a JPEG (`JpegImagePlugin._accept`): the SOI marker and the next marker's
/// first byte.
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// The decoder's components as libjpeg writes them (1 grey, 3 RGB, 4 CMYK with Adobe's
/// inverted values), before any conversion.
fn decode_raw(bytes: &[u8], idct: Idct) -> Result<(u32, u32, usize, Vec<u8>), JpegError> {
    let mut pixels: *mut u8 = std::ptr::null_mut();
    let (mut width, mut height, mut components) = (0 as c_uint, 0 as c_uint, 0 as c_int);
    let mut message = [0 as c_char; MESSAGE_LEN];
    // SAFETY: every pointer is valid for the call; on success `pixels` holds exactly
    // width * height * components bytes allocated by decode.c, copied then freed once.
    let rc = unsafe {
        ovb_jpeg_decode(
            bytes.as_ptr(),
            bytes.len(),
            matches!(idct, Idct::LibjpegC) as c_int,
            &mut pixels,
            &mut width,
            &mut height,
            &mut components,
            message.as_mut_ptr(),
            MESSAGE_LEN,
        )
    };
    if rc != 0 {
        let text: Vec<u8> = message
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        return Err(JpegError::Decode(
            String::from_utf8_lossy(&text).into_owned(),
        ));
    }
    let n = width as usize * height as usize * components as usize;
    // SAFETY: see above.
    let data = unsafe {
        let v = if n == 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(pixels, n).to_vec()
        };
        ovb_jpeg_free(pixels);
        v
    };
    Ok((width, height, components as usize, data))
}

/// Decodes a JPEG to RGB as `PIL.Image.open(f).convert("RGB")` does.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbPixels, JpegError> {
    decode_rgb_with_source(bytes).map(|(p, _)| p)
}

/// [`decode_rgb`], also saying which colour components the file held.
pub fn decode_rgb_with_source(bytes: &[u8]) -> Result<(RgbPixels, Source), JpegError> {
    decode_rgb_idct(bytes, Idct::X86Simd)
}

/// [`decode_rgb`] with libjpeg's portable C IDCT instead of the SIMD arithmetic: for tests that
/// show which files the difference touches (`jpeg2rgb --c-idct`).
#[doc(hidden)]
pub fn decode_rgb_libjpeg_c_idct(bytes: &[u8]) -> Result<RgbPixels, JpegError> {
    decode_rgb_idct(bytes, Idct::LibjpegC).map(|(p, _)| p)
}

fn decode_rgb_idct(bytes: &[u8], idct: Idct) -> Result<(RgbPixels, Source), JpegError> {
    let (width, height, components, raw) = decode_raw(bytes, idct)?;
    let (data, source) = match components {
        3 => (raw, Source::Rgb),
        1 => (raw.iter().flat_map(|&v| [v, v, v]).collect(), Source::Grey),
        4 => (
            raw.chunks_exact(4)
                .flat_map(|p| cmyk_to_rgb([!p[0], !p[1], !p[2], !p[3]]))
                .collect(),
            Source::Cmyk,
        ),
        n => {
            return Err(JpegError::Decode(format!(
                "the decoder gave {n} components"
            )))
        }
    };
    Ok((
        RgbPixels {
            width,
            height,
            data,
        },
        source,
    ))
}

/// Pillow's `cmyk2rgb` (libImaging/Convert.c): `nk - nk * c / 255` with its rounding
/// (`MULDIV255`), clipped.
fn cmyk_to_rgb(cmyk: [u8; 4]) -> [u8; 3] {
    let nk = 255 - cmyk[3] as i32;
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let ch = |c: u8| (nk - muldiv255(c as i32, nk)).clamp(0, 255) as u8;
    [ch(cmyk[0]), ch(cmyk[1]), ch(cmyk[2])]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_is_pillows() {
        // Pillow 13.0.0: Image.new("CMYK", (1, 1), c).convert("RGB").getpixel((0, 0))
        assert_eq!(cmyk_to_rgb([0, 0, 0, 0]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb([255, 255, 255, 0]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb([0, 0, 0, 255]), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb([10, 128, 200, 30]), [216, 112, 49]);
        assert_eq!(cmyk_to_rgb([1, 2, 3, 4]), [250, 249, 248]);
    }

    #[test]
    fn not_a_jpeg_is_an_error_not_an_exit() {
        let err = decode_rgb(b"\x89PNG\r\n\x1a\n....").unwrap_err();
        assert!(err.to_string().contains("Not a JPEG file"), "{err}");
        assert_eq!(
            decode_rgb(b"").unwrap_err(),
            JpegError::Decode("empty input".into())
        );
        assert!(!is_jpeg(b"\x89PNG"));
        assert!(is_jpeg(b"\xFF\xD8\xFF\xE0"));
    }
}
