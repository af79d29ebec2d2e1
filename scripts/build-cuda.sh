#!/usr/bin/env bash
# Build target/cuda/release/ovbench with the `cuda` feature on a machine WITHOUT a GPU.
#
# - nvcc 13.0 and the CUDA libraries come from PyPI wheels, pinned to 13.0 (driver 580 = CUDA 13.0),
#   unpacked into .cuda/ (gitignored) once and reused.
# - libcuda.so.1 is not shipped by any wheel: a stub with the driver symbols cudarc declares is built with gcc;
#   it only serves the link. The GPU machine's real driver library replaces it at run time.
# - A separate target dir (target/cuda) keeps the CPU build cache intact.
# Idempotent: re-running reuses .cuda/ and target/cuda. Usage: scripts/build-cuda.sh [extra cargo args]
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
  nvidia-cuda-nvrtc==13.0.88
  nvidia-curand==10.4.0.35
  nvidia-cublas==13.0.2.14
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

# Unversioned link names for the libraries cudarc links dynamically.
mkdir -p "$LINK"
link_one() { # name pattern
  local f; f=$(find "$PKGS/nvidia" -name "$2" -print -quit)
  [[ -n "$f" ]] || { echo "build-cuda: $2 not found in the wheels" >&2; exit 1; }
  ln -sfn "$f" "$LINK/$1"
}
link_one libcudart.so 'libcudart.so.13*'
link_one libcublas.so 'libcublas.so.13*'
link_one libcublasLt.so 'libcublasLt.so.13*'
link_one libnvrtc.so 'libnvrtc.so.13*'
link_one libcurand.so 'libcurand.so.10*'

# Stub libcuda.so(.1): every cu* function cudarc's driver bindings declare, as an empty symbol.
CUDARC_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 2>/dev/null | head -1 || true)
if [[ ! -f "$LINK/libcuda.so.1" ]]; then
  [[ -n "$CUDARC_SRC" ]] || { cargo fetch --quiet; CUDARC_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10 | head -1); }
  grep -o 'pub unsafe fn cu[A-Za-z0-9_]*' "$CUDARC_SRC/src/driver/sys/mod.rs" | awk '{print $4}' | sort -u \
    | awk '{print "int " $1 "(void) { return 999; }"}' > "$LINK/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$LINK/libcuda.so.1" "$LINK/cuda_stub.c"
  ln -sfn libcuda.so.1 "$LINK/libcuda.so"
fi

# candle-kernels also builds a static library of quantized-MoE / GGUF kernels (15 heavy .cu
# files, tens of minutes of nvcc on a small machine) that no ovbench model calls. An nvcc
# wrapper replaces those objects with a host stub whose functions abort if ever called; the
# PTX kernels that candle's tensor ops use are compiled by the real nvcc, unchanged.
# OVBENCH_REAL_MOE=1 compiles the real library instead.
if [[ ! -x "$CU/bin/nvcc.real" ]]; then mv "$CU/bin/nvcc" "$CU/bin/nvcc.real"; fi
KERNELS_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/candle-kernels-0.11.1 2>/dev/null | head -1 || true)
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
nice -n 10 cargo build --release --features cuda --target-dir "$ROOT/target/cuda" --bin ovbench "$@"
ls -l "$ROOT/target/cuda/release/ovbench"
