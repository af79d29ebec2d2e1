//! An NVML sampler thread: device used memory and the used memory of a set of processes
//! (this one, or an engine's child processes) at a fixed interval, plus the driver's
//! accounting peak for a process where accounting is enabled.
//! Without a driver it reports why, and nothing fails.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the sampler saw between `start` and `stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NvmlSamples {
    /// Requested interval between samples.
    pub interval_s: f64,
    /// Samples taken (each one device reading; process readings may be fewer).
    pub samples: u64,
    /// Achieved mean interval (wall time / samples); larger than requested when NVML is slow.
    pub achieved_interval_s: Option<f64>,
    /// Device used memory at the first sample (other processes and contexts included).
    pub device_used_first_bytes: Option<u64>,
    /// Highest device used memory sampled.
    pub device_used_peak_bytes: Option<u64>,
    /// Highest used memory NVML attributed to the sampled processes (summed over them at each
    /// sample), over the samples that had any of them.
    pub process_used_peak_bytes: Option<u64>,
    pub process_samples: u64,
    /// Why a view is missing, if one is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unavailable: Option<String>,
}

pub struct NvmlSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<NvmlSamples>>,
}

/// The processes whose memory a sampler sums; others may add to it while it runs (an engine's
/// ranks report their ids once they have started).
pub type PidSet = Arc<Mutex<Vec<u32>>>;

impl NvmlSampler {
    /// Starts sampling device `index` every `interval` (1 ms is the default callers use), with
    /// this process as the process view.
    pub fn start(index: u32, interval: Duration) -> NvmlSampler {
        Self::start_for(
            index,
            interval,
            Arc::new(Mutex::new(vec![std::process::id()])),
        )
    }

    /// Starts sampling device `index`, the process view summing over the processes in `pids`.
    pub fn start_for(index: u32, interval: Duration, pids: PidSet) -> NvmlSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nvml-sampler".into())
            .spawn(move || sample_loop(index, interval, &flag, &pids))
            .ok();
        NvmlSampler { stop, handle }
    }

    /// Stops the thread (after one last sample) and returns what it saw.
    pub fn stop(mut self) -> NvmlSamples {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(s)) => s,
            Some(Err(_)) => NvmlSamples {
                unavailable: Some("sampler thread panicked".into()),
                ..Default::default()
            },
            None => NvmlSamples {
                unavailable: Some("sampler thread could not be started".into()),
                ..Default::default()
            },
        }
    }
}

impl Drop for NvmlSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn sample_loop(index: u32, interval: Duration, stop: &AtomicBool, pids: &PidSet) -> NvmlSamples {
    let mut out = NvmlSamples {
        interval_s: interval.as_secs_f64(),
        ..Default::default()
    };
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            out.unavailable = Some(format!("NVML not loaded: {e}"));
            return out;
        }
    };
    let dev = match nvml.device_by_index(index) {
        Ok(d) => d,
        Err(e) => {
            out.unavailable = Some(format!("NVML device {index}: {e}"));
            return out;
        }
    };
    let t0 = Instant::now();
    let mut process_error = None;
    loop {
        let last = stop.load(Ordering::SeqCst);
        if let Ok(m) = dev.memory_info() {
            out.samples += 1;
            out.device_used_first_bytes.get_or_insert(m.used);
            out.device_used_peak_bytes = Some(out.device_used_peak_bytes.unwrap_or(0).max(m.used));
        }
        match dev.running_compute_processes() {
            Ok(ps) => {
                let wanted = pids.lock().map(|p| p.clone()).unwrap_or_default();
                let used: Vec<u64> = ps
                    .iter()
                    .filter(|p| wanted.contains(&p.pid))
                    .filter_map(|p| match p.used_gpu_memory {
                        nvml_wrapper::enums::device::UsedGpuMemory::Used(b) => Some(b),
                        _ => None,
                    })
                    .collect();
                if !used.is_empty() {
                    out.process_samples += 1;
                    let sum = used.iter().sum::<u64>();
                    out.process_used_peak_bytes =
                        Some(out.process_used_peak_bytes.unwrap_or(0).max(sum));
                }
            }
            Err(e) => process_error = Some(format!("NVML process list: {e}")),
        }
        if last {
            break;
        }
        std::thread::sleep(interval);
    }
    if out.samples > 0 {
        out.achieved_interval_s = Some(t0.elapsed().as_secs_f64() / out.samples as f64);
    }
    if out.process_samples == 0 {
        let wanted = pids.lock().map(|p| p.clone()).unwrap_or_default();
        out.unavailable = Some(process_error.unwrap_or_else(|| {
            format!("NVML listed no memory for the sampled processes (pids {wanted:?}; a container's pid namespace hides them)")
        }));
    }
    out
}

/// The driver's accounting peak of this process's GPU memory, or why there is none
/// (accounting off: enable with `nvidia-smi -am 1` as root before the run).
pub fn accounting_peak(index: u32) -> Result<u64, String> {
    accounting_peak_of(index, std::process::id())
}

/// The driver's accounting peak of process `pid`'s memory on device `index` (it outlives the
/// process: the driver keeps the stats of exited processes while accounting is on).
pub fn accounting_peak_of(index: u32, pid: u32) -> Result<u64, String> {
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML not loaded: {e}"))?;
    let dev = nvml
        .device_by_index(index)
        .map_err(|e| format!("NVML device {index}: {e}"))?;
    match dev.is_accounting_enabled() {
        Ok(true) => {}
        Ok(false) => return Err("NVML accounting mode is off (nvidia-smi -am 1 as root)".into()),
        Err(e) => return Err(format!("NVML accounting mode: {e}")),
    }
    let s = dev
        .accounting_stats_for(pid)
        .map_err(|e| format!("NVML accounting stats: {e}"))?;
    s.max_memory_usage
        .ok_or_else(|| "NVML accounting reported no peak for this process".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a driver the sampler stops cleanly and says why.
    #[test]
    fn without_driver_reads_unavailable() {
        if matches!(crate::gpu::snapshot(0), crate::gpu::GpuState::Available(_)) {
            return; // a GPU is present: nothing to check here
        }
        let s = NvmlSampler::start(0, Duration::from_millis(1)).stop();
        assert_eq!(s.samples, 0);
        assert!(s.unavailable.as_deref().unwrap_or("").starts_with("NVML"));
        assert!(accounting_peak(0).unwrap_err().starts_with("NVML"));
    }
}
