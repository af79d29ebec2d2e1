//! Engines that run in a child process, and the protocol the harness speaks with them.
//!
//! The harness starts the engine with its configuration (a JSON file named by the environment
//! variable [`CONFIG_ENV`]), to which it adds a `protocol` object saying how many samples of
//! each phase every rank must take. The engine answers on its standard output with one JSON
//! object per line; each has a `type` and the `rank` that sent it (several ranks may share the
//! stream, as under torchrun):
//!
//! | type      | when                              | required fields                                     |
//! |-----------|-----------------------------------|-----------------------------------------------------|
//! | `hello`   | first, once per rank              | `protocol` (= 1), `pid`                             |
//! | `setup`   | model built (when phases are set) | -                                                   |
//! | `sample`  | after every step                  | `phase`, `step`, `forward_s`, `backward_s`, `optimizer_s`, `total_s`, `loss` |
//! | `result`  | any time (checks and the like)    | -                                                   |
//! | `summary` | after the last step               | -                                                   |
//! | `oom`     | out of memory (then it may exit)  | `error`                                             |
//! | `error`   | any other failure                 | `error`                                             |
//! | `done`    | last, once per rank               | -                                                   |
//!
//! Everything else in a message is the engine's own and is kept as it came. The harness owns
//! the rules: a line that is not such an object, a missing or mistyped field, a sample the
//! configuration did not ask for, silence longer than the timeout, or an exit before every
//! rank said `done` is an [`EngineError`] naming the engine, the line and the tail of the
//! engine's standard error. An `oom` message (or an exit whose standard error says "out of
//! memory") is not an error: it is [`ChildOutcome::Oom`], recorded by the caller as a run that
//! did not fit. The child runs in its own process group, so a hung engine is killed with every
//! process it started.

use crate::nvml_sampler::{NvmlSampler, NvmlSamples, PidSet};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Version of the line protocol.
pub const PROTOCOL_VERSION: u64 = 1;
/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "OVBENCH_ENGINE_CONFIG";
/// Lines of the engine's standard error kept for error messages.
const TAIL_LINES: usize = 30;
/// How long an engine may take to exit after its last message (or after an `oom`).
const EXIT_GRACE: Duration = Duration::from_secs(20);

/// How to start an engine and what to expect from it.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The engine's name, for messages.
    pub engine: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// The configuration the engine reads; must be a JSON object (the harness adds `protocol`).
    pub config: Value,
    /// Ranks that must each say hello and done.
    pub ranks: usize,
    /// Samples each rank must send per phase, in order (empty: no setup, samples or summary
    /// are expected, as for a check that only sends results).
    pub phases: Vec<(String, usize)>,
    /// Longest silence (no line on standard output) before the engine is killed.
    pub timeout: Duration,
    /// GPUs whose memory is sampled with NVML while the engine runs (empty on CPU).
    pub gpus: Vec<u32>,
    pub nvml_interval: Duration,
}

/// One measured (or warm-up) step as the engine reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub phase: String,
    pub step: usize,
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    pub total_s: f64,
    pub loss: f64,
    /// The engine's other fields (sub-losses, allocator peaks, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What one rank sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RankReport {
    pub rank: usize,
    pub pid: u32,
    pub hello: Map<String, Value>,
    pub setup: Option<Map<String, Value>>,
    pub samples: Vec<Sample>,
    pub results: Vec<Map<String, Value>>,
    pub summary: Option<Map<String, Value>>,
}

impl RankReport {
    /// Samples of one phase, in order.
    pub fn phase<'a>(&'a self, phase: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.phase == phase)
    }
}

/// A run that completed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChildRun {
    /// Indexed by rank.
    pub ranks: Vec<RankReport>,
    /// One per sampled GPU, the process view summed over every rank's process.
    pub nvml: Vec<NvmlSamples>,
    /// Seconds from start to exit, start-up included.
    pub wall_s: f64,
    /// How it ended after every rank said done: `exit status 0`, or what went wrong in its
    /// teardown (the run's data is complete either way).
    pub exit: String,
    pub stderr_tail: String,
}

/// A run that ran out of memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChildOom {
    pub rank: Option<usize>,
    pub error: String,
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum ChildOutcome {
    Completed(ChildRun),
    Oom(ChildOom),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine {engine}: could not start {program}: {message}")]
    Spawn {
        engine: String,
        program: String,
        message: String,
    },
    #[error("engine {engine}: no message for {seconds:.0} s (the timeout): killed it{tail}")]
    Timeout {
        engine: String,
        seconds: f64,
        tail: Tail,
    },
    #[error("engine {engine}: exited ({status}) before it finished: {missing}{tail}")]
    Exited {
        engine: String,
        status: String,
        missing: String,
        tail: Tail,
    },
    #[error("engine {engine}: standard output line {line_no} is not a protocol message ({reason}): {line}{tail}")]
    Malformed {
        engine: String,
        line_no: usize,
        reason: String,
        line: String,
        tail: Tail,
    },
    #[error("engine {engine}: line {line_no}: {message}{tail}")]
    Protocol {
        engine: String,
        line_no: usize,
        message: String,
        tail: Tail,
    },
    #[error("engine {engine} failed (rank {rank}): {message}{tail}")]
    Reported {
        engine: String,
        rank: usize,
        message: String,
        tail: Tail,
    },
    #[error("engine {engine}: {message}")]
    Io { engine: String, message: String },
}

/// The tail of an engine's standard error, printed after an error's first line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tail(pub String);

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.trim().is_empty() {
            f.write_str(" (its standard error was empty)")
        } else {
            write!(
                f,
                "\n--- engine standard error (last lines) ---\n{}",
                self.0.trim_end()
            )
        }
    }
}

impl EngineError {
    /// The engine's standard error tail carried by the error, if any.
    pub fn stderr_tail(&self) -> Option<&str> {
        match self {
            EngineError::Timeout { tail, .. }
            | EngineError::Exited { tail, .. }
            | EngineError::Malformed { tail, .. }
            | EngineError::Protocol { tail, .. }
            | EngineError::Reported { tail, .. } => Some(&tail.0),
            _ => None,
        }
    }
}

/// Whether an engine's message or standard error reports a device or host allocation failure.
pub fn is_oom_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("out of memory")
        || t.contains("outofmemoryerror")
        || t.contains("out_of_memory")
        || t.contains("cannot allocate memory")
}

/// Kills the child's process group when dropped (also on early returns).
struct Group {
    child: Child,
    done: bool,
}

impl Group {
    fn kill(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child's process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.done = true;
    }

    /// Waits up to `grace` for the child to exit; None if it did not.
    fn wait_for(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + grace;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.done = true;
                    return Some(s);
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Once the leader is reaped its id may be reused, so only a live group is signalled.
        if !self.done {
            self.kill();
        }
    }
}

/// The last lines of the child's standard error, kept by a reader thread.
#[derive(Clone, Default)]
struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    finished: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl StderrTail {
    fn spawn(stream: impl Read + Send + 'static) -> StderrTail {
        let tail = StderrTail::default();
        let t = tail.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                        let mut l = t.lines.lock().unwrap_or_else(|p| p.into_inner());
                        l.push_back(line);
                        while l.len() > TAIL_LINES {
                            l.pop_front();
                        }
                    }
                }
            }
            let (m, cv) = &*t.finished;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        });
        tail
    }

    /// The tail now, after waiting up to `wait` for the stream to close.
    fn text(&self, wait: Duration) -> String {
        let (m, cv) = &*self.finished;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let _ = cv.wait_timeout_while(g, wait, |done| !*done);
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Progress of the ranks through the expected messages.
struct Expect<'a> {
    spec: &'a ChildSpec,
    ranks: Vec<Option<RankReport>>,
    done: Vec<bool>,
}

enum Step {
    Continue,
    Oom(ChildOom),
}

impl Expect<'_> {
    fn missing(&self) -> String {
        let mut out = Vec::new();
        for r in 0..self.spec.ranks {
            if self.done[r] {
                continue;
            }
            let Some(rep) = &self.ranks[r] else {
                out.push(format!("rank {r} never said hello"));
                continue;
            };
            let mut what = Vec::new();
            if !self.spec.phases.is_empty() && rep.setup.is_none() {
                what.push("setup".to_string());
            }
            for (phase, n) in &self.spec.phases {
                let got = rep.phase(phase).count();
                if got < *n {
                    what.push(format!("{phase} samples {got} of {n}"));
                }
            }
            if !self.spec.phases.is_empty() && rep.summary.is_none() {
                what.push("summary".into());
            }
            what.push("done".into());
            out.push(format!("rank {r} missing {}", what.join(", ")));
        }
        out.join("; ")
    }
}

use crate::io::json_type_name as type_name;

/// Runs the engine to completion (or out of memory); see the module docs.
pub fn run_child(
    spec: &ChildSpec,
    on_sample: &mut dyn FnMut(usize, &Sample),
) -> Result<ChildOutcome, EngineError> {
    let engine = spec.engine.clone();
    let io_err = |message: String| EngineError::Io {
        engine: engine.clone(),
        message,
    };
    let Value::Object(mut config) = spec.config.clone() else {
        return Err(io_err("the configuration is not a JSON object".into()));
    };
    let phases: Map<String, Value> = spec
        .phases
        .iter()
        .map(|(p, n)| (p.clone(), Value::from(*n)))
        .collect();
    config.insert(
        "protocol".into(),
        serde_json::json!({
            "version": PROTOCOL_VERSION,
            "world_size": spec.ranks,
            "phases": phases,
            "phase_order": spec.phases.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        }),
    );
    let dir = tempfile::Builder::new()
        .prefix("ovbench-engine-")
        .tempdir()
        .map_err(|e| io_err(format!("temporary folder: {e}")))?;
    let config_path = dir.path().join("config.json");
    std::fs::write(
        &config_path,
        serde_json::to_vec_pretty(&Value::Object(config)).expect("JSON serialises"),
    )
    .map_err(|e| io_err(format!("{}: {e}", config_path.display())))?;

    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(CONFIG_ENV, &config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| EngineError::Spawn {
        engine: engine.clone(),
        program: spec.program.display().to_string(),
        message: e.to_string(),
    })?;
    let mut group = Group { child, done: false };
    let stdout = group.child.stdout.take().expect("piped");
    let stderr = StderrTail::spawn(group.child.stderr.take().expect("piped"));

    // Lines arrive through a channel so that silence can be timed.
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, String>>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut buf = Vec::new();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    break;
                }
            }
        }
    });

    let pids: PidSet = Arc::new(Mutex::new(vec![group.child.id()]));
    let samplers: Vec<NvmlSampler> = spec
        .gpus
        .iter()
        .map(|&g| NvmlSampler::start_for(g, spec.nvml_interval, pids.clone()))
        .collect();
    let stop_samplers = |s: Vec<NvmlSampler>| -> Vec<NvmlSamples> {
        s.into_iter().map(NvmlSampler::stop).collect()
    };

    let tail = |w: Duration| Tail(stderr.text(w));
    let mut expect = Expect {
        spec,
        ranks: vec![None; spec.ranks],
        done: vec![false; spec.ranks],
    };
    let mut line_no = 0usize;
    let mut oom: Option<ChildOom> = None;
    loop {
        match rx.recv_timeout(spec.timeout) {
            Ok(Ok(bytes)) => {
                line_no += 1;
                let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
                if text.trim().is_empty() {
                    continue;
                }
                match handle_line(&mut expect, &text, &pids, on_sample) {
                    Ok(Step::Continue) => {}
                    Ok(Step::Oom(o)) => {
                        oom = Some(o);
                        break;
                    }
                    Err(f) => {
                        group.kill();
                        let _ = stop_samplers(samplers);
                        let t = tail(Duration::from_millis(500));
                        return Err(f.into_error(&engine, line_no, &text, t));
                    }
                }
                if expect.done.iter().all(|d| *d) {
                    break;
                }
            }
            Ok(Err(e)) => {
                group.kill();
                let _ = stop_samplers(samplers);
                return Err(io_err(format!("reading its standard output: {e}")));
            }
            Err(RecvTimeoutError::Timeout) => {
                group.kill();
                let _ = stop_samplers(samplers);
                return Err(EngineError::Timeout {
                    engine,
                    seconds: spec.timeout.as_secs_f64(),
                    tail: tail(Duration::from_millis(500)),
                });
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }

    if let Some(mut o) = oom {
        // Give the engine a moment to exit by itself (its other ranks may be stuck in a
        // collective), then make sure the whole group is gone.
        if group.wait_for(EXIT_GRACE).is_none() {
            group.kill();
        }
        let _ = stop_samplers(samplers);
        o.stderr_tail = tail(Duration::from_millis(500)).0;
        return Ok(ChildOutcome::Oom(o));
    }
    let all_done = expect.done.iter().all(|d| *d);
    let status = match group.wait_for(if all_done {
        EXIT_GRACE
    } else {
        spec.timeout.min(EXIT_GRACE)
    }) {
        Some(s) => Some(s),
        // Every rank delivered everything: a slow teardown does not undo the run.
        None if all_done => {
            group.kill();
            None
        }
        None => {
            group.kill();
            let _ = stop_samplers(samplers);
            return Err(EngineError::Exited {
                engine,
                status: "still running after closing its standard output; killed".into(),
                missing: expect.missing(),
                tail: tail(Duration::from_millis(500)),
            });
        }
    };
    let wall_s = started.elapsed().as_secs_f64();
    let nvml = stop_samplers(samplers);
    let text = stderr.text(Duration::from_secs(2));
    let failed = status.is_some_and(|s| !s.success());
    if !all_done {
        if failed && is_oom_text(&text) {
            let line = text
                .lines()
                .rev()
                .find(|l| is_oom_text(l))
                .unwrap_or("out of memory")
                .trim()
                .to_string();
            return Ok(ChildOutcome::Oom(ChildOom {
                rank: None,
                error: line,
                stderr_tail: text,
            }));
        }
        return Err(EngineError::Exited {
            engine,
            status: status
                .as_ref()
                .map(describe_status)
                .unwrap_or_else(|| "killed".into()),
            missing: expect.missing(),
            tail: Tail(text),
        });
    }
    let exit = match &status {
        Some(s) => describe_status(s),
        None => format!(
            "killed: still running {} s after every rank said done",
            EXIT_GRACE.as_secs()
        ),
    };
    Ok(ChildOutcome::Completed(ChildRun {
        ranks: expect.ranks.into_iter().map(|r| r.expect("done")).collect(),
        nvml,
        wall_s,
        exit,
        stderr_tail: text,
    }))
}

fn describe_status(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(9)) => {
            "killed by signal 9 (SIGKILL: the kernel's out-of-memory killer?)".into()
        }
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

/// What is wrong with one line, before the engine's name and stderr are attached.
enum LineError {
    Malformed(String),
    Protocol(String),
    Reported { rank: usize, message: String },
}

impl LineError {
    fn into_error(self, engine: &str, line_no: usize, text: &str, tail: Tail) -> EngineError {
        let engine = engine.to_string();
        match self {
            LineError::Malformed(reason) => EngineError::Malformed {
                engine,
                line_no,
                reason,
                line: text.chars().take(200).collect(),
                tail,
            },
            LineError::Protocol(message) => EngineError::Protocol {
                engine,
                line_no,
                message,
                tail,
            },
            LineError::Reported { rank, message } => EngineError::Reported {
                engine,
                rank,
                message,
                tail,
            },
        }
    }
}

fn handle_line(
    ex: &mut Expect,
    text: &str,
    pids: &PidSet,
    on_sample: &mut dyn FnMut(usize, &Sample),
) -> Result<Step, LineError> {
    let protocol = LineError::Protocol;
    let malformed = LineError::Malformed;
    let value: Value =
        serde_json::from_str(text).map_err(|err| malformed(format!("not JSON: {err}")))?;
    let Value::Object(msg) = value else {
        return Err(malformed(format!(
            "{} instead of an object",
            type_name(&value)
        )));
    };
    let kind = match msg.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => {
            return Err(protocol(format!(
                "field `type` is {}, not a string",
                type_name(v)
            )))
        }
        None => return Err(protocol("field `type` is missing".into())),
    };
    let uint = |field: &str| -> Result<u64, LineError> {
        match msg.get(field) {
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64().expect("checked")),
            Some(v) => Err(protocol(format!(
                "`{kind}` message: field `{field}` is {}, not a non-negative integer",
                type_name(v)
            ))),
            None => Err(protocol(format!(
                "`{kind}` message: field `{field}` is missing"
            ))),
        }
    };
    let rank = uint("rank")? as usize;
    if rank >= ex.spec.ranks {
        return Err(protocol(format!(
            "rank {rank} in a run of {} rank(s)",
            ex.spec.ranks
        )));
    }
    let text_field = |field: &str| -> Result<String, LineError> {
        match msg.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(protocol(format!(
                "`{kind}` message: field `{field}` is {}, not a string",
                type_name(v)
            ))),
            None => Err(protocol(format!(
                "`{kind}` message: field `{field}` is missing"
            ))),
        }
    };
    if kind == "hello" {
        let version = uint("protocol")?;
        if version != PROTOCOL_VERSION {
            return Err(protocol(format!(
                "protocol version {version}; this harness speaks {PROTOCOL_VERSION}"
            )));
        }
        let pid = uint("pid")? as u32;
        if ex.ranks[rank].is_some() {
            return Err(protocol(format!("rank {rank} said hello twice")));
        }
        if let Ok(mut p) = pids.lock() {
            p.push(pid);
        }
        ex.ranks[rank] = Some(RankReport {
            rank,
            pid,
            hello: msg,
            ..Default::default()
        });
        return Ok(Step::Continue);
    }
    // Failures are reported whatever state the rank is in.
    match kind.as_str() {
        "oom" => {
            return Ok(Step::Oom(ChildOom {
                rank: Some(rank),
                error: text_field("error")?,
                stderr_tail: String::new(),
            }))
        }
        "error" => {
            return Err(LineError::Reported {
                rank,
                message: text_field("error")?,
            })
        }
        _ => {}
    }
    let phases = &ex.spec.phases;
    let done = ex.done[rank];
    let Some(rep) = ex.ranks[rank].as_mut() else {
        return Err(protocol(format!(
            "a `{kind}` message from rank {rank} before its hello"
        )));
    };
    if done {
        return Err(protocol(format!(
            "a `{kind}` message from rank {rank} after its done"
        )));
    }
    match kind.as_str() {
        "setup" => {
            if rep.setup.is_some() {
                return Err(protocol(format!("rank {rank} sent setup twice")));
            }
            rep.setup = Some(msg);
        }
        "result" => rep.results.push(msg),
        "sample" => {
            if rep.setup.is_none() {
                return Err(protocol(format!("a sample from rank {rank} before its setup")));
            }
            let phase = text_field("phase")?;
            let step = uint("step")? as usize;
            let num = |field: &str| -> Result<f64, LineError> {
                match msg.get(field) {
                    Some(Value::Number(n)) => {
                        let x = n.as_f64().unwrap_or(f64::NAN);
                        if x.is_finite() {
                            Ok(x)
                        } else {
                            Err(protocol(format!(
                                "sample (rank {rank}, step {step}): field `{field}` is not finite"
                            )))
                        }
                    }
                    Some(v) => Err(protocol(format!(
                        "sample (rank {rank}, step {step}): field `{field}` is {}, not a number{}",
                        type_name(v),
                        if v.is_null() { " (a non-finite value?)" } else { "" }
                    ))),
                    None => Err(protocol(format!(
                        "sample (rank {rank}, step {step}): field `{field}` is missing"
                    ))),
                }
            };
            let times = [
                num("forward_s")?,
                num("backward_s")?,
                num("optimizer_s")?,
                num("total_s")?,
            ];
            if times.iter().any(|t| *t < 0.0) {
                return Err(protocol(format!(
                    "sample (rank {rank}, step {step}): a negative time"
                )));
            }
            let loss = num("loss")?;
            // Phases come in the configured order, each with exactly its count.
            let Some(pos) = phases.iter().position(|(p, _)| *p == phase) else {
                return Err(protocol(format!(
                    "sample (rank {rank}, step {step}): phase `{phase}` was not asked for (asked: {})",
                    phases
                        .iter()
                        .map(|(p, n)| format!("{p} x{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let got = rep.phase(&phase).count();
            if got >= phases[pos].1 {
                return Err(protocol(format!(
                    "sample (rank {rank}, step {step}): more `{phase}` samples than the {} asked for",
                    phases[pos].1
                )));
            }
            if let Some((p, n)) = phases[..pos]
                .iter()
                .find(|(p, n)| rep.phase(p).count() < *n)
            {
                return Err(protocol(format!(
                    "sample (rank {rank}, step {step}): a `{phase}` sample before the {n} `{p}` samples were done"
                )));
            }
            let mut extra = msg;
            for k in [
                "type",
                "rank",
                "phase",
                "step",
                "forward_s",
                "backward_s",
                "optimizer_s",
                "total_s",
                "loss",
            ] {
                extra.remove(k);
            }
            let sample = Sample {
                phase,
                step,
                forward_s: times[0],
                backward_s: times[1],
                optimizer_s: times[2],
                total_s: times[3],
                loss,
                extra,
            };
            on_sample(rank, &sample);
            rep.samples.push(sample);
        }
        "summary" => {
            if let Some((p, n)) = phases.iter().find(|(p, n)| rep.phase(p).count() < *n) {
                return Err(protocol(format!(
                    "rank {rank} sent its summary after {} of {n} `{p}` samples",
                    rep.phase(p).count()
                )));
            }
            if rep.summary.is_some() {
                return Err(protocol(format!("rank {rank} sent summary twice")));
            }
            rep.summary = Some(msg);
        }
        "done" => {
            if !phases.is_empty() && rep.summary.is_none() {
                return Err(protocol(format!("rank {rank} said done before its summary")));
            }
            ex.done[rank] = true;
        }
        other => {
            return Err(protocol(format!(
                "unknown message type `{other}` (known: hello, setup, sample, result, summary, oom, error, done)"
            )))
        }
    }
    Ok(Step::Continue)
}

/// The first of `candidates` that exists, or an error listing them all.
pub fn first_existing(what: &str, candidates: &[PathBuf]) -> Result<PathBuf, String> {
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            format!(
                "{what} not found; looked at: {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Whether `path` names an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
