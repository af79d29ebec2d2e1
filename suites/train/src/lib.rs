//! The training-step workloads of ovbench: OpenVision (CLIPS-style, contrastive + captioning)
//! and OpenVision 2 (captioning only, masked visual tokens), written in candle, one module per
//! model, as ../shared/reference/openvision-facts.md §2–3 describes them.

pub mod alternate;
pub mod config;
pub mod data;
pub mod decoder;
pub mod device;
pub mod engine;
pub mod export;
pub mod flops;
pub mod footprint;
pub mod fused;
pub mod gpu_memory;
pub mod layers;
pub mod loss;
pub mod macs;
pub mod optim;
#[cfg(feature = "cuda")]
mod optim_cuda;
pub mod params;
pub mod policy;
pub mod recipe;
pub mod records;
pub mod repro;
pub mod step;
pub mod text_encoder;
pub mod vit;
pub mod vit_pretrained;

pub use config::{ModelConfig, ModelName, PrefixAttention, VitSize};
pub use recipe::Recipe;
pub use step::{StepConfig, StepRecord};
