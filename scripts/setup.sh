#!/usr/bin/env bash
# Installs every Debian package dracarys needs to build, test and run. Idempotent: when all
# are present it only checks and returns. Works as root, or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev              # LibTorch 1.13 (CPU)
  libopenblas0-pthread      # fast BLAS under LibTorch (the reference BLAS is ~40x slower)
  libsentencepiece-dev      # tokenizer library (loaded through a plugin, see data/)
  libcli11-dev libspdlog-dev nlohmann-json3-dev libssl-dev
  libgtest-dev libxml2-utils  # tests: xmllint checks the attention maps
  libgloo-dev               # c10d Gloo headers for distributed training
  gnuplot-nox               # scripts/plot-metrics.sh
  python3                   # scripts/bench.sh tables, scripts/quality-split.py
  clang libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer with ASan and UBSan
  clang-format              # scripts/lint.sh
  libcpp-httplib-dev        # dracarys-serve's HTTP server (and the tests' client)
  chromium                  # tests/browser: the page in a real, headless browser
  python3-torch             # torchrun (PyTorch 1.13.1, the same LibTorch): tests/test_launchers.cpp
  slurm-wlm munge           # a one-node Slurm cluster for the srun test (tests/slurm_cluster.sh)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node and npm drive the browser test; any Node of 18 or later will do (Debian's or another).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

# puppeteer-core, pinned by tests/browser/package-lock.json, from the npm registry; it drives
# Debian's Chromium and downloads no browser.
# node-llama-cpp 3.21.1 with its prebuilt Linux x64 llama.cpp, pinned by tests/llama/package-lock.json:
# tests/test_export.cpp runs exported GGUF files in it. Nothing is downloaded or built beyond npm's
# packages (the other platforms' optional builds are left out).
# openai, the official OpenAI Node client, pinned by tests/api/package-lock.json: the API tests
# call dracarys-serve through it.
browser_modules() {
  if [ ! -d tests/browser/node_modules/puppeteer-core ]; then
    echo "setup: installing tests/browser's npm packages"
    (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -d tests/llama/node_modules/@node-llama-cpp/linux-x64 ]; then
    echo "setup: installing tests/llama's npm packages"
    (cd tests/llama && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --omit=optional --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -d tests/api/node_modules/openai ]; then
    echo "setup: installing tests/api's npm packages"
    (cd tests/api && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  browser_modules
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "setup: missing packages (${missing[*]}) and not root, and sudo is not installed; run as root" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
browser_modules
echo "setup: done"
