#!/usr/bin/env python3
"""Markdown table of the fused-vs-composed criterion benchmarks, from criterion's own estimates.

    cargo bench -p ovbench-train --bench block
    cargo bench -p ovbench-train --bench fused -- --warm-up-time 1 --measurement-time 3
    python3 scripts/criterion-table.py            # reads target/criterion

One row per benchmark group that has composed and fused forward and forward+backward timings:
criterion's median point estimates, and the forward+backward speed-up (composed / fused).
"""
import glob, json, os, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fmt(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms" if ns < 1e8 else f"{ns / 1e6:.0f} ms"
    return f"{ns / 1e3:.0f} µs"


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "criterion")
    groups = {}
    for path in glob.glob(os.path.join(base, "*", "*", "new", "estimates.json")):
        bench = os.path.basename(os.path.dirname(os.path.dirname(path)))
        with open(os.path.join(os.path.dirname(path), "benchmark.json")) as f:
            title = json.load(f)["group_id"]
        with open(path) as f:
            groups.setdefault(title, {})[bench] = json.load(f)["median"]["point_estimate"]
    if not groups:
        sys.exit(f"no criterion estimates under {base}: run the benches first")
    print("| benchmark | composed forward | fused forward | composed fwd + bwd | fused fwd + bwd | fwd + bwd speed-up |")
    print("|---|---|---|---|---|---|")
    for title in sorted(groups):
        g = groups[title]
        keys = ["composed_forward", "fused_forward", "composed_forward+backward", "fused_forward+backward"]
        if not all(k in g for k in keys):
            continue
        cf, ff, cb, fb = (g[k] for k in keys)
        print(f"| {title} | {fmt(cf)} | {fmt(ff)} | {fmt(cb)} | {fmt(fb)} | {cb / fb:.1f}× |")


if __name__ == "__main__":
    main()
