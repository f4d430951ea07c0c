#!/usr/bin/env bash
# Turns a training metrics file (CHECKPOINT.metrics.jsonl) into a PNG loss curve with gnuplot.
#   scripts/plot-metrics.sh runs/sample.pt.metrics.jsonl [out.png]
set -euo pipefail
in=${1:?usage: plot-metrics.sh METRICS.jsonl [OUT.png]}
out=${2:-${in%.jsonl}.png}
[ -f "$in" ] || { echo "plot-metrics: $in not found" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot-metrics: gnuplot is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
tsv=$(mktemp)
trap 'rm -f "$tsv"' EXIT
python3 - "$in" > "$tsv" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.strip():
        j = json.loads(line)
        nan = float("nan")
        print(j["step"], j.get("train_loss", nan), j.get("val_loss", nan), j.get("val_bpc", nan), sep="\t")
PY
gnuplot <<GP
set terminal pngcairo size 900,500 noenhanced
set output "$out"
set title "dracarys training: $(basename "$in")"
set xlabel "step"
set ylabel "loss (nats/token)"
set y2label "validation bits/char"
set y2tics
set ytics nomirror
set grid
set key top right
set datafile missing "nan"
plot "$tsv" using 1:2 with linespoints title "train loss", \
     "$tsv" using 1:3 with linespoints title "validation loss", \
     "$tsv" using 1:4 axes x1y2 with linespoints title "validation bits/char"
GP
echo "wrote $out"
