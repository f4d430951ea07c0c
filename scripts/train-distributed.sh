#!/usr/bin/env bash
# Starts N local ranks of dracarys-train that train one model together (c10d, Gloo on CPU).
#
#   scripts/train-distributed.sh --nproc 2 -- --corpus ~/data/Game_of_Thrones_Script.csv --out got.pt
#
# Options before "--": --nproc N (default 2), --port P (default 29500), --threads T (BLAS
# threads per rank; default: cores / N), --bin PATH (dracarys-train to run). Everything after
# "--" goes to every rank. Rank 0 writes the checkpoint, metrics and progress. If a rank fails,
# the others are stopped. It needs nothing but a shell; torchrun and srun start the same ranks
# with the same weights bit for bit, and torchrun --max_restarts with --resume auto restarts a
# group that lost a rank (docs/distributed.md, "Launchers"). On several machines, run
# dracarys-train on each with the same --world-size, --master-addr and --master-port and its
# own --rank.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
nproc_=2 port=29500 threads="" bin="$root/build/bin/dracarys-train"
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) nproc_="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "train-distributed: unknown option $1 (options before --, trainer flags after it)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "train-distributed: $bin not found; run scripts/build.sh first" >&2; exit 1; }
[ -n "$threads" ] || threads=$(( $(nproc) / nproc_ > 0 ? $(nproc) / nproc_ : 1 ))

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap 'cleanup; exit 130' INT TERM
for ((r = 0; r < nproc_; r++)); do
  WORLD_SIZE=$nproc_ RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$bin" --threads "$threads" "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do
  if ! wait "$p"; then status=1; cleanup; fi
done
exit $status
