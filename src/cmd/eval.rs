//! `ovbench eval`: LLaVA-style downstream evaluation (TextVQA / ChartQA / OCRBench) with a
//! chosen vision encoder; predictions, scores, time and memory in one record.

use anyhow::{bail, Context};
use ovbench_eval::openclip::TowerOptions;
use ovbench_eval::prompt::{Conv, PromptStyle};
use ovbench_eval::EvalOptions;
use ovbench_harness::{record, table};
use ovbench_score::{Compat, Task};
use ovbench_train::vit_pretrained::Gelu;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Benchmark: textvqa, chartqa or ocrbench
    #[arg(long)]
    pub task: String,
    /// Dataset: any annotation file or folder `ovbench score` reads (original JSON with its
    /// image folder, a VLMEvalKit .tsv, lmms-eval .parquet shards)
    #[arg(long)]
    pub data: PathBuf,
    /// Folder holding the images of the JSON formats (default: beside the annotation file)
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Vision tower: OpenCLIP checkpoint (open_clip_pytorch_model.bin or .safetensors)
    #[arg(long)]
    pub encoder: PathBuf,
    /// The tower's open_clip_config.json (default: the one beside the weights, if any)
    #[arg(long)]
    pub encoder_config: Option<PathBuf>,
    /// Attention heads of the tower (default: from the config's head_width, else width / 64)
    #[arg(long)]
    pub vision_heads: Option<usize>,
    /// GELU of the tower's MLP: erf (OpenCLIP's nn.GELU) or tanh (the JAX training code)
    #[arg(long, default_value = "erf")]
    pub vision_gelu: String,
    /// LLaVA projector (mm_projector.bin or .safetensors; mlp2x_gelu)
    #[arg(long)]
    pub projector: PathBuf,
    /// LLM: a Hugging Face Llama directory (config.json, model*.safetensors, tokenizer.json)
    #[arg(long)]
    pub llm: PathBuf,
    /// Evaluate only the first N questions
    #[arg(long)]
    pub limit: Option<usize>,
    /// Prompt style: lmms-eval (default) or llava (LLaVA-1.5's TextVQA prompt)
    #[arg(long, default_value = "lmms-eval")]
    pub prompt: String,
    /// TextVQA: add the OCR tokens to the prompt (lmms-eval `ocr: true`)
    #[arg(long)]
    pub ocr: bool,
    /// Conversation template: auto (llama3 if the tokenizer has its headers, else vicuna_v1), llama3, vicuna_v1
    #[arg(long, default_value = "auto")]
    pub conv: String,
    /// Override the task's max_new_tokens
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// BOS tokens of the llama_3 prompt: llava (LLaVA-NeXT's code: the chat template's BOS
    /// plus tokenizer_image_token's, two in all) or single (one)
    #[arg(long, value_enum, default_value = "llava")]
    pub bos: BosArg,
    /// Stop at the task's `until` strings (TextVQA: "ASSISTANT:"); lmms-eval's LLaVA adapter
    /// ignores them, so the default does too
    #[arg(long)]
    pub apply_until: bool,
    /// Image resize: pil (PIL's Image.resize, as open_clip's transform) or image-crate
    #[arg(long, value_enum, default_value = "pil")]
    pub resample: ResampleArg,
    /// Write per-item prompt ids, generated ids, top-2 logit gaps and pixels to this folder
    /// (for scripts/eval-reference.sh)
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Vision feature layer (LLaVA mm_vision_select_layer; -2 = penultimate block)
    #[arg(long, default_value_t = -2, allow_negative_numbers = true)]
    pub select_layer: i64,
    /// Do not pad images to a square (LLaVA-1.5 pads with the mean colour)
    #[arg(long)]
    pub no_pad: bool,
    /// Scoring behaviour (see `ovbench score --help`)
    #[arg(long, default_value = "lmms-eval")]
    pub compat: String,
    /// Folder for the record and the predictions
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Response cache file (default: <out>/eval-cache/<task>.jsonl)
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Run without the response cache (nothing is reused or written)
    #[arg(long)]
    pub no_cache: bool,
    /// Decode without the KV cache (re-runs the whole sequence per token; for checks)
    #[arg(long)]
    pub no_kv_cache: bool,
    /// LLM weights dtype: f32 (default), bf16, f16
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Device: cpu, cuda or cuda:N (cuda needs a build with --features cuda)
    #[arg(long, default_value = "cpu")]
    pub device: ovbench_train::device::DeviceArg,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

/// `--bos` (see `ovbench_eval::prompt::BosMode`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BosArg {
    Llava,
    Single,
}

/// `--resample` (see `ovbench_eval::preprocess::Resample`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ResampleArg {
    Pil,
    ImageCrate,
}

#[derive(clap::Args)]
pub struct FixtureArgs {
    /// Folder to write the tiny models and datasets into
    #[arg(long)]
    pub out: PathBuf,
    /// Questions per dataset
    #[arg(long, default_value_t = 8)]
    pub questions: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn fixture(a: FixtureArgs) -> anyhow::Result<ExitCode> {
    let (m, sets) = ovbench_eval::fixture::write_all(&a.out, a.questions, a.seed)?;
    println!("encoder    {}", m.encoder.display());
    println!("encoder    {}", m.encoder_bin.display());
    println!("projector  {}", m.projector.display());
    println!("llm        {}", m.llm.display());
    for (task, format, p) in sets {
        println!("data       {} {format} {}", task.name(), p.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: EvalArgs) -> anyhow::Result<ExitCode> {
    let task = Task::parse(&a.task)?;
    let compat = Compat::parse(task, &a.compat)?;
    let style = match a.prompt.as_str() {
        "lmms-eval" => PromptStyle::LmmsEval,
        "llava" => PromptStyle::Llava,
        other => bail!("--prompt must be lmms-eval or llava, got '{other}'"),
    };
    if style == PromptStyle::Llava && task != Task::TextVqa {
        bail!("--prompt llava is LLaVA-1.5's TextVQA prompt; use it with --task textvqa");
    }
    let conv = match a.conv.as_str() {
        "auto" => None,
        c => Some(Conv::parse(c).with_context(|| format!("--conv: unknown template '{c}'"))?),
    };
    let bos = match a.bos {
        BosArg::Llava => ovbench_eval::prompt::BosMode::Llava,
        BosArg::Single => ovbench_eval::prompt::BosMode::Single,
    };
    let resample = match a.resample {
        ResampleArg::Pil => ovbench_eval::preprocess::Resample::Pil,
        ResampleArg::ImageCrate => ovbench_eval::preprocess::Resample::ImageCrate,
    };
    let gelu = match a.vision_gelu.as_str() {
        "erf" => Gelu::Erf,
        "tanh" => Gelu::Tanh,
        other => bail!("--vision-gelu must be erf or tanh, got '{other}'"),
    };
    let dtype = match a.dtype.as_str() {
        "f32" => ovbench_eval::DType::F32,
        "bf16" => ovbench_eval::DType::BF16,
        "f16" => ovbench_eval::DType::F16,
        other => bail!("--dtype must be f32, bf16 or f16, got '{other}'"),
    };
    let json_path = record::default_path(&a.out, &format!("eval-{}", task.name()));
    let predictions = json_path.with_extension("predictions.jsonl");
    let cache = if a.no_cache {
        None
    } else {
        Some(a.cache.clone().unwrap_or_else(|| {
            a.out
                .join("eval-cache")
                .join(format!("{}.jsonl", task.name()))
        }))
    };
    // Before any work: a run's answers must not be lost to an output that cannot be written.
    for (p, what) in [(&json_path, "--out"), (&predictions, "--out")] {
        ovbench_harness::io::check_writable(p).with_context(|| what.to_string())?;
    }
    let exit_after = std::env::var("OVBENCH_EVAL_EXIT_AFTER")
        .ok()
        .and_then(|s| s.parse().ok());
    let opts = EvalOptions {
        task,
        data: a.data,
        images: a.images,
        encoder: a.encoder,
        tower: TowerOptions {
            config: a.encoder_config,
            heads: a.vision_heads,
            gelu,
        },
        projector: a.projector,
        llm: a.llm,
        limit: a.limit,
        style,
        ocr: a.ocr,
        conv,
        max_new_tokens: a.max_new_tokens,
        bos,
        apply_until: a.apply_until,
        resample,
        trace: a.trace,
        select_layer: a.select_layer,
        pad_to_square: !a.no_pad,
        compat,
        predictions: predictions.clone(),
        cache,
        kv_cache: !a.no_kv_cache,
        llm_dtype: dtype,
        device: a.device.open().map_err(anyhow::Error::msg)?,
        exit_after,
    };
    let out = ovbench_eval::run_with(&opts, &mut crate::progress::Bar::new("questions", a.quiet))?;
    let b = &out.body;
    let r = &out.report;
    let mut rows = vec![vec!["".to_string(), "value".to_string()]];
    rows.push(vec![
        format!("{} ({})", r.toolkit.metric, r.toolkit.scale),
        format!("{}", r.toolkit.value),
    ]);
    if let Some(s) = &r.summary {
        rows.push(vec![
            "mean item score (%) [95 % CI]".into(),
            format!(
                "{:.2} [{:.2}, {:.2}]",
                100.0 * s.mean,
                100.0 * s.ci95[0],
                100.0 * s.ci95[1]
            ),
        ]);
    }
    rows.push(vec![
        "questions scored / in dataset".into(),
        format!("{} / {}", r.n_scored, r.n_annotations),
    ]);
    rows.push(vec![
        "computed / from cache".into(),
        format!("{} / {}", out.computed, out.cached),
    ]);
    let t = &b.timing_s;
    rows.push(vec![
        "time: image encoding / prefill / decode (s)".into(),
        format!(
            "{:.3} / {:.3} / {:.3}",
            t.image_encoding, t.prefill, t.decode
        ),
    ]);
    rows.push(vec![
        "time: total / model load / hashing (s)".into(),
        format!(
            "{:.3} / {:.3} / {:.3}",
            t.total, t.load_models, t.hash_files
        ),
    ]);
    let th = &b.throughput;
    rows.push(vec![
        "decode tokens / s (new tokens)".into(),
        format!("{:.1} ({})", th.decode_tokens_per_s, th.new_tokens),
    ]);
    rows.push(vec![
        "prefill tokens / s".into(),
        format!("{:.1}", th.prefill_tokens_per_s),
    ]);
    rows.push(vec![
        "peak host memory (allocator, over start)".into(),
        format!(
            "{:.1} MiB",
            b.memory.peak_bytes_over_start as f64 / (1024.0 * 1024.0)
        ),
    ]);
    println!("{}", table::render(rows));
    // The predictions and the record, both or neither: predictions without their record
    // look like a result that never was.
    let rec = ovbench_harness::Record::new(super::provenance(), out.body);
    let mut set = ovbench_harness::io::OutputSet::default();
    set.add(&predictions, out.predictions_jsonl.into_bytes());
    set.add(&json_path, rec.to_json());
    set.commit()?;
    println!("predictions: {}", predictions.display());
    println!("record: {}", json_path.display());
    Ok(ExitCode::SUCCESS)
}
