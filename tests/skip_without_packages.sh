#!/usr/bin/env bash
# Runs ctest for Api.OpenAIClient in a copy of the test tree whose npm packages were never
# installed: ctest must report the test skipped with one line naming the missing package (not a
# failure), and DRACARYS_REQUIRE_OPTIONAL=1 (CI's setting) must turn that skip into a failure.
#   tests/skip_without_packages.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1 build=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/tests/api" "$work/build"
cp "$src/tests/optional.mjs" "$work/src/tests/"
cp "$src/tests/api/openai.test.mjs" "$src/tests/api/package.json" "$work/src/tests/api/"
# A one-test ctest project: the registration of tests/CMakeLists.txt, pointed at the copy.
cat > "$work/build/CTestTestfile.cmake" <<CTEST
add_test(Api.OpenAIClient "$(command -v node)" "$work/src/tests/api/openai.test.mjs" "$build/bin")
set_tests_properties(Api.OpenAIClient PROPERTIES PASS_REGULAR_EXPRESSION "PASS" FAIL_REGULAR_EXPRESSION "FAIL" SKIP_REGULAR_EXPRESSION "SKIP: ")
CTEST
cd "$work/build"
out=$(env -u DRACARYS_REQUIRE_OPTIONAL ctest --output-on-failure -V 2>&1)
status=$?
echo "$out" | grep -q "SKIP: the npm package 'openai' is missing (scripts/setup.sh installs it)" || { echo "FAIL: no skip line: $out"; exit 1; }
echo "$out" | grep -qE "Api.OpenAIClient .*Skipped" || { echo "FAIL: ctest did not report a skip: $out"; exit 1; }
[ $status -eq 0 ] || { echo "FAIL: ctest exited $status for a skip: $out"; exit 1; }
out=$(DRACARYS_REQUIRE_OPTIONAL=1 ctest --output-on-failure 2>&1)
[ $? -ne 0 ] || { echo "FAIL: with DRACARYS_REQUIRE_OPTIONAL=1 the missing package passed: $out"; exit 1; }
echo "PASS: a missing npm package is a skip, and a failure where every piece is required"
