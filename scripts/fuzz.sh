#!/usr/bin/env bash
# Builds the libFuzzer targets (Debian's clang, with AddressSanitizer and UBSan) and runs each
# for a bounded time: the CSV, SubRip and text corpus readers, the checkpoint parser, the weights
# reader, the tokenizer model check, the probe file and dracarys-serve's request parsers.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60; CI runs it briefly)
# Seeds live in tests/fuzz/seeds/; what the fuzzers find new goes to build-fuzz/corpus/, and a
# crash, hang or leak stops the script with the input that caused it saved in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
OUT=${FUZZ_DIR:-build-fuzz}
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz: $CXX not found (scripts/setup.sh installs clang)" >&2; exit 1; }
mkdir -p "$OUT"
FLAGS=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.)
READERS=(data/corpus.cpp data/csv.cpp data/text.cpp)
build() {  # name, sources...
  local name=$1; shift
  "$CXX" "${FLAGS[@]}" "$@" -o "$OUT/$name"
}
build fuzz_csv -DFUZZ_FILE_NAME='"fuzz.csv"' -DDRACARYS_SAMPLE_DIR='"."' tests/fuzz/fuzz_corpus.cpp "${READERS[@]}" &
build fuzz_srt -DFUZZ_FILE_NAME='"fuzz.srt"' -DDRACARYS_SAMPLE_DIR='"."' tests/fuzz/fuzz_corpus.cpp "${READERS[@]}" &
build fuzz_text -DFUZZ_FILE_NAME='"fuzz.txt"' -DDRACARYS_SAMPLE_DIR='"."' tests/fuzz/fuzz_corpus.cpp "${READERS[@]}" &
build fuzz_checkpoint tests/fuzz/fuzz_checkpoint.cpp checkpoint/checkpoint_format.cpp checkpoint/json_input.cpp \
  model/config.cpp -lcrypto &
build fuzz_requests tests/fuzz/fuzz_requests.cpp serve/requests.cpp data/text.cpp &
build fuzz_tensors tests/fuzz/fuzz_tensor_file.cpp checkpoint/tensor_file.cpp checkpoint/json_input.cpp &
build fuzz_tokenizer tests/fuzz/fuzz_tokenizer_model.cpp data/tokenizer_model_check.cpp data/text.cpp &
build fuzz_probe tests/fuzz/fuzz_probe.cpp checkpoint/probe_file.cpp checkpoint/json_input.cpp checkpoint/output_files.cpp \
  data/corpus.cpp data/csv.cpp data/text.cpp model/config.cpp -DDRACARYS_SAMPLE_DIR='"."' &
wait

# Each target alone for SECONDS_PER_TARGET; as many run side by side as there are cores.
fuzz_one() {  # target; prints its line, returns non-zero on a finding
  local target=$1
  mkdir -p "$OUT/corpus/$target"
  # -rss_limit_mb: a reader that balloons is a finding; -timeout: so is one input taking 10 s.
  if ! (cd "$OUT" && ASAN_OPTIONS=detect_leaks=1 "./fuzz_$target" -max_total_time="$SECONDS_PER_TARGET" \
          -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1 \
          "corpus/$target" "../tests/fuzz/seeds/$target" > "fuzz_$target.log" 2>&1); then
    echo "fuzz: $target FAILED; see $OUT/fuzz_$target.log and the crash-* / leak-* / timeout-* input there" >&2
    tail -40 "$OUT/fuzz_$target.log" >&2
    return 1
  fi
  echo "fuzz: $target for ${SECONDS_PER_TARGET}s: $(grep -E "stat::number_of_executed_units|stat::peak_rss_mb" \
    "$OUT/fuzz_$target.log" | tr '\n' ' ')"
}

status=0
targets=(csv srt text checkpoint requests tensors tokenizer probe)
jobs_at_once=$(nproc)
for ((i = 0; i < ${#targets[@]}; i += jobs_at_once)); do
  pids=()
  for target in "${targets[@]:i:jobs_at_once}"; do
    fuzz_one "$target" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
done
exit $status
