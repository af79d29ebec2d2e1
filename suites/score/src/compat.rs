//! Benchmarks and the toolkit behaviours (`--compat` labels) each one can reproduce.

use crate::error::ScoreError;
use serde::Serialize;
use std::fmt;

/// A downstream benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    TextVqa,
    ChartQa,
    OcrBench,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::TextVqa, Task::ChartQa, Task::OcrBench];

    pub fn name(self) -> &'static str {
        match self {
            Task::TextVqa => "textvqa",
            Task::ChartQa => "chartqa",
            Task::OcrBench => "ocrbench",
        }
    }

    pub fn parse(s: &str) -> Result<Task, ScoreError> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                ScoreError::Usage(format!(
                    "unknown task '{s}' (choose textvqa, chartqa or ocrbench)"
                ))
            })
    }

    /// The toolkit behaviours documented for this benchmark (spec §7, "Toolkit labels").
    pub fn compat_labels(self) -> &'static [Compat] {
        use Compat::*;
        match self {
            Task::TextVqa => &[
                LmmsEval,
                Llava,
                Vlmevalkit,
                VlmevalkitPre20250513,
                VqaOfficial,
                VqaOfficialPre2021,
                VlmevalkitXlsx,
            ],
            Task::ChartQa => &[
                LmmsEval,
                Vlmevalkit,
                VlmevalkitPre20250901,
                Pix2struct,
                QwenVl,
                VlmevalkitXlsx,
            ],
            Task::OcrBench => &[
                LmmsEval,
                Official,
                Vlmevalkit,
                LmmsEvalV072,
                LmmsEvalLeV071,
                VlmevalkitXlsx,
            ],
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One reference implementation's behaviour. Labels are the vector file's `toolkit` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compat {
    /// lmms-eval HEAD (75571cfe): the paper's toolkit and the default.
    LmmsEval,
    /// OCRBench scoring of lmms-eval v0.7.2 (no lower-casing of HME predictions, no folding).
    LmmsEvalV072,
    /// OCRBench scoring of lmms-eval v0.2.x..v0.7.1 (lower-cases every prediction).
    LmmsEvalLeV071,
    /// LLaVA `eval_textvqa.py` / `m4c_evaluator.py`.
    Llava,
    /// VLMEvalKit HEAD (e8e78f05).
    Vlmevalkit,
    /// VLMEvalKit TextVQA before 928a95b0 (EvalAI period regex).
    VlmevalkitPre20250513,
    /// VLMEvalKit ChartQA 2024-01-29..2025-08-31 (swapped relaxed_correctness arguments).
    VlmevalkitPre20250901,
    /// VLMEvalKit HEAD after its xlsx prediction round trip (pandas NA tokens, `_xHHHH_`).
    VlmevalkitXlsx,
    /// GT-Vision-Lab vqaEval.py HEAD (a013f004).
    VqaOfficial,
    /// GT-Vision-Lab vqaEval.py 458a8b2 (= Qwen-VL / LAVIS `vqa_eval.py`).
    VqaOfficialPre2021,
    /// pix2struct `relaxed_correctness` called bare (no strip).
    Pix2struct,
    /// Qwen-VL `evaluate_vqa.py` relaxed accuracy (swapped arguments).
    QwenVl,
    /// The official OCRBench scoring script (MultimodalOCR `LLaVA1_5.py` / `example.py`).
    Official,
}

impl Compat {
    pub const ALL: [Compat; 13] = [
        Compat::LmmsEval,
        Compat::LmmsEvalV072,
        Compat::LmmsEvalLeV071,
        Compat::Llava,
        Compat::Vlmevalkit,
        Compat::VlmevalkitPre20250513,
        Compat::VlmevalkitPre20250901,
        Compat::VlmevalkitXlsx,
        Compat::VqaOfficial,
        Compat::VqaOfficialPre2021,
        Compat::Pix2struct,
        Compat::QwenVl,
        Compat::Official,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Compat::LmmsEval => "lmms-eval",
            Compat::LmmsEvalV072 => "lmms-eval@v0.7.2",
            Compat::LmmsEvalLeV071 => "lmms-eval<=v0.7.1",
            Compat::Llava => "llava",
            Compat::Vlmevalkit => "vlmevalkit",
            Compat::VlmevalkitPre20250513 => "vlmevalkit<2025-05-13",
            Compat::VlmevalkitPre20250901 => "vlmevalkit<2025-09-01",
            Compat::VlmevalkitXlsx => "vlmevalkit+xlsx",
            Compat::VqaOfficial => "vqa-official",
            Compat::VqaOfficialPre2021 => "vqa-official<2021",
            Compat::Pix2struct => "pix2struct",
            Compat::QwenVl => "qwen-vl",
            Compat::Official => "official",
        }
    }

    /// Parses a label for `task`; the error lists the labels that task accepts.
    pub fn parse(task: Task, label: &str) -> Result<Compat, ScoreError> {
        task.compat_labels()
            .iter()
            .copied()
            .find(|c| c.label() == label)
            .ok_or_else(|| {
                let valid: Vec<&str> = task.compat_labels().iter().map(|c| c.label()).collect();
                ScoreError::Usage(format!(
                    "--compat '{label}' is not documented for {task}; choose one of: {}",
                    valid.join(", ")
                ))
            })
    }

    /// Whether this label is one of VLMEvalKit's (it reads predictions through pandas).
    pub fn is_vlmevalkit(self) -> bool {
        matches!(
            self,
            Compat::Vlmevalkit
                | Compat::VlmevalkitPre20250513
                | Compat::VlmevalkitPre20250901
                | Compat::VlmevalkitXlsx
        )
    }
}

impl fmt::Display for Compat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for Compat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}
