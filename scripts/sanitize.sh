#!/usr/bin/env bash
# Builds with sanitizers and runs the tests of everything that reads outside bytes:
#   build-ubsan/  UndefinedBehaviorSanitizer on all targets; the data, tokenizer, checkpoint,
#                 option, bad-input and server tests (these run the real executables, plugin
#                 included)
#   build-asan/   AddressSanitizer (+ UBSan) on the targets that never load the tokenizer
#                 plugin (ASan refuses RTLD_DEEPBIND): the byte parsers and the model
# Any sanitizer report aborts the test that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
configure() {  # dir, sanitizers
  local generator=()
  command -v ninja >/dev/null 2>&1 && [ ! -f "$1/Makefile" ] && generator=(-G Ninja)
  # Unoptimised, with line tables: the build is what takes time here (the tests spend theirs
  # in LibTorch, which is not rebuilt), and the reports still name file and line.
  cmake -S . -B "$1" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
    -DDRACARYS_SANITIZE="$2" >/dev/null
}

export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
configure build-ubsan undefined
cmake --build build-ubsan -j "$jobs" --target dracarys-train dracarys-infer dracarys_spm test_formats test_data \
  test_cli test_untrusted_checkpoint test_bad_input test_outputs test_resume dracarys-serve dracarys-serve-load test_serve
(cd build-ubsan && ctest --output-on-failure -j 2 \
  -R '^(Corpus|CorpusText|Csv|Text|Split|Tokenizer|Batching|CheckpointFormat|JsonInput|OptionChecks|EscapeControl|UntrustedCheckpoint|BadInput|Outputs|Resume|Train|Serve)\.')

# LibTorch and OpenBLAS keep some allocations for the life of the process; those are theirs.
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
configure build-asan address,undefined
cmake --build build-asan -j "$jobs" --target test_formats test_model
(cd build-asan && ctest --output-on-failure -j 2 -R '^(CheckpointFormat|JsonInput|OptionChecks|CorpusText|Model)\.')
