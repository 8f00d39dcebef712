#!/usr/bin/env bash
# The gateway against HAProxy in front of the same three game nodes, in one run: wrk
# throughput and latency (64 connections spread over 64 players), proxy CPU per request, and
# kill -9 failover under load. Usage: bench/gateway.sh [seconds per wrk run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
. bench/lib.sh
bench_needs haproxy wrk
cargo build --release --workspace --quiet
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(haproxy -v | head -1 | cut -d' ' -f1-3), ${seconds}s per wrk run"
"${CARGO_TARGET_DIR:-$PWD/target}"/release/croupier-bench gateway --seconds "$seconds"
