#!/usr/bin/env bash
# The whole stack past its peak: does the gateway keep serving from live nodes, or does it take
# them out one after another and answer 503 `no_node`? One `croupier up` per rate (fresh data),
# the open model through the gateway for [seconds] at each rate given, then the loadtest's
# outcome and the gateway's refusals, failed tries, ejections and health probe verdicts.
# Usage: bench/overload.sh [seconds] [bets/s ...]   (default: 12 s at 3000 and 4000 bets/s)
# A row with errors -1: the load generator wrote no summary (see the stack's logs).
# CROUPIER_BENCH_STORE=postgres runs the stack on a scratch database of the PostgreSQL server at
# CROUPIER_TEST_PG (default: the local one) instead of the SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-12}"
shift || true
if [ $# -gt 0 ]; then rates=("$@"); else rates=(3000 4000); fi
bench_needs jq curl
bench_croupier

# One rate on a fresh stack: prints a table row; the gateway's counters go to $counters.
overload() {
  local rate="$1" work store pg_db up players
  work="$(mktemp -d)"
  bench_ledger "$work" overload sqlite
  "$bin" up --demo --data "$work/data" --store "$store" --first-node-port 7301 \
    --gateway-port 8300 --control-port 8380 >"$work/up.log" 2>&1 &
  up=$!
  bench_wait http://127.0.0.1:8301/readyz
  sleep 1
  players=$(( rate / 5 > 50 ? rate / 5 : 50 ))
  "$bin" loadtest --target http://127.0.0.1:8300 --rate "$rate" --players "$players" \
    --ramp-up-secs 2 --duration-secs "$seconds" --source-addresses 16 --threads 1 --quiet \
    --summary-json "$work/summary.json" >/dev/null 2>&1 || true
  curl -s http://127.0.0.1:8301/metrics >"$work/gateway.prom" || true
  [ -s "$work/summary.json" ] || echo '{"bets_per_s":0,"latency_ms":{"p50":0,"p99":0},"errors":-1,"failures":{"non_2xx_answers":0,"reset_connections":0}}' >"$work/summary.json"
  local count
  count() { awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%d", s }' "$work/gateway.prom"; }
  jq -r --arg rate "$rate" --arg no_node "$(count 'croupier_gateway_refused_total{reason="no_node"}')" \
    --arg budget "$(count 'croupier_gateway_refused_total{reason="retry_budget"}')" \
    --arg busy "$(count 'croupier_gateway_refused_total{reason="node_busy"}')" \
    --arg ejections "$(count 'croupier_gateway_ejections_total')" \
    '"| \($rate) | \(.bets_per_s|floor) | \(.latency_ms.p50|floor) | \(.latency_ms.p99|floor) | \(.errors) | \(.failures.non_2xx_answers) | \(.failures.reset_connections) | \($no_node) | \($budget) | \($busy) | \($ejections) |"' \
    "$work/summary.json"
  grep -E '^croupier_gateway_(health_probes|upstream_errors)_total' "$work/gateway.prom" |
    grep -v ' 0$' | sed 's/^/    /' >>"$counters" || true
  echo "    integrity after $rate bets/s: $("$bin" integrity --store "$store" | jq -r 'if .ok then "ok" else "VIOLATED" end')" \
    >>"$counters"
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  bench_drop_ledger
  rm -rf "$work"
}

counters="$(mktemp)"
echo "# $(date -u +%FT%TZ) on $(nproc) cores, ${CROUPIER_BENCH_STORE:-sqlite} store, ${seconds}s per rate"
echo
echo "| target bets/s | achieved bets/s | p50 ms | p99 ms | errors | non-2xx | resets | 503 no_node | 503 retry_budget | 503 node_busy | ejections |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for rate in "${rates[@]}"; do
  overload "$rate"
done
echo
echo "Gateway counters (health probes by verdict, failed tries by kind):"
cat "$counters"
rm -f "$counters"
