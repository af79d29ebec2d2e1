//! The child-engine protocol against fake engines (shell scripts written here; no Python):
//! every way an engine can misbehave is a clear error naming the engine and the tail of its
//! standard error, or an `oom` outcome; never a panic.

use ovbench_harness::engine::{run_child, ChildOutcome, ChildSpec, EngineError, Sample};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Writes `body` as an executable shell script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn spec(program: PathBuf, ranks: usize, phases: &[(&str, usize)]) -> ChildSpec {
    ChildSpec {
        engine: "fake".into(),
        program,
        args: vec![],
        env: vec![],
        cwd: None,
        config: serde_json::json!({"recipe": "ov2"}),
        ranks,
        phases: phases.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
        timeout: Duration::from_secs(20),
        gpus: vec![],
        nvml_interval: Duration::from_millis(1),
    }
}

const HELLO: &str =
    r#"echo '{"type":"hello","rank":0,"protocol":1,"pid":'$$',"engine":{"name":"fake"}}'"#;
const SETUP: &str = r#"echo '{"type":"setup","rank":0,"params_total":42}'"#;

fn sample(rank: usize, phase: &str, step: usize) -> String {
    format!(
        r#"echo '{{"type":"sample","rank":{rank},"phase":"{phase}","step":{step},"forward_s":0.1,"backward_s":0.2,"optimizer_s":0.05,"total_s":0.35,"loss":{}.5,"caption_loss":1.25}}'"#,
        10 - step
    )
}

fn run(spec: &ChildSpec) -> Result<ChildOutcome, EngineError> {
    let mut seen = Vec::new();
    let out = run_child(spec, &mut |rank, s: &Sample| seen.push((rank, s.step)));
    if let Ok(ChildOutcome::Completed(r)) = &out {
        let n: usize = r.ranks.iter().map(|x| x.samples.len()).sum();
        assert_eq!(seen.len(), n, "every sample goes through the callback");
    }
    out
}

fn err_text(r: Result<ChildOutcome, EngineError>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(o) => panic!("expected an error, got {o:?}"),
    }
}

#[test]
fn a_complete_run_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let body = [
        "echo 'warming up' >&2".to_string(),
        // The configuration file carries the harness's phase counts.
        r#"grep -q '"measured": 2' "$OVBENCH_ENGINE_CONFIG" || { echo "no counts in config" >&2; exit 9; }"#.into(),
        HELLO.into(),
        SETUP.into(),
        sample(0, "warmup", 0),
        sample(0, "measured", 1),
        sample(0, "measured", 2),
        r#"echo '{"type":"summary","rank":0,"memory":{"peak_bytes":123}}'"#.into(),
        r#"echo '{"type":"done","rank":0}'"#.into(),
    ]
    .join("\n");
    let p = script(dir.path(), "good.sh", &body);
    let out = run(&spec(p, 1, &[("warmup", 1), ("measured", 2)])).unwrap();
    let ChildOutcome::Completed(r) = out else {
        panic!("{out:?}")
    };
    assert_eq!(r.ranks.len(), 1);
    let rank = &r.ranks[0];
    assert_eq!(rank.phase("measured").count(), 2);
    assert_eq!(rank.phase("warmup").next().unwrap().loss, 10.5);
    assert_eq!(rank.samples[1].extra["caption_loss"], 1.25);
    assert_eq!(rank.setup.as_ref().unwrap()["params_total"], 42);
    assert_eq!(rank.summary.as_ref().unwrap()["memory"]["peak_bytes"], 123);
    assert!(rank.pid > 0);
    assert!(r.stderr_tail.contains("warming up"));
    assert_eq!(r.exit, "exit status 0");
}

#[test]
fn two_ranks_interleaved() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for r in 0..2 {
        lines.push(format!(
            r#"echo '{{"type":"hello","rank":{r},"protocol":1,"pid":{}}}'"#,
            100 + r
        ));
    }
    for r in [1, 0] {
        lines.push(format!(r#"echo '{{"type":"setup","rank":{r}}}'"#));
    }
    for step in 0..2 {
        for r in [1, 0] {
            lines.push(sample(r, "measured", step));
        }
    }
    for r in 0..2 {
        lines.push(format!(r#"echo '{{"type":"summary","rank":{r}}}'"#));
        lines.push(format!(r#"echo '{{"type":"done","rank":{r}}}'"#));
    }
    let p = script(dir.path(), "two.sh", &lines.join("\n"));
    let ChildOutcome::Completed(r) = run(&spec(p, 2, &[("measured", 2)])).unwrap() else {
        panic!()
    };
    assert_eq!(r.ranks[1].pid, 101);
    assert_eq!(r.ranks[1].samples.len(), 2);
}

#[test]
fn malformed_line_names_the_engine_line_and_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{HELLO}\necho 'Traceback: something broke' >&2\necho 'this is not json'");
    let p = script(dir.path(), "bad.sh", &body);
    let e = err_text(run(&spec(p, 1, &[("measured", 1)])));
    assert!(e.contains("engine fake"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    assert!(e.contains("this is not json"), "{e}");
    assert!(e.contains("something broke"), "{e}");

    // Valid JSON that is not an object.
    let p = script(dir.path(), "array.sh", "echo '[1, 2]'");
    let e = err_text(run(&spec(p, 1, &[("measured", 1)])));
    assert!(e.contains("an array instead of an object"), "{e}");
}

#[test]
fn an_early_exit_says_what_was_missing() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{HELLO}\n{SETUP}\n{}\necho 'Segmentation fault' >&2\nexit 3",
        sample(0, "measured", 0)
    );
    let p = script(dir.path(), "early.sh", &body);
    let e = err_text(run(&spec(p, 1, &[("measured", 3)])));
    assert!(e.contains("engine fake"), "{e}");
    assert!(e.contains("exit status 3"), "{e}");
    assert!(e.contains("measured samples 1 of 3"), "{e}");
    assert!(e.contains("Segmentation fault"), "{e}");

    // Everything delivered, then a crash in teardown: the run stands, and says how it ended.
    let body = format!(
        "{HELLO}\n{SETUP}\n{}\necho '{{\"type\":\"summary\",\"rank\":0}}'\necho '{{\"type\":\"done\",\"rank\":0}}'\nexit 6",
        sample(0, "measured", 0)
    );
    let p = script(dir.path(), "teardown.sh", &body);
    match run(&spec(p, 1, &[("measured", 1)])).unwrap() {
        ChildOutcome::Completed(r) => assert_eq!(r.exit, "exit status 6"),
        other => panic!("{other:?}"),
    }

    // A clean exit status does not excuse missing samples.
    let p = script(dir.path(), "short.sh", &format!("{HELLO}\n{SETUP}"));
    let e = err_text(run(&spec(p, 1, &[("measured", 1)])));
    assert!(e.contains("exit status 0"), "{e}");
    assert!(e.contains("rank 0 missing"), "{e}");

    // A program that does not exist.
    let e = err_text(run(&spec(dir.path().join("nope"), 1, &[])));
    assert!(e.contains("could not start"), "{e}");
}

#[test]
fn a_hang_is_killed_at_the_timeout_with_everything_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild.pid");
    // The grandchild stands for torchrun's workers: it must die with the engine.
    let body = format!(
        "{HELLO}\nsleep 600 &\necho $! > {}\necho 'about to hang' >&2\nwait",
        pidfile.display()
    );
    let p = script(dir.path(), "hang.sh", &body);
    let mut s = spec(p, 1, &[("measured", 1)]);
    s.timeout = Duration::from_millis(1500);
    let t0 = Instant::now();
    let e = err_text(run(&s));
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(e.contains("engine fake"), "{e}");
    assert!(e.contains("timeout"), "{e}");
    assert!(e.contains("about to hang"), "{e}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Reaped or gone: signal 0 fails once the process no longer exists (allow the kernel a moment).
    let mut alive = true;
    for _ in 0..50 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // A zombie (state Z) awaiting its reaper is dead too.
        if stat.is_empty() || stat.split_whitespace().nth(2) == Some("Z") {
            alive = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !alive,
        "the engine's child process {pid} survived the timeout"
    );
}

#[test]
fn out_of_memory_is_an_outcome_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{HELLO}\n{SETUP}\necho '{{\"type\":\"oom\",\"rank\":0,\"error\":\"CUDA out of memory. Tried to allocate 2.00 GiB\"}}'\nexit 1"
    );
    let p = script(dir.path(), "oom.sh", &body);
    match run(&spec(p, 1, &[("measured", 2)])).unwrap() {
        ChildOutcome::Oom(o) => {
            assert_eq!(o.rank, Some(0));
            assert!(o.error.contains("Tried to allocate"), "{o:?}");
        }
        other => panic!("{other:?}"),
    }
    // An engine that dies with the allocator's message on its standard error only.
    let body =
        format!("{HELLO}\n{SETUP}\necho 'torch.OutOfMemoryError: CUDA out of memory.' >&2\nexit 1");
    let p = script(dir.path(), "oom2.sh", &body);
    match run(&spec(p, 1, &[("measured", 2)])).unwrap() {
        ChildOutcome::Oom(o) => assert!(o.error.contains("OutOfMemoryError"), "{o:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            r#"{"type":"sample","rank":0,"phase":"measured","step":0,"forward_s":0.1,"optimizer_s":0.1,"total_s":0.3,"loss":1.0}"#,
            "field `backward_s` is missing",
        ),
        (
            r#"{"type":"sample","rank":0,"phase":"measured","step":0,"forward_s":0.1,"backward_s":0.1,"optimizer_s":0.1,"total_s":0.3,"loss":null}"#,
            "field `loss` is null",
        ),
        (
            r#"{"type":"sample","rank":0,"phase":"measured","step":0,"forward_s":"fast","backward_s":0.1,"optimizer_s":0.1,"total_s":0.3,"loss":1}"#,
            "field `forward_s` is a string",
        ),
        (
            r#"{"type":"sample","phase":"measured","step":0}"#,
            "field `rank` is missing",
        ),
        (r#"{"rank":0}"#, "field `type` is missing"),
        (
            r#"{"type":"telemetry","rank":0}"#,
            "unknown message type `telemetry`",
        ),
        (
            r#"{"type":"sample","rank":0,"phase":"cooldown","step":0,"forward_s":0.1,"backward_s":0.1,"optimizer_s":0.1,"total_s":0.3,"loss":1}"#,
            "phase `cooldown` was not asked for",
        ),
        (
            r#"{"type":"setup","rank":5}"#,
            "rank 5 in a run of 1 rank(s)",
        ),
        (r#"{"type":"error","rank":0}"#, "field `error` is missing"),
    ];
    for (i, (line, needle)) in cases.iter().enumerate() {
        let body = format!("echo 'note on stderr {i}' >&2\n{HELLO}\n{SETUP}\necho '{line}'");
        let p = script(dir.path(), &format!("f{i}.sh"), &body);
        let e = err_text(run(&spec(p, 1, &[("measured", 1)])));
        assert!(e.contains(needle), "case {i}: {e}");
        assert!(e.contains("engine fake"), "case {i}: {e}");
        assert!(e.contains(&format!("note on stderr {i}")), "case {i}: {e}");
    }
    // A hello of another protocol version.
    let p = script(
        dir.path(),
        "v2.sh",
        r#"echo '{"type":"hello","rank":0,"protocol":2,"pid":1}'"#,
    );
    assert!(err_text(run(&spec(p, 1, &[]))).contains("protocol version 2"));
    // A sample before the hello.
    let p = script(dir.path(), "order.sh", &sample(0, "measured", 0));
    assert!(err_text(run(&spec(p, 1, &[("measured", 1)]))).contains("before its hello"));
    // More samples than asked for.
    let body = format!(
        "{HELLO}\n{SETUP}\n{}\n{}",
        sample(0, "measured", 0),
        sample(0, "measured", 1)
    );
    let p = script(dir.path(), "extra.sh", &body);
    assert!(err_text(run(&spec(p, 1, &[("measured", 1)]))).contains("more `measured` samples"));
}

#[test]
fn an_engine_reported_error_carries_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{HELLO}\necho 'Traceback (most recent call last):' >&2\necho '{{\"type\":\"error\",\"rank\":0,\"error\":\"ValueError: bad shape\"}}'\nexit 1"
    );
    let p = script(dir.path(), "err.sh", &body);
    let e = err_text(run(&spec(p, 1, &[("measured", 1)])));
    assert!(
        e.contains("engine fake failed (rank 0): ValueError: bad shape"),
        "{e}"
    );
    assert!(e.contains("Traceback"), "{e}");
}

#[test]
fn a_check_needs_no_samples() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{HELLO}\necho '{{\"type\":\"result\",\"rank\":0,\"same_function\":true}}'\necho '{{\"type\":\"done\",\"rank\":0}}'"
    );
    let p = script(dir.path(), "check.sh", &body);
    let ChildOutcome::Completed(r) = run(&spec(p, 1, &[])).unwrap() else {
        panic!()
    };
    assert_eq!(r.ranks[0].results[0]["same_function"], true);
}
