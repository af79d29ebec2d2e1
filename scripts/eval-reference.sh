#!/usr/bin/env bash
# `ovbench eval` against the reference libraries (open_clip, transformers, tokenizers, Pillow,
# torch): tiny random models written by those libraries, the LLaVA / lmms-eval pipeline run on
# them, `ovbench eval` on the same files, answers and token ids compared item by item
# (docs/eval-reference.md). Exits non-zero on any real difference.
#
#   scripts/eval-reference.sh            # every case (all layouts, both templates, --bos single)
#   scripts/eval-reference.sh --small    # CI's set (a few minutes after the install)
#   scripts/eval-reference.sh --resample image-crate   # ovbench with the image crate's resize
#   (scripts/eval-reference/eval_reference.py --help lists every option)
#
# The Python side is the cached environment of scripts/pyenv.sh (torch 2.11.0 from
# engines/torch/requirements.txt plus scripts/eval-reference/requirements.txt, all pinned);
# OVBENCH_PYENV moves it. Uses target/release/ovbench, built if missing (--bin PATH for another).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/pyenv.sh engines/torch/requirements.txt scripts/eval-reference/requirements.txt)
BIN="${CARGO_TARGET_DIR:-target}/release/ovbench"
for a in "$@"; do case "$a" in --bin|--bin=*) BIN="";; esac; done
if [ -n "$BIN" ] && [ ! -x "$BIN" ]; then
  echo "building $BIN ..." >&2
  cargo build --release --bin ovbench
fi
exec "$PY" scripts/eval-reference/eval_reference.py ${BIN:+--bin "$BIN"} "$@"
