//! The candle engine: ovbench's own models, in this process (the step runner's `run_recipe`).

use super::{oom, Engine, RecipeOutcome};
use crate::config::ModelConfig;
use crate::policy::ResolvedPolicy;
use crate::recipe::Recipe;
use crate::step::{run_recipe, Progress, StepConfig, StepError};
use candle_core::Device;

pub struct CandleEngine {
    device: Device,
}

impl CandleEngine {
    /// Opens the device of `cfg` (a one-line error without a driver or CUDA support).
    pub fn open(cfg: &StepConfig) -> Result<CandleEngine, StepError> {
        let device = cfg.device.open().map_err(StepError::Device)?;
        crate::gpu_memory::note_context_baseline(&device);
        Ok(CandleEngine { device })
    }
}

impl Engine for CandleEngine {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn run_recipe(
        &mut self,
        cfg: &StepConfig,
        mcfg: &ModelConfig,
        policy: &ResolvedPolicy,
        recipe: Recipe,
        progress: &mut dyn Progress,
    ) -> Result<RecipeOutcome, StepError> {
        let device = &self.device;
        let result = run_recipe(cfg, mcfg, policy, recipe, device, progress);
        match result {
            Ok(run) => Ok(
                match crate::gpu_memory::over_cap(run.gpu.as_ref(), cfg.mem_cap_bytes) {
                    Some(msg) => RecipeOutcome::Failed(oom(recipe, cfg.batch, &msg)),
                    None => RecipeOutcome::Done(run),
                },
            ),
            Err(e) if device.is_cuda() && crate::gpu_memory::is_oom_message(&e.to_string()) => Ok(
                RecipeOutcome::Failed(oom(recipe, cfg.batch, &e.to_string())),
            ),
            Err(e) => Err(e),
        }
    }
}
