#!/usr/bin/env bash
# How the gateway spreads the work over nodes sharing one ledger: `croupier up --balance
# leastconn` (every node writing, each player on the node with the fewest requests in flight)
# against `--balance first` (node-1 writes while it has room, the others stand by), the two
# alternated [pairs] times on a fresh stack each, at each rate given: the players' p50/p99 and
# the CPU seconds the nodes, the gateway and the control plane spent (user + system, from
# /proc), the open model through the gateway for [seconds] after a 2 s ramp.
# Usage: bench/balance.sh [seconds] [pairs] [bets/s ...]   (default: 10 s, 3 pairs, 1600 2000)
# CROUPIER_BENCH_STORE=postgres runs each stack on a fresh scratch database of the PostgreSQL
# server at CROUPIER_TEST_PG (default: the local one), and adds the server's CPU seconds (its
# processes', exited backends included) when the server is on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-10}"
pairs="${2:-3}"
shift 2 || shift $# || true
if [ $# -gt 0 ]; then rates=("$@"); else rates=(1600 2000); fi
bench_needs jq curl
bench_croupier

# Clock ticks (user + system) of the stack's processes of kind $1 (node, gateway, control)
# on the data folder $2.
cpu_of() {
  local total=0 pid ticks
  for pid in $(pgrep -f -- "^[^ ]+ $1 --listen .*$2" || true); do
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo "$total"
}

on_postgres() { [ "${CROUPIER_BENCH_STORE:-sqlite}" = postgres ]; }

# Clock ticks of the PostgreSQL server's processes and of their exited children.
server_cpu() {
  local total=0 pid ticks
  for pid in $(pgrep -x postgres || true); do
    ticks=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo "$total"
}

# One stack with --balance $1 at rate $2: prints a table row.
run() {
  local balance="$1" rate="$2" work up store pg_db
  work="$(mktemp -d)"
  bench_ledger "$work" balance sqlite
  "$bin" up --demo --store "$store" --balance "$balance" --data "$work/data" --first-node-port 7301 \
    --gateway-port 8300 --control-port 8380 >"$work/up.log" 2>&1 &
  up=$!
  bench_wait http://127.0.0.1:8300/api/v1/lobby 150
  sleep 1
  local before=() after=() part
  for part in node gateway control; do before+=("$(cpu_of "$part" "$work/data")"); done
  before+=("$(server_cpu)")
  "$bin" loadtest --target http://127.0.0.1:8300 --rate "$rate" --players $((rate / 5)) \
    --ramp-up-secs 2 --duration-secs "$seconds" --source-addresses 16 --threads 1 --quiet \
    --summary-json "$work/summary.json" >/dev/null 2>&1 || true
  for part in node gateway control; do after+=("$(cpu_of "$part" "$work/data")"); done
  after+=("$(server_cpu)")
  local hz; hz=$(getconf CLK_TCK)
  jq -r --arg b "$balance" --arg r "$rate" --arg hz "$hz" \
    --arg n "$((after[0] - before[0]))" --arg g "$((after[1] - before[1]))" \
    --arg c "$((after[2] - before[2]))" --arg s "$((after[3] - before[3]))" \
    --arg pg "$pg_db" \
    '"| \($b) | \($r) | \(.latency_ms.p50*10|floor/10) | \(.latency_ms.p99*10|floor/10) | \(.errors) | \(($n|tonumber)/($hz|tonumber)) | \(($g|tonumber)/($hz|tonumber)) | \(($c|tonumber)/($hz|tonumber)) |" + (if $pg == "" then "" else " \(($s|tonumber)/($hz|tonumber)) |" end)' \
    "$work/summary.json"
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  bench_drop_ledger
  rm -rf "$work"
}

echo "# $(date -u +%FT%TZ) on $(nproc) cores, ${CROUPIER_BENCH_STORE:-sqlite}: --balance leastconn vs first, ${seconds}s per step, $pairs pairs"
echo
if on_postgres; then
  echo "| balance | bets/s | p50 ms | p99 ms | errors | nodes' CPU s | gateway CPU s | control plane CPU s | server CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| balance | bets/s | p50 ms | p99 ms | errors | nodes' CPU s | gateway CPU s | control plane CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
fi
for _ in $(seq "$pairs"); do
  for rate in "${rates[@]}"; do
    run leastconn "$rate"
    run first "$rate"
  done
done
