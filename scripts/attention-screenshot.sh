#!/usr/bin/env bash
# Renders an attention map and photographs it in headless Chromium, to see what a person sees.
#   scripts/attention-screenshot.sh CHECKPOINT "PROMPT" OUT.png
# Needs Debian's chromium package (not installed by scripts/setup.sh: it is large).
set -euo pipefail
ckpt=${1:?usage: attention-screenshot.sh CHECKPOINT PROMPT OUT.png}
prompt=${2:?usage: attention-screenshot.sh CHECKPOINT PROMPT OUT.png}
out=${3:?usage: attention-screenshot.sh CHECKPOINT PROMPT OUT.png}
bin="$(cd "$(dirname "$0")/.." && pwd)/build/bin"
command -v chromium >/dev/null || { echo "attention-screenshot: install Debian's chromium package first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin/dracarys-infer" -c "$ckpt" -p "$prompt" --attention-map "$tmp/map.html"
# The flags keep Chromium from reaching for the network this machine does not have.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$tmp/profile" --window-size=1400,1000 \
  --screenshot="$out" "file://$tmp/map.html" 2>/dev/null
echo "wrote $out"
