//! Image preprocessing: decode (PNG / JPEG), RGB, LLaVA-1.5's `image_aspect_ratio = pad`
//! (expand to a square filled with the mean colour, image centred), resize to the tower's
//! resolution, normalise with the tower's mean / std. Output (1, 3, S, S), f32.
//!
//! The resampling is the `image` crate's (triangle for bilinear, Catmull-Rom for bicubic),
//! not PIL's: pixel values can differ from PIL's by a few levels.

use crate::error::{CandleCtx, Result};
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, Rgb, RgbImage};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Preprocess {
    pub size: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub interpolation: String,
    /// LLaVA-1.5 `image_aspect_ratio = pad`.
    pub pad_to_square: bool,
}

/// Decodes image bytes; `Err` holds a message for the caller to place.
pub fn decode(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("empty image".into());
    }
    image::load_from_memory(bytes).map_err(|e| format!("cannot decode the image: {e}"))
}

impl Preprocess {
    pub fn pixels(&self, img: &DynamicImage, device: &Device) -> Result<Tensor> {
        let rgb = img.to_rgb8();
        let rgb = if self.pad_to_square {
            expand_to_square(&rgb, self.mean)
        } else {
            rgb
        };
        let filter = if self.interpolation == "bicubic" {
            FilterType::CatmullRom
        } else {
            FilterType::Triangle
        };
        let s = self.size as u32;
        let resized = image::imageops::resize(&rgb, s, s, filter);
        let n = self.size * self.size;
        let mut data = vec![0f32; 3 * n];
        for (i, p) in resized.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = (p.0[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        Tensor::from_vec(data, (1, 3, self.size, self.size), device).ctx(|| "pixels".into())
    }
}

/// LLaVA's `expand2square`: paste the image centred on a square of the mean colour.
fn expand_to_square(img: &RgbImage, mean: [f32; 3]) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let side = w.max(h);
    let bg = Rgb([
        (mean[0] * 255.0) as u8,
        (mean[1] * 255.0) as u8,
        (mean[2] * 255.0) as u8,
    ]);
    let mut out = RgbImage::from_pixel(side, side, bg);
    let (x0, y0) = ((side - w) / 2, (side - h) / 2);
    image::imageops::replace(&mut out, img, x0 as i64, y0 as i64);
    out
}
