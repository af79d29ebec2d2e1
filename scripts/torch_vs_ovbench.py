#!/usr/bin/env python3
"""ovbench's training step against PyTorch eager's, on the same CPU, same configurations, same
threads; run by scripts/torch-vs-ovbench.sh (which installs torch first).

For each configuration:
 1. same function: `ovbench step --export-init` writes ovbench's initial weights, batch, kept
    patch indices and losses; scripts/torch_step.py --check loads them into the PyTorch model
    and compares parameter count (and every name, shape, decay flag), the step-0 loss, the
    step-0 gradient norms and the step-1 loss after one AdamW update. Any difference beyond the
    tolerances stops the run (exit 1): timing two different functions would mean nothing.
 2. timing in alternation, A B A B ...: each round runs `ovbench step` (both recipes) then
    torch_step.py (both recipes, starting from the same exported weights and batch), with the
    same threads, warm-up and measured steps, and ovbench's masks, so that every step's loss
    can be compared too (reported, not enforced). PyTorch runs with OMP_WAIT_POLICY=PASSIVE by
    default (--omp-wait): its OpenMP workers otherwise spin, which on a loaded 2-core machine
    made its element-wise ops several times slower (ovbench likewise keeps candle's spinning
    element-wise pool to one thread).
 3. per configuration and recipe: median step time of each side over all measured steps of all
    rounds, the ratio ovbench / PyTorch (below 1: ovbench is faster), the min-max of the
    per-round ratios and a 95 % bootstrap interval of the ratio of medians (seeded).
Writes results/torch-cpu/torch-vs-ovbench-<UTC time>.{json,csv} (and .md, the table).
"""
import argparse, csv, datetime, json, os, platform, random, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (model, resolution, batch, rounds, warmup, steps, check). Sized so that a full run takes
# about 20 minutes on 2 cores: a B/16 224 px batch-4 step and an L/14 224 px batch-2 step each take
# seconds to tens of seconds, so those get fewer rounds; the Ti ones are cheap and noisy, so
# they get more. Every configuration gets the full
# check ("full": parameter count, names, shapes, the step-0 loss, the step-0 gradient norms and the
# step-1 loss; "forward" stops after the step-0 loss).
CONFIGS = {
    "default": ("Ti/16", 112, 8, 4, 1, 2, "full"),
    "ti224": ("Ti/16", 224, 8, 4, 1, 2, "full"),
    "b224": ("B/16", 224, 4, 3, 1, 2, "full"),
    "l224": ("L/14", 224, 2, 2, 1, 1, "full"),
}


def sh(cmd, log, env=None):
    """Runs `cmd`, its output appended to `log`; raises with the log's tail on failure."""
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if p.returncode != 0:
        tail = open(log).read()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{tail}")
    return p.returncode


def median(xs):
    return statistics.median(xs)


def bootstrap_ratio(a, b, reps=2000, seed=0):
    rng = random.Random(seed)
    rs = sorted(
        median(rng.choices(a, k=len(a))) / median(rng.choices(b, k=len(b))) for _ in range(reps)
    )
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/ovbench"))
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {','.join(CONFIGS)}")
    ap.add_argument("--quick", action="store_true", help="the default preset only, 2 rounds of 1 + 2 steps")
    ap.add_argument("--rounds", type=int, help="rounds for every configuration (default: per configuration)")
    ap.add_argument("--warmup", type=int, help="warm-up steps for every configuration")
    ap.add_argument("--steps", type=int, help="measured steps for every configuration")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads on both sides (default: all CPUs)")
    ap.add_argument("--check-only", action="store_true", help="the same-function check, no timing")
    ap.add_argument("--full-check", action="store_true", help="gradient and step-1 check for every configuration")
    ap.add_argument("--omp-wait", default="passive", choices=["passive", "active", "default"],
                    help="OMP_WAIT_POLICY of the PyTorch process (default passive: its OpenMP workers "
                         "sleep instead of spinning, which on a shared or loaded machine costs PyTorch "
                         "far less; 'default' leaves the environment as it is)")
    ap.add_argument("--no-check", action="store_true", help="skip the same-function check (not for published numbers)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results/torch-cpu"))
    ap.add_argument("--work", default=os.path.join(ROOT, "results/scratch/torch-cpu"),
                    help="exports and per-run records (large; git-ignored)")
    a = ap.parse_args()

    names = ["default"] if a.quick else [c for c in a.configs.split(",") if c]
    for n in names:
        if n not in CONFIGS:
            ap.error(f"unknown configuration {n!r} (known: {', '.join(CONFIGS)})")
    if not os.access(a.bin, os.X_OK):
        ap.error(f"{a.bin}: no ovbench binary (cargo build --release --bin ovbench)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = os.path.join(a.work, stamp)
    os.makedirs(work, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    log = os.path.join(work, "log.txt")
    torch_step = os.path.join(ROOT, "scripts/torch_step.py")
    T = str(a.threads)
    started = time.time()
    print(f"ovbench {a.bin} vs PyTorch ({a.python}), {a.threads} threads; log {log}", flush=True)

    checks, results, loads, provenances = {}, [], [], {}
    tenv = dict(os.environ)
    if a.omp_wait != "default":
        tenv["OMP_WAIT_POLICY"] = a.omp_wait.upper()
    for name in names:
        model, res, batch, rounds, warmup, steps, depth = CONFIGS[name]
        if a.full_check:
            depth = "full"
        if a.quick:
            rounds, warmup, steps = 2, 1, 2
        rounds = a.rounds or rounds
        warmup = a.warmup if a.warmup is not None else warmup
        steps = a.steps or steps
        shape = ["--model", model, "--res", str(res), "--batch", str(batch), "--threads", T]
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        label = f"{model} {res} px b{batch}"
        exp = os.path.join(d, "export")
        sh([a.bin, "step", *shape, "--warmup", str(warmup), "--steps", str(steps), "--export-init", exp]
           + (["--export-forward-only"] if depth == "forward" else []), log)
        if not a.no_check:
            print(f"[{name}] {label}: same-function check ({depth}) ...", flush=True)
            cj = os.path.join(d, "check.json")
            p = subprocess.run([a.python, torch_step, "--init", exp, "--check", "--recipe", "both",
                                "--threads", T, "--out", cj], cwd=ROOT, capture_output=True, text=True,
                               env=tenv)
            print("  " + p.stdout.strip().replace("\n", "\n  "), flush=True)
            if p.returncode != 0 or not os.path.exists(cj):
                print(p.stderr[-3000:], file=sys.stderr)
                print(f"SAME-FUNCTION CHECK FAILED for {name} ({label}): ovbench and PyTorch do not "
                      f"compute the same step; no timing is reported.", file=sys.stderr)
                return 1
            checks[name] = json.load(open(cj))
        if a.check_only:
            continue
        ov, tc = {"ov1": [], "ov2": []}, {"ov1": [], "ov2": []}
        per_round = {"ov1": [], "ov2": []}
        loss_diff = {"ov1": 0.0, "ov2": 0.0}
        provenance = None
        for r in range(rounds):
            l0 = os.getloadavg()[0]
            rec = os.path.join(d, f"ovbench-r{r}.json")
            t0 = time.time()
            sh([a.bin, "step", *shape, "--warmup", str(warmup), "--steps", str(steps), "--quiet",
                "--out", rec], log)
            t1 = time.time()
            tj = os.path.join(d, f"torch-r{r}.json")
            sh([a.python, torch_step, "--init", exp, "--recipe", "both", "--device", "cpu", "--threads", T,
                "--warmup", str(warmup), "--steps", str(steps), "--out", tj], log, env=tenv)
            t2 = time.time()
            loads.append({"config": name, "round": r, "load1_before": l0, "load1_after": os.getloadavg()[0]})
            orec = json.load(open(rec))
            provenance = provenance or orec.get("provenance")
            trec = json.load(open(tj))
            truns = trec["runs"] if "runs" in trec else [trec]
            line = []
            for run in orec["runs"]:
                k = run["recipe"]
                tr = next(x for x in truns if x["recipe"] == k)
                o = [s["total_s"] for s in run["samples"]]
                t = [s["total_s"] for s in tr["samples"]]
                # Same weights, batch and masks: every step's loss should agree (later steps drift
                # slightly, AdamW amplifying float differences in tiny gradients).
                lo_ = run["warmup_losses"] + [s["loss"] for s in run["samples"]]
                lt_ = tr["warmup_losses"] + [s["loss"] for s in tr["samples"]]
                loss_diff[k] = max([loss_diff[k]] + [abs(x - y) / abs(x) for x, y in zip(lo_, lt_)])
                ov[k] += o
                tc[k] += t
                per_round[k].append(median(o) / median(t))
                line.append(f"{k} {fmt_s(median(o))} vs {fmt_s(median(t))}")
            print(f"[{name}] round {r + 1}/{rounds}: " + ", ".join(line)
                  + f"  (wall {t1 - t0:.0f} s + {t2 - t1:.0f} s, load {l0:.1f})", flush=True)
        for k in ("ov1", "ov2"):
            mo, mt = median(ov[k]), median(tc[k])
            lo, hi = bootstrap_ratio(ov[k], tc[k])
            results.append({
                "config": name, "model": model, "resolution": res, "batch": batch, "recipe": k,
                "rounds": rounds, "warmup": warmup, "steps": steps, "threads": a.threads,
                "ovbench_median_s": mo, "torch_median_s": mt, "ratio": mo / mt,
                "ratio_round_min": min(per_round[k]), "ratio_round_max": max(per_round[k]),
                "ratio_ci95": [lo, hi], "ovbench_samples_s": ov[k], "torch_samples_s": tc[k],
                "per_round_ratios": per_round[k], "loss_max_rel_diff": loss_diff[k],
            })
        provenances[name] = provenance

    torch_version = subprocess.run([a.python, "-c", "import warnings; warnings.filterwarnings('ignore'); import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "HEAD")
    # Records written under results/ by the runs themselves do not make the code dirty.
    dirty = any(not line[3:].startswith("results/")
                for line in git("status", "--porcelain", "--untracked-files=no").splitlines())
    summary = {
        "schema": "ovbench.torch-cpu/1",
        "created_utc": stamp,
        "command_line": sys.argv,
        "git": {"commit": head, "dirty": dirty},
        "binary": {"path": a.bin, "mtime_utc": datetime.datetime.fromtimestamp(
            os.path.getmtime(a.bin), datetime.timezone.utc).isoformat()},
        "torch": torch_version,
        "host": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count(), "os": platform.platform()},
        "threads": a.threads,
        "torch_omp_wait_policy": tenv.get("OMP_WAIT_POLICY"),
        "wall_s": time.time() - started,
        "same_function": checks,
        "results": results,
        "load": loads,
        "ovbench_provenance": provenances,
        "ratio": "ovbench median step time / PyTorch median step time (below 1: ovbench faster)",
    }
    tag = "torch-vs-ovbench-" + stamp + ("-check" if a.check_only else "")
    with open(os.path.join(a.out, tag + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
    print()
    if checks:
        print("same function (ovbench weights and batch loaded into PyTorch):")
        print("| configuration | recipe | parameters (both) | step-0 loss ovbench | step-0 loss PyTorch | rel. diff | step-1 rel. diff | grad-norm max rel. diff |")
        print("|---|---|---|---|---|---|---|---|")
        for name, cs in checks.items():
            m, r_, b, *_ = CONFIGS[name]
            for c in cs:
                fo = c.get("forward_only")
                print(f"| {m} {r_} px b{b} | {c['recipe']} | {c['params_torch']:,} | {c['loss0_ovbench']:.6f} | "
                      f"{c['loss0_torch']:.6f} | {c['loss0_rel_diff']:.1e} | "
                      + ("- | - |" if fo else f"{c['loss1_rel_diff']:.1e} | {c['grad_norm_max_rel_diff']:.1e} |"))
    if results:
        rows = ["| configuration | recipe | ovbench step (median) | PyTorch step (median) | ratio ovbench / PyTorch | per-round min-max | 95 % bootstrap | rounds x steps | losses agree (max rel.) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in results:
            rows.append(f"| {r['model']} {r['resolution']} px b{r['batch']} | {'OpenVision' if r['recipe'] == 'ov1' else 'OpenVision 2'} | "
                        f"{fmt_s(r['ovbench_median_s'])} | {fmt_s(r['torch_median_s'])} | **{r['ratio']:.2f}** | "
                        + (f"{r['ratio_round_min']:.2f}-{r['ratio_round_max']:.2f} | " if r['rounds'] > 1 else "- (1 round) | ")
                        + (f"{r['ratio_ci95'][0]:.2f}-{r['ratio_ci95'][1]:.2f} | " if len(r['ovbench_samples_s']) > 1 else "- | ")
                        + f"{r['rounds']} x {r['steps']} | {r['loss_max_rel_diff']:.0e} |")
        ls = [x["load1_before"] for x in loads]
        foot = (f"\n{cpu_model()}, {os.cpu_count()} CPUs, {a.threads} threads each side; torch {torch_version} "
                f"(OMP_WAIT_POLICY={tenv.get('OMP_WAIT_POLICY', 'unset')}); "
                f"ovbench at git {head[:10]}{' (dirty tree)' if dirty else ''}; "
                f"load average (1 min) at round starts {min(ls):.1f}-{max(ls):.1f}; wall {summary['wall_s'] / 60:.1f} min")
        table = "\n".join(rows) + "\n" + foot
        print(table)
        with open(os.path.join(a.out, tag + ".md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(a.out, tag + ".csv"), "w", newline="") as f:
            w = csv.writer(f)
            cols = ["config", "model", "resolution", "batch", "recipe", "rounds", "warmup", "steps", "threads",
                    "ovbench_median_s", "torch_median_s", "ratio", "ratio_round_min", "ratio_round_max"]
            w.writerow(cols + ["ratio_ci95_lo", "ratio_ci95_hi"])
            for r in results:
                w.writerow([r[c] for c in cols] + r["ratio_ci95"])
    print(f"\nrecord: {os.path.join(a.out, tag)}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
