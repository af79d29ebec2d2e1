//! Image preprocessing: decode (PNG / JPEG), RGB, LLaVA's `expand2square` (`image_aspect_ratio
//! = pad`: a square filled with the mean colour, image centred), resize to the tower's
//! resolution, normalise with the tower's mean / std. Output (1, 3, S, S), f32.
//!
//! JPEG is decoded by `ovbench-jpeg`: libjpeg-turbo's decoder with Pillow's settings, giving
//! `PIL.Image.open(f).convert("RGB")`'s pixels bit for bit (the `image` crate's decoder is up to
//! 3 levels off in about a third of the values; docs/eval-reference.md). PNG and the rest go
//! through the `image` crate, whose PNG pixels are Pillow's (lossless).
//!
//! The resize is PIL's (`Image.resize`, which torchvision's `Resize` calls on PIL images and so
//! open_clip's transform uses): a separable convolution whose kernel widens with the
//! down-scaling factor (antialiasing), 22-bit fixed-point coefficients, horizontal pass first,
//! rounded to 8 bits between passes. `Resample::ImageCrate` keeps the `image` crate's resize
//! (Catmull-Rom / triangle in f32) for comparison; docs/eval-reference.md measures the two.

use crate::error::{CandleCtx, Result};
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};
use serde::Serialize;

/// Whose resize implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resample {
    /// PIL's `Image.resize` (the reference pipeline's), bit for bit.
    Pil,
    /// The `image` crate's `imageops::resize`.
    ImageCrate,
}

impl Resample {
    pub fn parse(s: &str) -> Option<Resample> {
        match s {
            "pil" => Some(Resample::Pil),
            "image-crate" => Some(Resample::ImageCrate),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Preprocess {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// `expand2square`'s fill: `int(m * 255)` of the mean, in double precision as Python does.
    pub pad_fill: [u8; 3],
    pub interpolation: String,
    /// LLaVA-1.5 `image_aspect_ratio = pad`.
    pub pad_to_square: bool,
    pub resample: Resample,
    /// What decodes JPEG images (recorded: it decides the pixels).
    pub jpeg_decoder: &'static str,
}

/// Pillow's decompression-bomb limit: `Image.open` refuses an image of more than twice
/// `Image.MAX_IMAGE_PIXELS` (89,478,485) pixels. ovbench refuses the same, and also a padded
/// square beyond it (`expand2square` of a 1 x 60,000 image would be 3.6 billion pixels).
pub const MAX_PIXELS: u64 = 2 * 89_478_485;

fn within_limit(w: u32, h: u32, what: &str) -> std::result::Result<(), String> {
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!(
            "{what} of {w} x {h} pixels: more than {MAX_PIXELS} pixels (Pillow's decompression-bomb limit)"
        ));
    }
    Ok(())
}

/// Decodes image bytes to what Pillow's `Image.open(f).convert("RGB")` gives; `Err` holds a
/// message for the caller to place.
pub fn decode(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("empty image".into());
    }
    if ovbench_jpeg::is_jpeg(bytes) {
        let p = ovbench_jpeg::decode_rgb(bytes).map_err(|e| e.to_string())?;
        let (w, h) = (p.width, p.height);
        let img = RgbImage::from_raw(w, h, p.data)
            .ok_or_else(|| format!("the JPEG decoder gave a wrong buffer for {w}x{h}"))?;
        return Ok(DynamicImage::ImageRgb8(img));
    }
    // The image crate's default limits bound what it allocates while decoding (512 MiB).
    let img =
        image::load_from_memory(bytes).map_err(|e| format!("cannot decode the image: {e}"))?;
    within_limit(img.width(), img.height(), "image")?;
    Ok(img)
}

impl Preprocess {
    /// `Err` for an image, or its padded square, beyond [`MAX_PIXELS`].
    pub fn check(&self, img: &DynamicImage) -> std::result::Result<(), String> {
        let (w, h) = (img.width(), img.height());
        within_limit(w, h, "image")?;
        if self.pad_to_square {
            let side = w.max(h);
            within_limit(side, side, "the image padded to a square")?;
        }
        Ok(())
    }

    /// The square RGB image the tower sees, before normalisation; `Err` for an image whose
    /// padded square is beyond [`MAX_PIXELS`].
    pub fn resized(&self, img: &DynamicImage) -> std::result::Result<RgbImage, String> {
        self.check(img)?;
        let rgb = img.to_rgb8();
        let rgb = if self.pad_to_square {
            expand_to_square(&rgb, self.pad_fill)
        } else {
            rgb
        };
        let s = self.size as u32;
        let bicubic = self.interpolation == "bicubic";
        Ok(match self.resample {
            Resample::Pil => pil_resize(&rgb, s, s, bicubic),
            Resample::ImageCrate => {
                let filter = if bicubic {
                    FilterType::CatmullRom
                } else {
                    FilterType::Triangle
                };
                image::imageops::resize(&rgb, s, s, filter)
            }
        })
    }

    pub fn pixels(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let resized = self
            .resized(img)
            .map_err(|msg| crate::error::EvalError::Dataset {
                loc: "image".into(),
                msg,
            })?;
        let n = self.size * self.size;
        let mut data = vec![0f32; 3 * n];
        // torchvision: ToTensor (x / 255 in f32), Normalize ((x - mean) / std in f32).
        for (i, p) in resized.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = (p.0[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        Tensor::from_vec(data, (1, 3, self.size, self.size), device).ctx(|| "pixels".into())
    }
}

/// LLaVA's `expand2square`: paste the image on a square of the fill colour, offset
/// `(side - w) // 2` / `(side - h) // 2`.
fn expand_to_square(img: &RgbImage, fill: [u8; 3]) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let mut out = RgbImage::from_pixel(side, side, Rgb(fill));
    let (x0, y0) = ((side - w) / 2, (side - h) / 2);
    image::imageops::replace(&mut out, img, x0 as i64, y0 as i64);
    out
}

/// PIL's fixed-point precision for 8-bit images (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// PIL's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: the first input index and the fixed-point weights (PIL's
/// `precompute_coeffs` + `normalize_coeffs_8bpc`).
fn coeffs(in_size: u32, out_size: u32, cubic: bool) -> Vec<(usize, Vec<i64>)> {
    let (support0, f): (f64, fn(f64) -> f64) = if cubic {
        (2.0, bicubic)
    } else {
        (1.0, bilinear)
    };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; negatives are clamped to 0 right after.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
            let w: Vec<f64> = (0..xmax.max(0))
                .map(|x| f(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = w.iter().sum();
            let one = (1u64 << PRECISION_BITS) as f64;
            let k = w
                .iter()
                .map(|&x| {
                    let x = if ww != 0.0 { x / ww } else { x };
                    if x < 0.0 {
                        (-0.5 + x * one) as i64
                    } else {
                        (0.5 + x * one) as i64
                    }
                })
                .collect();
            (xmin as usize, k)
        })
        .collect()
}

fn clip8(ss: i64) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL's `Image.resize((w, h), BICUBIC | BILINEAR)` on an RGB image.
pub fn pil_resize(img: &RgbImage, w: u32, h: u32, cubic: bool) -> RgbImage {
    let (iw, ih) = img.dimensions();
    if (iw, ih) == (w, h) {
        return img.clone();
    }
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut cur = img.clone();
    if w != iw {
        let k = coeffs(iw, w, cubic);
        let mut out = RgbImage::new(w, ih);
        for y in 0..ih {
            for (xx, (xmin, ws)) in k.iter().enumerate() {
                let mut acc = [half; 3];
                for (x, wt) in ws.iter().enumerate() {
                    let p = cur.get_pixel((xmin + x) as u32, y).0;
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * wt;
                    }
                }
                out.put_pixel(
                    xx as u32,
                    y,
                    Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
                );
            }
        }
        cur = out;
    }
    if h != ih {
        let k = coeffs(ih, h, cubic);
        let cw = cur.width();
        let mut out = RgbImage::new(cw, h);
        for (yy, (ymin, ws)) in k.iter().enumerate() {
            for x in 0..cw {
                let mut acc = [half; 3];
                for (y, wt) in ws.iter().enumerate() {
                    let p = cur.get_pixel(x, (ymin + y) as u32).0;
                    for c in 0..3 {
                        acc[c] += p[c] as i64 * wt;
                    }
                }
                out.put_pixel(
                    x,
                    yy as u32,
                    Rgb([clip8(acc[0]), clip8(acc[1]), clip8(acc[2])]),
                );
            }
        }
        cur = out;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic test image.
    fn img(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                ((x * 37 + y * 11) % 256) as u8,
                ((x * x + 3 * y) % 256) as u8,
                ((y * y * 7 + x) % 256) as u8,
            ])
        })
    }

    /// Values printed by Pillow 13.0.0 for the same image:
    /// `Image.fromarray(a).resize((4, 3), Image.BICUBIC)` / `Image.BILINEAR`, with
    /// `a[y, x] = ((x*37 + y*11) % 256, (x*x + 3*y) % 256, (y*y*7 + x) % 256)` of size 9 x 7
    /// (`scripts/eval-reference/eval_reference.py --pil-vectors` prints them).
    #[test]
    fn pil_resize_matches_pillow() {
        let src = img(9, 7);
        let cub = pil_resize(&src, 4, 3, true);
        let lin = pil_resize(&src, 4, 3, false);
        let flat = |i: &RgbImage| i.pixels().flat_map(|p| p.0).collect::<Vec<u8>>();
        assert_eq!(flat(&cub), PIL_BICUBIC_9X7_TO_4X3.to_vec());
        assert_eq!(flat(&lin), PIL_BILINEAR_9X7_TO_4X3.to_vec());
        let up = pil_resize(&img(3, 2), 5, 4, true);
        assert_eq!(flat(&up), PIL_BICUBIC_3X2_TO_5X4.to_vec());
        // The same size is a copy, as in PIL.
        assert_eq!(flat(&pil_resize(&src, 9, 7, true)), flat(&src));
    }

    include!("preprocess_vectors.rs");

    /// JPEG goes to ovbench-jpeg (Pillow's pixels, checked against Pillow in suites/jpeg's
    /// tests), anything else to the image crate; a broken JPEG is an error, never a panic.
    #[test]
    fn jpeg_is_decoded_as_pillow_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../jpeg/tests/fixtures");
        let bytes = std::fs::read(dir.join("rgb420_13x9.jpg")).unwrap();
        let ours = decode(&bytes).unwrap().to_rgb8();
        let want = ovbench_jpeg::decode_rgb(&bytes).unwrap();
        assert_eq!((ours.width(), ours.height()), (13, 9));
        assert_eq!(ours.into_raw(), want.data);
        // The image crate's decoder gives other pixels for the same file (why it is not used).
        let crate_img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_ne!(crate_img.into_raw(), want.data);
        let err = decode(&bytes[..bytes.len() - 40]).unwrap_err();
        assert!(err.contains("image file is truncated"), "{err}");
        let err = decode(&bytes[..3]).unwrap_err();
        assert!(err.contains("cannot decode the JPEG"), "{err}");
    }

    #[test]
    fn expand2square_offsets_and_fill() {
        let sq = expand_to_square(&img(4, 1), [1, 2, 3]);
        assert_eq!(sq.dimensions(), (4, 4));
        // (4 - 1) // 2 = 1 row of fill above the image.
        assert_eq!(sq.get_pixel(0, 0).0, [1, 2, 3]);
        assert_eq!(sq.get_pixel(2, 1).0, img(4, 1).get_pixel(2, 0).0);
        assert_eq!(sq.get_pixel(0, 2).0, [1, 2, 3]);
    }

    /// A thin image is fine as it is, but padded to a square it would be beyond Pillow's
    /// decompression-bomb limit (found by fuzzing: 1 KB files asking for 12 GB squares).
    #[test]
    fn a_square_beyond_the_pixel_limit_is_refused() {
        let pre = |pad_to_square| Preprocess {
            size: 8,
            mean: [0.5; 3],
            std: [0.5; 3],
            pad_fill: [0; 3],
            interpolation: "bicubic".into(),
            pad_to_square,
            resample: Resample::Pil,
            jpeg_decoder: ovbench_jpeg::DECODER,
        };
        let thin = DynamicImage::ImageRgb8(RgbImage::new(1, 20_000));
        let err = pre(true).resized(&thin).unwrap_err();
        assert!(
            err.contains("20000 x 20000") && err.contains("178956970"),
            "{err}"
        );
        assert_eq!(pre(false).resized(&thin).unwrap().dimensions(), (8, 8));
        assert!(pre(true).check(&img(3, 2).into()).is_ok());
    }
}
