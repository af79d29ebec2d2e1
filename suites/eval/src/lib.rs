//! LLaVA-style downstream evaluation with a chosen vision encoder (`ovbench eval`).
//!
//! - [`openclip`]: OpenVision / OpenVision 2 towers (OpenCLIP layout, safetensors or PyTorch
//!   zip) loaded into the ViT that `ovbench step` trains.
//! - [`projector`]: LLaVA-1.5's `mlp2x_gelu`.
//! - [`llm`]: a Hugging Face Llama directory through candle-transformers, greedy decoding
//!   with or without a KV cache; [`llm_config`] reads its `config.json` in both transformers
//!   layouts.
//! - [`prompt`]: lmms-eval's TextVQA / ChartQA / OCRBench prompts and the conversation templates;
//!   [`pycase`] is Python's `str.capitalize()`.
//! - [`data`]: questions and images from every format `ovbench score` reads.
//! - [`cache`]: the resumable response cache.
//! - [`run`]: the loop, the predictions JSONL, scoring and the record body.
//! - [`fixture`]: tiny random-weight models and datasets in the real file layouts.

pub mod cache;
pub mod data;
pub mod error;
pub mod fixture;
pub mod llm;
pub mod llm_config;
pub mod openclip;
pub mod preprocess;
pub mod projector;
pub mod prompt;
pub mod pycase;
mod pycase_tables;
pub mod record;
pub mod run;
pub mod tensors;

pub use candle_core::DType;
pub use error::{EvalError, Result};
pub use run::{run, run_with, EvalOptions, Model, Outcome};
