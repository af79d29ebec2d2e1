#!/usr/bin/env bash
# Checks a CUDA build of ovbench (scripts/build-cuda.sh) on a machine WITHOUT a GPU:
#   1. it starts with no CUDA library present (they are loaded at run time);
#   2. a CPU step gives the same losses, to the bit, as the CPU build's on the same seed;
#   3. `--device cuda:0` is a one-line error that writes no record.
# On a machine with a driver, check 3 is skipped (that case cannot be observed there).
# Usage: scripts/check-cuda-binary.sh [CUDA binary] [CPU binary]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU_BIN="${1:-$ROOT/target/cuda/release/ovbench}"
CPU_BIN="${2:-$ROOT/target/release/ovbench}"
[[ -x "$GPU_BIN" ]] || { echo "check-cuda: no CUDA binary at $GPU_BIN (run scripts/build-cuda.sh)" >&2; exit 1; }
# The CPU build of the same source (a no-op when up to date), with none of the CUDA build's flags.
[[ -n "${2:-}" ]] || (cd "$ROOT" && env -u RUSTFLAGS -u LIBRARY_PATH cargo build --release --quiet --bin ovbench)
[[ -x "$CPU_BIN" ]] || { echo "check-cuda: no CPU binary at $CPU_BIN" >&2; exit 1; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "check-cuda: FAIL: $*" >&2; exit 1; }

needed=$(readelf -d "$GPU_BIN" | grep NEEDED || true)
if grep -Eq 'libcuda|libcublas|libcurand|libnvrtc|libcudart' <<<"$needed"; then
  fail "the binary links CUDA libraries at start:"$'\n'"$needed"
fi
"$GPU_BIN" --version >/dev/null || fail "the CUDA binary does not start"
echo "check-cuda: starts without CUDA libraries (needs only: $(awk '{print $5}' <<<"$needed" | tr -d '[]' | xargs))"

ARGS=(step --quiet --model Ti/16 --res 64 --batch 4 --warmup 0 --steps 2 --seed 7 --device cpu)
"$GPU_BIN" "${ARGS[@]}" --out "$T/cuda-build.json" >/dev/null || fail "CPU step of the CUDA build"
"$CPU_BIN" "${ARGS[@]}" --out "$T/cpu-build.json" >/dev/null || fail "CPU step of the CPU build"
python3 - "$T/cuda-build.json" "$T/cpu-build.json" <<'PY' || fail "the CUDA build's CPU losses differ from the CPU build's"
import json, sys
def losses(p):
    j = json.load(open(p)); b = j.get("body", j)
    return {r["recipe"]: [s["loss"] for s in r["samples"]] for r in b["runs"]}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
print("check-cuda: CPU losses, CUDA build", a)
print("check-cuda: CPU losses, CPU build ", b)
sys.exit(0 if a == b and a else 1)
PY

if "$GPU_BIN" step --quiet --device cuda:0 --model Ti/16 --res 64 --batch 4 --steps 1 \
     --warmup 0 --out "$T/gpu.json" 2>"$T/err"; then
  echo "check-cuda: a GPU answered; the no-driver error cannot be checked here"
else
  [[ $(grep -c . "$T/err") == 1 ]] || fail "--device cuda:0 without a driver printed more than one line: $(cat "$T/err")"
  grep -Eq 'no usable NVIDIA driver|CUDA libraries not found' "$T/err" || fail "unexpected error: $(cat "$T/err")"
  [[ ! -e "$T/gpu.json" ]] || fail "--device cuda:0 without a driver wrote a record"
  echo "check-cuda: --device cuda:0 here: $(cat "$T/err")"
fi
echo "check-cuda: PASS"
