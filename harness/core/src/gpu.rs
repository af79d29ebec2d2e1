//! GPU facts from NVML, loaded at run time: without a driver every field reads
//! "unavailable" with the reason, and nothing fails.

use serde::{Deserialize, Serialize};

/// What NVML says about one device at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GpuSnapshot {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    pub cuda_driver_version: Option<String>,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub sm_clock_mhz: Option<u32>,
    pub mem_clock_mhz: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_mw: Option<u32>,
    /// Names of the active clock-throttle reasons (empty when none).
    pub throttle_reasons: Vec<String>,
}

/// Either the snapshot or why it could not be taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GpuState {
    Available(GpuSnapshot),
    Unavailable { reason: String },
}

/// Snapshot of device `index`; never fails, never panics.
pub fn snapshot(index: u32) -> GpuState {
    match try_snapshot(index) {
        Ok(s) => GpuState::Available(s),
        Err(reason) => GpuState::Unavailable { reason },
    }
}

fn try_snapshot(index: u32) -> Result<GpuSnapshot, String> {
    use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
    let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML not loaded: {e}"))?;
    let dev = nvml
        .device_by_index(index)
        .map_err(|e| format!("NVML device {index}: {e}"))?;
    let mem = dev
        .memory_info()
        .map_err(|e| format!("NVML memory info: {e}"))?;
    let throttle_reasons = dev
        .current_throttle_reasons()
        .map(|r| {
            format!("{r:?}")
                .split('|')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && s != "(empty)")
                .collect()
        })
        .unwrap_or_default();
    Ok(GpuSnapshot {
        index,
        name: dev.name().unwrap_or_else(|e| format!("unavailable: {e}")),
        uuid: dev.uuid().unwrap_or_else(|e| format!("unavailable: {e}")),
        driver_version: nvml
            .sys_driver_version()
            .unwrap_or_else(|e| format!("unavailable: {e}")),
        cuda_driver_version: nvml
            .sys_cuda_driver_version()
            .ok()
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
        memory_total_bytes: mem.total,
        memory_used_bytes: mem.used,
        sm_clock_mhz: dev.clock_info(Clock::SM).ok(),
        mem_clock_mhz: dev.clock_info(Clock::Memory).ok(),
        temperature_c: dev.temperature(TemperatureSensor::Gpu).ok(),
        power_mw: dev.power_usage().ok(),
        throttle_reasons,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_never_panics() {
        // On a machine without a driver this is Unavailable with a reason; with one, Available.
        match super::snapshot(0) {
            super::GpuState::Available(s) => assert!(!s.name.is_empty()),
            super::GpuState::Unavailable { reason } => assert!(!reason.is_empty()),
        }
    }
}
