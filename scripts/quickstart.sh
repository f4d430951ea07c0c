#!/usr/bin/env bash
# The first ten minutes: set up, build, train on the embedded sample corpus (or --corpus PATH),
# then complete a few lines. Re-running reuses the build and the checkpoint unless --retrain.
#
#   scripts/quickstart.sh                         # sample corpus, 4 minutes of training
#   scripts/quickstart.sh --corpus ~/data/Game_of_Thrones_Script.csv --time-budget 10m
#   scripts/quickstart.sh --retrain               # train again from scratch
set -euo pipefail
cd "$(dirname "$0")/.."

corpus="" budget="4m" retrain=0 bin_dir="" run_dir="runs"
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus) corpus="$2"; shift 2 ;;
    --time-budget) budget="$2"; shift 2 ;;
    --retrain) retrain=1; shift ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;   # use binaries already built here (skips set-up and build)
    --run-dir) run_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*"; }

if [ -z "$bin_dir" ]; then
  step "1/4 set-up: Debian packages (LibTorch, sentencepiece, OpenBLAS, ...)"
  scripts/setup.sh
  step "2/4 build (Release) into build/"
  scripts/build.sh
  bin_dir=build/bin
else
  step "1-2/4 using binaries in $bin_dir"
fi

mkdir -p "$run_dir"
name=sample
[ -n "$corpus" ] && name=$(basename "${corpus%.*}")
ckpt="$run_dir/$name.pt"
if [ -f "$ckpt" ] && [ $retrain -eq 0 ]; then
  step "3/4 reusing the trained checkpoint $ckpt (pass --retrain to train again)"
else
  step "3/4 training for $budget on ${corpus:-the embedded sample corpus (data/sample/)} -> $ckpt"
  args=(--out "$ckpt" --time-budget "$budget" --eval-every 100)
  if [ -n "$corpus" ]; then
    args+=(--corpus "$corpus")
  else
    # 250 lines are far too few for the default 4,096-token vocabulary (it memorises whole
    # lines): a near-character vocabulary and dropout generalise better on the stand-in.
    args+=(--vocab-size 512 --dropout 0.2)
  fi
  "$bin_dir/dracarys-train" "${args[@]}"
fi
# The latest checkpoint: on a small corpus it knows the lines best. The one with the lowest
# validation loss is kept beside it as $name.best.pt.

step "4/4 completing lines with $ckpt"
for prompt in "cersei lannister: When you play the game of thrones, you" \
              "tyrion lannister: I drink" \
              "jon snow: The snows are"; do
  "$bin_dir/dracarys-infer" -c "$ckpt" -p "$prompt" --greedy -n 40 2>/dev/null
done
echo
echo "Sampled (temperature 0.8, top-k 40, three seeds):"
"$bin_dir/dracarys-infer" -c "$ckpt" --speaker "arya stark" -p "" --top-k 40 --num-samples 3 -n 40 2>/dev/null
echo
echo "Checkpoint: $ckpt. Try: $bin_dir/dracarys-infer -c $ckpt   (interactive; Ctrl-D ends)"
