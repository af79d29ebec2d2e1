//! The bad-input catalogue (issue 18): one case per class of hostile input and per reader or
//! subcommand. Each case asserts the exit code, a one-line `error:` message naming the file,
//! line or field, no panic, a bounded run time (a hang fails the case instead of hanging the
//! test), and that nothing was written: the output folder holds the same files before and
//! after, and special files (FIFOs, symlinks) are still what they were.
//!
//! The cases run in one test so that the summary (size and outcome counts, quoted in
//! docs/hostile-input.md) is printed once: `cargo test --release --test bad_inputs -- --nocapture`.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any case may run: every case here fails at once or runs a tiny model.
const HANG_S: f64 = 60.0;

struct Case {
    class: &'static str,
    cmd: String,
    args: Vec<String>,
    code: i32,
    /// In the `error:` line (or, for `check`, in stdout).
    needles: Vec<String>,
    /// Where the answer is read: "stderr" (the error line) or "stdout".
    look_in: &'static str,
    /// Upper bound on the run time.
    max_s: f64,
    /// Run through `sh -c 'umask 027; exec ...'`.
    umask: bool,
}

fn case(class: &'static str, args: &[&str], code: i32, needles: &[&str]) -> Case {
    Case {
        class,
        cmd: args[0].to_string(),
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        needles: needles.iter().map(|s| s.to_string()).collect(),
        look_in: "stderr",
        max_s: 20.0,
        umask: false,
    }
}

impl Case {
    fn within(mut self, secs: f64) -> Case {
        self.max_s = secs;
        self
    }
    fn stdout(mut self) -> Case {
        self.look_in = "stdout";
        self
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    secs: f64,
}

fn run(bin: &str, args: &[String], cwd: &Path, umask: bool) -> Outcome {
    let mut cmd = if umask {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("umask 027; exec \"$0\" \"$@\"")
            .arg(bin)
            .args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    };
    let t0 = Instant::now();
    let mut child = cmd
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ovbench");
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ho = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut so, &mut s).ok();
        s
    });
    let he = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut se, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if t0.elapsed().as_secs_f64() > HANG_S {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.and_then(|s| s.code()),
        stdout: ho.join().unwrap_or_default(),
        stderr: he.join().unwrap_or_default(),
        secs: t0.elapsed().as_secs_f64(),
    }
}

/// Files under `dir` (not following symlinks): kind, size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u64, Option<std::time::SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let kind = if ft.is_symlink() {
                format!("symlink->{}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_fifo() {
                "fifo".into()
            } else {
                "file".into()
            };
            out.insert(p, (kind, m.len(), m.modified().ok()));
        }
    }
    out
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "{}",
        p.display()
    );
}

fn write(p: &Path, body: impl AsRef<[u8]>) -> String {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
    p.to_str().unwrap().to_string()
}

/// A complete step record in the first layout (the legacy reader upgrades it), as in
/// tests/gate_cli.rs: 10 measured steps after 2 warm-up steps, times scaled by `slowdown`.
fn step_record(slowdown: f64) -> Value {
    let run = |recipe: &str, base: f64| {
        let samples: Vec<Value> = (0..10)
            .map(|i| {
                let t = base * slowdown * (1.0 + 0.004 * ((i * 7 % 5) as f64 - 2.0));
                json!({"step": i + 2, "forward_s": t * 0.4, "backward_s": t * 0.5, "optimizer_s": t * 0.1,
                       "total_s": t, "loss": 5.0, "caption_loss": 5.0, "contrastive_loss": null})
            })
            .collect();
        let med = base * slowdown;
        json!({
            "recipe": recipe, "label": recipe, "params_total": if recipe == "ov1" { 11_000_000 } else { 9_000_000 },
            "kept_tokens": if recipe == "ov2" { json!(17) } else { Value::Null },
            "forward_flops_per_image_total": if recipe == "ov1" { 2.0e9 } else { 1.4e9 },
            "training_flops_per_image": if recipe == "ov1" { 6.0e9 } else { 4.2e9 },
            "warmup_losses": [5.1, 5.05],
            "samples": samples,
            "summary": {"step_s": {"n": 10, "median": med, "mean": med, "stddev": 0.0, "min": med, "max": med, "mad": 0.0,
                                   "ci95": [med * 0.99, med * 1.01]},
                        "images_per_s": 8.0 / med, "achieved_flops_per_s": 1.0e10},
            "memory": {"allocator_active": true, "baseline_bytes": 1000, "peak_bytes": 80_001_000,
                       "peak_over_baseline_bytes": 30_000_000, "params_bytes": 44_000_000,
                       "grads_bytes": 44_000_000, "optimizer_bytes": 88_000_000,
                       "transient_peak_bytes": 5_000_000, "rss_peak_bytes": null, "allocations_per_step": 100},
            "notes": []
        })
    };
    json!({
        "schema": "ovbench.step/1",
        "provenance": {
            "created_utc": "2025-11-27T12:00:00Z",
            "command_line": ["ovbench", "step"],
            "git": {"commit": "0353d5e1111111111111111111111111111111aa", "dirty": false, "note": null},
            "host": {"hostname": "h", "cpu_model": "CPU A", "physical_cores": 2, "logical_cpus": 2,
                     "memory_bytes": 8_000_000_000u64, "os": "Linux", "kernel": "6"},
            "build": {"crate_version": "0.1.0", "rustc": "rustc 1.90", "profile": "release", "opt_level": "3",
                      "target": "x86_64-unknown-linux-gnu", "features": []}
        },
        "config": {"model": {"size": "Ti", "patch": 16}, "resolution": 112, "batch": 8, "keep_ratio": 0.35,
                   "v2_attention": "causal", "recipes": ["ov1", "ov2"], "steps": 10, "warmup": 2, "seed": 0,
                   "dtype": "f32", "device": {"kind": "cpu"}},
        "runs": [run("ov1", 0.4), run("ov2", 0.24)],
        "ratios_ov2_over_ov1": {"step_time": {"value": 0.6, "ci95": [0.58, 0.62]}, "peak_memory": 0.75,
                                "transient_memory": 1.0, "params": 0.82, "forward_flops": 0.7},
        "order": ["ov1", "ov2"]
    })
}

/// Every case of the catalogue, over the files made in `w`.
fn catalogue(w: &Path) -> Vec<Case> {
    let p = |s: &str| w.join(s).to_str().unwrap().to_string();
    let fx = |s: &str| format!("fx/{s}");
    // Inputs.
    for name in [
        "in/fifo.json",
        "in/fifo.jsonl",
        "in/fifo.tsv",
        "in/fifo.parquet",
        "in/fifo.xlsx",
        "in/fifo.toml",
        "in/fifo.safetensors",
        "in/fifo.bin",
        "in/recs/fifo.json",
        "in/checkdir/fifo.json",
        "llm-fifo-config/config.json",
        "llm-fifo-tok/tokenizer.json",
        "tv/train_images/000000000000abc0.jpg",
    ] {
        std::fs::create_dir_all(w.join(name).parent().unwrap()).unwrap();
        mkfifo(&w.join(name));
    }
    std::os::unix::fs::symlink("/proc/self/status", w.join("in/checkdir/proc.json")).unwrap();
    std::os::unix::fs::symlink("/proc", w.join("in/checkdir/procdir")).unwrap();
    // LLM folders with one FIFO each, the rest real.
    for (dir, keep) in [
        ("llm-fifo-config", ["tokenizer.json", "model.safetensors"]),
        ("llm-fifo-tok", ["config.json", "model.safetensors"]),
    ] {
        for f in keep {
            std::fs::copy(w.join("fx/models/llm").join(f), w.join(dir).join(f)).unwrap();
        }
    }
    // A TextVQA JSON dataset whose first image is a FIFO.
    std::fs::copy(
        w.join("fx/data/textvqa/json/TextVQA_0.5.1_val.json"),
        w.join("tv/TextVQA_0.5.1_val.json"),
    )
    .unwrap();
    std::fs::copy(
        w.join("fx/data/textvqa/json/train_images/000000000000abc1.jpg"),
        w.join("tv/train_images/000000000000abc1.jpg"),
    )
    .unwrap();

    let rec = write(
        &w.join("in/rec.json"),
        serde_json::to_vec_pretty(&step_record(1.0)).unwrap(),
    );
    let slow = write(
        &w.join("in/slow.json"),
        serde_json::to_vec_pretty(&step_record(1.2)).unwrap(),
    );
    write(
        &w.join("in/recs/good.json"),
        serde_json::to_vec_pretty(&step_record(1.0)).unwrap(),
    );
    let mut future = step_record(1.0);
    future["schema"] = json!("ovbench.step/99");
    let future = write(&w.join("in/future.json"), future.to_string());
    let mut negative = step_record(1.0);
    negative["runs"][0]["samples"][3]["total_s"] = json!(-0.5);
    let negative = write(&w.join("in/negative.json"), negative.to_string());
    let mut nan = step_record(1.0);
    nan["runs"][1]["samples"][3]["total_s"] = json!("NaN");
    let nan = write(&w.join("in/nan.json"), nan.to_string());
    let mut huge = step_record(1.0);
    huge["runs"][0]["samples"][0]["total_s"] = json!(f64::MAX);
    write(&w.join("in/hugedir/huge.json"), huge.to_string());
    let truncated = write(
        &w.join("in/truncated.json"),
        &step_record(1.0).to_string()[..900],
    );
    write(
        &w.join("in/truncdir/t.json"),
        &step_record(1.0).to_string()[..900],
    );
    write(
        &w.join("in/blocker"),
        "a regular file where a folder should be",
    );

    // Score inputs.
    let tv = fx("data/textvqa/json/TextVQA_0.5.1_val.json");
    let chart_tsv = fx("data/chartqa/tsv/ChartQA_TEST.tsv");
    let good_preds = write(
        &w.join("in/preds.jsonl"),
        "{\"question_id\": 34602, \"prediction\": \"stop\"}\n{\"question_id\": 34603, \"prediction\": \"x\"}\n",
    );
    let ocr_results = write(
        &w.join("in/results.json"),
        json!([{"dataset_name": "IIIT5K", "id": 0, "question": "what is written?", "answers": ["stop"], "type": "Regular Text Recognition", "predict": "stop"},
               {"dataset_name": "IIIT5K", "id": 1, "question": "what is written?", "answers": ["x"], "type": "Regular Text Recognition", "predict": "x"}])
        .to_string(),
    );
    let unclosed = write(
        &w.join("in/unclosed.tsv"),
        "index\tprediction\n0\t10\n1\t\"2\n2\t3\n",
    );
    let swallow = write(
        &w.join("in/swallow.tsv"),
        "index\tquestion\tanswer\tsplit\n0\t\"q\n1\tq\t2\ttest_human\n2\tq\"\t3\ttest_human\n",
    );
    let unknown = write(
        &w.join("in/unknown.jsonl"),
        "{\"question_id\": 99999, \"prediction\": \"x\"}\n",
    );
    let truncated_ann = write(
        &w.join("in/TextVQA_trunc.json"),
        "{\"data\": [{\"question_id\": 1,\n",
    );
    let bad_utf8 = write(
        &w.join("in/utf8.jsonl"),
        b"{\"question_id\": 34602, \"prediction\": \"ok\"}\n{\"question_id\": 34603, \"prediction\": \"\xff\"}\n",
    );
    let empty = write(&w.join("in/empty.jsonl"), "");
    std::fs::create_dir_all(w.join("in/noann")).unwrap();
    write(&w.join("in/noann/readme.txt"), "nothing");
    let garbage_xlsx = write(&w.join("in/garbage.xlsx"), "PK\x03\x04 not really a zip");
    let garbage_parquet = write(
        &w.join("in/garbage.parquet"),
        "PAR1 not really parquet PAR1",
    );
    let bad_toml = write(&w.join("in/bad.toml"), "[defaults]\nthreshold = = 1\n");
    let unknown_toml = write(&w.join("in/unknown.toml"), "[defaults]\nthreshhold = 0.1\n");
    let nan_toml = write(&w.join("in/nan.toml"), "[defaults]\nthreshold = nan\n");

    // Eval inputs: the tiny models, each broken one way.
    let mut cfg: Value = serde_json::from_slice(
        &std::fs::read(w.join("fx/models/encoder/open_clip_config.json")).unwrap(),
    )
    .unwrap();
    cfg["model_cfg"]["vision_cfg"]["head_width"] = json!(7);
    let head7 = write(&w.join("in/head7/open_clip_config.json"), cfg.to_string());
    // The tower with one NaN weight: its bytes rewritten in place (the safetensors header is
    // JSON and gives each tensor's offsets).
    let proj = std::fs::read(w.join("fx/models/encoder/open_clip_model.safetensors")).unwrap();
    let n = u64::from_le_bytes(proj[..8].try_into().unwrap()) as usize;
    let mut nan_tower = proj.clone();
    let header: Value = serde_json::from_slice(&proj[8..8 + n]).unwrap();
    // The patch embedding: every image feature depends on it.
    let start = header["visual.conv1.weight"]["data_offsets"][0]
        .as_u64()
        .expect("conv1 in the tiny tower") as usize;
    nan_tower[8 + n + start..8 + n + start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let nan_tower = write(&w.join("in/nan_tower.safetensors"), nan_tower);
    let cut_weights = write(&w.join("in/cut.safetensors"), &proj[..proj.len() / 2]);
    let llm_bad_config = w.join("llm-bad-config");
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::create_dir_all(&llm_bad_config).unwrap();
        std::fs::copy(w.join("fx/models/llm").join(f), llm_bad_config.join(f)).unwrap();
    }
    write(&llm_bad_config.join("config.json"), "{\"hidden_size\": 64}");
    let llm_bad_tok = w.join("llm-bad-tok");
    for f in ["config.json", "model.safetensors"] {
        std::fs::create_dir_all(&llm_bad_tok).unwrap();
        std::fs::copy(w.join("fx/models/llm").join(f), llm_bad_tok.join(f)).unwrap();
    }
    write(&llm_bad_tok.join("tokenizer.json"), "{\"model\": 3}");
    // A tokenizer the tokenizers crate parses but panics on at the first encode (found by
    // scripts/fuzz.sh): a template naming a special token it does not define.
    let llm_panic_tok = w.join("llm-panic-tok");
    for f in ["config.json", "model.safetensors"] {
        std::fs::create_dir_all(&llm_panic_tok).unwrap();
        std::fs::copy(w.join("fx/models/llm").join(f), llm_panic_tok.join(f)).unwrap();
    }
    let mut tok: Value =
        serde_json::from_slice(&std::fs::read(w.join("fx/models/llm/tokenizer.json")).unwrap())
            .unwrap();
    tok["post_processor"] = json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<undefined>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {}
    });
    write(&llm_panic_tok.join("tokenizer.json"), tok.to_string());
    let no_answer_col = write(
        &w.join("in/noanswer.tsv"),
        "index\timage\tquestion\tsplit\n0\taGk=\tq\ttest_human\n",
    );

    let eval = |task: &str, data: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "eval",
            "--task",
            task,
            "--data",
            data,
            "--encoder",
            "fx/models/encoder/open_clip_model.safetensors",
            "--projector",
            "fx/models/projector/mm_projector.bin",
            "--llm",
            "fx/models/llm",
            "--out",
            "out",
            "--no-cache",
            "--quiet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Later options replace earlier ones of the same name.
        let mut i = 0;
        while i < extra.len() {
            if let Some(k) = a.iter().position(|x| x == extra[i]) {
                if i + 1 < extra.len() && !extra[i + 1].starts_with("--") {
                    a[k + 1] = extra[i + 1].to_string();
                    i += 2;
                    continue;
                }
            }
            a.push(extra[i].to_string());
            i += 1;
        }
        a
    };
    let eval_case = |class, data: &str, extra: &[&str], needles: &[&str]| {
        let a = eval("textvqa", data, extra);
        let r: Vec<&str> = a.iter().map(String::as_str).collect();
        case(class, &r, 2, needles)
    };
    let tv_tsv = fx("data/textvqa/tsv/TextVQA_VAL.tsv");
    let score = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["score".into()];
        if !extra.contains(&"--out") {
            a.extend(["--out".to_string(), "out".to_string()]);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let sc = |class, extra: &[&str], needles: &[&str]| {
        let a = score(extra);
        let r: Vec<&str> = a.iter().map(String::as_str).collect();
        case(class, &r, 2, needles)
    };

    let mut v = vec![
        // 1. Sizes and counts beyond any machine: refused before any work.
        case(
            "bounds",
            &[
                "step",
                "--warmup",
                "18446744073709551615",
                "--steps",
                "1",
                "--out",
                "out",
            ],
            2,
            &["--warmup"],
        )
        .within(5.0),
        case(
            "bounds",
            &["step", "--batch", "100000000", "--out", "out"],
            2,
            &["--batch"],
        )
        .within(5.0),
        // Within the bounds, but beyond this host's memory: refused from the memory model,
        // before anything is allocated, with the predicted size.
        case(
            "bounds",
            &[
                "step", "--model", "L/14", "--res", "224", "--batch", "20000", "--out", "out",
            ],
            2,
            &["--batch", "memory model", "GB"],
        )
        .within(10.0),
        case(
            "bounds",
            &["step", "--res", "1000000", "--out", "out"],
            2,
            &["--res"],
        )
        .within(5.0),
        case(
            "bounds",
            &["step", "--threads", "100000", "--out", "out"],
            2,
            &["--threads"],
        )
        .within(5.0),
        case(
            "bounds",
            &["step", "--ew-threads", "100000", "--out", "out"],
            2,
            &["threads"],
        )
        .within(5.0),
        case(
            "bounds",
            &[
                "step",
                "--mem-cap",
                "99999999999999999999999GiB",
                "--out",
                "out",
            ],
            2,
            &["--mem-cap"],
        )
        .within(5.0),
        case(
            "bounds",
            &["repro", "--batch", "100000000", "--out", "out"],
            2,
            &["--batch"],
        )
        .within(5.0),
        case(
            "bounds",
            &["repro", "--warmup", "18446744073709551615", "--out", "out"],
            2,
            &["--warmup"],
        )
        .within(5.0),
        case(
            "bounds",
            &["repro", "--threads", "100000", "--out", "out"],
            2,
            &["--threads"],
        )
        .within(5.0),
        case(
            "bounds",
            &[
                "report",
                &rec,
                "--out",
                "out/plots",
                "--cap",
                "99999999999999999999999GiB",
            ],
            2,
            &["--cap"],
        )
        .within(5.0),
        case(
            "bounds",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--threshold=-1",
            ],
            2,
            &["threshold"],
        )
        .within(5.0),
        case(
            "bounds",
            &["compare", &rec, "--price-per-hour=-1"],
            2,
            &["--price-per-hour"],
        )
        .within(5.0),
        // 2. Inputs that would block or flood a reader: FIFOs, devices, /proc.
        sc(
            "special-input",
            &[
                "--task",
                "textvqa",
                "--annotations",
                "in/fifo.json",
                "--predictions",
                &good_preds,
            ],
            &["in/fifo.json", "FIFO"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "chartqa",
                "--annotations",
                "in/fifo.tsv",
                "--predictions",
                &good_preds,
            ],
            &["in/fifo.tsv", "FIFO"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "ocrbench",
                "--annotations",
                "in/fifo.parquet",
                "--predictions",
                &good_preds,
            ],
            &["in/fifo.parquet", "FIFO"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                "in/fifo.jsonl",
            ],
            &["in/fifo.jsonl", "FIFO"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                "in/fifo.xlsx",
            ],
            &["in/fifo.xlsx", "FIFO"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                "/dev/zero",
            ],
            &["/dev/zero", "character device"],
        )
        .within(5.0),
        sc(
            "special-input",
            &[
                "--task",
                "textvqa",
                "--annotations",
                "/dev/zero",
                "--predictions",
                &good_preds,
            ],
            &["/dev/zero"],
        )
        .within(5.0),
        case(
            "special-input",
            &["gate", "--baseline", "in/fifo.json", "--current", &rec],
            2,
            &["in/fifo.json", "FIFO"],
        )
        .within(5.0),
        case(
            "special-input",
            &["gate", "--baseline", &rec, "--current", "/dev/zero"],
            2,
            &["/dev/zero", "character device"],
        )
        .within(5.0),
        case(
            "special-input",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--config",
                "in/fifo.toml",
            ],
            2,
            &["in/fifo.toml", "FIFO"],
        )
        .within(5.0),
        case(
            "special-input",
            &["compare", "in/fifo.json"],
            2,
            &["in/fifo.json", "FIFO"],
        )
        .within(5.0),
        case(
            "special-input",
            &["compare", "in/recs"],
            2,
            &["fifo.json", "not a regular file"],
        )
        .within(5.0),
        case(
            "special-input",
            &["report", "in/recs", "--out", "out/plots"],
            2,
            &["fifo.json", "not a regular file"],
        )
        .within(5.0),
        case(
            "special-input",
            &["check", "in/checkdir"],
            1,
            &[
                "fifo.json",
                "not a regular file",
                "proc.json",
                "symbolic link",
            ],
        )
        .within(5.0)
        .stdout(),
        eval_case(
            "special-input",
            "in/fifo.tsv",
            &[],
            &["in/fifo.tsv", "FIFO"],
        )
        .within(5.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--encoder", "in/fifo.safetensors"],
            &["in/fifo.safetensors", "FIFO"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--encoder", "/dev/zero"],
            &["/dev/zero", "character device"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--encoder-config", "in/fifo.json"],
            &["in/fifo.json", "FIFO"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--projector", "in/fifo.bin"],
            &["in/fifo.bin", "FIFO"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--llm", "llm-fifo-config"],
            &["llm-fifo-config/config.json", "FIFO"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--llm", "llm-fifo-tok"],
            &["llm-fifo-tok/tokenizer.json", "FIFO"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            "tv/TextVQA_0.5.1_val.json",
            &[],
            &["000000000000abc0.jpg"],
        )
        .within(10.0),
        eval_case(
            "special-input",
            &tv_tsv,
            &["--no-cache", "--cache", "in/fifo.jsonl"],
            &["in/fifo.jsonl", "FIFO"],
        )
        .within(10.0),
        // 3. Outputs that are not regular files: refused, left as they were; `-` is stdout.
        case(
            "special-target",
            &["compare", &rec, "--markdown", "out/fifo.md"],
            2,
            &["out/fifo.md", "FIFO"],
        )
        .within(5.0),
        case(
            "special-target",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--json",
                "out/link.json",
            ],
            2,
            &["out/link.json", "symbolic link"],
        )
        .within(5.0),
        case(
            "special-target",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--markdown",
                "out/g.md",
                "--gab-smaller",
                "out/fifo.md",
            ],
            2,
            &["out/fifo.md", "FIFO"],
        )
        .within(5.0),
        case(
            "special-target",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--gab-bigger",
                "out/sub",
            ],
            2,
            &["out/sub", "folder"],
        )
        .within(5.0),
        case(
            "special-target",
            &["step", "--out", "out/fifo.json"],
            2,
            &["out/fifo.json", "FIFO"],
        )
        .within(5.0),
        case(
            "special-target",
            &["repro", "--out", "out/link.json"],
            2,
            &["--out", "out/link.json"],
        )
        .within(5.0),
        case(
            "special-target",
            &["report", &rec, "--out", "out/fifo.md"],
            2,
            &["out/fifo.md"],
        )
        .within(5.0),
        case(
            "special-target",
            &["compare", &rec, "--markdown", "-"],
            0,
            &["| "],
        )
        .within(5.0)
        .stdout(),
        case(
            "special-target",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--quiet",
                "--json",
                "-",
            ],
            0,
            &["\"kind\": \"step\""],
        )
        .within(5.0)
        .stdout(),
        // 4. Outputs that cannot be written: known before the run, nothing half-written.
        case(
            "lost-output",
            &["step", "--out", "in/blocker/sub"],
            2,
            &["in/blocker"],
        )
        .within(5.0),
        case(
            "lost-output",
            &["repro", "--out", "in/blocker/sub"],
            2,
            &["in/blocker"],
        )
        .within(5.0),
        eval_case(
            "lost-output",
            &tv_tsv,
            &["--out", "in/blocker/sub"],
            &["--out", "in/blocker"],
        )
        .within(5.0),
        sc(
            "lost-output",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                &good_preds,
                "--out",
                "in/blocker/sub",
            ],
            &["--out", "in/blocker"],
        )
        .within(5.0),
        case(
            "lost-output",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--markdown",
                "out/g.md",
                "--json",
                "in/blocker/g.json",
            ],
            2,
            &["in/blocker"],
        )
        .within(5.0),
        case(
            "lost-output",
            &["compare", &rec, "--markdown", "in/blocker/c.md"],
            2,
            &["in/blocker"],
        )
        .within(5.0),
        case(
            "lost-output",
            &["report", &rec, "--out", "in/blocker/plots"],
            2,
            &["in/blocker"],
        )
        .within(5.0),
        // 5. Silently wrong results, now refused.
        sc(
            "silent-wrong",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                &ocr_results,
            ],
            &["results.json", "OCRBench result file"],
        ),
        sc(
            "silent-wrong",
            &[
                "--task",
                "chartqa",
                "--annotations",
                &chart_tsv,
                "--predictions",
                &unclosed,
            ],
            &["unclosed.tsv:3", "never closed"],
        ),
        sc(
            "silent-wrong",
            &[
                "--task",
                "chartqa",
                "--annotations",
                &swallow,
                "--predictions",
                &good_preds,
            ],
            &["swallow.tsv:2", "looks like a row"],
        ),
        sc(
            "silent-wrong",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                &unknown,
            ],
            &["unknown.jsonl:1", "99999", "not in the annotations"],
        ),
        eval_case(
            "silent-wrong",
            &tv_tsv,
            &["--encoder-config", &head7],
            &[
                "open_clip_config.json",
                "vision_cfg.head_width",
                "does not divide",
            ],
        )
        .within(10.0),
        eval_case(
            "silent-wrong",
            &tv_tsv,
            &["--encoder", &nan_tower, "--vision-heads", "2"],
            &["not finite", "question '"],
        )
        .within(20.0),
        case(
            "silent-wrong",
            &["compare", &future],
            2,
            &["future.json", "schema"],
        )
        .within(5.0),
        case(
            "silent-wrong",
            &["report", &negative, "--out", "out/plots"],
            2,
            &["negative.json"],
        )
        .within(5.0),
        case(
            "silent-wrong",
            &["gate", "--baseline", &rec, "--current", &nan],
            2,
            &["nan.json"],
        )
        .within(5.0),
        case("silent-wrong", &["check", "in/hugedir"], 1, &["huge.json"])
            .within(5.0)
            .stdout(),
        // A sample of f64::MAX once sent the plotting library into an endless loop.
        case(
            "runaway",
            &["report", "in/hugedir/huge.json", "--out", "out/plots"],
            2,
            &["huge.json"],
        )
        .within(5.0),
        case(
            "runaway",
            &["compare", "in/hugedir/huge.json"],
            2,
            &["huge.json"],
        )
        .within(5.0),
        case(
            "silent-wrong",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &slow,
                "--rerun-cmd",
                "sleep 30",
                "--rerun-timeout",
                "1",
            ],
            2,
            &["--rerun-timeout"],
        )
        .within(10.0),
        // 6. Malformed files, per reader: the error names the file and the line or field.
        sc(
            "reader",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &truncated_ann,
                "--predictions",
                &good_preds,
            ],
            &["TextVQA_trunc.json"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                &bad_utf8,
            ],
            &["utf8.jsonl:2", "UTF-8"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                &empty,
            ],
            &["empty.jsonl", "empty"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "textvqa",
                "--annotations",
                "in/noann",
                "--predictions",
                &good_preds,
            ],
            &["in/noann"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "textvqa",
                "--annotations",
                &tv,
                "--predictions",
                "in/missing.jsonl",
            ],
            &["in/missing.jsonl"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "chartqa",
                "--annotations",
                &chart_tsv,
                "--predictions",
                &garbage_xlsx,
            ],
            &["garbage.xlsx"],
        ),
        sc(
            "reader",
            &[
                "--task",
                "chartqa",
                "--annotations",
                &garbage_parquet,
                "--predictions",
                &good_preds,
            ],
            &["garbage.parquet"],
        ),
        case(
            "reader",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--config",
                &bad_toml,
            ],
            2,
            &["bad.toml:2:"],
        ),
        case(
            "reader",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--config",
                &unknown_toml,
            ],
            2,
            &["unknown.toml:2:1", "threshhold"],
        ),
        case(
            "reader",
            &[
                "gate",
                "--baseline",
                &rec,
                "--current",
                &rec,
                "--config",
                &nan_toml,
            ],
            2,
            &["nan.toml", "threshold"],
        ),
        case("reader", &["compare", &truncated], 2, &["truncated.json"]),
        case("reader", &["check", "in/truncdir"], 1, &["t.json"]).stdout(),
        eval_case("reader", &no_answer_col, &[], &["noanswer.tsv", "answer"]),
        eval_case(
            "reader",
            &tv_tsv,
            &["--llm", llm_bad_config.to_str().unwrap()],
            &["llm-bad-config/config.json", "intermediate_size"],
        ),
        eval_case(
            "reader",
            &tv_tsv,
            &["--llm", llm_bad_tok.to_str().unwrap()],
            &["llm-bad-tok/tokenizer.json"],
        ),
        eval_case(
            "reader",
            &tv_tsv,
            &["--encoder", &cut_weights],
            &["cut.safetensors"],
        ),
        eval_case(
            "reader",
            &tv_tsv,
            &["--llm", llm_panic_tok.to_str().unwrap()],
            &["llm-panic-tok/tokenizer.json", "panics"],
        ),
    ];
    // The cache case: `--no-cache` above would make `--cache` unused; drop `--no-cache`.
    for c in v.iter_mut() {
        if c.args.iter().any(|a| a == "in/fifo.jsonl") && c.cmd == "eval" {
            c.args.retain(|a| a != "--no-cache");
        }
    }
    let _ = p;
    v
}

#[test]
fn every_bad_input_is_a_clear_error_and_writes_nothing() {
    let bin = env!("CARGO_BIN_EXE_ovbench");
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    let fx = run(
        bin,
        &["eval-fixture", "--out", "fx", "--questions", "2"].map(String::from),
        w,
        false,
    );
    assert_eq!(fx.code, Some(0), "{}", fx.stderr);
    // The output folder, with special files in it that must survive every case.
    std::fs::create_dir_all(w.join("out/sub")).unwrap();
    mkfifo(&w.join("out/fifo.md"));
    mkfifo(&w.join("out/fifo.json"));
    write(&w.join("in/target.txt"), "the symlink's target");
    std::os::unix::fs::symlink("../in/target.txt", w.join("out/link.json")).unwrap();
    let cases = catalogue(w);

    let mut failures = Vec::new();
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_code: BTreeMap<i32, usize> = BTreeMap::new();
    let mut slowest = (0.0f64, String::new());
    for c in &cases {
        let before = snapshot(&w.join("out"));
        let target_before = std::fs::read(w.join("in/target.txt")).unwrap();
        let o = run(bin, &c.args, w, c.umask);
        let after = snapshot(&w.join("out"));
        let label = c.args.join(" ");
        let mut why = Vec::new();
        match o.code {
            None => why.push(format!(
                "no exit code after {:.1} s (hang or signal)",
                o.secs
            )),
            Some(code) if code != c.code => why.push(format!("exit {code}, expected {}", c.code)),
            _ => {}
        }
        if o.secs > c.max_s {
            why.push(format!("took {:.1} s, bound {:.1} s", o.secs, c.max_s));
        }
        if o.stderr.contains("panicked") || o.stderr.contains("RUST_BACKTRACE") {
            why.push("panicked".into());
        }
        let text = if c.look_in == "stdout" {
            o.stdout.clone()
        } else {
            // The one-line message: the first `error:` line.
            let errs: Vec<&str> = o
                .stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .collect();
            if c.code == 2 && errs.is_empty() {
                why.push("no `error:` line".into());
            }
            // One line: after it, nothing but clap's usage hints and notes (progress lines
            // before it are not part of the message).
            let other: Vec<&str> = o
                .stderr
                .lines()
                .skip_while(|l| !l.starts_with("error:"))
                .skip(1)
                .filter(|l| {
                    let t = l.trim();
                    !(t.is_empty()
                        || l.starts_with("error:")
                        || l.starts_with("note:")
                        || t.starts_with("Usage:")
                        || t.starts_with("For more information")
                        || t.starts_with("tip:"))
                })
                .collect();
            if c.code == 2 && (errs.len() > 1 || !other.is_empty()) {
                why.push(format!("the error is not one line: {:?}", o.stderr));
            }
            errs.first().map(|s| s.to_string()).unwrap_or_default()
        };
        for n in &c.needles {
            if !text.contains(n.as_str()) {
                why.push(format!("message lacks {n:?}"));
            }
        }
        // Nothing written: the same files in the output folder, special files untouched.
        let expect_write = c.code == 0 && c.args.iter().all(|a| a != "-");
        if before != after && !expect_write {
            let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
            let changed: Vec<_> = before
                .iter()
                .filter(|(k, v)| after.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            why.push(format!(
                "output folder changed: added {added:?}, changed {changed:?}"
            ));
        }
        if std::fs::read(w.join("in/target.txt")).unwrap() != target_before {
            why.push("wrote through the symlink".into());
        }
        if !why.is_empty() {
            failures.push(format!(
                "[{}] ovbench {label}\n    {}\n    stderr: {}\n    stdout: {}",
                c.class,
                why.join("; "),
                o.stderr
                    .trim()
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | "),
                o.stdout
                    .trim()
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        *by_class.entry(c.class).or_default() += 1;
        *by_code.entry(o.code.unwrap_or(-1)).or_default() += 1;
        if o.secs > slowest.0 {
            slowest = (o.secs, label);
        }
    }
    println!(
        "bad-input catalogue: {} cases, {} failed; by class {by_class:?}; by exit code {by_code:?}; slowest {:.2} s ({})",
        cases.len(),
        failures.len(),
        slowest.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn stale_temporaries_are_cleaned_and_the_umask_is_respected() {
    let bin = env!("CARGO_BIN_EXE_ovbench");
    let d = tempfile::tempdir().unwrap();
    let w = d.path();
    let rec = write(
        &w.join("rec.json"),
        serde_json::to_vec_pretty(&step_record(1.0)).unwrap(),
    );
    // A temporary left by a writer killed between write and rename (no such process id).
    let stale = w.join("out/.ovbench-2147483000-x.tmp");
    write(&stale, "half a record");
    let o = run(
        bin,
        &["compare", &rec, "--markdown", "out/c.md"].map(String::from),
        w,
        true,
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!stale.exists(), "stale temporary left behind");
    let mode = std::fs::metadata(w.join("out/c.md"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640, "umask 027 gives 0640, got {mode:o}");
}
