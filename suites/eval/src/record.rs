//! The `ovbench.eval` record: what was evaluated (every file by hash, the configuration that
//! decides the answers), the score, time and memory, and what readers gate on.

use ovbench_harness::envelope::{Direction, Metric, RecordBody, Workload};
use ovbench_score::record::ScoreSummary;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashedFile {
    /// `encoder`, `encoder-config`, `projector`, `llm`, `llm-config`, `tokenizer`.
    pub role: String,
    pub path: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub path: PathBuf,
    pub format: String,
    pub questions: usize,
    pub evaluated: usize,
    pub annotation_sha256: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmShape {
    pub hidden_size: usize,
    pub layers: usize,
    pub vocab_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectorShape {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "in")]
    pub in_dim: usize,
    #[serde(rename = "out")]
    pub out_dim: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The tower's configuration as loaded (width, layers, heads, resolution, normalisation).
    pub vision: Value,
    pub llm: LlmShape,
    pub projector: ProjectorShape,
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    pub path: Option<PathBuf>,
    pub enabled: bool,
    pub kv_cache: bool,
    pub loaded_entries: Option<usize>,
    pub dropped_partial_line: Option<bool>,
    pub bookkeeping_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub computed: usize,
    pub from_cache: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalTiming {
    pub total: f64,
    pub load_models: f64,
    pub hash_files: f64,
    pub r#loop: f64,
    pub image_encoding: f64,
    pub prefill: f64,
    pub decode: f64,
    pub cache_bookkeeping: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub new_tokens: usize,
    pub prompt_tokens: usize,
    pub decode_tokens_per_s: f64,
    pub prefill_tokens_per_s: f64,
    pub items_per_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMemory {
    pub allocator_active: bool,
    pub peak_bytes_over_start: u64,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemLine {
    pub id: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub stop: String,
    pub cached: bool,
    pub encode_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub task: String,
    pub compat: String,
    pub data: DataInfo,
    pub weights: Vec<HashedFile>,
    /// Everything besides the weights that decides the answers (prompt, preprocessing,
    /// features, decoding); hashed into `task_config_sha256` and the cache key.
    pub task_config: Value,
    pub task_config_sha256: String,
    /// SHA-256 over the weight hashes and the task configuration: same key, same answers.
    pub run_key: String,
    pub model: ModelInfo,
    pub predictions: PathBuf,
    pub cache: CacheInfo,
    pub counts: Counts,
    pub timing_s: EvalTiming,
    pub throughput: Throughput,
    pub memory: EvalMemory,
    pub report: ScoreSummary,
    pub items: Vec<ItemLine>,
}

impl RecordBody for EvalRecord {
    const KIND: &'static str = "eval";
    /// 2: the envelope beside the body; `report.missing` is the full list of ids.
    const VERSION: u32 = 2;

    fn workload(&self) -> Workload {
        // Same weights, task configuration and questions: the answers must be the same.
        [
            ("task", self.task.clone()),
            ("compat", self.compat.clone()),
            ("run_key", self.run_key.clone()),
            ("annotations_sha256", self.data.annotation_sha256.join(",")),
            ("evaluated", self.data.evaluated.to_string()),
            ("device", self.model.device.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        self.report.metrics("", &mut out);
        out.push(Metric::deterministic(
            "tokens/new",
            "tokens",
            Direction::Neither,
            self.throughput.new_tokens as f64,
        ));
        out.push(Metric::deterministic(
            "tokens/prompt",
            "tokens",
            Direction::Neither,
            self.throughput.prompt_tokens as f64,
        ));
        // The peak host memory stays in the body, not among the metrics: two identical runs
        // differ in it by a few kB (tokenizer and thread-pool allocations), so it is not
        // deterministic, and one run gives no spread to judge it by.
        out
    }
}
