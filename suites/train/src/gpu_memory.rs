//! GPU memory of one recipe run, in named views that are kept side by side:
//! - `context_baseline_bytes`: device used memory (cuMemGetInfo) right after the CUDA device
//!   was created, before the model's first allocation;
//! - `allocator`: the bytes candle's allocations hold, read from the CUDA memory pool that
//!   cudarc allocates from (cuMemAllocAsync): exact peak of live bytes and of pool reservation;
//! - `nvml_sampled`: an NVML sampler thread (device used memory and this process's memory);
//! - `nvml_accounting_peak`: the driver's accounting peak for this process, where enabled;
//!
//! Plus NVML device facts before and after, and whether clocks or throttling changed.
//! On CPU none of this is collected (`GpuProbe::start` returns None).

use candle_core::Device;
use ovbench_harness::gpu::{self, GpuState};
use ovbench_harness::nvml_sampler::{self, NvmlSampler, NvmlSamples};
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Duration;

/// The bytes candle's allocations held, from the memory pool's own counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AllocatorView {
    /// Live bytes in the pool when the recipe started (previous state not yet freed, if any).
    pub used_at_start_bytes: Option<u64>,
    /// Highest live bytes of candle's allocations during the recipe (CU_MEMPOOL_ATTR_USED_MEM_HIGH).
    pub used_peak_bytes: Option<u64>,
    /// Highest bytes the pool reserved from the device (CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH).
    pub reserved_peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unavailable: Option<String>,
}

/// The driver's accounting peak, or why there is none.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AccountingView {
    pub peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unavailable: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GpuMemory {
    /// cuMemGetInfo used bytes right after device creation (whole device: context, libraries,
    /// and any other process), or why it could not be read.
    pub context_baseline_bytes: Option<u64>,
    /// cuMemGetInfo used bytes at the end of the recipe.
    pub driver_used_after_bytes: Option<u64>,
    pub allocator: AllocatorView,
    pub nvml_sampled: NvmlSamples,
    pub nvml_accounting_peak: AccountingView,
    /// How the memory pool treats freed memory (set once per process).
    pub pool_release_threshold: String,
    /// `--mem-cap`: a peak of `allocator.used_peak_bytes` above it is recorded as out of memory.
    pub mem_cap_bytes: Option<u64>,
    pub gpu_before: GpuState,
    pub gpu_after: GpuState,
    /// SM/memory clocks or the throttle reasons differ between before and after.
    pub clocks_or_throttling_changed: bool,
}

// A measurement of the device, not a setting: the first reading after the device opened.
static CONTEXT_BASELINE: Mutex<Option<u64>> = Mutex::new(None);

/// Parses a memory cap such as `32GiB`, `512MiB`, `40GB`, `1000000` (the harness's parser);
/// a cap of zero bytes is refused.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    match ovbench_harness::table::parse_bytes(s)? {
        0 => Err(format!("'{s}': a memory cap must be more than 0 bytes")),
        b => Ok(b),
    }
}

/// The reason a completed run counts as out of memory under the cap (`--mem-cap`), if it does.
pub fn over_cap(gpu: Option<&GpuMemory>, cap: Option<u64>) -> Option<String> {
    let cap = cap?;
    let peak = gpu?.allocator.used_peak_bytes?;
    (peak > cap).then(|| format!("allocator peak {peak} B exceeds --mem-cap {cap} B"))
}

/// Whether an error message is a device allocation failure.
pub fn is_oom_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("out_of_memory")
        || m.contains("out of memory")
        || m.contains("alloc_failed")
        || m.contains("memory allocation")
}

/// Records the context baseline (call once, right after the device is opened). The memory
/// pool keeps CUDA's default release threshold (0: freed memory goes back at each
/// synchronisation; keeping it all, like PyTorch's cache, ran out of memory sooner).
/// Does nothing on CPU.
pub fn note_context_baseline(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        let ctx = d.cuda_stream().context().clone();
        if let Ok((free, total)) = ctx.mem_get_info() {
            if let Ok(mut g) = CONTEXT_BASELINE.lock() {
                g.get_or_insert((total - free) as u64);
            }
        }
    }
    let _ = device;
}

/// Collection for one recipe run.
pub struct GpuProbe {
    index: u32,
    mem_cap: Option<u64>,
    sampler: NvmlSampler,
    before: GpuState,
    used_at_start: Option<u64>,
    #[cfg(feature = "cuda")]
    ctx: std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaContext>,
}

impl GpuProbe {
    /// Starts the views for a run on `device`, sampling NVML every `interval` and recording
    /// the run's memory cap; None on CPU.
    pub fn start(device: &Device, interval: Duration, mem_cap: Option<u64>) -> Option<GpuProbe> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(d) = device {
            let ctx = d.cuda_stream().context().clone();
            let _ = device.synchronize();
            let index = ctx.ordinal() as u32;
            let used_at_start =
                cuda::get_pool_u64(&ctx, cuda::Attr::CU_MEMPOOL_ATTR_USED_MEM_CURRENT).ok();
            // Writing zero resets a high-water mark to the current value.
            let _ = cuda::set_pool_u64(&ctx, cuda::Attr::CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0);
            let _ = cuda::set_pool_u64(&ctx, cuda::Attr::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH, 0);
            return Some(GpuProbe {
                index,
                mem_cap,
                before: gpu::snapshot(index),
                sampler: NvmlSampler::start(index, interval),
                used_at_start,
                ctx,
            });
        }
        let _ = (device, interval, mem_cap);
        None
    }

    /// Stops sampling and reads every view.
    pub fn finish(self) -> GpuMemory {
        #[allow(unused_mut)]
        let mut allocator = AllocatorView {
            used_at_start_bytes: self.used_at_start,
            unavailable: Some("built without CUDA".into()),
            ..Default::default()
        };
        #[cfg(not(feature = "cuda"))]
        let driver_used_after = None;
        #[cfg(feature = "cuda")]
        let driver_used_after;
        #[cfg(feature = "cuda")]
        {
            use cuda::Attr;
            let used = cuda::get_pool_u64(&self.ctx, Attr::CU_MEMPOOL_ATTR_USED_MEM_HIGH);
            let reserved = cuda::get_pool_u64(&self.ctx, Attr::CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH);
            allocator.unavailable = used.as_ref().err().cloned();
            allocator.used_peak_bytes = used.ok();
            allocator.reserved_peak_bytes = reserved.ok();
            driver_used_after = self
                .ctx
                .mem_get_info()
                .ok()
                .map(|(free, total)| (total - free) as u64);
        }
        let nvml_sampled = self.sampler.stop();
        let nvml_accounting_peak = match nvml_sampler::accounting_peak(self.index) {
            Ok(b) => AccountingView {
                peak_bytes: Some(b),
                unavailable: None,
            },
            Err(e) => AccountingView {
                peak_bytes: None,
                unavailable: Some(e),
            },
        };
        let after = gpu::snapshot(self.index);
        let changed = match (&self.before, &after) {
            (GpuState::Available(a), GpuState::Available(b)) => {
                a.sm_clock_mhz != b.sm_clock_mhz
                    || a.mem_clock_mhz != b.mem_clock_mhz
                    || a.throttle_reasons != b.throttle_reasons
            }
            _ => false,
        };
        GpuMemory {
            context_baseline_bytes: CONTEXT_BASELINE.lock().ok().and_then(|g| *g),
            driver_used_after_bytes: driver_used_after,
            allocator,
            nvml_sampled,
            nvml_accounting_peak,
            pool_release_threshold:
                "0 (CUDA default): freed memory is returned at each synchronisation".into(),
            mem_cap_bytes: self.mem_cap,
            gpu_before: self.before,
            gpu_after: after,
            clocks_or_throttling_changed: changed,
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
    pub use sys::CUmemPool_attribute as Attr;

    fn pool(ctx: &CudaContext) -> Result<sys::CUmemoryPool, String> {
        ctx.bind_to_thread().map_err(|e| e.to_string())?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let r = unsafe { sys::cuDeviceGetMemPool(&mut pool, ctx.cu_device()) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuDeviceGetMemPool: {r:?}"));
        }
        Ok(pool)
    }

    pub fn get_pool_u64(ctx: &CudaContext, attr: Attr) -> Result<u64, String> {
        let p = pool(ctx)?;
        let mut v: u64 = 0;
        let r = unsafe { sys::cuMemPoolGetAttribute(p, attr, &mut v as *mut u64 as *mut _) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuMemPoolGetAttribute({attr:?}): {r:?}"));
        }
        Ok(v)
    }

    pub fn set_pool_u64(ctx: &CudaContext, attr: Attr, value: u64) -> Result<(), String> {
        let p = pool(ctx)?;
        let mut v = value;
        let r = unsafe { sys::cuMemPoolSetAttribute(p, attr, &mut v as *mut u64 as *mut _) };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(format!("cuMemPoolSetAttribute({attr:?}): {r:?}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("32GiB").unwrap(), 32 << 30);
        assert_eq!(parse_bytes("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("40GB").unwrap(), 40_000_000_000);
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
        assert!(parse_bytes("0").is_err());
    }

    #[test]
    fn oom_messages() {
        assert!(is_oom_message(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"
        ));
        assert!(!is_oom_message("shape mismatch in matmul"));
    }

    #[test]
    fn cpu_has_no_probe() {
        assert!(GpuProbe::start(&Device::Cpu, Duration::from_millis(1), None).is_none());
    }
}
