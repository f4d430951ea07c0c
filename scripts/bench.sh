#!/usr/bin/env bash
# Performance figures, all measured in one run on this machine: the matrix-multiply peak,
# training throughput and MFU (default and reference configurations), inference speed with
# and without the KV cache, cold start, data preparation, and peak memory.
# Prints one JSON object per figure, then a table.
#
#   scripts/bench.sh              # about 2 minutes
#   scripts/bench.sh --quality    # also the 10-minute quality run (train on 90% of the script, score the rest)
set -euo pipefail
cd "$(dirname "$0")/.."
quality=0
[ "${1:-}" = "--quality" ] && quality=1

scripts/setup.sh >&2
scripts/build.sh >&2
BIN=build/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
json="$work/figures.jsonl"
emit() { echo "$1" | tee -a "$json"; }

# Training: the default configuration once; the reference configuration three times with each
# attention path, interleaved (fast, reference, fast, ...) so that a machine busy for a moment
# slows both alike. Each reference-configuration figure is the median of its three runs.
echo "== training throughput: default configuration" >&2
emit "$($BIN/dracarys-train --benchmark 2>/dev/null | tail -1 | sed 's/"benchmark":"train"/"benchmark":"train_default"/')"
echo "== training throughput: reference configuration (4 layers, 4 heads, d_model 256, d_ff 1024, context 128, batch 16, vocab 96, dropout 0), fast and reference attention interleaved" >&2
for repeat in 1 2 3; do
  for kernels in fast reference; do
    $BIN/dracarys-train --benchmark --layers 4 --heads 4 --d-model 256 --d-ff 1024 --context 128 \
      --batch-size 16 --vocab-size 96 --dropout 0 --kernels $kernels 2>/dev/null | tail -1 \
      | sed "s/\"benchmark\":\"train\"/\"benchmark\":\"train_reference_$kernels\"/" >>"$work/train_runs.jsonl"
  done
done
emit "$(python3 - "$work/train_runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(name, key):
    return statistics.median(r[key] for r in runs if r["benchmark"] == name)
fast = {k: med("train_reference_fast", k) for k in ("tokens_per_s", "model_flops_per_s", "mfu", "peak_flops_per_s_1024", "peak_flops_per_s_model_shape")}
fast["benchmark"] = "train_reference"
fast["tokens_per_s_reference_kernels"] = med("train_reference_reference", "tokens_per_s")
fast["mfu_reference_kernels"] = med("train_reference_reference", "mfu")
fast["fast_over_reference"] = fast["tokens_per_s"] / fast["tokens_per_s_reference_kernels"]
fast["repeats"] = len(runs) // 2
print(json.dumps(fast))
PY
)"

echo "== inference: a default-configuration checkpoint (a few steps on the sample corpus)" >&2
$BIN/dracarys-train --out "$work/default.pt" --max-steps 5 --eval-every 5 >/dev/null 2>&1
emit "$($BIN/dracarys-infer -c "$work/default.pt" --benchmark 2>/dev/null | tail -1)"
# Cold start: process start, checkpoint load and the first generated token, median of 5.
cold=$(for i in 1 2 3 4 5; do
  s=$(date +%s%N); $BIN/dracarys-infer -c "$work/default.pt" -p "jon snow:" -n 1 --greedy >/dev/null 2>&1; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
done | sort -n | sed -n 3p)
emit "{\"benchmark\":\"infer_cold_start\",\"cold_start_ms\":$cold}"

corpus=../shared/data/got/got_script_s1-8.csv
if [ -f "$corpus" ]; then
  echo "== data: tokenizer training and tokenisation of $corpus" >&2
  emit "$($BIN/dracarys-train --corpus "$corpus" --data-only --out "$work/x.pt" 2>/dev/null | tail -1)"
else
  echo "== data: $corpus not present, skipped" >&2
fi

if [ $quality -eq 1 ] && [ -f "$corpus" ]; then
  echo "== quality: 10 minutes on the first 90% of the script, scored on the last 10%" >&2
  python3 scripts/quality-split.py "$corpus" "$work/q" >&2
  $BIN/dracarys-train --corpus "$work/q/train.txt" --out "$work/q.pt" --time-budget 10m >&2
  best="$work/q.best.pt"; [ -f "$best" ] || best="$work/q.pt"
  emit "$($BIN/dracarys-infer -c "$best" --score "$work/q/heldout.txt" --json 2>/dev/null | sed 's/^{/{"benchmark":"quality",/')"
fi

python3 - "$json" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        j = json.loads(line)
        rows[j["benchmark"]] = j
def g(name, key, scale=1.0, fmt="{:.1f}"):
    v = rows.get(name, {}).get(key)
    return "-" if v is None else fmt.format(v * scale)
t = [("machine peak, 1024x1024x1024 matmul", g("train_reference", "peak_flops_per_s_1024", 1e-9), "GFLOP/s"),
     ("machine peak, model-shaped matmul", g("train_reference", "peak_flops_per_s_model_shape", 1e-9), "GFLOP/s"),
     ("train, reference config", g("train_reference", "tokens_per_s", fmt="{:.0f}"), "tokens/s"),
     ("train, reference config, model FLOP/s", g("train_reference", "model_flops_per_s", 1e-9), "GFLOP/s"),
     ("train, reference config, MFU", g("train_reference", "mfu", 100), "%  (target >= 70)"),
     ("train, reference config, reference attention", g("train_reference", "tokens_per_s_reference_kernels", fmt="{:.0f}"), "tokens/s"),
     ("train, fast attention over reference", g("train_reference", "fast_over_reference", fmt="{:.2f}"), "x  (target >= 1.3)"),
     ("train, default config", g("train_default", "tokens_per_s", fmt="{:.0f}"), "tokens/s"),
     ("train, default config, MFU", g("train_default", "mfu", 100), "%"),
     ("train, default config, peak memory", g("train_default", "peak_rss_mb", fmt="{:.0f}"), "MB  (target < 2048)"),
     ("infer, load", g("infer", "load_s", 1e3, "{:.0f}"), "ms"),
     ("infer, prompt", g("infer", "prompt_tokens_per_s", fmt="{:.0f}"), "tokens/s"),
     ("infer, generation with KV cache", g("infer", "gen_tokens_per_s", fmt="{:.0f}"), "tokens/s  (target >= 500)"),
     ("infer, generation, reference step", g("infer", "gen_tokens_per_s_reference", fmt="{:.0f}"), "tokens/s"),
     ("infer, fast step over reference", g("infer", "fast_over_reference", fmt="{:.2f}"), "x  (target >= 4)"),
     ("infer, generation without cache", g("infer", "gen_tokens_per_s_nocache", fmt="{:.0f}"), "tokens/s"),
     ("infer, cache speed-up at 256 tokens", g("infer", "cache_speedup", fmt="{:.1f}"), "x  (target >= 8)"),
     ("infer, cold start to first token", g("infer_cold_start", "cold_start_ms", fmt="{:.0f}"), "ms  (target < 1000)"),
     ("infer, peak memory", g("infer", "peak_rss_mb", fmt="{:.0f}"), "MB  (target < 400)"),
     ("data, tokenizer training (script CSV)", g("data", "tokenizer_train_s", fmt="{:.2f}"), "s"),
     ("data, tokenisation (script CSV)", g("data", "tokenize_chars_per_s", 1e-6, "{:.2f}"), "M chars/s"),
     ("quality, held-out bits per character", g("quality", "bits_per_char", fmt="{:.3f}"), "(target <= 1.35)")]
print()
print(f"{'figure':44} {'value':>10}  unit")
for name, value, unit in t:
    print(f"{name:44} {value:>10}  {unit}")
PY
