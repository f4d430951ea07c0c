#!/usr/bin/env bash
# Two ranks on two "hosts": network namespaces joined by a veth pair, the link shaped by tc's
# token bucket (tbf) to 1 Gbit/s and 100 Mbit/s. For each link, `dracarys-train --benchmark`
# (the reference configuration, batch 16 per rank, one thread per rank) with the all-reduce
# after the backward pass (--no-overlap) and behind it, interleaved; then --grad-accum on the
# slowest link. Prints a table. Needs root, `ip` and `tc`, and a Release build.
#   scripts/bench-distributed.sh [WINDOWS]      (timed windows per run, default 3)
#   FLAGS="--batch-size 16" scripts/bench-distributed.sh   adds trainer flags to every run
#   ROWS=overlap scripts/bench-distributed.sh   only the overlapped all-reduce, unshaped and at
#                                               1 Gbit/s in turn, three times each (what the
#                                               1 Gbit/s link adds to the step)
set -euo pipefail
cd "$(dirname "$0")/.."
windows=${1:-3}
train=$PWD/${BIN_DIR:-build/bin}/dracarys-train
a=drcbench$$a b=drcbench$$b la=drcb$$A lb=drcb$$B
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add "$la" type veth peer name "$lb"
ip link set "$la" netns "$a"
ip link set "$lb" netns "$b"
ip -n "$a" addr add 10.231.0.1/24 dev "$la"
ip -n "$b" addr add 10.231.0.2/24 dev "$lb"
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set "$la" up
ip -n "$b" link set "$lb" up

shape() {  # rate, or "none"
  for pair in "$a $la" "$b $lb"; do
    set -- $pair
    tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
    [ "$rate" = none ] || tc -n "$1" qdisc add dev "$2" root tbf rate "$rate" burst 1mb latency 100ms
  done
}

port=29700
bench() {  # extra options; prints rank 0's JSON line
  port=$((port + 1))
  local args=(--benchmark --benchmark-windows "$windows" --threads 1 --world-size 2 --master-addr 10.231.0.1
              --master-port "$port" ${FLAGS:-} "$@")
  ip netns exec "$b" "$train" "${args[@]}" --rank 1 >/dev/null 2>&1 &
  ip netns exec "$a" "$train" "${args[@]}" --rank 0 2>/dev/null | tail -1
  wait
}

row() {  # link, how, JSON
  node -e '
    const j = JSON.parse(process.argv[3]);
    console.log(`| ${process.argv[1]} | ${process.argv[2]} | ${j.tokens_per_s.toFixed(0)} | ${j.allreduce_ms_per_step.toFixed(0)} ms | ${j.step_s.toFixed(2)} s | ${(100 * j.mfu).toFixed(0)}% |`)' \
    "$1" "$2" "$3"
}

echo "| link | all-reduce | tokens/s (2 ranks) | all-reduce wait per step | step | MFU |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
if [ "${ROWS:-}" = overlap ]; then
  for _ in 1 2 3; do
    for rate in none 1gbit; do
      shape
      row "$([ "$rate" = none ] && echo "veth, unshaped" || echo "$rate")" "behind backward" "$(bench)"
    done
  done
  exit 0
fi
for rate in none 1gbit 100mbit; do
  shape
  label=$([ "$rate" = none ] && echo "veth, unshaped" || echo "$rate")
  row "$label" "after backward (--no-overlap)" "$(bench --no-overlap)"
  row "$label" "behind backward" "$(bench)"
  row "$label" "after backward (--no-overlap), again" "$(bench --no-overlap)"
done
for n in 2 4; do
  row "100mbit" "behind backward, --grad-accum $n (batch $((16 * n)) per rank)" "$(bench --grad-accum $n)"
done
