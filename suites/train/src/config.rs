//! Model sizes and their pairings, as ../shared/reference/openvision-facts.md §2 gives them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Widths and depths of one transformer stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackDims {
    pub width: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_dim: usize,
}

const fn dims(width: usize, depth: usize, heads: usize, mlp_dim: usize) -> StackDims {
    StackDims {
        width,
        depth,
        heads,
        mlp_dim,
    }
}

/// The vision-encoder family (facts §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VitSize {
    Ti,
    S,
    B,
    L,
    So400m,
    H,
    G,
}

impl VitSize {
    pub const ALL: [VitSize; 7] = [
        VitSize::Ti,
        VitSize::S,
        VitSize::B,
        VitSize::L,
        VitSize::So400m,
        VitSize::H,
        VitSize::G,
    ];

    /// The ViT trunk (facts §2.1, `vit.py::decode_variant`).
    pub fn vision(self) -> StackDims {
        match self {
            VitSize::Ti => dims(192, 12, 3, 768),
            VitSize::S => dims(384, 12, 6, 1536),
            VitSize::B => dims(768, 12, 12, 3072),
            VitSize::L => dims(1024, 24, 16, 4096),
            VitSize::So400m => dims(1152, 27, 16, 4304),
            VitSize::H => dims(1280, 32, 16, 5120),
            VitSize::G => dims(1408, 40, 16, 6144),
        }
    }

    /// The patch size of the family's released models: 16 for Ti/S/B, 14 from L up.
    pub fn default_patch(self) -> usize {
        match self {
            VitSize::Ti | VitSize::S | VitSize::B => 16,
            _ => 14,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VitSize::Ti => "Ti",
            VitSize::S => "S",
            VitSize::B => "B",
            VitSize::L => "L",
            VitSize::So400m => "So400m",
            VitSize::H => "H",
            VitSize::G => "g",
        }
    }

    /// The v1 text encoder: same size letter as the image model (facts §2.2).
    /// g has no v1 release; the H tower is the nearest documented one.
    pub fn v1_text_encoder(self) -> Pairing {
        let d = match self {
            VitSize::Ti => dims(192, 12, 3, 768),
            VitSize::S => dims(384, 12, 6, 1536),
            VitSize::B => dims(512, 12, 8, 2048),
            VitSize::L => dims(768, 12, 12, 3072),
            VitSize::So400m => dims(1152, 27, 16, 4304),
            VitSize::H | VitSize::G => dims(1024, 24, 16, 4096),
        };
        let note = match self {
            VitSize::G => Some(
                "g/14 has no OpenVision v1 release; the H text tower is used (assumption)".into(),
            ),
            _ => None,
        };
        Pairing { dims: d, note }
    }

    /// The v1 text decoder (facts §2.3, `text_decoder.py`): documented for every size, g shares H's.
    pub fn v1_decoder(self) -> Pairing {
        let d = match self {
            VitSize::Ti => dims(192, 12, 3, 768),
            VitSize::S => dims(384, 12, 6, 1536),
            VitSize::B => dims(512, 12, 8, 2048),
            VitSize::L => dims(768, 12, 12, 3072),
            VitSize::So400m => dims(1152, 27, 16, 4304),
            VitSize::H | VitSize::G => dims(1024, 24, 16, 4096),
        };
        Pairing {
            dims: d,
            note: None,
        }
    }

    /// The v2 decoder paired with this encoder. Only L/14 <-> L is documented (facts §2.3);
    /// the rest are best guesses and say so.
    pub fn v2_decoder(self) -> Pairing {
        let (d, note) = match self {
            VitSize::L => (dims(768, 12, 12, 3072), None),
            VitSize::Ti => (dims(192, 12, 3, 768), Some("Ti decoder for Ti encoder: same-letter pairing, unverified")),
            VitSize::S => (dims(384, 12, 6, 1536), Some("S decoder for S encoder: same-letter pairing, unverified")),
            VitSize::B => (dims(512, 12, 8, 2048), Some("B decoder for B encoder: same-letter pairing, unverified")),
            VitSize::So400m => (
                dims(1152, 27, 16, 4304),
                Some("So400m-sized decoder for SoViT-400M: unverified (released code has no So400m decoder; the Table 3 FLOP match suggests it)"),
            ),
            VitSize::H => (dims(1024, 24, 16, 4096), Some("H decoder for H encoder: same-letter pairing, unverified")),
            VitSize::G => (
                dims(1024, 24, 16, 4096),
                Some("H-sized decoder (1024 wide, 24 deep) for g/14: unverified, reported by third parties for the released g/14 repo"),
            ),
        };
        Pairing {
            dims: d,
            note: note.map(String::from),
        }
    }
}

impl fmt::Display for VitSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A model name as users write it: `Ti/16`, `L/14`, `So400m/14` (also `SoViT-400M/14`), `g/14`;
/// the patch may be left out (`L`), giving the family's released patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelName {
    pub size: VitSize,
    pub patch: usize,
}

impl FromStr for ModelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (size_s, patch_s) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let size = match size_s.to_ascii_lowercase().as_str() {
            "ti" | "tiny" => VitSize::Ti,
            "s" | "small" => VitSize::S,
            "b" | "base" => VitSize::B,
            "l" | "large" => VitSize::L,
            "so400m" | "sovit-400m" | "sovit" | "so400" => VitSize::So400m,
            "h" | "huge" => VitSize::H,
            "g" | "giant" => VitSize::G,
            _ => {
                return Err(format!(
                    "unknown model '{s}' (expected one of Ti/16, S/16, B/16, L/14, So400m/14, H/14, g/14)"
                ))
            }
        };
        let patch = match patch_s {
            None => size.default_patch(),
            Some(p) => p.parse::<usize>().ok().filter(|&p| p > 0).ok_or_else(|| {
                format!("model '{s}': patch size '{p}' is not a positive integer")
            })?,
        };
        Ok(ModelName { size, patch })
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.size, self.patch)
    }
}

/// A stack's dimensions and, when the pairing is not documented, why this one was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    pub dims: StackDims,
    pub note: Option<String>,
}

/// Token-level constants of both recipes (facts §2.4).
pub const VOCAB: usize = 32_000;
/// v1 text encoder input length (alt-text and caption sentence).
pub const TEXT_LEN: usize = 80;
/// Caption length: v2 decoder target and v1 decoder target.
pub const CAPTION_LEN: usize = 128;
/// Learnable query tokens of the v1 decoder.
pub const V1_QUERIES: usize = 128;
/// Layer-norm epsilon of the released configs.
pub const LN_EPS: f64 = 1e-6;
/// Initial contrastive temperature 1/0.07; the learnable parameter is its logarithm.
pub const TEMPERATURE_INIT: f64 = 1.0 / 0.07;

/// Whether the v2 decoder's image prefix attends causally (released code) or bidirectionally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PrefixAttention {
    #[default]
    Causal,
    Prefix,
}

impl FromStr for PrefixAttention {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "causal" => Ok(Self::Causal),
            "prefix" => Ok(Self::Prefix),
            _ => Err(format!("attention '{s}': expected 'causal' or 'prefix'")),
        }
    }
}

/// Everything that fixes the shapes of one recipe's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub model: ModelName,
    pub resolution: usize,
    pub vision: StackDims,
    pub text_encoder: Pairing,
    pub v1_decoder: Pairing,
    pub v2_decoder: Pairing,
    pub keep_ratio: f64,
    pub v2_attention: PrefixAttention,
}

impl ModelConfig {
    /// Validates the shape arguments; errors say which argument and why.
    pub fn new(
        model: ModelName,
        resolution: usize,
        keep_ratio: f64,
        v2_attention: PrefixAttention,
    ) -> Result<Self, String> {
        if resolution == 0 || resolution % model.patch != 0 {
            return Err(format!(
                "resolution {resolution} is not a positive multiple of {model}'s patch size {}",
                model.patch
            ));
        }
        if !(keep_ratio > 0.0 && keep_ratio <= 1.0) {
            return Err(format!("keep ratio {keep_ratio} is outside (0, 1]"));
        }
        let cfg = ModelConfig {
            model,
            resolution,
            vision: model.size.vision(),
            text_encoder: model.size.v1_text_encoder(),
            v1_decoder: model.size.v1_decoder(),
            v2_decoder: model.size.v2_decoder(),
            keep_ratio,
            v2_attention,
        };
        if cfg.kept_tokens() == 0 {
            return Err(format!(
                "keep ratio {keep_ratio} keeps no token of the {} patches at {resolution} px",
                cfg.patches()
            ));
        }
        Ok(cfg)
    }

    /// Patches per image (CLS excluded).
    pub fn patches(&self) -> usize {
        let side = self.resolution / self.model.patch;
        side * side
    }

    /// floor(N x keep): kept patch tokens per image. The tiny epsilon keeps exact products
    /// such as 256 x 0.25 from rounding down through binary representation error.
    pub fn kept_tokens(&self) -> usize {
        ((self.patches() as f64) * self.keep_ratio + 1e-9).floor() as usize
    }

    /// Notes for the record on every pairing that is not documented.
    pub fn unverified_notes(&self) -> Vec<String> {
        [&self.text_encoder, &self.v1_decoder, &self.v2_decoder]
            .iter()
            .filter_map(|p| p.note.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_model_names() {
        let m: ModelName = "L/14".parse().unwrap();
        assert_eq!((m.size, m.patch), (VitSize::L, 14));
        let m: ModelName = "SoViT-400M/14".parse().unwrap();
        assert_eq!(m.size, VitSize::So400m);
        let m: ModelName = "ti".parse().unwrap();
        assert_eq!(m.patch, 16);
        assert!("Q/14".parse::<ModelName>().is_err());
        assert!("L/0".parse::<ModelName>().is_err());
    }

    #[test]
    fn kept_tokens_match_the_facts() {
        let l = "L/14".parse().unwrap();
        let c = ModelConfig::new(l, 224, 0.35, PrefixAttention::Causal).unwrap();
        assert_eq!((c.patches(), c.kept_tokens()), (256, 89));
        let c = ModelConfig::new(l, 84, 0.35, PrefixAttention::Causal).unwrap();
        assert_eq!((c.patches(), c.kept_tokens()), (36, 12));
        let c = ModelConfig::new(l, 224, 0.25, PrefixAttention::Causal).unwrap();
        assert_eq!(c.kept_tokens(), 64);
    }

    #[test]
    fn rejects_bad_shapes() {
        let l = "L/14".parse().unwrap();
        assert!(ModelConfig::new(l, 100, 0.35, PrefixAttention::Causal).is_err());
        assert!(ModelConfig::new(l, 224, 0.0, PrefixAttention::Causal).is_err());
        assert!(ModelConfig::new(l, 224, 1.5, PrefixAttention::Causal).is_err());
        assert!(ModelConfig::new(l, 14, 0.35, PrefixAttention::Causal).is_err());
    }
}
