//! Engines: what runs a recipe's training step for `ovbench step` (hyperfine's executor shape).
//!
//! - [`candle::CandleEngine`]: in this process, ovbench's candle models (the step runner's
//!   `run_recipe`);
//! - [`torch::TorchEngine`]: a child process running the project's PyTorch implementation of
//!   both recipes (engines/torch), on one device or several under torchrun, through the
//!   harness's line protocol (ovbench_harness::engine).
//!
//! Both produce the same record: a [`RecipeRun`] per recipe, or a [`FailedRun`] with status
//! `oom`. The harness owns warm-up and sample counts, clocks' interpretation, memory views,
//! provenance and the record; an engine only runs steps.

pub mod candle;
pub mod torch;

use crate::config::ModelConfig;
use crate::policy::ResolvedPolicy;
use crate::recipe::Recipe;
use crate::step::{FailedRun, Progress, RecipeRun, StepConfig, StepError};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which engine runs the step (a comparison key: records of different engines never pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// ovbench's candle models, in process (every record made before engines existed).
    #[default]
    Candle,
    /// The PyTorch implementation in engines/torch, in a child process.
    Torch,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Candle => "candle",
            EngineKind::Torch => "torch",
        }
    }
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "candle" => Ok(EngineKind::Candle),
            "torch" => Ok(EngineKind::Torch),
            _ => Err(format!("unknown engine '{s}' (expected candle or torch)")),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One recipe's result: a run, or a run that did not fit.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum RecipeOutcome {
    Done(RecipeRun),
    Failed(FailedRun),
}

/// What runs a recipe.
pub trait Engine {
    fn name(&self) -> &'static str;
    /// Warm-up then measured steps of `recipe` as `cfg` asks.
    fn run_recipe(
        &mut self,
        cfg: &StepConfig,
        mcfg: &ModelConfig,
        policy: &ResolvedPolicy,
        recipe: Recipe,
        progress: &mut dyn Progress,
    ) -> Result<RecipeOutcome, StepError>;
}

/// The engine `cfg` names, ready to run.
pub fn for_config(cfg: &StepConfig) -> Result<Box<dyn Engine>, StepError> {
    Ok(match cfg.engine {
        EngineKind::Candle => Box::new(candle::CandleEngine::open(cfg)?),
        EngineKind::Torch => Box::new(torch::TorchEngine::new(cfg)?),
    })
}

/// The engine settings of `cfg` that do not fit together; the error names the argument.
pub fn validate(cfg: &StepConfig) -> Result<(), String> {
    if cfg.nproc == 0 {
        return Err("--nproc must be at least 1".into());
    }
    if cfg.engine == EngineKind::Candle {
        if cfg.compile {
            return Err("--compile needs --engine torch (torch.compile)".into());
        }
        if cfg.nproc > 1 {
            return Err(
                "--nproc needs --engine torch (ovbench runs several processes through torchrun)"
                    .into(),
            );
        }
    }
    if cfg.compile && cfg.warmup == 0 {
        return Err(
            "--compile needs --warmup 1 or more: the first step compiles, and must not be timed"
                .into(),
        );
    }
    Ok(())
}

/// A failed run recorded as out of memory.
pub fn oom(recipe: Recipe, batch: usize, error: &str) -> FailedRun {
    FailedRun {
        recipe,
        batch,
        status: "oom".into(),
        // The first line: candle appends a backtrace to device errors.
        error: error.lines().next().unwrap_or_default().to_string(),
    }
}
