//! CUDA kernels of the in-place AdamW (`optim.rs`): the same two updates as the CPU path,
//! compiled once per process with NVRTC and loaded into candle's device as a custom module.

use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::{CudaStorage, Layout, Result};
use std::sync::OnceLock;

const MODULE: &str = "ovbench_adamw";

const SRC: &str = r#"
extern "C" __global__ void adamw_moment(float* m, const float* g, float b, float a,
                                         int square, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        float gi = g[i];
        m[i] = square ? b * m[i] + a * gi * gi : b * m[i] + a * gi;
    }
}
extern "C" __global__ void adamw_apply(float* p, const float* m, const float* v, float lr,
                                        float bc1, float bc2, float eps, float wd,
                                        unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        float upd = (m[i] / bc1) / (sqrtf(v[i] / bc2) + eps);
        p[i] -= lr * (upd + wd * p[i]);
    }
}
"#;

fn ptx() -> Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        // No fused multiply-add, so the update rounds like the CPU loop.
        let opts = nvrtc::CompileOptions {
            fmad: Some(false),
            ..Default::default()
        };
        nvrtc::compile_ptx_with_opts(SRC, opts)
            .map(|p| p.to_src())
            .map_err(|e| format!("NVRTC compile of the AdamW kernels failed: {e:?}"))
    })
    .as_ref()
    .map(String::as_str)
    .map_err(|e| candle_core::Error::Cuda(e.clone().into()))
}

fn range(l: &Layout, what: &str) -> Result<(usize, usize)> {
    l.contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("adamw: {what} must be contiguous f32")))
}

fn cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn cuda_err<E: std::fmt::Display>(e: E) -> candle_core::Error {
    candle_core::Error::Cuda(e.to_string().into())
}

/// m <- b m + a g (or g² when `square`), with a = 1 - b as computed by the caller.
pub(crate) fn moment(
    m: &mut CudaStorage,
    lm: &Layout,
    g: &CudaStorage,
    lg: &Layout,
    b: f32,
    a: f32,
    square: bool,
) -> Result<()> {
    let (m0, m1) = range(lm, "moment")?;
    let (g0, g1) = range(lg, "gradient")?;
    if m1 - m0 != g1 - g0 {
        candle_core::bail!("adamw: moment and gradient sizes differ");
    }
    let n = m1 - m0;
    if n == 0 {
        return Ok(());
    }
    let dev = m.device.clone();
    let func = dev.get_or_load_custom_func("adamw_moment", MODULE, ptx()?)?;
    let gs = g.as_cuda_slice::<f32>()?.slice(g0..g1);
    let mut ms = m.as_cuda_slice_mut::<f32>()?.slice_mut(m0..m1);
    let sq: i32 = square.into();
    let n64 = n as u64;
    let mut b_ = func.builder();
    b_.arg(&mut ms);
    b_.arg(&gs);
    b_.arg(&b);
    b_.arg(&a);
    b_.arg(&sq);
    b_.arg(&n64);
    unsafe { b_.launch(cfg(n)) }.map_err(cuda_err)?;
    Ok(())
}

/// p <- p - lr (m̂ / (sqrt(v̂) + eps) + wd p).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply(
    p: &mut CudaStorage,
    lp: &Layout,
    m: &CudaStorage,
    lm: &Layout,
    v: &CudaStorage,
    lv: &Layout,
    h: [f32; 5],
) -> Result<()> {
    let (p0, p1) = range(lp, "parameter")?;
    let (m0, m1) = range(lm, "first moment")?;
    let (v0, v1) = range(lv, "second moment")?;
    if p1 - p0 != m1 - m0 || p1 - p0 != v1 - v0 {
        candle_core::bail!("adamw: parameter and moment sizes differ");
    }
    let n = p1 - p0;
    if n == 0 {
        return Ok(());
    }
    let dev = p.device.clone();
    let func = dev.get_or_load_custom_func("adamw_apply", MODULE, ptx()?)?;
    let ms = m.as_cuda_slice::<f32>()?.slice(m0..m1);
    let vs = v.as_cuda_slice::<f32>()?.slice(v0..v1);
    let mut ps = p.as_cuda_slice_mut::<f32>()?.slice_mut(p0..p1);
    let [lr, bc1, bc2, eps, wd] = h;
    let n64 = n as u64;
    let mut b_ = func.builder();
    b_.arg(&mut ps);
    b_.arg(&ms);
    b_.arg(&vs);
    b_.arg(&lr);
    b_.arg(&bc1);
    b_.arg(&bc2);
    b_.arg(&eps);
    b_.arg(&wd);
    b_.arg(&n64);
    unsafe { b_.launch(cfg(n)) }.map_err(cuda_err)?;
    Ok(())
}
