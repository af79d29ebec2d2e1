#!/usr/bin/env bash
# The candle engine against the torch engine (eager and torch.compile) on this CPU, through
# `ovbench step --engine ...`, same configurations and threads: first the same-function check
# (`--check-same`), then timing in alternation (candle, torch, torch.compile, rotated every
# round), then the scaling table of the torch engine at 1 and 2 processes (gloo).
#
#   scripts/torch-vs-ovbench.sh                   # default preset and B/16 224 px, about 20 min on 2 cores
#   scripts/torch-vs-ovbench.sh --quick           # the default preset only (a few minutes)
#   scripts/torch-vs-ovbench.sh --configs default,b224 --rounds 3 --steps 2
#   scripts/torch-vs-ovbench.sh --check-only      # the same-function check alone
#   (scripts/torch_vs_ovbench.py --help lists every option)
#
# Python: $OVBENCH_PYTHON, else scripts/pyenv.sh's cached environment (torch pinned in
# engines/torch/requirements.txt; installed on first use). Uses target/release/ovbench (built
# if missing; --bin PATH for another). Writes results/engines/engines-<time>.{json,md} (an
# `ovbench.engines/1` record); per-run records go to results/scratch/engines/ (git-ignored). Run nothing else heavy beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/pyenv.sh engines/torch/requirements.txt)
BIN=target/release/ovbench
for a in "$@"; do case "$a" in --bin|--bin=*) BIN="";; esac; done
if [ -n "$BIN" ] && [ ! -x "$BIN" ]; then
  echo "building $BIN ..." >&2
  cargo build --release --bin ovbench
fi
exec "$PY" scripts/torch_vs_ovbench.py --python "$PY" "$@"
