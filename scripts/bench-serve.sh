#!/usr/bin/env bash
# dracarys-serve under load on loopback, batched against unbatched, f32 against int8 weights,
# interleaved in one run: for 1, 8, 32 and 64 concurrent streaming clients, the server as it is
# (continuous batching) and with --no-batching (each request alone on its own core, as the
# server was before batching), each with --weights f32 and q8, alternately, twice each. Every
# request streams 64 tokens. Prints a table of generated tokens/s, time to first token (median
# and 99th percentile) and errors, with the machine's measured matrix-multiply peak.
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
peak=$($BIN/dracarys-train --benchmark 2>/dev/null | tail -1 | python3 -c \
  'import json,sys; print("%.0f" % (json.loads(sys.stdin.read())["peak_flops_per_s"] / 1e9))')
for round in 1 2; do
  for clients in 1 8 32 64; do
    for mode in batched unbatched "batched q8" "unbatched q8"; do
      args=()
      case "$mode" in
        batched) args=(--server-args=--parallel,64) ;;
        unbatched) args=(--server-args=--no-batching) ;;
        "batched q8") args=(--server-args=--parallel,64,--weights,q8) ;;
        "unbatched q8") args=(--server-args=--no-batching,--weights,q8) ;;
      esac
      echo "== round $round: $clients client(s), $mode" >&2
      $BIN/dracarys-serve-load -c "$ckpt" --clients "$clients" --requests $((clients < 4 ? 16 : clients * 4)) \
        --tokens 64 --max-seconds 300 --log "$work/serve.log" "${args[@]}" "$@" | tail -1 |
        python3 -c 'import json,sys; j=json.loads(sys.stdin.read()); j["mode"]=sys.argv[1]; print(json.dumps(j))' \
          "$mode" >> "$work/runs.jsonl"
    done
  done
done
python3 - "$work/runs.jsonl" "$peak" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
print(f"measured matmul peak: {sys.argv[2]} GFLOP/s; every request streams 64 tokens")
print(f"{'clients':>7} {'server':>12} {'tokens/s (two runs)':>22} {'TTFT median ms':>16} {'TTFT p99 ms':>13} {'errors':>6}")
for clients in (1, 8, 32, 64):
    modes = ("batched", "unbatched", "batched q8", "unbatched q8")
    rows = {m: [r for r in runs if r["clients"] == clients and r["mode"] == m] for m in modes}
    for mode, rs in rows.items():
        tps = " / ".join(f"{r['generated_tokens_per_s']:,.0f}" for r in rs)
        med = " / ".join(f"{r['ttft_median_ms']:.0f}" for r in rs)
        p99 = " / ".join(f"{r['ttft_p99_ms']:.0f}" for r in rs)
        errors = sum(r["errors"] for r in rs)
        print(f"{clients:>7} {mode:>12} {tps:>22} {med:>16} {p99:>13} {errors:>6}")
    mean = lambda m: sum(r["generated_tokens_per_s"] for r in rows[m]) / max(1, len(rows[m]))
    print(f"{clients:>7} {'ratio':>12} {mean('batched') / mean('unbatched'):>21.2f}x batched over unbatched (f32); "
          f"{mean('batched q8') / mean('unbatched'):.2f}x batched q8 over unbatched f32")
PY
