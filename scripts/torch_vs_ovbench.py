#!/usr/bin/env python3
"""The candle engine against the torch engine, eager and compiled, on the same CPU, same
configurations, same threads; run by scripts/torch-vs-ovbench.sh (which finds the Python with
torch and the binary). Every run is `ovbench step`: the engines differ, the harness (clocks,
warm-up and sample counts, memory views, records) does not.

For each configuration:
 1. same function: `ovbench step --engine torch --check-same` (candle exports its weights,
    batch, masks and losses; the torch engine loads them and compares parameter names and
    counts, the step-0 loss, every gradient norm and the step-1 loss). Any difference stops
    the run (exit 1): timing two different functions would mean nothing.
 2. timing in alternation: each round runs `ovbench step --engine candle`, `--engine torch`
    and `--engine torch --compile` (both recipes), the order rotated every round, with the
    same threads, warm-up and measured steps; every record is kept.
 3. per configuration, recipe and engine: the median step time over all measured steps of all
    rounds, the ratio to candle with a 95 % bootstrap interval (seeded), and the peak memory
    as each engine measures it (candle: its counting allocator over the baseline; torch: the
    process's RSS high-water mark over its RSS before the model was built).
Then the scaling table (--scaling N, default 2; 0 skips it): the torch engine at 1 and N
processes (gloo, `--threads 1` each, batch per process as configured), alternating; images/s
per device and the gradient all-reduce's share of the step (from DDP no_sync steps).
Writes results/engines/engines-<UTC time>.{json,md}: an `ovbench.engines/1` record in the
envelope every ovbench reader reads (docs/records.md): the workload, one timed metric per
configuration, recipe and engine (every measured step of every round, pooled), the peaks, the
same-function checks as conditions, and the provenance of the runs' own records (same binary,
same commit) with this script's command line. `ovbench check`, `gate` and `compare` read it.
"""
import argparse, datetime, json, os, platform, random, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (model, resolution, batch, rounds, warmup, steps). A B/16 224 px batch-4 step takes
# seconds on 2 cores, so it gets fewer rounds; the Ti ones are cheap and noisy, so more.
CONFIGS = {
    "default": ("Ti/16", 112, 8, 4, 1, 2),
    "ti224": ("Ti/16", 224, 8, 3, 1, 2),
    "b224": ("B/16", 224, 4, 3, 1, 2),
    "l224": ("L/14", 224, 2, 2, 1, 1),
    # A check of this script, not a measurement.
    "tiny": ("Ti/16", 64, 4, 1, 1, 1),
}
ENGINES = {"candle": ["--engine", "candle"], "torch": ["--engine", "torch"],
           "torch.compile": ["--engine", "torch", "--compile"]}


def sh(cmd, log):
    """Runs `cmd`, its output appended to `log`; raises with the log's tail on failure."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if p.returncode != 0:
        tail = open(log).read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{tail}")


def bootstrap_ratio(a, b, reps=2000, seed=0):
    rng = random.Random(seed)
    med = statistics.median
    rs = sorted(med(rng.choices(a, k=len(a))) / med(rng.choices(b, k=len(b))) for _ in range(reps))
    return rs[int(0.025 * reps)], rs[min(reps - 1, int(0.975 * reps))]


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt_s(x):
    return f"{x:.2f} s" if x >= 1 else f"{x * 1e3:.0f} ms"


def fmt_b(x):
    return f"{x / 2**20:.0f} MiB" if x is not None else "-"


def body(path):
    j = json.load(open(path))
    return j.get("body", j)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/ovbench"))
    ap.add_argument("--python", required=True, help="the interpreter with torch (passed to ovbench --python)")
    ap.add_argument("--configs", default="default,b224", help=f"comma-separated, of {','.join(CONFIGS)}")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {','.join(ENGINES)}")
    ap.add_argument("--quick", action="store_true", help="the default preset only, 2 rounds of 1 + 2 steps")
    ap.add_argument("--rounds", type=int, help="rounds for every configuration (default: per configuration)")
    ap.add_argument("--warmup", type=int, help="warm-up steps for every configuration (at least 1: compilation)")
    ap.add_argument("--steps", type=int, help="measured steps for every configuration")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every engine (default: all CPUs)")
    ap.add_argument("--scaling", type=int, default=2, help="processes of the scaling table (0: no table)")
    ap.add_argument("--scaling-config", default="default", help="configuration of the scaling table")
    ap.add_argument("--check-only", action="store_true", help="the same-function check, no timing")
    ap.add_argument("--no-check", action="store_true", help="skip the same-function check (not for published numbers)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results/engines"))
    ap.add_argument("--work", default=os.path.join(ROOT, "results/scratch/engines"),
                    help="per-run records (git-ignored)")
    a = ap.parse_args()

    names = ["default"] if a.quick else [c for c in a.configs.split(",") if c]
    engines = [e for e in a.engines.split(",") if e]
    for n in names:
        if n not in CONFIGS:
            ap.error(f"unknown configuration {n!r} (known: {', '.join(CONFIGS)})")
    for e in engines:
        if e not in ENGINES:
            ap.error(f"unknown engine {e!r} (known: {', '.join(ENGINES)})")
    if not os.access(a.bin, os.X_OK):
        ap.error(f"{a.bin}: no ovbench binary (cargo build --release --bin ovbench)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = os.path.join(a.work, stamp)
    os.makedirs(work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(work, "log.txt")
    T = str(a.threads)
    started = time.time()
    print(f"ovbench {a.bin}, engines {', '.join(engines)}, torch from {a.python}, {a.threads} threads; log {log}", flush=True)
    base = [a.bin, "step", "--python", a.python, "--quiet"]

    checks, results, loads, versions, provenance = {}, [], [], None, None
    for name in names:
        model, res, batch, rounds, warmup, steps = CONFIGS[name]
        if a.quick:
            rounds, warmup, steps = 2, 1, 2
        rounds = a.rounds or rounds
        warmup = max(1, a.warmup if a.warmup is not None else warmup)
        steps = a.steps or steps
        shape = ["--model", model, "--res", str(res), "--batch", str(batch), "--threads", T]
        label = f"{model} {res} px b{batch}"
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        if not a.no_check:
            print(f"[{name}] {label}: same-function check ...", flush=True)
            cj = os.path.join(d, "check.json")
            try:
                sh(base + ["--engine", "torch", "--check-same", *shape, "--warmup", "0", "--steps", "1", "--out", cj], log)
            except RuntimeError as e:
                print(str(e)[-3000:], file=sys.stderr)
                print(f"SAME-FUNCTION CHECK FAILED for {name} ({label}): no timing is reported.", file=sys.stderr)
                return 1
            checks[name] = [r["engine"]["same_function"] for r in body(cj)["runs"]]
            if provenance is None:
                provenance = json.load(open(cj))["provenance"]
            for c in checks[name]:
                print(f"  {c['recipe']}: params {c['params_torch']:,}; step-0 loss rel diff {c['loss0_rel_diff']:.1e}; "
                      f"step-1 {c.get('loss1_rel_diff', float('nan')):.1e}; grad norms {c.get('grad_norm_max_rel_diff', float('nan')):.1e}", flush=True)
        if a.check_only:
            continue
        times = {e: {"ov1": [], "ov2": []} for e in engines}
        peaks = {e: {"ov1": [], "ov2": []} for e in engines}
        rss = {e: {"ov1": [], "ov2": []} for e in engines}
        for r in range(rounds):
            order = engines[r % len(engines):] + engines[:r % len(engines)]
            line = []
            for e in order:
                rec = os.path.join(d, f"{e}-r{r}.json")
                l0 = os.getloadavg()[0]
                sh(base + ENGINES[e] + shape + ["--warmup", str(warmup), "--steps", str(steps), "--out", rec], log)
                loads.append({"config": name, "round": r, "engine": e, "load1_before": l0})
                b = body(rec)
                if provenance is None:
                    provenance = json.load(open(rec))["provenance"]
                for run in b["runs"]:
                    k = run["recipe"]
                    times[e][k] += [s["total_s"] for s in run["samples"]]
                    peaks[e][k].append(run["memory"]["peak_over_baseline_bytes"])
                    if run["memory"].get("rss_peak_bytes"):
                        rss[e][k].append(run["memory"]["rss_peak_bytes"])
                    if run.get("engine") and versions is None:
                        versions = run["engine"]["versions"]
                line.append(f"{e} " + "/".join(fmt_s(statistics.median(times[e][k][-steps:])) for k in ("ov1", "ov2")))
            print(f"[{name}] round {r + 1}/{rounds}: " + ", ".join(line), flush=True)
        for k in ("ov1", "ov2"):
            ref = times["candle"][k] if "candle" in engines else None
            for e in engines:
                m = statistics.median(times[e][k])
                row = {"config": name, "model": model, "resolution": res, "batch": batch, "recipe": k,
                       "engine": e, "rounds": rounds, "warmup": warmup, "steps": steps, "threads": a.threads,
                       "median_s": m, "samples_s": times[e][k],
                       "peak_bytes": max(peaks[e][k]) if peaks[e][k] else None,
                       "peak_view": "allocator over baseline" if e == "candle" else "RSS high-water mark over baseline",
                       # The same view for every engine: the process's RSS high-water mark.
                       "rss_peak_bytes": max(rss[e][k]) if rss[e][k] else None}
                if ref:
                    row["ratio_to_candle"] = m / statistics.median(ref)
                    row["ratio_ci95"] = list(bootstrap_ratio(times[e][k], ref))
                results.append(row)

    scaling = []
    if a.scaling > 1 and not a.check_only:
        model, res, batch, _, warmup, steps = CONFIGS[a.scaling_config]
        shape = ["--model", model, "--res", str(res), "--batch", str(batch), "--threads", "1"]
        rounds = a.rounds or 2
        per = {1: {"ov1": [], "ov2": []}, a.scaling: {"ov1": [], "ov2": []}}
        share = {"ov1": [], "ov2": []}
        d = os.path.join(work, "scaling")
        os.makedirs(d, exist_ok=True)
        for r in range(rounds):
            for n in ([1, a.scaling] if r % 2 == 0 else [a.scaling, 1]):
                rec = os.path.join(d, f"n{n}-r{r}.json")
                sh(base + ["--engine", "torch", "--nproc", str(n)] + shape
                   + ["--warmup", str(max(1, a.warmup or warmup)), "--steps", str(a.steps or steps), "--out", rec], log)
                for run in body(rec)["runs"]:
                    k = run["recipe"]
                    per[n][k] += [batch / s["total_s"] for s in run["samples"]]
                    if n > 1 and run["engine"].get("allreduce"):
                        share[k].append(run["engine"]["allreduce"]["share"])
            print(f"[scaling] round {r + 1}/{rounds} done", flush=True)
        for k in ("ov1", "ov2"):
            scaling.append({"recipe": k, "model": model, "resolution": res, "batch_per_device": batch,
                            "images_per_s_per_device_1": statistics.median(per[1][k]),
                            f"images_per_s_per_device_{a.scaling}": statistics.median(per[a.scaling][k]),
                            "efficiency": statistics.median(per[a.scaling][k]) / statistics.median(per[1][k]),
                            "allreduce_share": statistics.median(share[k]) if share[k] else None})

    head = git("rev-parse", "HEAD")
    dirty = any(not line[3:].startswith("results/")
                for line in git("status", "--porcelain", "--untracked-files=no").splitlines())
    metrics, conditions = [], []
    for r in results:
        key = f"{r['config']}/{r['recipe']}/{r['engine']}"
        metrics.append({"name": f"{key}/step_s", "unit": "s", "direction": "smaller_is_better",
                        "kind": "timed", "samples": r["samples_s"], "warmup": r["warmup"]})
        if r["peak_bytes"] is not None and r["engine"] == "candle":
            # Only candle's allocator peak is exact; torch's RSS view stays in the body.
            metrics.append({"name": f"{key}/memory/peak_over_baseline_bytes", "unit": "bytes",
                            "direction": "smaller_is_better", "kind": "deterministic",
                            "value": r["peak_bytes"]})
    for name, cs in checks.items():
        for c in cs:
            conditions.append({"name": f"{name}/{c['recipe']}/same_function_as_candle",
                               "holds": bool(c.get("same_function")),
                               "detail": "; ".join(c.get("problems") or [])})
    if provenance is not None:
        # The runs' own provenance (binary, build, host, commit), with this script's call.
        provenance = dict(provenance, command_line=sys.argv,
                          created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat())
    summary = {
        "schema": "ovbench.engines/1",
        "provenance": provenance,
        "workload": {"configs": ",".join(names), "engines": ",".join(engines),
                     "threads": str(a.threads), "device": "cpu",
                     "torch": str((versions or {}).get("torch"))},
        "hardware": f"{cpu_model()} ({a.threads} threads)",
        "metrics": metrics,
        "conditions": conditions,
        "binary": {"path": a.bin},
        "torch_versions": versions,
        "git": {"commit": head, "dirty": dirty},
        "engines": engines,
        "wall_s": time.time() - started,
        "same_function": checks,
        "results": results,
        "scaling": scaling,
        "load": loads,
        "records": work,
        "ratio": "engine median step time / candle median step time (below 1: faster than candle)",
    }
    tag = "engines-" + stamp + ("-check" if a.check_only else "")
    with open(os.path.join(a.out, tag + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
    rows = []
    if results:
        rows += ["| configuration | recipe | engine | step (median) | / candle [95 % bootstrap] | peak memory (engine's view) | peak RSS (process) | rounds x steps |",
                 "|---|---|---|---|---|---|---|---|"]
        for r in results:
            ratio = (f"{r['ratio_to_candle']:.2f} [{r['ratio_ci95'][0]:.2f}, {r['ratio_ci95'][1]:.2f}]"
                     if "ratio_to_candle" in r else "-")
            rows.append(f"| {r['model']} {r['resolution']} px b{r['batch']} | {'OpenVision' if r['recipe'] == 'ov1' else 'OpenVision 2'} | "
                        f"{r['engine']} | {fmt_s(r['median_s'])} | {ratio} | {fmt_b(r['peak_bytes'])} ({r['peak_view']}) | "
                        f"{fmt_b(r['rss_peak_bytes'])} | "
                        f"{r['rounds']} x {r['steps']} |")
    if scaling:
        n = a.scaling
        rows += ["", f"| scaling (torch, gloo, 1 thread per process) | recipe | images/s per device, 1 process | images/s per device, {n} processes | efficiency | all-reduce share |",
                 "|---|---|---|---|---|---|"]
        for s in scaling:
            rows.append(f"| {s['model']} {s['resolution']} px, {s['batch_per_device']} per device | {s['recipe']} | "
                        f"{s['images_per_s_per_device_1']:.2f} | {s[f'images_per_s_per_device_{n}']:.2f} | "
                        f"{s['efficiency']:.2f} | {'-' if s['allreduce_share'] is None else format(s['allreduce_share'], '.1%')} |")
    if rows:
        ls = [x["load1_before"] for x in loads] or [float("nan")]
        rows.append(f"\n{cpu_model()}, {os.cpu_count()} CPUs, {a.threads} threads per engine; torch "
                    f"{(versions or {}).get('torch')}; ovbench at git {head[:10]}{' (dirty tree)' if dirty else ''}; "
                    f"load average (1 min) at run starts {min(ls):.1f}-{max(ls):.1f}; wall {summary['wall_s'] / 60:.1f} min")
        table = "\n".join(rows)
        print()
        print(table)
        with open(os.path.join(a.out, tag + ".md"), "w") as f:
            f.write(table + "\n")
    print(f"\nrecord: {os.path.join(a.out, tag)}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
