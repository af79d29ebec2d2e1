//! The pipeline on tiny random-weight models written in the real file layouts.

use candle_core::{DType, Device, Module, Tensor, D};
use ovbench_eval::fixture::{self, TinyModels};
use ovbench_eval::openclip::{self, TowerOptions};
use ovbench_eval::prompt::{Conv, PromptStyle, TaskConfig};
use ovbench_eval::{run, EvalOptions, Model};
use ovbench_score::{Compat, Task};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const N: usize = 4;

fn options(m: &TinyModels, task: Task, data: &Path, out: &Path) -> EvalOptions {
    EvalOptions {
        task,
        data: data.into(),
        images: None,
        encoder: m.encoder.clone(),
        tower: TowerOptions::default(),
        projector: m.projector.clone(),
        llm: m.llm.clone(),
        limit: None,
        style: PromptStyle::LmmsEval,
        ocr: false,
        conv: None,
        max_new_tokens: Some(6),
        bos: ovbench_eval::prompt::BosMode::Llava,
        apply_until: false,
        resample: ovbench_eval::preprocess::Resample::Pil,
        trace: None,
        select_layer: -2,
        pad_to_square: true,
        compat: Compat::LmmsEval,
        predictions: out.join("preds.jsonl"),
        cache: None,
        kv_cache: true,
        llm_dtype: DType::F32,
        device: Device::Cpu,
        exit_after: None,
    }
}

fn predictions(o: &ovbench_eval::Outcome) -> Vec<(String, String)> {
    o.items
        .iter()
        .map(|r| (r.id.clone(), r.prediction.clone()))
        .collect()
}

#[test]
fn every_task_and_format_runs_end_to_end_and_scores() {
    let d = tempfile::tempdir().unwrap();
    let (m, sets) = fixture::write_all(d.path(), N, 1).unwrap();
    let mut by_task: BTreeMap<&str, Vec<Vec<String>>> = BTreeMap::new();
    for (task, format, data) in &sets {
        let out = d.path().join("out").join(task.name()).join(format);
        let o = run(&options(&m, *task, data, &out))
            .unwrap_or_else(|e| panic!("{task:?} {format}: {e}"));
        assert_eq!(o.report.n_scored, N, "{task:?} {format}");
        assert_eq!(o.computed, N);
        // The predictions file is what `ovbench score` reads.
        ovbench_harness::write_atomic(&out.join("preds.jsonl"), o.predictions_jsonl.as_bytes())
            .unwrap();
        let preds = ovbench_score::readers::read_predictions(&out.join("preds.jsonl")).unwrap();
        assert_eq!(preds.items.len(), N);
        assert!(!o.body.data.format.is_empty());
        assert!(o.body.throughput.new_tokens > 0);
        let mut texts: Vec<String> = o.items.iter().map(|r| r.prediction.clone()).collect();
        if *task == Task::ChartQa {
            texts.sort(); // the JSON layout puts the human split first
        }
        by_task.entry(task.name()).or_default().push(texts);
    }
    // The same images and questions in three layouts give the same answers.
    for (task, runs) in by_task {
        assert_eq!(runs.len(), 3);
        assert!(
            runs.iter().all(|r| r == &runs[0]),
            "{task}: formats disagree: {runs:?}"
        );
    }
}

#[test]
fn predictions_are_deterministic_and_join_on_the_right_ids() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 2).unwrap();
    let rows = fixture::rows(Task::ChartQa, N, 3);
    let data = fixture::write_dataset(&d.path().join("a"), Task::ChartQa, "tsv", &rows).unwrap();
    let a = run(&options(&m, Task::ChartQa, &data, &d.path().join("o1"))).unwrap();
    let b = run(&options(&m, Task::ChartQa, &data, &d.path().join("o2"))).unwrap();
    assert_eq!(predictions(&a), predictions(&b));
    // Answers equal to the model's own predictions for rows 0 and 2: those score 1, the others 0.
    let mut rows2 = rows.clone();
    for i in [0, 2] {
        rows2[i].answers = vec![a.items[i].prediction.clone()];
    }
    let data2 = fixture::write_dataset(&d.path().join("b"), Task::ChartQa, "tsv", &rows2).unwrap();
    let c = run(&options(&m, Task::ChartQa, &data2, &d.path().join("o3"))).unwrap();
    assert_eq!(predictions(&a), predictions(&c));
    let scores: Vec<f64> = c.report.items.iter().map(|i| i.score).collect();
    assert_eq!(scores, vec![1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn kv_cache_and_full_recompute_give_the_same_greedy_tokens() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 4).unwrap();
    let rows = fixture::rows(Task::TextVqa, 3, 5);
    let data = fixture::write_dataset(&d.path().join("d"), Task::TextVqa, "tsv", &rows).unwrap();
    let mut o = options(&m, Task::TextVqa, &data, d.path());
    o.max_new_tokens = Some(48);
    let model = Model::load(&o).unwrap();
    let tc = TaskConfig::new(
        Task::TextVqa,
        PromptStyle::LmmsEval,
        false,
        Conv::Llama3,
        false,
    );
    let mut total = 0;
    for r in &rows {
        let img = ovbench_eval::preprocess::decode(&r.image).unwrap();
        let pre = ovbench_eval::preprocess::Preprocess {
            size: 32,
            mean: openclip::IMAGENET_MEAN,
            std: openclip::IMAGENET_STD,
            pad_fill: [123, 116, 103],
            interpolation: "bilinear".into(),
            pad_to_square: true,
            resample: ovbench_eval::preprocess::Resample::Pil,
            jpeg_decoder: ovbench_jpeg::DECODER,
        };
        let pixels = pre.pixels(&img, &Device::Cpu).unwrap();
        let emb = model.image_embeddings(&pixels, -2).unwrap();
        let rendered = model
            .render(&tc, &tc.user_text(&r.question, None), o.bos)
            .unwrap();
        let ids = model.prompt_ids(&rendered).unwrap();
        let prompt = Tensor::cat(
            &[
                &model.llm.embed(&ids.0).unwrap(),
                &emb,
                &model.llm.embed(&ids.1).unwrap(),
            ],
            1,
        )
        .unwrap();
        let with = model.llm.generate(&prompt, 48, &[], &[], true).unwrap();
        let without = model.llm.generate(&prompt, 48, &[], &[], false).unwrap();
        assert_eq!(with.tokens, without.tokens);
        assert_eq!(with.text, without.text);
        total += with.tokens.len();
    }
    assert!(total >= 40, "too few tokens compared: {total}");
}

/// OpenCLIP's forward written out from the checkpoint's own tensors (conv patch embedding,
/// position embedding on every token, PyTorch MultiheadAttention, erf GELU), as reference
/// for the mapping onto the training ViT.
fn openclip_reference(
    t: &BTreeMap<String, Tensor>,
    pixels: &Tensor,
    blocks: usize,
    heads: usize,
) -> Tensor {
    let g = |k: &str| t[&format!("visual.{k}")].clone();
    let d = fixture::VISION_WIDTH;
    let x = pixels
        .conv2d(&g("conv1.weight"), 0, fixture::VISION_PATCH, 1, 1)
        .unwrap();
    let x = x.flatten_from(2).unwrap().transpose(1, 2).unwrap();
    let cls = g("class_embedding").reshape((1, 1, d)).unwrap();
    let mut x = Tensor::cat(&[&cls, &x], 1)
        .unwrap()
        .broadcast_add(&g("positional_embedding"))
        .unwrap();
    let ln = |x: &Tensor, w: Tensor, b: Tensor| {
        candle_nn::LayerNorm::new(w, b, 1e-6).forward(x).unwrap()
    };
    let lin =
        |x: &Tensor, w: Tensor, b: Tensor| candle_nn::Linear::new(w, Some(b)).forward(x).unwrap();
    for i in 0..blocks {
        let r = format!("transformer.resblocks.{i}");
        let h = ln(
            &x,
            g(&format!("{r}.ln_1.weight")),
            g(&format!("{r}.ln_1.bias")),
        );
        let qkv = lin(
            &h,
            g(&format!("{r}.attn.in_proj_weight")),
            g(&format!("{r}.attn.in_proj_bias")),
        );
        let (b, n, _) = qkv.dims3().unwrap();
        let dh = d / heads;
        let part = |k: usize| {
            qkv.narrow(2, k * d, d)
                .unwrap()
                .reshape((b, n, heads, dh))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let att = (part(0).matmul(&part(1).t().unwrap()).unwrap() / (dh as f64).sqrt()).unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let y = att
            .matmul(&part(2))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, n, d))
            .unwrap();
        x = (x + lin(
            &y,
            g(&format!("{r}.attn.out_proj.weight")),
            g(&format!("{r}.attn.out_proj.bias")),
        ))
        .unwrap();
        let h = ln(
            &x,
            g(&format!("{r}.ln_2.weight")),
            g(&format!("{r}.ln_2.bias")),
        );
        let h = lin(
            &h,
            g(&format!("{r}.mlp.c_fc.weight")),
            g(&format!("{r}.mlp.c_fc.bias")),
        )
        .gelu_erf()
        .unwrap();
        x = (x + lin(
            &h,
            g(&format!("{r}.mlp.c_proj.weight")),
            g(&format!("{r}.mlp.c_proj.bias")),
        ))
        .unwrap();
    }
    x.narrow(1, 1, n_patches()).unwrap()
}

fn n_patches() -> usize {
    (fixture::VISION_SIZE / fixture::VISION_PATCH).pow(2)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(D::Minus1)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn openclip_towers_load_into_the_training_vit_and_match_openclip_forward() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(d.path(), 6).unwrap();
    let tensors = fixture::openclip_tensors(6);
    let st = openclip::load(&m.encoder, &TowerOptions::default(), &Device::Cpu).unwrap();
    let pt = openclip::load(&m.encoder_bin, &TowerOptions::default(), &Device::Cpu).unwrap();
    assert_eq!(st.cfg.heads, 2, "head_width from open_clip_config.json");
    assert_eq!(st.cfg.image_size, fixture::VISION_SIZE);
    assert!(
        st.cfg.ignored_tensors >= 3,
        "proj and the text tower are ignored"
    );
    let pixels = Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &Device::Cpu).unwrap();
    for layer in [-2i64, -1] {
        let a = st.features(&pixels, layer).unwrap();
        let b = pt.features(&pixels, layer).unwrap();
        assert_eq!(a.dims(), &[1, n_patches(), fixture::VISION_WIDTH]);
        assert_eq!(
            max_abs(&a, &b),
            0.0,
            "safetensors and PyTorch checkpoints differ"
        );
        let blocks = (fixture::VISION_LAYERS as i64 + layer + 1) as usize;
        let r = openclip_reference(&tensors, &pixels, blocks, 2);
        let err = max_abs(&a, &r);
        assert!(err < 1e-4, "layer {layer}: {err}");
    }
    // The projector maps the tower's width to the LLM's.
    let model = Model::load(&options(&m, Task::OcrBench, d.path(), d.path())).unwrap();
    let e = model.image_embeddings(&pixels, -2).unwrap();
    assert_eq!(e.dims(), &[1, n_patches(), fixture::LLM_HIDDEN]);
}

#[test]
fn a_run_cut_short_resumes_without_recomputing_and_ends_the_same() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 7).unwrap();
    let rows = fixture::rows(Task::OcrBench, 6, 8);
    let data = fixture::write_dataset(&d.path().join("d"), Task::OcrBench, "json", &rows).unwrap();
    let reference = run(&options(&m, Task::OcrBench, &data, &d.path().join("ref"))).unwrap();
    let mut o = options(&m, Task::OcrBench, &data, &d.path().join("o"));
    o.cache = Some(d.path().join("cache.jsonl"));
    o.limit = Some(2);
    let first = run(&o).unwrap();
    assert_eq!((first.computed, first.cached), (2, 0));
    // A write cut by a kill: a partial last line.
    let mut bytes = std::fs::read(d.path().join("cache.jsonl")).unwrap();
    bytes.extend_from_slice(b"{\"key\":\"");
    std::fs::write(d.path().join("cache.jsonl"), bytes).unwrap();
    o.limit = None;
    let second = run(&o).unwrap();
    assert_eq!((second.computed, second.cached), (4, 2));
    assert_eq!(second.body.cache.dropped_partial_line, Some(true));
    assert_eq!(predictions(&second), predictions(&reference));
    let third = run(&o).unwrap();
    assert_eq!((third.computed, third.cached), (0, 6));
    assert_eq!(predictions(&third), predictions(&reference));
    // Another task configuration does not reuse these answers.
    o.max_new_tokens = Some(5);
    let other = run(&o).unwrap();
    assert_eq!((other.computed, other.cached), (6, 0));
}

fn err_of(o: &EvalOptions) -> String {
    match run(o) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn rewrite_tower(
    src: &BTreeMap<String, Tensor>,
    path: &Path,
    f: impl Fn(&mut BTreeMap<String, Tensor>),
) -> PathBuf {
    let mut t = src.clone();
    f(&mut t);
    fixture::save_safetensors(path, &t).unwrap();
    path.into()
}

#[test]
fn malformed_inputs_give_errors_that_name_them() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 9).unwrap();
    let rows = fixture::rows(Task::TextVqa, 2, 9);
    let data = fixture::write_dataset(&d.path().join("d"), Task::TextVqa, "tsv", &rows).unwrap();
    let base = options(&m, Task::TextVqa, &data, d.path());
    let tower = fixture::openclip_tensors(9);
    let bad = d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();

    // Vision tower: missing tensor, wrong shape, truncated, not a weight file (no config
    // beside these files, so the head count is given).
    let mut o = base.clone();
    o.tower.heads = Some(2);
    o.encoder = rewrite_tower(&tower, &bad.join("missing.safetensors"), |t| {
        t.remove("visual.transformer.resblocks.1.mlp.c_proj.bias");
    });
    let e = err_of(&o);
    assert!(
        e.contains("missing.safetensors")
            && e.contains("visual.transformer.resblocks.1.mlp.c_proj.bias")
            && e.contains("missing"),
        "{e}"
    );
    o.encoder = rewrite_tower(&tower, &bad.join("shape.safetensors"), |t| {
        t.insert(
            "visual.transformer.resblocks.0.attn.out_proj.weight".into(),
            Tensor::zeros((32, 31), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = err_of(&o);
    assert!(
        e.contains("visual.transformer.resblocks.0.attn.out_proj.weight") && e.contains("[32, 31]"),
        "{e}"
    );
    o.encoder = rewrite_tower(&tower, &bad.join("dtype.safetensors"), |t| {
        t.insert(
            "visual.ln_post.bias".into(),
            Tensor::zeros(32, DType::U8, &Device::Cpu).unwrap(),
        );
    });
    let e = err_of(&o);
    assert!(
        e.contains("visual.ln_post.bias") && e.contains("dtype U8"),
        "{e}"
    );
    let bytes = std::fs::read(&m.encoder).unwrap();
    std::fs::write(bad.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    o.encoder = bad.join("cut.safetensors");
    let e = err_of(&o);
    assert!(
        e.contains("cut.safetensors") && e.contains("safetensors"),
        "{e}"
    );
    let bytes = std::fs::read(&m.encoder_bin).unwrap();
    std::fs::write(bad.join("cut.bin"), &bytes[..bytes.len() - 300]).unwrap();
    o.encoder = bad.join("cut.bin");
    let e = err_of(&o);
    assert!(e.contains("cut.bin"), "{e}");
    std::fs::write(bad.join("notes.bin"), b"these are not weights\n").unwrap();
    o.encoder = bad.join("notes.bin");
    let e = err_of(&o);
    assert!(
        e.contains("notes.bin") && e.contains("neither a safetensors file nor a PyTorch"),
        "{e}"
    );

    // Projector of the wrong width for this LLM.
    let mut o = base.clone();
    let mut p = fixture::projector_tensors(1);
    p.insert(
        "model.mm_projector.2.weight".into(),
        Tensor::zeros((64, 48), DType::F32, &Device::Cpu).unwrap(),
    );
    o.projector = bad.join("proj.safetensors");
    fixture::save_safetensors(&o.projector, &p).unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("proj.safetensors") && e.contains("model.mm_projector.2.weight"),
        "{e}"
    );

    // LLM: missing tensor, wrong shape, broken tokenizer, config field.
    let llm = bad.join("llm");
    std::fs::create_dir_all(&llm).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(m.llm.join(f), llm.join(f)).unwrap();
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.llm.join("config.json")).unwrap()).unwrap();
    let v = cfg["vocab_size"].as_u64().unwrap() as usize;
    let mut t = fixture::llama_tensors(v, 1);
    t.remove("model.layers.1.mlp.up_proj.weight");
    fixture::save_safetensors(&llm.join("model.safetensors"), &t).unwrap();
    let mut o = base.clone();
    o.llm = llm.clone();
    let e = err_of(&o);
    assert!(
        e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"),
        "{e}"
    );
    let mut t = fixture::llama_tensors(v, 1);
    t.insert(
        "model.layers.0.self_attn.k_proj.weight".into(),
        Tensor::zeros((64, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    fixture::save_safetensors(&llm.join("model.safetensors"), &t).unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("model.layers.0.self_attn.k_proj.weight") && e.contains("[64, 64]"),
        "{e}"
    );
    fixture::save_safetensors(
        &llm.join("model.safetensors"),
        &fixture::llama_tensors(v, 1),
    )
    .unwrap();
    std::fs::write(llm.join("tokenizer.json"), b"{\"model\": 3}").unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("tokenizer.json") && e.contains("tokenizer"),
        "{e}"
    );
    std::fs::write(llm.join("config.json"), b"{\"hidden_size\": 64}").unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("config.json") && e.contains("intermediate_size"),
        "{e}"
    );

    // Dataset rows without an image, in each format.
    let mut rows2 = rows.clone();
    rows2[1].image.clear();
    let tsv = fixture::write_dataset(&bad.join("tsv"), Task::TextVqa, "tsv", &rows2).unwrap();
    let mut o = base.clone();
    o.data = tsv;
    let e = err_of(&o);
    assert!(
        e.contains("TextVQA_VAL.tsv:3") && e.contains("image"),
        "{e}"
    );
    let pq = fixture::write_dataset(&bad.join("pq"), Task::TextVqa, "parquet", &rows2).unwrap();
    o.data = pq;
    let e = err_of(&o);
    assert!(
        e.contains(".parquet row 1") && e.contains("row has no image"),
        "{e}"
    );
    let js = fixture::write_dataset(&bad.join("js"), Task::TextVqa, "json", &rows).unwrap();
    std::fs::remove_file(bad.join("js/train_images/000000000000abc1.jpg")).unwrap();
    o.data = js;
    let e = err_of(&o);
    assert!(
        e.contains("TextVQA_0.5.1_val.json") && e.contains("abc1.jpg does not exist"),
        "{e}"
    );
    // An image that is not an image.
    let mut rows3 = rows.clone();
    rows3[0].image = b"GIF89a not really an image, only text long enough to be a base64 cell and not a row reference".to_vec();
    o.data = fixture::write_dataset(&bad.join("gif"), Task::TextVqa, "tsv", &rows3).unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("TextVQA_VAL.tsv:2") && e.contains("cannot decode the image"),
        "{e}"
    );
    // A truncated JPEG: libjpeg's decoder stops, the item is named, no abort.
    let mut rows4 = rows.clone();
    let jpeg = fixture::image_bytes(&mut ChaCha8Rng::seed_from_u64(5), true);
    rows4[1].image = jpeg[..jpeg.len() / 2].to_vec();
    o.data = fixture::write_dataset(&bad.join("trunc"), Task::TextVqa, "tsv", &rows4).unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("TextVQA_VAL.tsv:3") && e.contains("image file is truncated"),
        "{e}"
    );
}

#[test]
fn ocr_tokens_from_parquet_reach_the_prompt() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 11).unwrap();
    let rows = fixture::rows(Task::TextVqa, 2, 12);
    let data =
        fixture::write_dataset(&d.path().join("d"), Task::TextVqa, "parquet", &rows).unwrap();
    let prompt_tokens = |style: PromptStyle, ocr: bool| -> Vec<u64> {
        let mut o = options(&m, Task::TextVqa, &data, d.path());
        o.style = style;
        o.ocr = ocr;
        o.max_new_tokens = Some(2);
        let out = run(&o).unwrap();
        out.items.iter().map(|r| r.prompt_tokens as u64).collect()
    };
    let plain = prompt_tokens(PromptStyle::LmmsEval, false);
    let ocr = prompt_tokens(PromptStyle::LmmsEval, true);
    let llava = prompt_tokens(PromptStyle::Llava, true);
    // "\nReference OCR token: <w>, exit" adds the same text in both styles.
    let tc = TaskConfig::new(
        Task::TextVqa,
        PromptStyle::LmmsEval,
        true,
        Conv::Llama3,
        false,
    );
    let with = tc.user_text("q?", Some(&rows[0].ocr));
    assert!(with.contains(&format!("Reference OCR token: {}, exit", rows[0].ocr[0])));
    for i in 0..2 {
        assert!(ocr[i] > plain[i] + 5, "{ocr:?} vs {plain:?}");
        assert_eq!(llava[i], ocr[i], "{llava:?} vs {ocr:?}");
    }
}

/// `--bos llava` (the default, LLaVA-NeXT's code) gives the Llama-3 prompt two BOS, `--bos
/// single` one; the second chunk loses its first token as `tokenizer_image_token` drops it;
/// the option is recorded and changes the run key (so the response cache never mixes them).
#[test]
fn bos_option_two_or_one_bos_recorded_and_keyed() {
    use ovbench_eval::prompt::BosMode;
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 4).unwrap();
    let rows = fixture::rows(Task::TextVqa, 2, 5);
    let data = fixture::write_dataset(&d.path().join("d"), Task::TextVqa, "tsv", &rows).unwrap();
    let mut o = options(&m, Task::TextVqa, &data, d.path());
    o.conv = Some(Conv::Llama3);
    o.max_new_tokens = Some(2);
    let model = Model::load(&o).unwrap();
    let bos = model.llm.bos.expect("the fixture has a BOS");
    let tc = TaskConfig::new(
        Task::TextVqa,
        PromptStyle::LmmsEval,
        false,
        Conv::Llama3,
        false,
    );
    let (two, after) = model
        .prompt_ids(&model.render(&tc, "q?", BosMode::Llava).unwrap())
        .unwrap();
    assert_eq!(&two[..2], &[bos, bos]);
    assert_ne!(two[2], bos);
    let whole = model.llm.encode("\nq?", true).unwrap();
    assert_eq!(whole[0], bos);
    assert_eq!(after[..whole.len() - 1], whole[1..]);
    let (one, _) = model
        .prompt_ids(&model.render(&tc, "q?", BosMode::Single).unwrap())
        .unwrap();
    assert_eq!(one[0], bos);
    assert_ne!(one[1], bos);
    assert_eq!(one.len() + 1, two.len());
    let a = run(&o).unwrap();
    o.bos = BosMode::Single;
    let b = run(&o).unwrap();
    assert_eq!(a.body.task_config["bos"], "llava");
    assert_eq!(b.body.task_config["bos"], "single");
    assert_ne!(a.body.run_key, b.body.run_key);
    assert_eq!(
        a.items[0].prompt_tokens,
        b.items[0].prompt_tokens + 1,
        "one BOS more"
    );
}

/// generation_config.json's eos_token_id (what transformers' generate stops at) wins over
/// config.json's, and is recorded with its source; the config fields read are recorded too.
#[test]
fn generation_config_eos_and_config_fields_recorded() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 4).unwrap();
    let rows = fixture::rows(Task::ChartQa, 1, 5);
    let data = fixture::write_dataset(&d.path().join("d"), Task::ChartQa, "tsv", &rows).unwrap();
    let mut o = options(&m, Task::ChartQa, &data, d.path());
    o.max_new_tokens = Some(2);
    let a = run(&o).unwrap();
    assert_eq!(
        a.body.task_config["eos_token_ids"]["source"],
        "config.json: eos_token_id"
    );
    assert_eq!(
        a.body.task_config["llm_config"]["rope_theta"]["value"],
        500000.0
    );
    std::fs::write(
        m.llm.join("generation_config.json"),
        r#"{"bos_token_id": 0, "eos_token_id": [1, 5]}"#,
    )
    .unwrap();
    let b = run(&o).unwrap();
    assert_eq!(
        b.body.task_config["eos_token_ids"]["ids"],
        serde_json::json!([1, 5])
    );
    assert_eq!(
        b.body.task_config["eos_token_ids"]["source"],
        "generation_config.json: eos_token_id"
    );
    assert_ne!(a.body.run_key, b.body.run_key);
}

/// config.json in transformers 5's layout (`rope_parameters`) and in the older one give the
/// same model; an unimplemented rope type is refused naming the field.
#[test]
fn config_layouts_give_the_same_model_and_unknown_rope_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 4).unwrap();
    let rows = fixture::rows(Task::OcrBench, 2, 5);
    let data = fixture::write_dataset(&d.path().join("d"), Task::OcrBench, "tsv", &rows).unwrap();
    let cfg_path = m.llm.join("config.json");
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let mut o = options(&m, Task::OcrBench, &data, d.path());
    o.max_new_tokens = Some(8);
    let write = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = base.clone();
        f(v.as_object_mut().unwrap());
        std::fs::write(&cfg_path, v.to_string()).unwrap();
    };
    write(&|c| {
        c.insert("rope_theta".into(), serde_json::json!(500000.0));
    });
    let old = run(&o).unwrap();
    write(&|c| {
        c.remove("rope_theta");
        c.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "default", "rope_theta": 500000.0}),
        );
    });
    let new = run(&o).unwrap();
    write(&|c| {
        c.remove("rope_theta");
    });
    let default = run(&o).unwrap();
    let toks =
        |x: &ovbench_eval::Outcome| x.items.iter().map(|r| r.tokens.clone()).collect::<Vec<_>>();
    assert_eq!(toks(&old), toks(&new));
    assert_ne!(
        toks(&old),
        toks(&default),
        "rope_theta 500000 must change the answers of this fixture"
    );
    write(&|c| {
        c.remove("rope_theta");
        c.insert(
            "rope_parameters".into(),
            serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0}),
        );
    });
    let e = run(&o).err().unwrap().to_string();
    assert!(
        e.contains("rope_parameters.rope_type") && e.contains("yarn"),
        "{e}"
    );
}

#[test]
fn nan_weights_stop_the_run_naming_the_item() {
    let d = tempfile::tempdir().unwrap();
    let m = fixture::write_models(&d.path().join("m"), 9).unwrap();
    let rows = fixture::rows(Task::TextVqa, 2, 9);
    let data = fixture::write_dataset(&d.path().join("d"), Task::TextVqa, "tsv", &rows).unwrap();
    let mut o = options(&m, Task::TextVqa, &data, d.path());
    // One NaN in the projector: every image feature, then every logit, is NaN.
    let mut p = fixture::projector_tensors(9);
    let w = p["model.mm_projector.0.bias"].clone();
    let mut v: Vec<f32> = w.to_vec1().unwrap();
    v[0] = f32::NAN;
    p.insert(
        "model.mm_projector.0.bias".into(),
        Tensor::new(v, &Device::Cpu).unwrap(),
    );
    o.projector = d.path().join("nan.safetensors");
    fixture::save_safetensors(&o.projector, &p).unwrap();
    let e = err_of(&o);
    assert!(
        e.contains("not finite") && e.contains("image features") && e.contains("question '"),
        "{e}"
    );
    // A NaN in the LLM's final norm only: the image features are fine, the logits are not.
    let llm = d.path().join("llm");
    std::fs::create_dir_all(&llm).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(m.llm.join(f), llm.join(f)).unwrap();
    }
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(m.llm.join("config.json")).unwrap()).unwrap();
    let vocab = cfg["vocab_size"].as_u64().unwrap() as usize;
    let mut t = fixture::llama_tensors(vocab, 9);
    let n: Vec<f32> = t["model.norm.weight"].to_vec1().unwrap();
    let nan = vec![f32::NAN; n.len()];
    t.insert(
        "model.norm.weight".into(),
        Tensor::new(nan, &Device::Cpu).unwrap(),
    );
    fixture::save_safetensors(&llm.join("model.safetensors"), &t).unwrap();
    let mut o = options(&m, Task::TextVqa, &data, d.path());
    o.llm = llm;
    let e = err_of(&o);
    assert!(
        e.contains("not finite") && e.contains("logits") && e.contains("question '"),
        "{e}"
    );
}
