#!/usr/bin/env bash
# Durable bets per second: raw SQLite one-row-per-transaction baseline, the ledger store
# (group commit) and the HTTP API of a real node, with 1, 8 and 64 concurrent players, all in
# one run. Usage: bench/ledger.sh [seconds per measurement, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
cargo build --release --workspace --quiet
echo "# $(date -u +%FT%TZ) on $(nproc) cores, ${seconds}s per measurement"
"${CARGO_TARGET_DIR:-$PWD/target}"/release/croupier-bench all --seconds "$seconds" 2>/dev/null
