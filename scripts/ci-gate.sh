#!/usr/bin/env bash
# CI regression gate: runs the default `ovbench step` job (Ti/16, 112 px, batch 8, both
# recipes; about a minute on 2 cores) and gates it against the committed baseline on its
# deterministic metrics only: parameter counts, kept tokens, FLOPs per image and host
# allocator peak bytes (tolerances in scripts/ci-gate.toml). Timed metrics are not gated:
# wall-clock time on a shared CI machine is too noisy to fail a build on.
#
# results/baseline/ holds one baseline per CPU model: allocator peaks are exact on one CPU but
# move by up to about 0.5 % between CPUs (the matrix kernels size their packing buffers by the
# caches). The baseline from this machine's CPU is gated exactly; on a CPU with none, the gate
# uses another CPU's with memory metrics within 1 % (--other-hardware-tolerance) and says so.
#
# Exit code: that of `ovbench gate`: 0 pass, 1 regression (or a changed deterministic
# metric), 2 unusable input. Any other failure (build, step run) exits non-zero too.
#
# Environment:
#   OVBENCH_BIN       use this ovbench binary instead of building target/release/ovbench
#   OVBENCH_BASELINE  baseline record or folder (default results/baseline)
#   OVBENCH_GATE_OUT  folder to keep the current record, markdown and JSON verdicts in
#
# Refresh the baseline of this machine's CPU after an intended change with (slug: the CPU model):
#   cargo run --release -- step --out results/baseline/step-default-<cpu>.json
set -euo pipefail
cd "$(dirname "$0")/.."

baseline=${OVBENCH_BASELINE:-results/baseline}
if [[ ! -e $baseline ]]; then
    echo "ci-gate: baseline $baseline not found" >&2
    exit 2
fi
if [[ -n ${OVBENCH_BIN:-} ]]; then
    bin=$OVBENCH_BIN
else
    cargo build --release --quiet --bin ovbench
    bin="${CARGO_TARGET_DIR:-target}/release/ovbench"
fi
out=${OVBENCH_GATE_OUT:-$(mktemp -d)}
mkdir -p "$out"

echo "ci-gate: running the default step job" >&2
"$bin" step --quiet --out "$out/step-current.json" >/dev/null

status=0
"$bin" gate \
    --baseline "$baseline" \
    --other-hardware-tolerance "${OVBENCH_OTHER_HW_TOLERANCE:-0.01}" \
    --current "$out/step-current.json" \
    --config scripts/ci-gate.toml \
    --only deterministic \
    --markdown "$out/gate.md" \
    --json "$out/gate.json" || status=$?
if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
    cat "$out/gate.md" >>"$GITHUB_STEP_SUMMARY"
fi
echo "ci-gate: ovbench gate exited $status (0 pass, 1 regression, 2 unusable input); outputs in $out" >&2
exit "$status"
