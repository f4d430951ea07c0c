#!/usr/bin/env bash
# dracarys-serve under load on loopback: 32 concurrent streaming clients, a fixed number of
# requests (bounded in time too). Prints requests/s, generated tokens/s, time to first token
# (median, 99th percentile), errors and the server's memory after the warm-up and after the
# load, beside the machine's measured matrix-multiply peak.
#
#   scripts/bench-serve.sh [CHECKPOINT] [-- more dracarys-serve-load options]
# Without a checkpoint it trains a default-shape model for a few steps on the sample corpus
# (the speed does not depend on how well it is trained).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
scripts/build.sh >&2
BIN=build/bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ckpt=${1:-}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
if [ -z "$ckpt" ]; then
  echo "== a default-shape checkpoint (a few steps on the sample corpus)" >&2
  ckpt="$work/default.pt"
  $BIN/dracarys-train --out "$ckpt" --max-steps 5 --eval-every 5 >/dev/null 2>&1
fi
echo "== the machine's matrix-multiply peak" >&2
$BIN/dracarys-train --benchmark 2>/dev/null | tail -1 | python3 -c \
  'import json,sys; j=json.loads(sys.stdin.read()); print("measured matmul peak: %.0f GFLOP/s" % (j["peak_flops_per_s"] / 1e9))'
echo "== 32 concurrent streaming clients, 256 requests of 64 tokens" >&2
$BIN/dracarys-serve-load -c "$ckpt" --clients 32 --requests 256 --tokens 64 --max-seconds 300 \
  --log "$work/serve.log" "$@"
