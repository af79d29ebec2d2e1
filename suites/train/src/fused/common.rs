//! What the fused kernels share: the float types they run in, CPU tensor construction, the
//! one-use state of custom ops, storage access with errors that name the op, and the row
//! chunking that keeps results independent of thread scheduling.

use super::vmath;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Error, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// Rows per parallel task.
pub(crate) const CHUNK_ROWS: usize = 64;

/// The float types the fused kernels run in: f32 for training, f64 for gradient checks.
pub trait Real: num_traits::Float + num_traits::FromPrimitive + Send + Sync + 'static {
    fn of(s: &CpuStorage) -> Option<&Vec<Self>>;
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<Self>>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// exp, vectorisable in f32 ([`vmath::exp_f32`]), libm's in f64 (gradient checks).
    fn fast_exp(self) -> Self;
}

/// A CPU tensor that owns `v` (no copy).
pub(crate) fn tensor_of<T: Real>(v: Vec<T>, shape: impl Into<Shape>) -> Result<Tensor> {
    cpu_tensor(T::wrap(v), shape)
}

/// A CPU tensor owning the f32 or f64 storage `s`.
pub(crate) fn cpu_tensor(s: CpuStorage, shape: impl Into<Shape>) -> Result<Tensor> {
    let dev = candle_core::Device::Cpu;
    match s {
        CpuStorage::F32(v) => Tensor::from_vec(v, shape, &dev),
        CpuStorage::F64(v) => Tensor::from_vec(v, shape, &dev),
        other => Err(msg(
            "fused",
            format!("unsupported dtype {:?}", other.dtype()),
        )),
    }
}

impl Real for f32 {
    fn of(s: &CpuStorage) -> Option<&Vec<f32>> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<f32>> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    #[inline(always)]
    fn fast_exp(self) -> f32 {
        vmath::exp_f32(self)
    }
}

impl Real for f64 {
    fn of(s: &CpuStorage) -> Option<&Vec<f64>> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn of_mut(s: &mut CpuStorage) -> Option<&mut Vec<f64>> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
}

/// Takes what a custom op stored for one later use (its output for `cpu_fwd`, or the buffers its
/// backward pass reads); `gone` says why it may already be taken.
pub(crate) fn take_once<V>(slot: &Mutex<Option<V>>, op: &str, gone: &str) -> Result<V> {
    slot.lock()
        .map_err(|_| msg(op, "state lock poisoned by an earlier panic"))?
        .take()
        .ok_or_else(|| msg(op, gone))
}

pub(crate) fn msg(op: &str, what: impl std::fmt::Display) -> Error {
    Error::Msg(format!("{op}: {what}"))
}

/// The contiguous elements of a storage, or an error naming the op.
pub(crate) fn slice<'a, T: Real>(op: &str, s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let v = T::of(s).ok_or_else(|| msg(op, format!("unsupported dtype {:?}", s.dtype())))?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| msg(op, "input must be contiguous"))?;
    Ok(&v[a..b])
}

pub(crate) fn last_dim(op: &str, l: &Layout) -> Result<usize> {
    l.dims()
        .last()
        .copied()
        .filter(|&d| d > 0)
        .ok_or_else(|| msg(op, "needs a non-empty last dimension"))
}

pub(crate) fn uninit<T: Real>(n: usize) -> Vec<T> {
    vec![T::zero(); n]
}

pub(crate) fn cast<T: Real>(x: f64) -> T {
    T::from_f64(x).expect("finite constant")
}

/// Dispatches a generic kernel on the storage's float type.
macro_rules! on_float {
    ($s:expr, $op:expr, $f:ident ( $($arg:expr),* )) => {
        match candle_core::backend::BackendStorage::dtype($s) {
            candle_core::DType::F32 => $f::<f32>($($arg),*),
            candle_core::DType::F64 => $f::<f64>($($arg),*),
            d => Err($crate::fused::msg($op, format!("unsupported dtype {d:?}"))),
        }
    };
}
pub(crate) use on_float;

/// The contiguous CPU data of a tensor's storage.
pub(crate) fn cpu_data<'a, T: Real>(
    op: &str,
    s: &'a candle_core::Storage,
    l: &Layout,
) -> Result<&'a [T]> {
    match s {
        candle_core::Storage::Cpu(c) => slice::<T>(op, c, l),
        _ => Err(msg(op, "tensors must be on the CPU")),
    }
}
