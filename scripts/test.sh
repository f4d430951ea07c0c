#!/usr/bin/env bash
# Sets up, checks formatting, builds, runs the sanitizer builds and a short fuzzing run, then
# every test. This is the command CI runs. --quick skips the sanitizers and fuzzing; other
# arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then quick=1; else args+=("$a"); fi
done
scripts/setup.sh
scripts/lint.sh                 # a formatting difference fails CI
WERROR=ON scripts/build.sh      # and so does a compiler warning in the project's code
if [ "$quick" = 0 ]; then
  scripts/sanitize.sh
  scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
fi
# The whole suite last, so its summary closes the output.
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j 2 "${args[@]}"
