#!/usr/bin/env bash
# The tools the tests use besides the broker and the emulator, from Debian's packages: chromium and
# chromium-driver (the status page is tested in a real browser, tests/browser.rs) and prometheus
# (for promtool, tests/monitoring.rs). Installs only what is missing; needs root or sudo.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "scripts/tools.sh: installing ${missing[*]} needs root or sudo" >&2; exit 1; }
  sudo=sudo
fi
echo "installing ${missing[*]} from Debian's packages"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
