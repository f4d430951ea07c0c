#!/usr/bin/env bash
# AddressSanitizer (+ UBSan) on the code that handles raw memory, in build-asan/: the byte
# parsers (checkpoint, weights, probe, JSON, corpus, tokenizer model) and the model with its
# hand-written one-token kernels. ASan refuses dlopen with RTLD_DEEPBIND, so nothing here loads
# the tokenizer plugin. (UBSan alone covers everything else: scripts/test.sh builds the whole
# tree with it and runs every test there.) Any report aborts the test that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
generator=()
command -v ninja >/dev/null 2>&1 && [ ! -f build-asan/Makefile ] && generator=(-G Ninja)
# Unoptimised, with line tables: building is what takes time here (the tests spend theirs in
# LibTorch, which is not rebuilt), and the reports still name file and line.
# A unity build, as scripts/test.sh's (scripts/build.sh says why).
cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" \
  -DDRACARYS_SANITIZE=address,undefined -DCMAKE_UNITY_BUILD=ON >/dev/null
# LibTorch and OpenBLAS keep some allocations for the life of the process; those are theirs.
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake --build build-asan -j "$(nproc)" --target test_formats test_model
(cd build-asan && ctest --output-on-failure -j 2 -R '^(CheckpointFormat|ProbeFile|JsonInput|OptionChecks|CorpusText|Model|CpuThreads)\.')
