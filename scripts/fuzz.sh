#!/usr/bin/env bash
# Fuzzes every input reader of ovbench (the `ovbench-fuzz` workspace member), one target after
# the other, and prints executions and findings per target (docs/hostile-input.md).
#
#   bash scripts/fuzz.sh                 # every target, 600 s each (the long pass)
#   bash scripts/fuzz.sh 6               # every target, 6 s each (CI's short pass)
#   bash scripts/fuzz.sh 60 record tokenizer
#
# Environment: FUZZ_SEED (default 1), FUZZ_OUT (default target/fuzz), FUZZ_NICE=1 to run at the
# lowest CPU priority (for a shared machine), CARGO (default cargo).
# Exit status: 0 no finding, 1 a finding (inputs and messages under $FUZZ_OUT/findings), 2 an
# error of the fuzzer itself.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(all)
out="${FUZZ_OUT:-target/fuzz}"
cargo="${CARGO:-cargo}"

$cargo build --release -p ovbench-fuzz
bin="${CARGO_TARGET_DIR:-target}/release/ovbench-fuzz"
nice_cmd=()
[ "${FUZZ_NICE:-0}" = 1 ] && nice_cmd=(nice -n 19)

rm -rf "$out"
mkdir -p "$out"
echo "fuzz: ${secs} s per target, seed ${FUZZ_SEED:-1}, findings under $out/findings"
set +e
"${nice_cmd[@]}" "$bin" run "${targets[@]}" --secs "$secs" --seed "${FUZZ_SEED:-1}" --out "$out"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    for f in "$out"/findings/*/*.txt; do
        [ -e "$f" ] && { echo "--- $f"; head -20 "$f"; }
    done
fi
exit "$rc"
