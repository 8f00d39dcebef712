#!/usr/bin/env bash
# Node processes writing to one ledger: does adding nodes keep the bets per second, or do the
# nodes queue behind each other's locks? For 1, 2 and 3 nodes, a fresh `croupier up --nodes N`
# (real node processes, each with its own connections to the store) and 64 players betting
# dice with no pause between bets (the closed model), spread over the nodes' own addresses
# (the gateway's limits are not what is measured here), for [seconds]; then the bank checks of
# every acknowledged bet against the ledger and `croupier integrity`. Then the same with 192
# players: at 64, each of three nodes' batches hold at most its 21 players' bets (a batch
# has a fixed cost on the server); at 192, a node's share fills its batches. Each row's
# ratio is against the 1-node row of the same run and load. Three runs back to back (report
# the worst). The generator, the nodes, the gateway, the control plane and the server share
# the cores.
# Usage: bench/nodes.sh [seconds]   (default: 10)
# CROUPIER_BENCH_PLAYERS="64 192" sets the loads (players shared by the nodes).
# CROUPIER_BENCH_STORE=sqlite runs the stacks on a SQLite file instead of a scratch database of
# the PostgreSQL server at CROUPIER_TEST_PG (default: the local one).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-10}"
bench_needs jq curl
bench_croupier
first_port=7501
loads="${CROUPIER_BENCH_PLAYERS:-64 192}"

# One stack of $1 nodes under the load of $2 players; prints bets/s, p50, p99, errors and the
# checks' verdict as tab-separated fields.
measure() {
  local nodes="$1" players="$2" work store pg_db up targets=()
  work="$(mktemp -d)"
  bench_ledger "$work" nodes postgres
  "$bin" up --demo --data "$work/data" --store "$store" --nodes "$nodes" \
    --first-node-port "$first_port" --gateway-port 8500 --control-port 8580 >"$work/up.log" 2>&1 &
  up=$!
  for i in $(seq 0 $((nodes - 1))); do
    targets+=(--target "http://127.0.0.1:$((first_port + i))")
    bench_wait "http://127.0.0.1:$((first_port + i))/readyz" 150
  done
  sleep 1
  "$bin" loadtest "${targets[@]}" --model closed --players "$players" --think-ms 0 \
    --games dice --no-websockets --duration-secs "$seconds" --quiet \
    --summary-json "$work/summary.json" --check-ledger "$store" >"$work/loadtest.log" 2>&1 || true
  local verdict=ok checks
  checks="$(grep '^bank check' "$work/loadtest.log" || true)"
  if [ -z "$checks" ] || grep -qv ': ok$' <<<"$checks"; then verdict="bank checks failed"; fi
  "$bin" integrity --store "$store" >"$work/integrity.log" 2>&1 || verdict="$verdict, integrity failed"
  if [ -f "$work/summary.json" ]; then
    jq -r --arg v "$verdict" '[.bets_per_s, .latency_ms.p50, .latency_ms.p99, .errors, $v] | @tsv' \
      "$work/summary.json"
  else
    grep -v '^ ' "$work/up.log" | tail -n 8 >&2
    grep -v '^ ' "$work/loadtest.log" | tail -n 8 >&2
    printf '0\t-\t-\t-\tno summary (see the stack logs)\n'
  fi
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  bench_drop_ledger
  rm -rf "$work"
}

for run in 1 2 3; do
  echo "# run $run: $(date -u +%FT%TZ) on $(nproc) cores, ${CROUPIER_BENCH_STORE:-postgres}, ${seconds}s per measurement"
  echo
  echo "| players | node processes | bets/s | vs 1 node | p50 ms | p99 ms | errors | bank checks, integrity |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---|"
  for players in $loads; do
    one=""
    for nodes in 1 2 3; do
      # Read once the measurement has ended, its stack stopped and its database dropped.
      result="$(measure "$nodes" "$players")"
      IFS=$'\t' read -r rate p50 p99 errors verdict <<<"$result"
      one="${one:-$rate}"
      ratio="$(awk -v r="$rate" -v o="$one" 'BEGIN { if (o > 0) printf "%.2fx", r / o; else print "-" }')"
      printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$players" "$nodes" "$rate" "$ratio" "$p50" "$p99" "$errors" "$verdict"
    done
  done
  echo
done
