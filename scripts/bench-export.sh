#!/usr/bin/env bash
# dracarys against llama.cpp on the same model: exports CKPT as f32, f16 and Q8_0 GGUF files,
# then measures held-out bits per character and generation tokens/s of each in llama.cpp
# (node-llama-cpp's prebuilt CPU build, tests/llama/measure.mjs) and of the checkpoint in
# dracarys-infer, all on THREADS threads (default 1). dracarys is measured first and last, so a
# machine that changes speed during the run shows in its two figures.
#   scripts/bench-export.sh CKPT HELDOUT.txt [THREADS]
# Needs a Release build (scripts/build.sh) and tests/llama's npm packages (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,8p "$0" >&2; exit 2; }
ckpt=$1 heldout=$2 threads=${3:-1}
bin=${BIN_DIR:-build/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

dracarys_generation() {
  "$bin/dracarys-infer" -c "$ckpt" --benchmark --benchmark-tokens 64 --threads "$threads" 2>/dev/null |
    tail -1 | node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(j.gen_tokens_per_s.toFixed(0))'
}

score=$("$bin/dracarys-infer" -c "$ckpt" --score "$heldout" --json --threads "$threads" 2>/dev/null)
chars=$(node -e 'console.log(JSON.parse(process.argv[1]).chars)' "$score")
first=$(dracarys_generation)
rows=()
for type in f32 f16 q8_0; do
  "$bin/dracarys-export" -c "$ckpt" -o "$work/$type.gguf" --type "$type" --no-modelfile 2>/dev/null
  m=$(node tests/llama/measure.mjs "$work/$type.gguf" "$heldout" "$threads")
  rows+=("$(node -e '
    const m = JSON.parse(process.argv[1]), size = require("fs").statSync(process.argv[2]).size;
    console.log(`| llama.cpp, ${process.argv[3]} | ${(size / 2 ** 20).toFixed(1)} MiB | ${(m.bits / process.argv[4]).toFixed(4)} | ${m.gen_tokens_per_s.toFixed(0)} |`)' \
    "$m" "$work/$type.gguf" "$type" "$chars")")
done
last=$(dracarys_generation)
echo "| model | file | held-out bits/char | generation tokens/s ($threads thread(s)) |"
echo "| --- | ---: | ---: | ---: |"
node -e '
  const s = JSON.parse(process.argv[1]), size = require("fs").statSync(process.argv[2]).size;
  console.log(`| dracarys-infer, f32 | ${(size / 2 ** 20).toFixed(1)} MiB (checkpoint) | ${s.bits_per_char.toFixed(4)} | ${process.argv[3]} and ${process.argv[4]} (first, last) |`)' \
  "$score" "$ckpt" "$first" "$last"
printf '%s\n' "${rows[@]}"
