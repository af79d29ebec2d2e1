#!/usr/bin/env bash
# The GPU-machine run: given target/cuda/release/ovbench (built by scripts/build-cuda.sh on any
# x86-64 Linux machine), runs, in order and within about 8 minutes on an H100/H200:
#   1. environment: CUDA libraries from the Python nvidia-* packages (the binary loads them at
#      run time; the smoke test names any it cannot find), nvidia-smi;
#   2. kernel smoke test (one Ti/16 step of each recipe on the GPU);
#   3. one step of each recipe on GPU vs CPU, same seed, f32 (and bf16 on GPU) -> loss agreement;
#   4. the paper presets for both recipes (bf16, then f32 as time allows), warm-up 2, steps 5;
#      So400m/14 runs at 378 px (27 x 14): ovbench needs a multiple of the patch, and the
#      paper's 384 px gives the same 27 x 27 patches after the stride-14 patch embedding;
#   5. max batch under a 32 GiB cap (L/14 224 px, bf16): oom is a result, not a crash; then
#      `ovbench repro --preset l14-224` on the GPU, whose search bisects to the largest batch;
#   6. PyTorch side by side: the same L/14 224 px batch 64 step (scripts/torch_step.py).
# Every record goes to $OUT (or ./results/gpu-run when OUT is unset), bundled as records.tar.gz.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/results/gpu-run}"
mkdir -p "$OUT"
R="${RECORDS_DIR:-$(mktemp -d)/records}"; mkdir -p "$R"   # bundled into $OUT/records.tar.gz
LOG="$OUT/gpu-run.log"
exec > >(tee -a "$LOG") 2>&1
BIN="${OVBENCH_BIN:-target/cuda/ovbench-gpu}"; [[ -x "$BIN" ]] || BIN=target/cuda/release/ovbench
START=$(date +%s)
BUDGET="${GPU_RUN_BUDGET_S:-450}"
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo; echo "=== [$(( $(date +%s) - START ))s] $*"; }
bundle() { tar -C "$(dirname "$R")" -czf "$OUT/records.tar.gz" "$(basename "$R")" 2>/dev/null; cp "$R/agreement.txt" "$OUT/" 2>/dev/null; }
trap bundle EXIT

say "environment"
PY=$(command -v python3)
SITE=$("$PY" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
LIBS=""
for s in $SITE; do for d in "$s"/nvidia/*/lib; do [[ -d "$d" ]] && LIBS="$LIBS:$d"; done; done
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
  [[ -e "$d/libcuda.so.1" || -e "$d/libnvidia-ml.so.1" ]] && LIBS="$LIBS:$d"
done
export LD_LIBRARY_PATH="${LIBS#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi || true
# NVML accounting is left as the card was found (changing it would change the GPU's settings); the record says "unavailable" when it is off.
[[ -x "$BIN" ]] || { echo "no binary at $BIN (carry target/cuda/release/ovbench)"; exit 1; }
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

say "PyTorch side by side (L/14, 224 px, batch 64)"
timeout 60 "$PY" scripts/torch_step.py --peak --out "$R/peak-matmul.json"
if [[ -f "$R/L14-224-b64-bf16.json" ]]; then
  for dt in bf16 f32; do for rc in ov1 ov2; do
    (( $(left) > 40 )) || break
    timeout $(( $(left) - 20 )) "$PY" scripts/torch_step.py --record "$R/L14-224-b64-bf16.json" \
      --recipe $rc --dtype $dt --warmup 2 --steps 5 --out "$R/torch-L14-224-b64-$rc-$dt.json"
  done; done
fi

say "max batch under --mem-cap 32GiB (L/14 224 px bf16, one step)"
for b in 128 256; do
  step cap32-L14-224-b$b --device cuda:0 --kernels "$KERNELS" --model L/14 --res 224 --batch $b --dtype bf16 --warmup 0 --steps 1 --mem-cap 32GiB || true
done

say "the L/14 claim set on this GPU: ovbench repro, with the max batch under a 32 GiB cap searched by real steps"
t=$(( $(left) - 20 )); (( t > 240 )) && t=240
if (( t >= 60 )); then
  echo "--- repro: ovbench repro --preset l14-224 --device cuda:0 --dtype bf16 --batch 16 ..."
  timeout "$t" "$BIN" repro --preset l14-224 --device cuda:0 --kernels "$KERNELS" --dtype bf16 --batch 16 --steps 2 --warmup 1 \
    --mem-cap 32GiB --confirm-limit 512 --out "$R/repro-l14-224"
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
