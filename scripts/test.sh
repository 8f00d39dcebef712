#!/usr/bin/env bash
# The test command (README): installs what the whole-process tests drive — Debian's chromium
# for the browser test, playwright-core from npm (pinned by package-lock.json), moto's S3
# server from PyPI for the S3 backup test — when it is missing, then runs every test of the workspace in release mode (the build the
# benchmarks use too). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (apt) for the browser test" >&2
  sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d crates/croupier/tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core (npm ci) for the browser test" >&2
  npm ci --prefix crates/croupier/tests/browser --no-audit --no-fund >/dev/null
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto's S3 server (pip) for the S3 backup test" >&2
  python3 -m pip install --quiet 'moto[server]'
fi

cargo test --release --workspace "$@"
