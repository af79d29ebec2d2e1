#!/usr/bin/env bash
# ovbench's training step against PyTorch eager's on this CPU, same configurations and threads:
# first a same-function check (ovbench's weights and batch loaded into PyTorch: equal parameter
# counts, equal step-0 loss, gradient norms and step-1 loss), then timing in alternation
# (ovbench, PyTorch, ovbench, PyTorch, ...) and per-configuration ratios with their spread.
#
#   scripts/torch-vs-ovbench.sh                 # all configurations (about 20 min on 2 cores)
#   scripts/torch-vs-ovbench.sh --quick         # the default preset only (a few minutes)
#   scripts/torch-vs-ovbench.sh --configs default,b224 --rounds 3 --steps 2
#   scripts/torch-vs-ovbench.sh --check-only    # the same-function check alone
#   (scripts/torch_vs_ovbench.py --help lists every option)
#
# Installs PyTorch from PyPI into scripts/.venv-torch on first use. PyPI's Linux x86-64 torch
# wheel is the CUDA build: `pip install --no-deps torch` does not import (libtorch_cuda.so needs
# libcudart, cuBLAS, cuDNN, NCCL, ...), so the full dependency set is installed (about 4.6 GB,
# a few minutes); its CPU path is what is timed, with torch.set_num_threads. TORCH_VERSION
# pins the version (default 2.11.0, the one the GPU side-by-side used).
# Uses target/release/ovbench (built if missing; --bin PATH for another). Writes
# results/torch-cpu/torch-vs-ovbench-<time>.{json,csv,md}; exports and per-run records go to
# results/scratch/torch-cpu/ (git-ignored). Run nothing else heavy beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=scripts/.venv-torch
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1 \
  || [ "$("$VENV/bin/python" -c 'import warnings; warnings.filterwarnings("ignore"); import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" != "$TORCH_VERSION" ]; then
  echo "installing torch==$TORCH_VERSION from PyPI into $VENV (CUDA build with its nvidia-* wheels, ~4.6 GB) ..." >&2
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "torch==$TORCH_VERSION"
fi
BIN=target/release/ovbench
for a in "$@"; do case "$a" in --bin|--bin=*) BIN="";; esac; done
if [ -n "$BIN" ] && [ ! -x "$BIN" ]; then
  echo "building $BIN ..." >&2
  cargo build --release --bin ovbench
fi
exec "$VENV/bin/python" scripts/torch_vs_ovbench.py --python "$VENV/bin/python" "$@"
