//! Seeded synthetic inputs shaped as the real pipeline shapes them (facts §2.4):
//! BERT-WordPiece ids in a 32,000 vocabulary; captions as BOS + text + EOS padded to 127
//! with [CLS] appended (128 ids); 80-token alt-text and caption sentence with [CLS] last.
//!
//! Lengths follow log-normal distributions; no length statistics of ReCap-DataComp-1B v2 are
//! published, so the medians below are assumptions, recorded in every record.

use crate::config::{CAPTION_LEN, TEXT_LEN};
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Serialize};

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const CLS: u32 = 101;
/// WordPiece ids of ordinary tokens in bert-base-uncased: [999, 30522).
const WORD_IDS: std::ops::Range<u32> = 999..30_522;

/// A length distribution: log-normal with a median and a spread, clipped to [min, max].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct LengthModel {
    pub median: f64,
    pub sigma: f64,
    pub min: usize,
    pub max: usize,
}

impl LengthModel {
    fn sample(&self, rng: &mut impl Rng) -> usize {
        let d = LogNormal::new(self.median.ln(), self.sigma).expect("valid log-normal");
        (d.sample(rng).round() as usize).clamp(self.min, self.max)
    }
}

/// Length assumptions of the synthetic text, in WordPiece tokens.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct TextLengths {
    /// Synthetic caption (ReCap-style, long): at most 125 words + BOS + EOS = 127.
    pub caption: LengthModel,
    /// Web alt-text: short.
    pub alt_text: LengthModel,
    /// One sentence of the synthetic caption.
    pub sentence: LengthModel,
}

impl Default for TextLengths {
    fn default() -> Self {
        TextLengths {
            caption: LengthModel {
                median: 70.0,
                sigma: 0.35,
                min: 8,
                max: CAPTION_LEN - 3,
            },
            alt_text: LengthModel {
                median: 12.0,
                sigma: 0.6,
                min: 1,
                max: TEXT_LEN - 1,
            },
            sentence: LengthModel {
                median: 18.0,
                sigma: 0.4,
                min: 3,
                max: TEXT_LEN - 1,
            },
        }
    }
}

/// One batch on the device, plus the derived targets of each recipe.
pub struct Batch {
    /// (B, 3, R, R) f32, standard-normal pixels (as after ImageNet normalisation).
    pub images: Tensor,
    /// (B, 128) u32 captions.
    pub caption: Tensor,
    /// (B, 80) u32 web alt-text (v1 only).
    pub alt_text: Tensor,
    /// (B, 80) u32 one caption sentence (v1 only).
    pub sentence: Tensor,
    /// (B, 127): caption[:, :-1], the v2 decoder input.
    pub v2_input: Tensor,
    /// (B, 127): caption[:, 1:], the v2 targets, and their non-pad weights.
    pub v2_targets: Tensor,
    pub v2_weights: Tensor,
    /// (B, 128): caption shifted left by one with a pad at the end, the v1 targets, and weights.
    pub v1_targets: Tensor,
    pub v1_weights: Tensor,
    pub size: usize,
    /// Mean caption tokens that are not padding, for the record.
    pub mean_caption_tokens: f64,
}

/// Caption ids: BOS, words, EOS, padding to 127, then [CLS].
fn caption_ids(rng: &mut impl Rng, len: &LengthModel) -> Vec<u32> {
    let n = len.sample(rng);
    let mut ids = Vec::with_capacity(CAPTION_LEN);
    ids.push(BOS);
    ids.extend((0..n).map(|_| rng.random_range(WORD_IDS)));
    ids.push(EOS);
    ids.resize(CAPTION_LEN - 1, PAD);
    ids.push(CLS);
    ids
}

/// Text-encoder ids: words, padding to 79, then [CLS] at the last (pooled) position.
fn text_ids(rng: &mut impl Rng, len: &LengthModel) -> Vec<u32> {
    let n = len.sample(rng);
    let mut ids: Vec<u32> = (0..n).map(|_| rng.random_range(WORD_IDS)).collect();
    ids.resize(TEXT_LEN - 1, PAD);
    ids.push(CLS);
    ids
}

impl Batch {
    /// Draws a batch of `size` images at `resolution` px from `seed`.
    pub fn synthetic(
        size: usize,
        resolution: usize,
        lengths: &TextLengths,
        seed: u64,
        device: &Device,
    ) -> Result<Batch> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).expect("unit normal");
        let pixels: Vec<f32> = (0..size * 3 * resolution * resolution)
            .map(|_| normal.sample(&mut rng))
            .collect();
        let mut caption = Vec::with_capacity(size * CAPTION_LEN);
        let mut alt = Vec::with_capacity(size * TEXT_LEN);
        let mut sent = Vec::with_capacity(size * TEXT_LEN);
        for _ in 0..size {
            caption.extend(caption_ids(&mut rng, &lengths.caption));
            alt.extend(text_ids(&mut rng, &lengths.alt_text));
            sent.extend(text_ids(&mut rng, &lengths.sentence));
        }
        let (mut v2_in, mut v2_t, mut v1_t) = (Vec::new(), Vec::new(), Vec::new());
        for row in caption.chunks(CAPTION_LEN) {
            v2_in.extend_from_slice(&row[..CAPTION_LEN - 1]);
            v2_t.extend_from_slice(&row[1..]);
            v1_t.extend_from_slice(&row[1..]);
            v1_t.push(PAD);
        }
        let weights =
            |t: &[u32]| -> Vec<f32> { t.iter().map(|&i| (i != PAD) as u8 as f32).collect() };
        let v2_w = weights(&v2_t);
        let v1_w = weights(&v1_t);
        let mean_caption_tokens =
            caption.iter().filter(|&&i| i != PAD).count() as f64 / size.max(1) as f64;
        let l = CAPTION_LEN - 1;
        Ok(Batch {
            images: Tensor::from_vec(pixels, (size, 3, resolution, resolution), device)?,
            caption: Tensor::from_vec(caption, (size, CAPTION_LEN), device)?,
            alt_text: Tensor::from_vec(alt, (size, TEXT_LEN), device)?,
            sentence: Tensor::from_vec(sent, (size, TEXT_LEN), device)?,
            v2_input: Tensor::from_vec(v2_in, (size, l), device)?,
            v2_targets: Tensor::from_vec(v2_t, (size, l), device)?,
            v2_weights: Tensor::from_vec(v2_w, (size, l), device)?,
            v1_targets: Tensor::from_vec(v1_t, (size, CAPTION_LEN), device)?,
            v1_weights: Tensor::from_vec(v1_w, (size, CAPTION_LEN), device)?,
            size,
            mean_caption_tokens,
        })
    }
}

/// Per image, `keep` distinct patch indices in [0, n) drawn uniformly without replacement,
/// in random order (CLS is not among the patch tokens, so it can never be kept).
pub fn keep_indices(batch: usize, n: usize, keep: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch)
        .map(|_| {
            rand::seq::index::sample(&mut rng, n, keep)
                .into_iter()
                .map(|i| i as u32)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_have_the_released_layout() {
        let b = Batch::synthetic(16, 32, &TextLengths::default(), 3, &Device::Cpu).unwrap();
        let cap: Vec<Vec<u32>> = b.caption.to_vec2().unwrap();
        for row in &cap {
            assert_eq!(row.len(), 128);
            assert_eq!(row[0], BOS);
            assert_eq!(row[127], CLS);
            let eos = row.iter().position(|&i| i == EOS).unwrap();
            assert!(row[eos + 1..127].iter().all(|&i| i == PAD));
            assert!(row[1..eos].iter().all(|&i| WORD_IDS.contains(&i)));
        }
        let alt: Vec<Vec<u32>> = b.alt_text.to_vec2().unwrap();
        assert!(alt.iter().all(|r| r.len() == 80 && r[79] == CLS));
        // Lengths vary across the batch.
        let lens: std::collections::HashSet<usize> = cap
            .iter()
            .map(|r| r.iter().position(|&i| i == EOS).unwrap())
            .collect();
        assert!(lens.len() > 3);
    }

    #[test]
    fn keep_indices_are_distinct_and_vary() {
        let a = keep_indices(8, 256, 89, 1);
        for row in &a {
            let set: std::collections::HashSet<_> = row.iter().collect();
            assert_eq!(set.len(), 89);
            assert!(row.iter().all(|&i| i < 256));
        }
        assert_ne!(a[0], a[1]);
        assert_ne!(keep_indices(8, 256, 89, 2)[0], a[0]);
        assert_eq!(keep_indices(8, 256, 89, 1), a);
    }
}
