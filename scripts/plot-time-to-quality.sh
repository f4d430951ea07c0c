#!/usr/bin/env bash
# Time to quality: validation bits per character against minutes of training, one line per run,
# from the metrics files the runs wrote (CHECKPOINT.metrics.jsonl). Runs on the same corpus and
# seed score the same validation text at every evaluation, so the lines compare directly.
#   scripts/plot-time-to-quality.sh OUT.png LABEL=RUN.metrics.jsonl [LABEL=RUN.metrics.jsonl ...]
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,5p "$0" >&2; exit 2; }
out=$1
shift
command -v gnuplot >/dev/null || { echo "plot-time-to-quality: gnuplot is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
plots=()
i=0
for run in "$@"; do
  label=${run%%=*} file=${run#*=}
  [ -f "$file" ] || { echo "plot-time-to-quality: $file not found" >&2; exit 1; }
  node -e '
    for (const line of require("fs").readFileSync(process.argv[1], "utf8").split("\n"))
      if (line.trim()) { const j = JSON.parse(line); if (j.val_bpc !== undefined) console.log(`${j.time_s / 60}\t${j.val_bpc}`); }' \
    "$file" > "$work/$i.tsv"
  plots+=("\"$work/$i.tsv\" using 1:2 with linespoints title \"$label\"")
  i=$((i + 1))
done
{
  echo 'set terminal pngcairo size 900,520 noenhanced'
  echo "set output \"$out\""
  echo 'set title "Time to quality: validation bits per character"'
  echo 'set xlabel "minutes of training"'
  echo 'set ylabel "validation bits/char (lower is better)"'
  echo 'set grid'
  echo 'set key top right'
  printf 'plot %s\n' "$(IFS=,; echo "${plots[*]}")"
} | gnuplot
echo "wrote $out"
