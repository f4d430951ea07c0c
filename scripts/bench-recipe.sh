#!/usr/bin/env bash
# The learning-speed ablation: each candidate of the recipe trains for the same wall-clock
# budget on a quality split (scripts/quality-split.py), then dracarys-infer --score measures its
# held-out bits per character. Prints one Markdown row per candidate: steps made, training
# tokens/s (the run's own mean), held-out bits/char, and the sample completion of the seed line.
#   scripts/bench-recipe.sh SPLIT_DIR OUT_DIR BUDGET [NAME=FLAGS ...]
# SPLIT_DIR holds train.txt and heldout.txt; BUDGET is a duration (3m, 10m). In FLAGS, @split
# stands for SPLIT_DIR ("--corpus @split/subtitles.csv" adds the split's subtitles to train.txt).
# Without candidates it runs the first table of docs/learning-speed.md, each technique alone;
# with RECIPE=data, its ten-minute table of regularisation and data.
# Nothing else should run on the machine meanwhile: the budget is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,11p "$0" >&2; exit 2; }
split=$1 out=$2 budget=$3
shift 3
bin=${BIN_DIR:-build/bin}
[ -f "$split/train.txt" ] && [ -f "$split/heldout.txt" ] || { echo "bench-recipe: $split lacks train.txt or heldout.txt" >&2; exit 1; }
mkdir -p "$out"
candidates=("$@")
if [ ${#candidates[@]} -eq 0 ]; then
  # The first table of docs/learning-speed.md: the old default, then each technique alone.
  # Each option is given once (a second value is refused), so every row spells its flags out.
  plain="--dropout 0 --batch-size 16"
  candidates=(
    "old-default=--optimizer adamw --schedule cosine --positions sinusoidal --tied-head $plain"
    "muon=--optimizer muon --muon-weight-decay 0 --schedule cosine --positions sinusoidal --tied-head $plain"
    "rope=--optimizer adamw --schedule cosine --positions rope --tied-head $plain"
    "untied=--optimizer adamw --schedule cosine --positions sinusoidal --untied-head $plain"
    "wsd=--optimizer adamw --schedule wsd --positions sinusoidal --tied-head $plain"
    "qk-norm=--optimizer adamw --schedule cosine --positions sinusoidal --tied-head --qk-norm $plain"
    "relu2=--optimizer adamw --schedule cosine --positions sinusoidal --tied-head --activation relu2 $plain"
  )
  # RECIPE=data: the ten-minute table of the same page (run it with BUDGET 10m): the previous
  # default, its regularisation, the subtitles (SPLIT_DIR/subtitles.csv), the batch, the default.
  if [ "${RECIPE:-}" = data ]; then
    reg="--dropout 0.1 --muon-weight-decay 0.1 --dropout-from-epoch 0"
    candidates=(
      "previous-default=--dropout 0 --muon-weight-decay 0 --batch-size 16"
      "regularised=$reg --batch-size 16"
      "heavier=--dropout 0.1 --muon-weight-decay 0.5 --weight-decay 0.5 --dropout-from-epoch 0 --batch-size 16"
      "subtitles=$reg --batch-size 16 --corpus @split/subtitles.csv"
      "batch-32=$reg --batch-size 32"
      "default="
    )
  fi
fi
echo "| candidate | flags | steps in $budget | tokens/s | held-out bits/char |"
echo "| --- | --- | ---: | ---: | ---: |"
for c in "${candidates[@]}"; do
  name=${c%%=*} flags=${c#*=}
  flags=${flags//@split/$split}
  ckpt="$out/$name.pt"
  rm -f "$ckpt" "$ckpt.metrics.jsonl" "${ckpt%.pt}.best.pt"
  # shellcheck disable=SC2086
  "$bin/dracarys-train" --corpus "$split/train.txt" --out "$ckpt" --time-budget "$budget" --eval-every 100 $flags \
    > "$out/$name.log" 2>&1
  score=$("$bin/dracarys-infer" -c "${ckpt%.pt}.best.pt" --score "$split/heldout.txt" --json 2>/dev/null)
  node -e '
    const fs = require("fs");
    const rows = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    const last = rows[rows.length - 1], s = JSON.parse(process.argv[2]);
    const rates = rows.map(r => r.tokens_per_s).filter(x => x > 0);
    const mean = rates.reduce((a, b) => a + b, 0) / Math.max(1, rates.length);
    console.log(`| ${process.argv[3]} | \`${process.argv[4]}\` | ${last.step} | ${mean.toFixed(0)} | ${s.bits_per_char.toFixed(3)} |`)' \
    "$ckpt.metrics.jsonl" "$score" "$name" "$flags"
done
