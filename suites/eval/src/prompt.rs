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

    /// The full prompt: the template with `<image>\n` before the user's text.
    pub fn render(self, user: &str) -> String {
        match self {
            Conv::VicunaV1 => format!(
                "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: {IMAGE_PLACEHOLDER}\n{user} ASSISTANT:"
            ),
            Conv::Llama3 => format!(
                "<|start_header_id|>system<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{IMAGE_PLACEHOLDER}\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                Self::LLAMA3_SYSTEM
            ),
        }
    }

    /// Tokens that end the assistant's turn besides the model's EOS.
    pub fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            Conv::VicunaV1 => &[],
            Conv::Llama3 => &["<|eot_id|>"],
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
    /// lmms-eval's defaults: TextVQA `until: ["ASSISTANT:"]` and no `max_new_tokens` (the
    /// LLaVA adapter's default, 1024); ChartQA 16; OCRBench 128. LLaVA-1.5 TextVQA: 128.
    pub fn new(task: Task, style: PromptStyle, ocr: bool, conv: Conv) -> TaskConfig {
        let (max_new_tokens, stop, post) = match (task, style) {
            (Task::TextVqa, PromptStyle::LmmsEval) => (
                1024,
                vec!["ASSISTANT:".to_string()],
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
                    py_capitalize(question),
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

/// Python's `str.capitalize()`: the first character upper-cased, every other lower-cased.
pub fn py_capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        None => String::new(),
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(|x| x.to_lowercase()))
            .collect(),
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
        let t = TaskConfig::new(Task::TextVqa, PromptStyle::LmmsEval, false, Conv::VicunaV1);
        assert_eq!(
            t.user_text("what is the BRAND?", None),
            "What is the brand?\nAnswer the question using a single word or phrase."
        );
        let t = TaskConfig::new(Task::TextVqa, PromptStyle::LmmsEval, true, Conv::VicunaV1);
        assert_eq!(
            t.user_text("what?", Some(&[])),
            "What?\nReference OCR token: \nAnswer the question using a single word or phrase."
        );
        let c = TaskConfig::new(Task::ChartQa, PromptStyle::LmmsEval, false, Conv::VicunaV1);
        assert_eq!(
            c.user_text("How many?", None),
            "How many?\nAnswer the question with a single word."
        );
        assert_eq!(c.max_new_tokens, 16);
        let o = TaskConfig::new(Task::OcrBench, PromptStyle::LmmsEval, false, Conv::VicunaV1);
        assert_eq!(
            o.user_text("  what is written? \n", None),
            "what is written?"
        );
        let l = TaskConfig::new(Task::TextVqa, PromptStyle::Llava, true, Conv::VicunaV1);
        assert_eq!(
            l.user_text("what is the brand?", Some(&["DAKOTA".into(), "Camera".into()])),
            "What is the brand?\nReference OCR token: DAKOTA, Camera\nAnswer the question using a single word or phrase."
        );
        assert_eq!(
            Conv::VicunaV1.render("Q"),
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: <image>\nQ ASSISTANT:"
        );
    }
}
