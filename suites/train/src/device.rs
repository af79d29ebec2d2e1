//! Device and precision selection from user-facing strings, with one-line errors.

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "index")]
pub enum DeviceArg {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(DeviceArg::Cuda(i)),
                _ => Err(format!(
                    "unknown device '{s}' (expected cpu, cuda or cuda:N)"
                )),
            },
        }
    }
}

impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceArg::Cpu => f.write_str("cpu"),
            DeviceArg::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceArg {
    /// Opens the device; without the `cuda` feature or a driver, a one-line reason.
    pub fn open(&self) -> Result<Device, String> {
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda(i) => open_cuda(*i),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(i: usize) -> Result<Device, String> {
    // Probe the driver first: creating a CUDA device without libcuda can abort the process.
    if let ovbench_harness::gpu::GpuState::Unavailable { reason } =
        ovbench_harness::gpu::snapshot(i as u32)
    {
        return Err(format!(
            "--device cuda:{i}: no usable NVIDIA driver ({reason})"
        ));
    }
    if let Some(missing) = missing_cuda_libraries() {
        return Err(format!(
            "--device cuda:{i}: CUDA libraries not found: {missing} (put the folders holding them on LD_LIBRARY_PATH; scripts/gpu-run.sh takes them from the Python nvidia-* packages)"
        ));
    }
    // cudarc still panics on a library it cannot load; keep that to the one-line error too.
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(i));
    std::panic::set_hook(quiet);
    match opened {
        Ok(r) => r.map_err(|e| format!("--device cuda:{i}: {e}")),
        Err(p) => Err(format!("--device cuda:{i}: {}", panic_text(&p))),
    }
}

/// The CUDA libraries a run-time-loading build (scripts/build-cuda.sh) opens on first use,
/// named as cudarc looks for them; None when all load. A build linked at start needs no probe:
/// the loader has already found them.
#[cfg(feature = "cuda")]
fn missing_cuda_libraries() -> Option<String> {
    #[cfg(ovbench_cuda_dynamic_loading)]
    {
        use candle_core::cuda_backend::cudarc as c;
        // SAFETY: each probe only dlopens the library (running its initialisers) and closes it.
        let present = unsafe {
            [
                ("libcuda (the driver)", c::driver::sys::is_culib_present()),
                ("libcublas", c::cublas::sys::is_culib_present()),
                ("libcublasLt", c::cublaslt::sys::is_culib_present()),
                ("libcurand", c::curand::sys::is_culib_present()),
                ("libnvrtc", c::nvrtc::sys::is_culib_present()),
            ]
        };
        let missing: Vec<&str> = present
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Some(missing.join(", "));
        }
    }
    None
}

#[cfg(feature = "cuda")]
fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| p.downcast_ref::<&str>().copied())
        .unwrap_or("CUDA initialisation panicked");
    // cudarc's message runs to several sentences and a list of names: keep the first.
    text.split(" - ").next().unwrap_or(text).to_string()
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(i: usize) -> Result<Device, String> {
    Err(format!(
        "--device cuda:{i}: this ovbench was built without CUDA support (rebuild with --features cuda; see scripts/build-cuda.sh)"
    ))
}

/// Compute precision of the matrix products. Weights and optimizer state stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DTypeArg {
    F32,
    Bf16,
    F16,
}

impl FromStr for DTypeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" | "fp32" | "float32" => Ok(DTypeArg::F32),
            "bf16" | "bfloat16" => Ok(DTypeArg::Bf16),
            "f16" | "fp16" | "float16" => Ok(DTypeArg::F16),
            _ => Err(format!("unknown dtype '{s}' (expected f32, bf16 or f16)")),
        }
    }
}

impl DTypeArg {
    pub fn dtype(self) -> DType {
        match self {
            DTypeArg::F32 => DType::F32,
            DTypeArg::Bf16 => DType::BF16,
            DTypeArg::F16 => DType::F16,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DTypeArg::F32 => "f32",
            DTypeArg::Bf16 => "bf16",
            DTypeArg::F16 => "f16",
        }
    }
}
