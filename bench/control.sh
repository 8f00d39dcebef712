#!/usr/bin/env bash
# The control plane's scrape + rule-evaluation cost against Prometheus, in one run: 10, 100
# and 1000 simulated game nodes scraped each second with alert rules evaluated each second;
# CPU cores per 1000 series scraped per second. Usage: bench/control.sh [seconds, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
. bench/lib.sh
bench_needs prometheus
cargo build --release --workspace --quiet
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3), ${seconds}s per measurement"
"${CARGO_TARGET_DIR:-$PWD/target}"/release/croupier-bench control --seconds "$seconds"
