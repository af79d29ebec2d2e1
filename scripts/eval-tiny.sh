#!/usr/bin/env bash
# The tiny end-to-end run of `ovbench eval` that the README quotes.
#
# Writes the random-weight fixtures (OpenCLIP tower as a PyTorch zip checkpoint, LLaVA
# projector, two-layer Llama with its tokenizer.json, OCRBench in its JSON layout with
# generated images), then runs OCRBench with the task's own settings (128 new tokens,
# greedy) REPEATS times with the response cache and REPEATS times without it, interleaved,
# and once more over a full cache. Prints one line per run and the medians.
#
# Needs: a Rust toolchain, jq. Usage: scripts/eval-tiny.sh [OUT_DIR]  (default results/eval-tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/eval-tiny}
QUESTIONS=${QUESTIONS:-16}
REPEATS=${REPEATS:-3}
BIN=target/release/ovbench
cargo build --release -q
# The fixtures are regenerated (seeded, identical every time) in the git-ignored scratch folder.
FX=${FX:-results/scratch/eval-tiny-fx}
rm -rf "$OUT" "$FX"
mkdir -p "$OUT"
"$BIN" eval-fixture --out "$FX" --questions "$QUESTIONS" >/dev/null
common=(eval --task ocrbench --data "$FX/data/ocrbench/json/OCRBench.json"
        --encoder "$FX/models/encoder/open_clip_pytorch_model.bin"
        --projector "$FX/models/projector/mm_projector.bin" --llm "$FX/models/llm" --quiet)

summary() { # record label
  jq -r --arg l "$2" '[$l, .counts.computed, .counts.from_cache, .throughput.new_tokens,
      (.throughput.decode_tokens_per_s*10|round/10), (.throughput.prefill_tokens_per_s|round),
      (.timing_s.image_encoding*1000|round), (.timing_s.prefill*1000|round), (.timing_s.decode*1000|round),
      (.timing_s.loop*1000|round), (.timing_s.cache_bookkeeping*1000*100|round/100),
      (.memory.peak_bytes_over_start/1048576*10|round/10), (.memory.peak_rss_bytes/1048576|round)] | @tsv' "$1"
}
record_of() { sed -n 's/^record: *//p'; }

printf 'run\tcomputed\tcached\tnew_tokens\tdecode_tok/s\tprefill_tok/s\tencode_ms\tprefill_ms\tdecode_ms\tloop_ms\tcache_ms\tpeak_alloc_MiB\tpeak_rss_MiB\n' | tee "$OUT/runs.tsv"
for i in $(seq 1 "$REPEATS"); do
  r=$("$BIN" "${common[@]}" --out "$OUT/cache-$i" | record_of); summary "$r" "cache-$i" | tee -a "$OUT/runs.tsv"
  r=$("$BIN" "${common[@]}" --out "$OUT/nocache-$i" --no-cache | record_of); summary "$r" "nocache-$i" | tee -a "$OUT/runs.tsv"
done
r=$("$BIN" "${common[@]}" --out "$OUT/cache-1" | record_of); summary "$r" "cache-1-rerun" | tee -a "$OUT/runs.tsv"

echo
echo "medians over $REPEATS runs each:"
awk -F'\t' 'NR>1 && $1 !~ /rerun/ { split($1,a,"-"); k=a[1]; n[k]++; tok[k,n[k]]=$5; loop[k,n[k]]=$10; cm[k,n[k]]=$11; mem[k,n[k]]=$12; rss[k,n[k]]=$13 }
  function med(arr,k,c,  i,j,t,v){ for(i=1;i<=c;i++) v[i]=arr[k,i]; for(i=1;i<=c;i++) for(j=i+1;j<=c;j++) if (v[j]+0<v[i]+0){t=v[i];v[i]=v[j];v[j]=t}; return v[int((c+1)/2)] }
  END { for (k in n) printf "%-8s decode %s tok/s, loop %s ms, cache bookkeeping %s ms, peak allocator %s MiB, peak RSS %s MiB\n", k, med(tok,k,n[k]), med(loop,k,n[k]), med(cm,k,n[k]), med(mem,k,n[k]), med(rss,k,n[k]) }' "$OUT/runs.tsv"
