#!/usr/bin/env bash
# Sets up, builds and runs every test, then the sanitizer builds and a short fuzzing run. This
# is the command CI runs. --quick runs the ctest suite only; other arguments go to ctest.
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
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j 2 "${args[@]}")
[ "$quick" = 1 ] && exit 0
scripts/sanitize.sh
scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
