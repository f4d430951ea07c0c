#!/usr/bin/env bash
# Configures (Release unless BUILD_TYPE says otherwise) and builds into build/ (BUILD_DIR);
# SANITIZE=undefined (or address,undefined) builds with sanitizers, as scripts/test.sh does;
# OPTIMIZE="-O1 -DNDEBUG" replaces the Release build's -O3, and UNITY=ON compiles several sources of
# a target as one (CMake's unity build: LibTorch's templates instantiated once, not in each),
# as scripts/test.sh's quicker build does. The
# programs land in build/bin/; `cmake --install build --prefix DIR` copies them to DIR/bin.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
generator=()
command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD_DIR/Makefile" ] && generator=(-G Ninja)
optimize=()
[ -n "${OPTIMIZE:-}" ] && optimize=(-DCMAKE_CXX_FLAGS_RELEASE="$OPTIMIZE")
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "${optimize[@]}" \
  -DDRACARYS_WERROR="${WERROR:-OFF}" -DDRACARYS_SANITIZE="${SANITIZE:-}" -DCMAKE_UNITY_BUILD="${UNITY:-OFF}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "build.sh: the programs are in $BUILD_DIR/bin/ (dracarys-train, dracarys-infer, dracarys-serve, dracarys-export)"
