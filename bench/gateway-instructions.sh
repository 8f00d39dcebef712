#!/usr/bin/env bash
# The gateway's user-space instructions per proxied request, counted by valgrind's callgrind:
# unlike CPU time on a shared 2-core machine, the count repeats to within a percent for the
# same binary, so a change's effect on the hot path shows even when `bench/gateway.sh`'s
# ratios move by ±10% between runs. Three demo nodes on one SQLite ledger, the gateway under
# callgrind (the flags of `bench/gateway.sh`), a 3 s wrk warm-up, then the count over
# `seconds` of wrk (1 thread, 16 connections, one player's `GET /api/v1/wallet`).
# Usage: bench/gateway-instructions.sh [seconds] [croupier binary ...]
# With no binary, this build's; give the build before a change too, for its baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
shift || true
. bench/lib.sh
bench_needs wrk valgrind
if [ $# -eq 0 ]; then
  cargo build --release -p croupier --quiet
  set -- "${CARGO_TARGET_DIR:-$PWD/target}/release/croupier"
fi
work=$(mktemp -d)
children=()
stop() { kill -TERM "${children[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap stop EXIT
export CROUPIER_OPS_TOKEN=bench-ops-token-0123456789abcdef0123456789 RUST_LOG=warn
nodes=()
for i in 1 2 3; do
  port=$(bench_free_port)
  "$1" node --listen "127.0.0.1:$port" --node-id "n$i" --demo --data "$work" >/dev/null 2>&1 &
  children+=($!)
  nodes+=(--node "n$i=http://127.0.0.1:$port")
  until curl -sf "127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
done
first=${nodes[1]#*=}
token=$(curl -sf -X POST "$first/api/v1/sessions" -H 'content-type: application/json' \
  -d '{"player":"callgrind"}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(valgrind --version), ${seconds}s counted per binary"
echo
echo "| binary | requests counted | instructions | per request |"
echo "|---|---:|---:|---:|"
for binary in "$@"; do
  listen=$(bench_free_port) admin=$(bench_free_port)
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$binary" gateway \
    --listen "127.0.0.1:$listen" --admin-listen "127.0.0.1:$admin" \
    --rate-per-ip 0 --rate-per-player 0 "${nodes[@]}" >/dev/null 2>&1 &
  gateway=$!
  children+=($gateway)
  until curl -sf "127.0.0.1:$admin/readyz" >/dev/null; do sleep 0.5; done
  url="http://127.0.0.1:$listen/api/v1/wallet"
  wrk -t1 -c16 -d3s -H "Authorization: Bearer $token" "$url" >/dev/null
  callgrind_control --zero "$gateway" >/dev/null 2>&1
  requests=$(wrk -t1 -c16 -d"${seconds}s" -H "Authorization: Bearer $token" "$url" | awk '/requests in/ {print $1}')
  callgrind_control --dump "$gateway" >/dev/null 2>&1
  kill -TERM "$gateway"; wait "$gateway" || true
  total=$(callgrind_annotate "$work/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "| $binary | $requests | $total | $((total / requests)) |"
  rm -f "$work"/cg.out*
done
