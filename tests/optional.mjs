// What a Node test needs beyond the build, which scripts/setup.sh installs (npm packages, a
// browser). Where a piece is missing the test prints one SKIP line naming it and the command that
// installs it, and exits 0 (ctest reports it skipped); with DRACARYS_REQUIRE_OPTIONAL=1, which CI
// sets because it installs everything, the same line is a FAIL.
export function missing(what) {
  const line = `${what} is missing (scripts/setup.sh installs it)`;
  if (process.env.DRACARYS_REQUIRE_OPTIONAL === "1") {
    console.log(`FAIL: ${line}, and this run requires every optional piece`);
    process.exit(1);
  }
  console.log(`SKIP: ${line}`);
  process.exit(0);
}

// The npm package `name`, imported by `load` (a function calling import()), or a skip.
export async function need(name, load) {
  try {
    return await load();
  } catch (e) {
    if (e?.code !== "ERR_MODULE_NOT_FOUND") throw e;
    missing(`the npm package '${name}'`);
  }
}
