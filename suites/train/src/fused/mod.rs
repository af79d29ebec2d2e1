//! Fused CPU kernels with their own backward passes: the whole pre-LN transformer block
//! ([`block`]), layer norm, (masked) softmax, GELU and the vocabulary head with its token
//! cross-entropy.
//!
//! candle composes these from element-wise ops, and its backward pass composes their
//! derivatives again: a layer norm backward is about fifteen passes over memory, each a new
//! tensor, and every op's gradient starts as a zero-filled tensor that is then added to. Here
//! each forward is one pass per row and each backward one more; the transformer block is one op
//! whose backward pass adds its weights' gradients straight into their buffers ([`grads`]);
//! matrix products read operands in place through strides ([`gemm`]); the head never holds more
//! than one (N, V) buffer. Element-wise loops are vectorisable, with a polynomial exponential
//! and AVX2 builds where the CPU has them ([`vmath`]).
//!
//! Which kernels run is part of the execution context the model code passes down its forward
//! passes ([`crate::layers::Exec`]), fused by default, so that a step can be replayed with
//! candle's composed ops to compare and the record says which ran.
//! Fused kernels cover f32 and f64 on the CPU. Elsewhere (CUDA) layer norm, softmax, dense
//! layers and the token cross-entropy run as device-generic single ops ([`portable`]) and the
//! rest takes candle's composed ops (no CUDA kernels of ovbench's own for them yet).
//!
//! Work is split over rows (or columns, or attention heads) with rayon in fixed-size chunks
//! whose partial sums are added in chunk order, so results do not depend on thread scheduling.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

pub mod block;
mod common;
mod cross_entropy;
mod gelu;
pub mod gemm;
pub mod grads;
mod layer_norm;
pub mod portable;
mod softmax;
pub mod vmath;

pub use common::Real;
pub(crate) use common::{cast, cpu_tensor, msg, slice, take_once, tensor_of, CHUNK_ROWS};
pub use cross_entropy::{linear_nll, row_nll};
pub use gelu::gelu;
pub(crate) use gelu::{GELU_C, SQRT_2_OVER_PI};
pub use layer_norm::layer_norm;
pub use softmax::softmax;

/// Which implementation of layer norm, softmax, GELU and cross-entropy the models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// This module's fused CPU kernels (composed ops where they do not apply).
    #[default]
    Fused,
    /// candle's composed ops everywhere.
    Composed,
    /// Device-generic single ops ([`portable`]) for layer norm, softmax, dense layers and the
    /// token cross-entropy, attention recomputed in the backward pass, composed ops for the
    /// rest: what `fused` runs on CUDA, selectable on the CPU to test and measure it there.
    Portable,
}

impl Kernels {
    /// Records made before the setting existed ran composed ops.
    pub fn composed() -> Self {
        Kernels::Composed
    }
}

impl FromStr for Kernels {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fused" => Ok(Kernels::Fused),
            "composed" => Ok(Kernels::Composed),
            "portable" => Ok(Kernels::Portable),
            _ => Err(format!(
                "unknown kernels '{s}' (expected fused, composed or portable)"
            )),
        }
    }
}

/// Whether the fused kernel applies to `t` under the kernel choice `k`.
pub fn applies(t: &Tensor, k: Kernels) -> bool {
    k == Kernels::Fused && t.device().is_cpu() && matches!(t.dtype(), DType::F32 | DType::F64)
}

/// Whether the device-generic single ops ([`portable`]) apply to `t` under `k`: always with
/// `portable`, and with `fused` wherever the fused CPU kernels do not (CUDA, other dtypes).
pub fn portable_applies(t: &Tensor, k: Kernels) -> bool {
    match k {
        Kernels::Portable => true,
        Kernels::Fused => !applies(t, k),
        Kernels::Composed => false,
    }
}
