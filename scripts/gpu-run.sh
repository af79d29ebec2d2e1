#!/usr/bin/env bash
# The GPU-machine run. First the torch engine, which needs no CUDA build: the CPU binary
# (target/release/ovbench) loads NVML at run time and drives the machine's own PyTorch
# (python3 with torch, or OVBENCH_PYTHON). Then, if target/cuda/release/ovbench is there (built
# by scripts/build-cuda.sh on any x86-64 Linux machine), the candle engine's CUDA runs.
# In order, within about 8 minutes on an H100/H200 (GPU_RUN_BUDGET_S):
#   1. environment: CUDA libraries from the Python nvidia-* packages, nvidia-smi, versions;
#   2. torch engine: smoke step on the GPU, the same-function check against candle (CPU,
#      Ti/16), the L/14 224 px batch 64 bf16 step of both recipes (eager), the L/14 claim set
#      with one command: `ovbench repro --preset l14-224 --engine torch` (every claim under the
#      released and matched-bf16 policies), the GPU's matmul peak, the same step across every
#      GPU (--nproc) when there are several, and with torch.compile;
#   3. candle CUDA binary: smoke test (one Ti/16 step of each recipe), one step on GPU vs CPU
#      (loss agreement), the paper presets for both recipes (bf16, then f32 as time allows;
#      So400m/14 at 378 px = 27 x 14 patches, as the paper's 384 px gives), max batch under
#      --mem-cap 32GiB, and `ovbench repro --preset l14-224` on candle.
# Every record goes to $OUT (or ./results/gpu-run when OUT is unset), bundled as records.tar.gz.
# TINY=1 runs the same sequence with tiny configurations on the CPU (a check of this script
# on a machine without a GPU; the candle CUDA part is skipped).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/results/gpu-run}"
mkdir -p "$OUT"
R="${RECORDS_DIR:-$(mktemp -d)/records}"; mkdir -p "$R"   # bundled into $OUT/records.tar.gz
LOG="$OUT/gpu-run.log"
exec > >(tee -a "$LOG") 2>&1
BIN="${OVBENCH_BIN:-target/cuda/ovbench-gpu}"; [[ -x "$BIN" ]] || BIN=target/cuda/release/ovbench
CPU_BIN="${OVBENCH_CPU_BIN:-target/release/ovbench}"
START=$(date +%s)
BUDGET="${GPU_RUN_BUDGET_S:-450}"
TINY="${TINY:-0}"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
bundle() { tar -C "$(dirname "$R")" -czf "$OUT/records.tar.gz" "$(basename "$R")" 2>/dev/null; cp "$R/agreement.txt" "$OUT/" 2>/dev/null; }
trap bundle EXIT

say "environment"
PY="${OVBENCH_PYTHON:-$(command -v python3)}"
SITE=$("$PY" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
LIBS=""
for s in $SITE; do for d in "$s"/nvidia/*/lib; do [[ -d "$d" ]] && LIBS="$LIBS:$d"; done; done
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
  [[ -e "$d/libcuda.so.1" || -e "$d/libnvidia-ml.so.1" ]] && LIBS="$LIBS:$d"
done
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi || true
"$PY" -c 'import torch, platform; print("python", platform.python_version(), "torch", torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())' \
  || echo "no PyTorch in $PY: the torch engine part will fail (set OVBENCH_PYTHON)"
# NVML accounting is left as the card was found (changing it would change the GPU's settings); the record says "unavailable" when it is off.

if [[ $TINY == 1 ]]; then
  DEV=cpu; NGPU=2   # two gloo processes stand in for two GPUs
  L14="--model Ti/16 --res 64 --batch 4 --dtype f32"; WS="--warmup 1 --steps 2"
  REPRO="--preset small --device cpu --batch 2 --steps 2 --warmup 1 --policy released"
else
  DEV=cuda:0; NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || echo 0)
  L14="--model L/14 --res 224 --batch 64 --dtype bf16"; WS="--warmup 2 --steps 5"
  REPRO="--preset l14-224 --device cuda:0 --batch 16 --steps 2 --warmup 1 --mem-cap 32GiB"
fi

tstep() { # name, args...: the torch engine through the CPU binary
  local name=$1; shift
  local t=$(( $(left) - 20 )); (( t > 300 )) && t=300
  if (( t < 15 )); then echo "skip $name: out of time"; return 1; fi
  echo "--- $name: ovbench step --engine torch $*"
  timeout "$t" "$CPU_BIN" step --engine torch --python "$PY" --quiet --out "$R/$name.json" "$@"; local rc=$?
  echo "--- $name: exit $rc"; return $rc
}

say "torch engine (no CUDA build: $CPU_BIN drives $PY)"
if [[ -x "$CPU_BIN" ]]; then
  tstep torch-smoke --device $DEV --model Ti/16 --res 112 --batch 8 --warmup 1 --steps 1
  tstep torch-check-same --check-same --device cpu --model Ti/16 --res 112 --batch 8 --warmup 0 --steps 1
  tstep torch-L14-224-b64-eager --device $DEV $L14 $WS
  # The claim set before the slower extras (compilation takes minutes per recipe).
  t=$(( $(left) - 20 )); (( t > 300 )) && t=300
  if (( t >= 60 )); then
    echo "--- torch repro: ovbench repro --engine torch $REPRO"
    timeout "$t" "$CPU_BIN" repro --engine torch --python "$PY" $REPRO --out "$R/torch-repro" --quiet
    echo "--- torch repro: exit $?"
  else
    echo "skip torch repro: out of time"
  fi
  [[ $TINY == 1 ]] || timeout 60 "$PY" engines/torch/engine.py --peak --out "$R/peak-matmul.json"
  if (( NGPU > 1 )); then
    tstep torch-L14-224-b64-nproc$NGPU --device $DEV $L14 $WS --nproc $NGPU
  fi
  tstep torch-L14-224-b64-compiled --device $DEV $L14 $WS --compile
else
  echo "no CPU binary at $CPU_BIN (cargo build --release; carry target/release/ovbench): torch engine skipped"
fi

[[ $TINY == 1 ]] && { say "done (TINY: the candle CUDA part needs a GPU)"; exit 0; }
say "candle engine: CUDA binary $BIN"
[[ -x "$BIN" ]] || { echo "no CUDA binary at $BIN (scripts/build-cuda.sh; carry target/cuda/release/ovbench): candle CUDA part skipped"; exit 0; }
if ldd "$BIN" | grep "not found"; then echo "missing libraries: stop"; exit 1; fi
for l in libcuda.so.1 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
  found=no; for d in ${LD_LIBRARY_PATH//:/ }; do [[ -e "$d/$l" ]] && found="$d"; done
  [[ $found == no ]] && found=$(ldconfig -p 2>/dev/null | awk -v l="$l" '$1 == l {print $NF; exit}')
  echo "$l: ${found:-not found}"
done

step() { # name, args...
  local name=$1; shift
  local t=$(( $(left) - 20 )); (( t > 300 )) && t=300
  if (( t < 15 )); then echo "skip $name: out of time"; return 1; fi
  echo "--- $name: ovbench step $*"
  timeout "$t" "$BIN" step --quiet --out "$R/$name.json" "$@"; local rc=$?
  echo "--- $name: exit $rc"; return $rc
}

say "smoke test"
# The default kernels on CUDA are the portable ops (device-generic layer norm, softmax, dense
# layers and cross-entropy, attention recomputed in the backward pass), first run on a GPU here:
# should they fail, the rest of the run falls back to candle's composed ops (KERNELS), and the
# log says so.
KERNELS="${KERNELS:-fused}"
if ! step smoke --device cuda:0 --model Ti/16 --res 112 --batch 8 --warmup 0 --steps 1 --kernels "$KERNELS"; then
  echo "smoke test with --kernels $KERNELS failed: falling back to --kernels composed"
  KERNELS=composed
  step smoke-composed --device cuda:0 --model Ti/16 --res 112 --batch 8 --warmup 0 --steps 1 --kernels composed \
    || { echo "smoke test failed: stop"; exit 1; }
fi

say "CPU vs GPU, one step, same seed"
T="--model Ti/16 --res 64 --batch 4 --warmup 0 --steps 1 --seed 7"
step agree-cpu-f32 --device cpu $T --dtype f32
step agree-gpu-f32 --device cuda:0 $T --dtype f32 --kernels "$KERNELS"
step agree-gpu-bf16 --device cuda:0 $T --dtype bf16 --kernels "$KERNELS"
"$PY" - "$R" <<'PY' | tee "$R/agreement.txt"
import json, sys, os
d = sys.argv[1]
def losses(n):
    p = os.path.join(d, n + ".json")
    if not os.path.exists(p): return None
    j = json.load(open(p)); b = j.get("body", j)
    return {r["recipe"]: r["samples"][0]["loss"] for r in b["runs"]}
cpu = losses("agree-cpu-f32")
for name, tol in (("agree-gpu-f32", 1e-4), ("agree-gpu-bf16", 2e-2)):
    g = losses(name)
    if not cpu or not g: print(name, "missing"); continue
    for r in cpu:
        rel = abs(g[r] - cpu[r]) / abs(cpu[r])
        print(f"{name} {r}: cpu {cpu[r]:.6f} gpu {g[r]:.6f} rel diff {rel:.2e} tol {tol:g} {'PASS' if rel <= tol else 'FAIL'}")
PY

say "paper presets, bf16"
P="--warmup 2 --steps 5 --device cuda:0 --kernels $KERNELS"
step L14-224-b64-bf16 $P --model L/14 --res 224 --batch 64 --dtype bf16
step L14-84-b128-bf16 $P --model L/14 --res 84 --batch 128 --dtype bf16
step So400m-378-b16-bf16 $P --model So400m/14 --res 378 --batch 16 --dtype bf16

if [[ $KERNELS != composed ]]; then
  say "portable against composed ops on the GPU (L/14, 84 px, batch 128, bf16)"
  step L14-84-b128-bf16-composed --warmup 2 --steps 5 --device cuda:0 --kernels composed \
    --model L/14 --res 84 --batch 128 --dtype bf16
fi

say "max batch under --mem-cap 32GiB (L/14 224 px bf16, one step)"
for b in 128 256; do
  step cap32-L14-224-b$b --device cuda:0 --kernels "$KERNELS" --model L/14 --res 224 --batch $b --dtype bf16 --warmup 0 --steps 1 --mem-cap 32GiB || true
done

say "the L/14 claim set on this GPU: ovbench repro under the released and matched-bf16 policies"
t=$(( $(left) - 20 )); (( t > 240 )) && t=240
if (( t >= 60 )); then
  echo "--- repro: ovbench repro --preset l14-224 --device cuda:0 --batch 16 ..."
  timeout "$t" "$BIN" repro --preset l14-224 --device cuda:0 --kernels "$KERNELS" --batch 16 --steps 2 --warmup 1 \
    --mem-cap 32GiB --out "$R/repro-l14-224"
  echo "--- repro: exit $?"
else
  echo "skip repro: out of time"
fi

say "paper preset, f32"
step L14-224-b64-f32 $P --model L/14 --res 224 --batch 64 --dtype f32
step L14-84-b128-f32 $P --model L/14 --res 84 --batch 128 --dtype f32
step So400m-378-b16-f32 $P --model So400m/14 --res 378 --batch 16 --dtype f32

nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,clocks_throttle_reasons.active --format=csv || true
say "done"
