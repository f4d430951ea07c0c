#!/usr/bin/env bash
# Sets up, checks formatting and the house rules, builds every target with UndefinedBehavior-
# Sanitizer (into build-test/, apart from scripts/build.sh's build/), runs AddressSanitizer on
# the raw-memory code and a short fuzzing run, then every test. This is the command CI runs.
# --quick skips AddressSanitizer and fuzzing; other arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then quick=1; else args+=("$a"); fi
done
# Each part's time is printed as it ends (the README's "Tests" section lists typical figures).
began=$SECONDS
took() { echo "test.sh: $1 took $((SECONDS - began)) s"; began=$SECONDS; }
export BUILD_DIR=${BUILD_DIR:-build-test}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
scripts/setup.sh; took setup
scripts/lint.sh; took lint                                 # a formatting difference or a house-rule breach fails CI
# -O1: a third less compile time than -O3; the tests spend theirs in LibTorch, compiled already.
# UNITY: each target's sources compiled a few at a time as one, which instantiates LibTorch's
# templates once per batch instead of once per source.
OPTIMIZE="-O1 -DNDEBUG" UNITY=ON SANITIZE=undefined WERROR=ON scripts/build.sh; took build  # a warning in our code fails CI
if [ "$quick" = 0 ]; then
  scripts/sanitize.sh; took address-sanitizer
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"; took fuzzing
fi
# The whole suite last, so its summary closes the output. Setup installed every optional piece
# (npm packages, Chromium, ...): a test that would skip for a missing one fails here instead.
export DRACARYS_REQUIRE_OPTIONAL=1
cd "$BUILD_DIR"
ctest --output-on-failure -j 2 "${args[@]}"
took tests
