//! Task prompts as lmms-eval formats them (scoring-spec §1.2, §2.2, §3.2), the LLaVA-1.5
//! TextVQA prompt with OCR tokens, and the conversation templates.

use ovbench_score::Task;
use serde::Serialize;

/// The image placeholder LLaVA splices the visual tokens in at.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// How the question is turned into the user's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptStyle {
    /// lmms-eval's task defaults (the paper's toolkit).
    LmmsEval,
    /// LLaVA-1.5's own TextVQA file (`llava_textvqa_val_v051_ocr.jsonl`): OCR tokens, 128 new tokens.
    Llava,
}

/// How many BOS tokens open the Llama-3 prompt (`--bos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BosMode {
    /// What LLaVA-NeXT's code does: `llava_llama_3` renders the tokenizer's chat template,
    /// which writes the BOS text, and `tokenizer_image_token` tokenises with the tokenizer's
    /// own BOS in front: two BOS for Llama-3, one for `vicuna_v1` (its template has none).
    Llava,
    /// Exactly one BOS (the tokenizer's), the chat template's dropped.
    Single,
}

impl BosMode {
    pub fn parse(s: &str) -> Option<BosMode> {
        match s {
            "llava" => Some(BosMode::Llava),
            "single" => Some(BosMode::Single),
            _ => None,
        }
    }
}

/// The conversation template around the user's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conv {
    /// LLaVA-1.5's `vicuna_v1`.
    VicunaV1,
    /// LLaVA-NeXT's `llava_llama_3` (Llama-3 chat headers).
    Llama3,
}

impl Conv {
    pub fn parse(s: &str) -> Option<Conv> {
        match s {
            "vicuna_v1" | "vicuna" => Some(Conv::VicunaV1),
            "llama3" | "llava_llama_3" => Some(Conv::Llama3),
            _ => None,
        }
    }

    pub const LLAMA3_SYSTEM: &'static str = "You are a helpful language and vision assistant. You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.";

    /// The full prompt: the template with `<image>\n` before the user's text (lmms-eval's
    /// LLaVA adapter puts it there). `bos_text`: the BOS the Llama-3 chat template writes
    /// first (`--bos llava`), `None` for none.
    ///
    /// `llava_llama_3` renders Meta-Llama-3-Instruct's chat template, which trims each
    /// message (Jinja `trim`, Python's `str.strip()`); `vicuna_v1` (LLaVA's `SeparatorStyle.TWO`)
    /// does not.
    pub fn render(self, user: &str, bos_text: Option<&str>) -> String {
        match self {
            Conv::VicunaV1 => format!(
                "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: {IMAGE_PLACEHOLDER}\n{user} ASSISTANT:"
            ),
            Conv::Llama3 => {
                let content = format!("{IMAGE_PLACEHOLDER}\n{user}");
                format!(
                    "{}<|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                    bos_text.unwrap_or(""),
                    ovbench_score::py::strip(Self::LLAMA3_SYSTEM),
                    ovbench_score::py::strip(&content)
                )
            }
        }
    }
}

/// Everything that decides what the model is asked and how long it may answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskConfig {
    pub task: &'static str,
    pub style: PromptStyle,
    pub ocr: bool,
    pub conv: Conv,
    pub max_new_tokens: usize,
    pub stop_strings: Vec<String>,
    pub pre_prompt: String,
    pub post_prompt: String,
}

impl TaskConfig {
    /// lmms-eval's defaults: TextVQA no `max_new_tokens` (the LLaVA adapter's default,
    /// 1024); ChartQA 16; OCRBench 128. LLaVA-1.5 TextVQA: 128. TextVQA's `until:
    /// ["ASSISTANT:"]` is popped and never applied by lmms-eval's LLaVA adapter
    /// (`models/simple/llava.py`, the post-hoc cut is commented out), so generation stops at
    /// EOS or `max_new_tokens` only; `apply_until` cuts at it as other adapters do.
    pub fn new(
        task: Task,
        style: PromptStyle,
        ocr: bool,
        conv: Conv,
        apply_until: bool,
    ) -> TaskConfig {
        let until = |u: &str| {
            if apply_until {
                vec![u.to_string()]
            } else {
                vec![]
            }
        };
        let (max_new_tokens, stop, post) = match (task, style) {
            (Task::TextVqa, PromptStyle::LmmsEval) => (
                1024,
                until("ASSISTANT:"),
                "\nAnswer the question using a single word or phrase.",
            ),
            (Task::TextVqa, PromptStyle::Llava) => (
                128,
                vec![],
                "\nAnswer the question using a single word or phrase.",
            ),
            (Task::ChartQa, _) => (16, vec![], "\nAnswer the question with a single word."),
            (Task::OcrBench, _) => (128, vec![], ""),
        };
        TaskConfig {
            task: task.name(),
            style,
            ocr,
            conv,
            max_new_tokens,
            stop_strings: stop,
            pre_prompt: String::new(),
            post_prompt: post.into(),
        }
    }

    /// The user's text for one question (before the conversation template).
    pub fn user_text(&self, question: &str, ocr_tokens: Option<&[String]>) -> String {
        match (self.task, self.style) {
            ("textvqa", PromptStyle::LmmsEval) => {
                let ocr = if self.ocr {
                    format!(
                        "\nReference OCR token: {}",
                        ocr_tokens.unwrap_or_default().join(", ")
                    )
                } else {
                    String::new()
                };
                format!(
                    "{}{}{ocr}{}",
                    self.pre_prompt,
                    crate::pycase::capitalize(question),
                    self.post_prompt
                )
            }
            ("textvqa", PromptStyle::Llava) => {
                let q = upper_first(question);
                match ocr_tokens {
                    Some(t) if self.ocr && !t.is_empty() => format!(
                        "{q}\nReference OCR token: {}{}",
                        t.join(", "),
                        self.post_prompt
                    ),
                    _ => format!("{q}{}", self.post_prompt),
                }
            }
            ("ocrbench", _) => format!(
                "{}{}{}",
                self.pre_prompt,
                ovbench_score::py::strip(question),
                self.post_prompt
            ),
            _ => format!("{}{question}{}", self.pre_prompt, self.post_prompt),
        }
    }
}

/// The first character upper-cased, the rest as written.
fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        None => String::new(),
        Some(f) => f.to_uppercase().chain(c).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmms_eval_prompts() {
        let t = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            false,
        );
        assert_eq!(
            t.user_text("what is the BRAND?", None),
            "What is the brand?\nAnswer the question using a single word or phrase."
        );
        let t = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::LmmsEval,
            true,
            Conv::VicunaV1,
            false,
        );
        assert_eq!(
            t.user_text("what?", Some(&[])),
            "What?\nReference OCR token: \nAnswer the question using a single word or phrase."
        );
        let c = TaskConfig::new(
            Task::ChartQa,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            false,
        );
        assert_eq!(
            c.user_text("How many?", None),
            "How many?\nAnswer the question with a single word."
        );
        assert_eq!(c.max_new_tokens, 16);
        let o = TaskConfig::new(
            Task::OcrBench,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            false,
        );
        assert_eq!(
            o.user_text("  what is written? \n", None),
            "what is written?"
        );
        let l = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::Llava,
            true,
            Conv::VicunaV1,
            false,
        );
        assert_eq!(
            l.user_text("what is the brand?", Some(&["DAKOTA".into(), "Camera".into()])),
            "What is the brand?\nReference OCR token: DAKOTA, Camera\nAnswer the question using a single word or phrase."
        );
        assert_eq!(
            Conv::VicunaV1.render("Q", Some("<s>")),
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nQ ASSISTANT:"
        );
    }

    #[test]
    fn textvqa_capitalizes_as_python() {
        let t = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            false,
        );
        // Python: 'what does ΟΔΟΣ MEAN?'.capitalize() == 'What does οδος mean?'
        assert!(t
            .user_text("what does ΟΔΟΣ MEAN?", None)
            .starts_with("What does οδος mean?\n"));
    }

    #[test]
    fn until_is_applied_only_on_request() {
        let t = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            false,
        );
        assert!(t.stop_strings.is_empty());
        let t = TaskConfig::new(
            Task::TextVqa,
            PromptStyle::LmmsEval,
            false,
            Conv::VicunaV1,
            true,
        );
        assert_eq!(t.stop_strings, vec!["ASSISTANT:".to_string()]);
    }

    #[test]
    fn llama3_template_bos_and_trim() {
        let two = Conv::Llama3.render("Q  \n", Some("<|begin_of_text|>"));
        assert!(two
            .starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are"));
        // The message is trimmed as the chat template's `| trim` does.
        assert!(
            two.contains("<|end_header_id|>\n\n<image>\nQ<|eot_id|>"),
            "{two}"
        );
        assert!(two.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        let one = Conv::Llama3.render("Q", None);
        assert!(one.starts_with("<|start_header_id|>system"));
        assert_eq!(BosMode::parse("llava"), Some(BosMode::Llava));
        assert_eq!(BosMode::parse("single"), Some(BosMode::Single));
        assert_eq!(BosMode::parse("two"), None);
    }
}
