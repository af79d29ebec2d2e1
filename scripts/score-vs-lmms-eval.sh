#!/usr/bin/env bash
# Times lmms-eval's own TextVQA scorer and `ovbench score` on the same generated 5,000-question
# file, prints both scores (they must be identical, to the last bit) and the speed ratio.
#
# What gets installed, and why this way: lmms-eval with all its dependencies (torch, datasets,
# transformers, ...) is several GB, but its TextVQA scoring needs none of them. So the script
# makes a venv under scripts/.venv and installs `lmms-eval==0.7.3 --no-deps` plus `loguru`
# (imported by tasks/textvqa/utils.py). The helper score_vs_lmms_eval.py stubs the heavy
# `lmms_eval.tasks` package __init__ and imports only tasks/textvqa/utils.py and
# tasks/_task_utils/vqa_eval_metric.py: the real process_results and EvalAI normaliser.
#
# Timed on each side: reading the annotation JSON and the predictions JSONL, then scoring and
# averaging all 5,000 questions. `ovbench score` reports that span itself ("time: read ..,
# score .."); its whole-process wall time (which adds input hashing, git provenance and the
# record write) is printed too.
#
# Usage: scripts/score-vs-lmms-eval.sh [REPEATS]
#   OVBENCH_BIN=path/to/ovbench  use this binary instead of `cargo build --release`
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS="${1:-5}"
VENV=scripts/.venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "lmms-eval==0.7.3"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "loguru"

if [ -z "${OVBENCH_BIN:-}" ]; then
    cargo build --release --bin ovbench >&2
    OVBENCH_BIN=target/release/ovbench
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "lmms-eval: scoring 5,000 generated TextVQA questions ($REPEATS runs)..." >&2
PY_JSON="$("$VENV/bin/python" scripts/score_vs_lmms_eval.py "$WORK" "$REPEATS")"

echo "ovbench: scoring the same files ($REPEATS runs)..." >&2
: > "$WORK/ov_times"
for _ in $(seq "$REPEATS"); do
    start=$(date +%s%N)
    "$OVBENCH_BIN" score --task textvqa --compat lmms-eval \
        --annotations "$WORK/TextVQA_0.5.1_val.json" --predictions "$WORK/predictions.jsonl" \
        --out "$WORK/res" > "$WORK/ov_stdout"
    end=$(date +%s%N)
    inner=$(sed -n 's/^time: read \([0-9.]*\) ms, score \([0-9.]*\) ms$/\1 \2/p' "$WORK/ov_stdout")
    echo "$(( (end - start) / 1000 )) $inner" >> "$WORK/ov_times"
done
RECORD="$(ls -t "$WORK"/res/*.json | head -n 1)"

"$VENV/bin/python" - "$PY_JSON" "$WORK/ov_times" "$RECORD" "$OVBENCH_BIN" <<'PY'
import json, statistics, sys
py = json.loads(sys.argv[1])
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
rec = json.load(open(sys.argv[3]))
wall = statistics.median(r[0] for r in rows) / 1e6  # microseconds
inner = statistics.median((r[1] + r[2]) / 1e3 for r in rows)
ov_score = rec["report"]["toolkit"]["value"]
print(f"lmms-eval {py['lmms_eval_root']}")
print(f"ovbench   {sys.argv[4]}")
print(f"lmms-eval score  exact_match = {py['score_repr']}")
print(f"ovbench   score  exact_match = {ov_score!r}")
same = py["score_repr"] == repr(ov_score)
print("scores identical (bit for bit):", "yes" if same else "NO")
print(f"lmms-eval read+score median  {py['median_s'] * 1e3:9.1f} ms")
print(f"ovbench   read+score median  {inner * 1e3:9.1f} ms   -> {py['median_s'] / inner:6.1f} x faster")
print(f"ovbench   whole process      {wall * 1e3:9.1f} ms   -> {py['median_s'] / wall:6.1f} x faster")
sys.exit(0 if same else 1)
PY
