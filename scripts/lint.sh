#!/usr/bin/env bash
# Formatting (clang-format, .clang-format) of every tracked C++ file: any difference fails.
#   scripts/lint.sh           check formatting (CI runs this)
#   scripts/lint.sh --fix     rewrite the files in the house style
#   scripts/lint.sh --tidy    also run clang-tidy (.clang-tidy) on the project's sources; it
#                             needs build/compile_commands.json (scripts/build.sh makes it) and
#                             takes minutes, as every file parses LibTorch's headers
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h')
case "${1:-}" in
  --fix) clang-format -i "${files[@]}"; exit 0 ;;
esac
clang-format --dry-run --Werror "${files[@]}"
echo "lint: ${#files[@]} files formatted as .clang-format says"
python3 scripts/check-house.py  # the layers and the 80-line limit (scripts/check-house.py)
if [ "${1:-}" = "--tidy" ]; then
  mapfile -t sources < <(git ls-files 'model/*.cpp' 'data/*.cpp' 'checkpoint/*.cpp' 'cli/*.cpp' 'engine/*.cpp' 'export/*.cpp' 'train/*.cpp' 'infer/*.cpp' 'serve/*.cpp')
  clang-tidy -p build --quiet "${sources[@]}"
fi
