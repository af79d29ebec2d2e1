//! The CLIPA resolution curriculum of both recipes (`data/schedule.json`) and
//! a planner that lists the stages up to a final resolution, which is what
//! the full-schedule time projection needs.

use serde::{Deserialize, Serialize};

use crate::{Recipe, ReferenceError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    pub title: String,
    #[serde(default)]
    pub notes: Vec<String>,
    pub recipes: Vec<Schedule>,
}

/// One recipe's curriculum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub recipe: Recipe,
    pub name: String,
    pub optimizer: String,
    pub source: String,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub unverified: Vec<String>,
    pub stages: Vec<Stage>,
}

/// One CLIPA stage. Fields are `None` where nothing is published (the
/// OpenVision 2 third stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub stage: u32,
    /// Resolution by backbone family; an option without `backbones` applies to all.
    pub resolution: Vec<ResolutionOption>,
    /// Samples seen in the stage, from the released code [R].
    #[serde(default)]
    pub samples: Option<u64>,
    /// Samples as the paper prints them ("12.8B") [P1].
    #[serde(default)]
    pub samples_paper: Option<String>,
    /// Global batch, from the released code [R].
    #[serde(default)]
    pub global_batch: Option<u64>,
    /// Global batch as the paper prints it ("32K") [P1].
    #[serde(default)]
    pub global_batch_paper: Option<String>,
    #[serde(default)]
    pub base_lr: Option<f64>,
    #[serde(default)]
    pub peak_lr_code: Option<f64>,
    #[serde(default)]
    pub warmup_samples_code: Option<u64>,
    /// Fraction of visual tokens kept before the decoder (1.0 = no masking).
    #[serde(default)]
    pub keep_ratio: Option<f64>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionOption {
    pub px: u32,
    /// Backbone families (`L`, `SoViT-400M`, `H`, `Ti`, `S`, `B`); `None` = any.
    #[serde(default)]
    pub backbones: Option<Vec<String>>,
}

/// A stage with every number filled in, ready for a time projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStage {
    pub stage: u32,
    pub resolution: u32,
    pub samples: u64,
    pub global_batch: u64,
    pub keep_ratio: f64,
    /// Where a number was assumed rather than published.
    pub caveats: Vec<String>,
}

/// `"L/14"` -> `"L"`, `"SoViT-400M/14"` -> `"SoViT-400M"`.
pub fn backbone_family(backbone: &str) -> &str {
    backbone.split('/').next().unwrap_or(backbone)
}

impl Stage {
    /// The resolutions this stage may run at for `backbone`.
    pub fn resolutions_for(&self, backbone: &str) -> Vec<u32> {
        let family = backbone_family(backbone);
        self.resolution
            .iter()
            .filter(|o| {
                o.backbones
                    .as_ref()
                    .is_none_or(|b| b.iter().any(|x| x == family))
            })
            .map(|o| o.px)
            .collect()
    }
}

impl Schedule {
    /// The stages from the first up to the one that reaches
    /// `final_resolution` for `backbone` (e.g. 84 -> 224 for L/14 @224).
    ///
    /// A stage without published samples or batch takes them from the same
    /// stage of `fallback` (OpenVision's recipe, which the facts say is
    /// presumably reused), and a missing keep ratio from this recipe's
    /// previous stage; each such assumption is listed in the stage's caveats.
    pub fn plan_to(
        &self,
        backbone: &str,
        final_resolution: u32,
        fallback: Option<&Schedule>,
    ) -> Result<Vec<PlannedStage>, ReferenceError> {
        let fail = |message: String| ReferenceError::Schedule {
            recipe: self.recipe.key().to_owned(),
            message,
        };
        let mut plan: Vec<PlannedStage> = Vec::new();
        for stage in &self.stages {
            let options = stage.resolutions_for(backbone);
            let resolution = if options.contains(&final_resolution) {
                final_resolution
            } else {
                match options.as_slice() {
                    [px] if *px < final_resolution => *px,
                    [] => {
                        return Err(fail(format!(
                            "stage {} has no resolution for backbone {backbone}",
                            stage.stage
                        )))
                    }
                    _ => {
                        return Err(fail(format!(
                            "stage {} (resolutions {options:?}) does not lead to {final_resolution} px for {backbone}",
                            stage.stage
                        )))
                    }
                }
            };
            let mut caveats = Vec::new();
            if let Some(note) = &stage.unverified {
                caveats.push(format!("stage {}: {note}", stage.stage));
            }
            let fb = fallback.and_then(|f| f.stages.iter().find(|s| s.stage == stage.stage));
            let samples = match (stage.samples, fb.and_then(|s| s.samples)) {
                (Some(n), _) => n,
                (None, Some(n)) => {
                    caveats.push(format!(
                        "stage {}: samples not published for {}; {n} taken from {} (UNVERIFIED)",
                        stage.stage,
                        self.recipe.paper_name(),
                        fallback.map_or("fallback", |f| f.recipe.paper_name())
                    ));
                    n
                }
                (None, None) => return Err(fail(format!("stage {} has no samples", stage.stage))),
            };
            let global_batch = match (stage.global_batch, fb.and_then(|s| s.global_batch)) {
                (Some(n), _) => n,
                (None, Some(n)) => {
                    caveats.push(format!(
                        "stage {}: global batch not published for {}; {n} taken from {} (UNVERIFIED)",
                        stage.stage,
                        self.recipe.paper_name(),
                        fallback.map_or("fallback", |f| f.recipe.paper_name())
                    ));
                    n
                }
                (None, None) => {
                    return Err(fail(format!("stage {} has no global batch", stage.stage)))
                }
            };
            // Masking is a property of the recipe, not of the stage, so a
            // missing keep ratio follows this recipe's previous stage rather
            // than the fallback recipe.
            let keep_ratio = match (stage.keep_ratio, plan.last()) {
                (Some(k), _) => k,
                (None, Some(prev)) => {
                    caveats.push(format!(
                        "stage {}: keep ratio not published; the previous stage's {} assumed",
                        stage.stage, prev.keep_ratio
                    ));
                    prev.keep_ratio
                }
                (None, None) => {
                    return Err(fail(format!("stage {} has no keep ratio", stage.stage)))
                }
            };
            plan.push(PlannedStage {
                stage: stage.stage,
                resolution,
                samples,
                global_batch,
                keep_ratio,
                caveats,
            });
            if resolution == final_resolution {
                return Ok(plan);
            }
        }
        Err(fail(format!(
            "no stage reaches {final_resolution} px for {backbone}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use crate::{clipa_plan, Recipe, ReferenceError};

    fn resolutions(recipe: Recipe, backbone: &str, res: u32) -> Vec<u32> {
        clipa_plan(recipe, backbone, res)
            .unwrap()
            .iter()
            .map(|s| s.resolution)
            .collect()
    }

    #[test]
    fn table3_rows_plan_to_their_resolution() {
        assert_eq!(resolutions(Recipe::Ov1, "L/14", 224), [84, 224]);
        assert_eq!(resolutions(Recipe::Ov2, "L/14", 224), [84, 224]);
        assert_eq!(
            resolutions(Recipe::Ov1, "SoViT-400M/14", 384),
            [84, 224, 384]
        );
        assert_eq!(
            resolutions(Recipe::Ov2, "SoViT-400M/14", 384),
            [84, 224, 384]
        );
        assert_eq!(resolutions(Recipe::Ov1, "L/14", 336), [84, 224, 336]);
        assert_eq!(resolutions(Recipe::Ov1, "B/16", 224), [160, 224]);
    }

    #[test]
    fn published_stages_carry_no_caveats() {
        for recipe in [Recipe::Ov1, Recipe::Ov2] {
            let plan = clipa_plan(recipe, "L/14", 224).unwrap();
            assert_eq!(plan[0].samples, 12_811_670_000);
            assert_eq!(plan[0].global_batch, 32_768);
            assert_eq!(plan[1].samples, 1_024_933_600);
            assert_eq!(plan[1].global_batch, 16_384);
            let keep = if recipe == Recipe::Ov1 { 1.0 } else { 0.35 };
            assert!(plan
                .iter()
                .all(|s| s.keep_ratio == keep && s.caveats.is_empty()));
        }
    }

    #[test]
    fn ov2_third_stage_is_filled_in_and_flagged() {
        let plan = clipa_plan(Recipe::Ov2, "SoViT-400M/14", 384).unwrap();
        let third = &plan[2];
        assert_eq!((third.samples, third.global_batch), (256_233_400, 8_192));
        assert_eq!(third.keep_ratio, 0.35);
        assert!(third.caveats.len() >= 3, "{:?}", third.caveats);
        assert!(third.caveats.iter().any(|c| c.contains("UNVERIFIED")));
        // OpenVision's own third stage is published: no caveats.
        let v1 = clipa_plan(Recipe::Ov1, "SoViT-400M/14", 384).unwrap();
        assert!(v1[2].caveats.is_empty());
    }

    #[test]
    fn unreachable_resolutions_are_errors() {
        for (recipe, backbone, res) in [
            (Recipe::Ov1, "L/14", 384),
            (Recipe::Ov1, "SoViT-400M/14", 336),
            (Recipe::Ov2, "L/14", 100),
            (Recipe::Ov1, "X/14", 224),
        ] {
            let err = clipa_plan(recipe, backbone, res).unwrap_err();
            assert!(matches!(err, ReferenceError::Schedule { .. }), "{err}");
        }
    }
}
