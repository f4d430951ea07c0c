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
# Each part's time is printed as it ends (the README's "Building by hand" lists typical figures).
began=$SECONDS
took() { echo "test.sh: $1 took $((SECONDS - began)) s"; began=$SECONDS; }
scripts/setup.sh; took setup
scripts/lint.sh; took lint                          # a formatting difference fails CI
WERROR=ON scripts/build.sh; took build              # and so does a compiler warning in our code
if [ "$quick" = 0 ]; then
  scripts/sanitize.sh; took sanitizers
  scripts/fuzz.sh "${FUZZ_SECONDS:-15}"; took fuzzing
fi
# The whole suite last, so its summary closes the output.
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j 2 "${args[@]}"
took tests
