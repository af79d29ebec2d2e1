#!/usr/bin/env bash
# Build target/cuda/release/ovbench with the `cuda` feature on a machine WITHOUT a GPU.
#
# - nvcc 13.0 comes from PyPI wheels, pinned to 13.0 (driver 580 = CUDA 13.0), unpacked into
#   .cuda/ (gitignored) once and reused.
# - The binary loads the CUDA libraries (driver, cuBLAS, cuRAND, NVRTC) at run time, so it
#   starts on any x86-64 Linux machine, and `--device cuda` without a driver or without the
#   libraries is a one-line error. candle-core 0.11.1 asks cudarc to link them at start instead
#   (its `dynamic-linking` feature), and cudarc refuses both modes at once, so this script builds
#   against a copy of candle-core from cargo's registry whose manifest asks for cudarc's
#   `dynamic-loading` (nothing else changes), through a `--config patch` that leaves Cargo.lock
#   as committed. The code's probe of those libraries is compiled in by the
#   `ovbench_cuda_dynamic_loading` cfg set here.
# - A separate target dir (target/cuda) keeps the CPU build cache intact.
# Idempotent: re-running reuses .cuda/ and target/cuda.
# Usage:
#   scripts/build-cuda.sh [extra cargo args]   build target/cuda/release/ovbench
#   scripts/build-cuda.sh test [cargo args]    the workspace's tests with the feature compiled in
#   scripts/build-cuda.sh check                build, then check the binary on this machine
#                                              without a GPU (CPU step equal to the CPU build's,
#                                              `--device cuda` a one-line error); CI runs this
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CUDA_DIR="$ROOT/.cuda"
PKGS="$CUDA_DIR/pkgs"
LINK="$CUDA_DIR/link"
WHEELS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
)
STAMP="$CUDA_DIR/.wheels-$(printf '%s ' "${WHEELS[@]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$STAMP" ]]; then
  echo "build-cuda: installing pinned CUDA 13.0 wheels into $PKGS" >&2
  rm -rf "$PKGS"; mkdir -p "$PKGS"
  python3 -m pip install --quiet --no-deps --no-compile --target "$PKGS" "${WHEELS[@]}"
  touch "$STAMP"
fi
CU="$PKGS/nvidia/cu13"
[[ -x "$CU/bin/nvcc" ]] || { echo "build-cuda: nvcc not found under $CU/bin" >&2; exit 1; }

# candle-kernels asks to link libcudart (for its MoE library, stubbed below): give it the
# unversioned name. The linker drops it again, as nothing calls it.
mkdir -p "$LINK"
f=$(find "$PKGS/nvidia" -name 'libcudart.so.13*' -print -quit)
[[ -n "$f" ]] || { echo "build-cuda: libcudart.so.13 not found in the wheels" >&2; exit 1; }
ln -sfn "$f" "$LINK/libcudart.so"

# candle-core with cudarc's run-time loading (see the header).
REGISTRY_SRC() { ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$1" 2>/dev/null | head -1 || true; }
[[ -n "$(REGISTRY_SRC candle-core-0.11.1)" && -n "$(REGISTRY_SRC candle-kernels-0.11.1)" ]] || cargo fetch --quiet
CORE="$CUDA_DIR/candle-core-0.11.1-dynamic-loading"
if [[ ! -f "$CORE/.patched" ]]; then
  rm -rf "$CORE"; cp -r "$(REGISTRY_SRC candle-core-0.11.1)" "$CORE"
  sed -i 's/^    "dynamic-linking",$/    "dynamic-loading",/' "$CORE/Cargo.toml"
  grep -q '"dynamic-loading"' "$CORE/Cargo.toml" && ! grep -q '"dynamic-linking"' "$CORE/Cargo.toml" \
    || { echo "build-cuda: could not switch $CORE/Cargo.toml to cudarc's dynamic-loading" >&2; exit 1; }
  touch "$CORE/.patched"
fi

# candle-kernels also builds a static library of quantized-MoE / GGUF kernels (15 heavy .cu
# files, tens of minutes of nvcc on a small machine) that no ovbench model calls. An nvcc
# wrapper replaces those objects with a host stub whose functions abort if ever called; the
# PTX kernels that candle's tensor ops use are compiled by the real nvcc, unchanged.
# OVBENCH_REAL_MOE=1 compiles the real library instead.
if [[ ! -x "$CU/bin/nvcc.real" ]]; then mv "$CU/bin/nvcc" "$CU/bin/nvcc.real"; fi
KERNELS_SRC=$(REGISTRY_SRC candle-kernels-0.11.1)
if [[ -n "$KERNELS_SRC" && ! -f "$LINK/moe_stub.o" ]]; then
  { echo '#include <stdlib.h>'
    grep -o 'pub fn [A-Za-z0-9_]*' "$KERNELS_SRC/src/ffi.rs" | awk '{print $3}' | sort -u \
      | awk '{print "void " $1 "(void) { abort(); }"}'; } > "$LINK/moe_stub.c"
  gcc -c -fPIC -O1 -o "$LINK/moe_stub.o" "$LINK/moe_stub.c"
fi
cat > "$CU/bin/nvcc" <<WRAP
#!/usr/bin/env bash
# ovbench build-cuda.sh wrapper (see there). Real compiler: nvcc.real
real="\$(dirname "\$0")/nvcc.real"
if [[ "\${OVBENCH_REAL_MOE:-0}" != 1 ]]; then
  out=""; src=""; lib=0; prev=""
  for a in "\$@"; do
    [[ "\$prev" == "-o" ]] && out="\$a"
    [[ "\$a" == "--lib" ]] && lib=1
    case "\$a" in *moe/*.cu|*mmq_gguf/*.cu|*mmvq_gguf.cu) src="\$a";; esac
    prev="\$a"
  done
  if [[ -n "\$src" && -n "\$out" ]]; then
    if [[ "\$src" == *mmvq_gguf.cu ]]; then cp "$LINK/moe_stub.o" "\$out"
    else echo "" | gcc -x c -c -o "\$out" -; fi
    exit 0
  fi
  if [[ \$lib == 1 && "\$out" == *libmoe.a ]]; then
    shift 3; rm -f "\$out"; exec ar rcs "\$out" "\$@"
  fi
fi
exec "\$real" "\$@"
WRAP
chmod +x "$CU/bin/nvcc"

export PATH="$CU/bin:$PATH"
export CUDA_PATH="$CU" CUDA_ROOT="$CU" CUDA_TOOLKIT_ROOT_DIR="$CU"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH="$LINK${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$LINK"
nvcc --version | tail -2 >&2
# The GPU machine gets the binary without a git checkout: compile the source's commit and
# clean-tree state (tracked files outside results/) into it, for the records' provenance.
if OVBENCH_SOURCE_COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null); then
  export OVBENCH_SOURCE_COMMIT
  if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':(exclude)results') ]]; then
    export OVBENCH_SOURCE_DIRTY=true
  else
    export OVBENCH_SOURCE_DIRTY=false
  fi
  echo "build-cuda: source $OVBENCH_SOURCE_COMMIT (dirty: $OVBENCH_SOURCE_DIRTY)" >&2
fi
export RUSTFLAGS="$RUSTFLAGS --cfg ovbench_cuda_dynamic_loading"
# The patch rewrites Cargo.lock's candle-core entry: put the committed lock back afterwards.
cp Cargo.lock "$CUDA_DIR/Cargo.lock.committed"
trap 'cp "$CUDA_DIR/Cargo.lock.committed" "$ROOT/Cargo.lock"' EXIT
CARGO=(cargo --config "patch.crates-io.candle-core.path='$CORE'")
TARGET="$ROOT/target/cuda"
BIN="$TARGET/release/ovbench"
case "${1:-}" in
  test)
    shift
    nice -n 10 "${CARGO[@]}" test --workspace --release --features cuda --target-dir "$TARGET" "$@"
    ;;
  check)
    nice -n 10 "${CARGO[@]}" build --release --features cuda --target-dir "$TARGET" --bin ovbench
    ls -l "$BIN"
    cp "$CUDA_DIR/Cargo.lock.committed" "$ROOT/Cargo.lock"
    bash "$ROOT/scripts/check-cuda-binary.sh" "$BIN"
    ;;
  *)
    nice -n 10 "${CARGO[@]}" build --release --features cuda --target-dir "$TARGET" --bin ovbench "$@"
    ls -l "$BIN"
    ;;
esac
