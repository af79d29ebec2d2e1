//! The committed fixtures decode to Pillow's pixels, bit for bit (expected.json: written by
//! scripts/eval-reference/gen_jpeg_fixtures.py with Pillow 13.0.0 / libjpeg-turbo 3.2.0).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn expected() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["files"].as_object().unwrap().clone()
}

#[test]
fn fixtures_decode_to_pillows_pixels() {
    let files = expected();
    assert!(
        files.len() >= 10,
        "expected.json lists {} files",
        files.len()
    );
    let mut decoded = 0;
    for (name, want) in &files {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        assert!(ovbench_jpeg::is_jpeg(&bytes), "{name}");
        let got = ovbench_jpeg::decode_rgb(&bytes);
        if let Some(err) = want.get("error") {
            // Pillow refuses it; so must we, with Pillow's reason where it is a truncation.
            let err = err.as_str().unwrap();
            let ours = got.expect_err(name).to_string();
            if err.starts_with("image file is truncated") {
                assert!(ours.contains(err), "{name}: ours {ours:?}, Pillow {err:?}");
            }
            continue;
        }
        let img = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (img.width as u64, img.height as u64),
            (
                want["width"].as_u64().unwrap(),
                want["height"].as_u64().unwrap()
            ),
            "{name}"
        );
        assert_eq!(img.data.len(), (img.width * img.height * 3) as usize);
        assert_eq!(
            sha256(&img.data),
            want["rgb_sha256"].as_str().unwrap(),
            "{name}: pixels differ from Pillow's"
        );
        decoded += 1;
    }
    assert!(decoded >= 8);
}

/// The damaged fixture is one where the IDCT arithmetic shows: libjpeg's portable C IDCT gives
/// other pixels than Pillow's (x86 SIMD), so the test above would catch a decoder that used it.
#[test]
fn damaged_fixture_needs_the_simd_idct_arithmetic() {
    let files = expected();
    let marked: Vec<_> = files
        .iter()
        .filter(|(_, v)| v.get("simd_idct_matters").is_some())
        .collect();
    assert!(!marked.is_empty());
    for (name, want) in marked {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let c = ovbench_jpeg::decode_rgb_libjpeg_c_idct(&bytes).unwrap();
        assert_ne!(
            sha256(&c.data),
            want["rgb_sha256"].as_str().unwrap(),
            "{name}"
        );
        let simd = ovbench_jpeg::decode_rgb(&bytes).unwrap();
        assert_eq!(sha256(&simd.data), want["rgb_sha256"].as_str().unwrap());
    }
}

/// Corrupt and truncated input is an error with the decoder's reason, never a panic or an exit.
#[test]
fn corrupt_and_truncated_jpegs_are_errors() {
    let whole = std::fs::read(fixtures().join("rgb420_13x9.jpg")).unwrap();
    // Cut anywhere: an error each time (header, tables, scan), never a crash.
    for cut in [2, 3, 4, 20, 100, 300, whole.len() - 40] {
        let err = ovbench_jpeg::decode_rgb(&whole[..cut]).unwrap_err();
        assert!(!err.to_string().is_empty(), "cut {cut}");
    }
    let err = ovbench_jpeg::decode_rgb(&whole[..whole.len() - 40]).unwrap_err();
    assert!(err.to_string().contains("image file is truncated"), "{err}");
    // An unsupported frame type (differential, SOF5): libjpeg's message.
    let sof = whole.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    let mut bad = whole.clone();
    bad[sof + 1] = 0xC5;
    let err = ovbench_jpeg::decode_rgb(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot decode the JPEG: Unsupported JPEG process"),
        "{err}"
    );
    // A frame header that claims 2 components (Pillow: "cannot handle 2-layer images").
    let mut two = whole.clone();
    two[sof + 9] = 2;
    assert!(ovbench_jpeg::decode_rgb(&two).is_err());
}
