#!/usr/bin/env bash
# The test command (README): installs what the whole-process tests drive — Debian's chromium
# for the browser tests (and poppler-utils to read the PDF one prints), playwright-core from npm
# (pinned by package-lock.json), moto's S3 server and aiosmtpd (the subscriptions test's SMTP
# server) from PyPI, and the tools the deployment files are checked with (tests/deploy.rs):
# promtool (Debian's prometheus), systemd-analyze (systemd), kubectl (Debian's
# kubernetes-client, when the machine has none), kubernetes-validate from PyPI, and pgBackRest
# (Debian's pgbackrest, which backs up the PostgreSQL ledger in tests/pgbackrest.rs, and socat,
# the TLS in front of moto for its S3 repository, which pgBackRest reaches over HTTPS only) — when it is
# missing, then runs every test of the workspace in release mode (the build the benchmarks use
# too) on the SQLite ledger, and the tests of every crate that touches the ledger again on
# PostgreSQL (CROUPIER_TEST_STORE=postgres: each test on a scratch database of the server at
# CROUPIER_TEST_PG, default the local one).
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_packages=()
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
command -v promtool >/dev/null 2>&1 || apt_packages+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || apt_packages+=(systemd)
command -v kubectl >/dev/null 2>&1 || apt_packages+=(kubernetes-client)
command -v pdftotext >/dev/null 2>&1 || apt_packages+=(poppler-utils)
command -v pgbackrest >/dev/null 2>&1 || apt_packages+=(pgbackrest)
command -v socat >/dev/null 2>&1 || apt_packages+=(socat)
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "installing ${apt_packages[*]} (apt) for the browser, deployment and pgBackRest tests" >&2
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
if [ ! -d crates/croupier/tests/browser/node_modules/playwright-core ]; then
  echo "installing playwright-core (npm ci) for the browser test" >&2
  npm ci --prefix crates/croupier/tests/browser --no-audit --no-fund >/dev/null
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  echo "installing aiosmtpd (pip), the SMTP server of the subscriptions test" >&2
  python3 -m pip install --quiet aiosmtpd
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto's S3 server (pip) for the S3 backup test" >&2
  python3 -m pip install --quiet 'moto[server]'
fi

if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "installing kubernetes-validate (pip) for the Kubernetes manifests test" >&2
  python3 -m pip install --quiet kubernetes-validate
fi

export CROUPIER_TEST_PG="${CROUPIER_TEST_PG:-postgres://root@127.0.0.1:5432/postgres}"
started=$(date +%s)
# Scratch databases are named croupier_<kind>_<unix seconds>_<random>; drop those of this run,
# and any older than a day (left by an interrupted run).
drop_scratch() {
  psql "$CROUPIER_TEST_PG" -Atc "SELECT datname FROM pg_database WHERE datname ~ '^croupier_[a-z]+_[0-9]+_[0-9a-f]+$'" 2>/dev/null |
    while read -r name; do
      created=$(echo "$name" | sed -E 's/^croupier_[a-z]+_([0-9]+)_.*/\1/')
      if [ "$created" -ge "$started" ] || [ "$created" -lt $((started - 86400)) ]; then
        psql "$CROUPIER_TEST_PG" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
      fi
    done
}
trap drop_scratch EXIT

cargo test --release --workspace "$@"
echo "== the ledger's crates again, on PostgreSQL" >&2
CROUPIER_TEST_STORE=postgres cargo test --release \
  -p croupier-ledger -p croupier-node -p croupier-loadtest -p croupier "$@"
