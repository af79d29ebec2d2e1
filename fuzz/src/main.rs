//! `ovbench-fuzz`: mutation fuzzing of every input reader (see `targets`), on the stable
//! toolchain. `run` supervises one worker process per target for a given time and reports
//! executions and findings; `replay` runs one saved input again.
//!
//! A finding is a panic (caught in the worker, input saved, fuzzing goes on), a crash (the
//! worker died: abort, out of memory under the worker's address-space limit, stack overflow),
//! or a hang (one input ran longer than the timeout). Refusing an input with an error is the
//! expected outcome, not a finding.

mod engine;
mod targets;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use engine::{SharedMap, C_ACCEPTED, C_EXECS, C_PANICS, C_REFUSED};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ovbench-fuzz",
    about = "Mutation fuzzing of ovbench's input readers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the targets
    List,
    /// Fuzz targets one after the other, each for --secs seconds
    Run {
        /// Target names, or `all`
        #[arg(required = true)]
        targets: Vec<String>,
        /// Seconds per target
        #[arg(long, default_value_t = 600)]
        secs: u64,
        /// Random seed (runs are reproducible by seed up to timing)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One input running longer than this is a hang (milliseconds)
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        /// Address-space limit of the worker (MiB): an allocation beyond it aborts, a finding
        #[arg(long, default_value_t = 4096)]
        mem_mb: u64,
        /// Where findings and the summary go
        #[arg(long, default_value = "target/fuzz")]
        out: PathBuf,
    },
    /// Run one input through a target and say what happened
    Replay { target: String, input: PathBuf },
    #[command(hide = true)]
    Worker {
        target: String,
        #[arg(long)]
        secs: f64,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(long)]
        mem_mb: u64,
        #[arg(long)]
        map: PathBuf,
        #[arg(long)]
        findings: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::List => {
            for t in targets::TARGETS {
                println!("{:<24} {}", t.name, t.reader);
            }
            Ok(())
        }
        Cmd::Run {
            targets: names,
            secs,
            seed,
            timeout_ms,
            mem_mb,
            out,
        } => {
            let list: Vec<&targets::Target> = if names.iter().any(|n| n == "all") {
                targets::TARGETS.iter().collect()
            } else {
                names
                    .iter()
                    .map(|n| {
                        targets::find(n).with_context(|| format!("no target '{n}' (see `list`)"))
                    })
                    .collect::<Result<_>>()?
            };
            std::fs::create_dir_all(&out)?;
            let mut total_findings = 0;
            println!(
                "{:<24} {:>12} {:>10} {:>10} {:>7} {:>7} {:>6} {:>7}",
                "target", "executions", "accepted", "refused", "panics", "crashes", "hangs", "secs"
            );
            for t in list {
                let s = supervise(t, secs, seed, timeout_ms, mem_mb, &out)?;
                println!(
                    "{:<24} {:>12} {:>10} {:>10} {:>7} {:>7} {:>6} {:>7.0}",
                    t.name, s.execs, s.accepted, s.refused, s.panics, s.crashes, s.hangs, s.secs
                );
                total_findings += s.panics + s.crashes + s.hangs;
                let line = serde_json::json!({"target": t.name, "reader": t.reader, "executions": s.execs, "accepted": s.accepted,
                    "refused": s.refused, "panics": s.panics, "crashes": s.crashes, "hangs": s.hangs, "secs": s.secs,
                    "seed": seed, "timeout_ms": timeout_ms, "mem_mb": mem_mb, "findings": s.saved});
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(out.join("summary.jsonl"))?;
                use std::io::Write;
                writeln!(f, "{line}")?;
            }
            if total_findings > 0 {
                println!(
                    "{total_findings} finding(s); inputs under {}",
                    out.join("findings").display()
                );
                std::process::exit(1);
            }
            Ok(())
        }
        Cmd::Replay { target, input } => {
            let t = targets::find(&target).with_context(|| format!("no target '{target}'"))?;
            let ctx = targets::Ctx::new()?;
            let path = ctx.dir.path().join(t.file);
            std::fs::copy(&input, &path).with_context(|| input.display().to_string())?;
            let t0 = Instant::now();
            let r = targets::run(t, &ctx, &path);
            match r {
                Ok(()) => println!("accepted ({:.3} s)", t0.elapsed().as_secs_f64()),
                Err(e) => println!("refused ({:.3} s): {e}", t0.elapsed().as_secs_f64()),
            }
            Ok(())
        }
        Cmd::Worker {
            target,
            secs,
            seed,
            timeout_ms,
            mem_mb,
            map,
            findings,
        } => worker(&target, secs, seed, timeout_ms, mem_mb, &map, &findings),
    }
}

#[derive(Default)]
struct Summary {
    execs: u64,
    accepted: u64,
    refused: u64,
    panics: u64,
    crashes: u64,
    hangs: u64,
    secs: f64,
    saved: Vec<String>,
}

/// Runs workers for `t` until `secs` have passed, restarting after each crash or hang.
fn supervise(
    t: &targets::Target,
    secs: u64,
    seed: u64,
    timeout_ms: u64,
    mem_mb: u64,
    out: &Path,
) -> Result<Summary> {
    let findings = out.join("findings").join(t.name);
    let map_path = out.join(format!(".map-{}", t.name));
    let exe = std::env::current_exe()?;
    let t0 = Instant::now();
    let mut s = Summary::default();
    let mut restarts = 0u64;
    while t0.elapsed().as_secs_f64() < secs as f64 {
        let map = SharedMap::create(&map_path)?;
        let left = secs as f64 - t0.elapsed().as_secs_f64();
        let stderr_path = out.join(format!(".stderr-{}", t.name));
        let child = Command::new(&exe)
            .args([
                "worker",
                t.name,
                "--secs",
                &format!("{left:.3}"),
                "--seed",
                &(seed.wrapping_mul(1000) + restarts).to_string(),
                "--timeout-ms",
                &timeout_ms.to_string(),
                "--mem-mb",
                &mem_mb.to_string(),
            ])
            .arg("--map")
            .arg(&map_path)
            .arg("--findings")
            .arg(&findings)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path)?)
            .status()?;
        s.execs += map.counter(C_EXECS);
        s.accepted += map.counter(C_ACCEPTED);
        s.refused += map.counter(C_REFUSED);
        s.panics += map.counter(C_PANICS);
        if map.status() == engine::STATUS_DONE && child.success() {
            break;
        }
        if map.counter(C_EXECS) == 0 && map.status() != engine::STATUS_HANG {
            let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            bail!(
                "{}: the worker failed before its first input ({child}):\n{err}",
                t.name
            );
        }
        // The worker died on the input in the map.
        let input = map.input();
        let hang = map.status() == engine::STATUS_HANG;
        let kind = if hang { "hang" } else { "crash" };
        if hang {
            s.hangs += 1
        } else {
            s.crashes += 1
        }
        std::fs::create_dir_all(&findings)?;
        let name = format!("{kind}-{:016x}", engine::fnv(&input));
        let p = findings.join(&name);
        std::fs::write(&p, &input)?;
        let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        // The first lines say what happened (the abort's message); the last, where.
        let lines: Vec<&str> = err.lines().collect();
        let tail = if lines.len() > 30 {
            format!(
                "{}\n…\n{}",
                lines[..8].join("\n"),
                lines[lines.len() - 20..].join("\n")
            )
        } else {
            lines.join("\n")
        };
        std::fs::write(
            p.with_extension("txt"),
            format!("{kind} ({child}) in {}\n{tail}\n", t.name),
        )?;
        s.saved.extend(
            std::fs::read_dir(&findings)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().display().to_string())
                .filter(|x| !x.ends_with(".txt")),
        );
        restarts += 1;
    }
    // Panics were saved by the worker itself.
    s.saved = std::fs::read_dir(&findings)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|x| !x.ends_with(".txt"))
        .collect();
    s.saved.sort();
    s.secs = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&map_path);
    let _ = std::fs::remove_file(out.join(format!(".stderr-{}", t.name)));
    Ok(s)
}

thread_local! {
    static PANIC_MSG: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn worker(
    target: &str,
    secs: f64,
    seed: u64,
    timeout_ms: u64,
    mem_mb: u64,
    map: &Path,
    findings: &Path,
) -> Result<()> {
    let t = targets::find(target).context("no such target")?;
    let ctx = targets::Ctx::new()?;
    let seeds = targets::seeds(t, &ctx)?;
    // Every seed must be accepted, or the fuzzing starts from broken files.
    let path = ctx.dir.path().join("in").join(t.file);
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(&path, s)?;
        if let Err(e) = targets::run(t, &ctx, &path) {
            bail!("{target}: seed {i} is refused: {e}");
        }
    }
    let mut dict: Vec<&[u8]> = engine::COMMON_TOKENS.iter().map(|x| x.as_bytes()).collect();
    dict.extend(t.tokens.iter().map(|x| x.as_bytes()));
    // Limit the address space only now: the fixtures above are built, the loop is what counts.
    let lim = libc::rlimit {
        rlim_cur: mem_mb << 20,
        rlim_max: mem_mb << 20,
    };
    // SAFETY: plain setrlimit on this process.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };

    let map = Arc::new(SharedMap::open(map)?);
    let started = Arc::new(AtomicU64::new(0));
    engine::watchdog(
        map.clone(),
        started.clone(),
        Duration::from_millis(timeout_ms),
    );
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("{info}");
        PANIC_MSG.with(|m| *m.borrow_mut() = msg);
    }));
    // Self-test of the supervisor (fuzz/tests/supervisor.rs): the first input aborts, hangs
    // or panics on purpose, to prove each kind of finding is caught and saved.
    let selftest = std::env::var("OVBENCH_FUZZ_SELFTEST").unwrap_or_default();
    let saved = Mutex::new(std::collections::HashSet::new());
    let mut rng = engine::Rng::new(seed);
    let t0 = Instant::now();
    let mut last: Option<Vec<u8>> = None;
    while t0.elapsed().as_secs_f64() < secs {
        // Mostly from a seed; sometimes keep walking from the last input.
        let base: &[u8] = match &last {
            Some(l) if rng.chance(4) => l,
            _ => &seeds[rng.below(seeds.len())],
        };
        let input = engine::mutate(&mut rng, base, &seeds, &dict);
        map.store_input(&input);
        std::fs::write(&path, &input)?;
        started.store(engine::now_ms(t0), Ordering::SeqCst);
        // The first input of the first worker (restarted workers get seeds not ending in 000).
        let first = map.counter(C_EXECS) == 0 && seed % 1000 == 0;
        // Counted before it runs: an input that kills the worker was executed too, and the
        // supervisor tells a worker that died on an input from one that never started.
        map.bump(C_EXECS);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match selftest.as_str() {
                "abort" if first => std::process::abort(),
                "hang" if first => loop {
                    std::thread::sleep(Duration::from_millis(10));
                },
                "panic" if first => panic!("self-test panic"),
                _ => {}
            }
            targets::run(t, &ctx, &path)
        }));
        started.store(0, Ordering::SeqCst);
        match r {
            Ok(Ok(())) => map.bump(C_ACCEPTED),
            Ok(Err(_)) => map.bump(C_REFUSED),
            Err(_) => {
                map.bump(C_PANICS);
                let msg = PANIC_MSG.with(|m| m.borrow().clone());
                let h = engine::fnv(msg.split(", ").next().unwrap_or("").as_bytes());
                if saved.lock().expect("lock").insert(h) {
                    std::fs::create_dir_all(findings)?;
                    let p = findings.join(format!("panic-{h:016x}"));
                    std::fs::write(&p, &input)?;
                    std::fs::write(
                        p.with_extension("txt"),
                        format!("panic in {target}\n{msg}\n"),
                    )?;
                }
            }
        }
        last = Some(input);
    }
    map.set_status(engine::STATUS_DONE);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a fuzzing run found (fuzz/regressions/<target>/) is now refused or
    /// accepted without a panic.
    #[test]
    fn past_findings_are_handled() {
        let ctx = targets::Ctx::new().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut n = 0;
        for t in targets::TARGETS {
            let Ok(rd) = std::fs::read_dir(root.join(t.name)) else {
                continue;
            };
            let path = ctx.dir.path().join("r").join(t.name).join(t.file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            for e in rd.flatten() {
                std::fs::copy(e.path(), &path).unwrap();
                let r = std::panic::catch_unwind(|| targets::run(t, &ctx, &path));
                assert!(r.is_ok(), "{}: {} panics", t.name, e.path().display());
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} regression inputs found");
    }

    /// Every target's seeds are accepted, and a few hundred mutated inputs run without a
    /// panic (the CI pass runs longer, through scripts/fuzz.sh).
    #[test]
    fn every_target_accepts_its_seeds_and_survives_mutations() {
        let ctx = targets::Ctx::new().unwrap();
        let mut rng = engine::Rng::new(5);
        for t in targets::TARGETS {
            let seeds = targets::seeds(t, &ctx).unwrap();
            let path = ctx.dir.path().join("t").join(t.name).join(t.file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(&path, s).unwrap();
                targets::run(t, &ctx, &path)
                    .unwrap_or_else(|e| panic!("{}: seed {i} refused: {e}", t.name));
            }
            let dict: Vec<&[u8]> = t.tokens.iter().map(|x| x.as_bytes()).collect();
            let mut refused = 0;
            for _ in 0..100 {
                let s = &seeds[rng.below(seeds.len())];
                let input = engine::mutate(&mut rng, s, &seeds, &dict);
                std::fs::write(&path, &input).unwrap();
                refused += usize::from(targets::run(t, &ctx, &path).is_err());
            }
            assert!(refused > 0, "{}: no mutated input was refused", t.name);
        }
    }
}
