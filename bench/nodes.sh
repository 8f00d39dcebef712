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
# Each row also says where the machine's CPU went while the load ran (milliseconds per bet of
# the node processes, of the PostgreSQL server's processes when it runs on this machine, and
# of the generator; and the cores' idle share) and how many bets a node's batch committed: a
# row short of one node's shows whether the machine was full or the nodes waited.
# Usage: bench/nodes.sh [seconds]   (default: 10, at least 4)
# CROUPIER_BENCH_PLAYERS="64 192" sets the loads (players shared by the nodes).
# CROUPIER_BENCH_STORE=sqlite runs the stacks on a SQLite file instead of a scratch database of
# the PostgreSQL server at CROUPIER_TEST_PG (default: the local one).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-10}"
[ "$seconds" -ge 4 ] || { echo "measure for 4 seconds at least" >&2; exit 2; }
bench_needs jq curl
bench_croupier
first_port=7501
loads="${CROUPIER_BENCH_PLAYERS:-64 192}"

# cpu_ticks PID...: the clock ticks of CPU (user and system) the processes have used so far.
cpu_ticks() {
  local pid ticks=0
  for pid in "$@"; do
    ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$ticks"
}

# usage_now NODE_PIDS SERVER_PIDS GENERATOR_PID: the ticks used so far by the nodes, the
# server, the generator, and the machine's busy and idle ticks (all cores), space-separated.
usage_now() {
  echo "$(cpu_ticks $1) $(cpu_ticks $2) $(cpu_ticks $3)" \
    "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)"
}

# server_pids: the PostgreSQL server's processes when it runs on this machine (none else).
server_pids() {
  case "${pg_db:+$pg_server}" in
    *@127.0.0.1[:/]* | *@localhost[:/]*) pgrep -x postgres | tr '\n' ' ' || true ;;
  esac
}

# bets_per_batch PORT...: the operations the nodes at these ports committed per batch.
bets_per_batch() {
  local port token
  token="$(cat "$work/data/ops-token")"
  for port in "$@"; do
    curl -sf -H "authorization: Bearer $token" "http://127.0.0.1:$port/metrics" || true
  done | awk '/^croupier_store_batch_operations_sum/ { s += $2 }
    /^croupier_store_batch_operations_count/ { c += $2 }
    END { if (c > 0) printf "%.1f", s / c; else print "-" }'
}

# cpu_per_bet BEFORE AFTER BETS_PER_S HAVE_SERVER: "nodes<TAB>server<TAB>generator<TAB>idle"
# from two `usage_now`, in ms of CPU per bet (the server's "-" when it is not on this machine).
cpu_per_bet() {
  awk -v before="$1" -v after="$2" -v rate="$3" -v server="$4" -v hz="$(getconf CLK_TCK)" \
    -v cores="$(nproc)" 'BEGIN {
    split(before, b, " "); split(after, a, " ")
    busy = a[4] - b[4]; idle = a[5] - b[5]; seconds = (busy + idle) / hz / cores
    bets = rate * seconds
    if (bets <= 0) { print "-\t-\t-\t-"; exit }
    printf "%.3f\t%s\t%.3f\t%.0f%%\n", (a[1] - b[1]) * 1000 / hz / bets,
      server ? sprintf("%.3f", (a[2] - b[2]) * 1000 / hz / bets) : "-",
      (a[3] - b[3]) * 1000 / hz / bets, 100 * idle / (busy + idle)
  }'
}

# One stack of $1 nodes under the load of $2 players; prints bets/s, p50, p99, errors, the
# checks' verdict, bets per batch, and CPU ms per bet of the nodes, the server and the
# generator and the idle share (`cpu_per_bet`), as tab-separated fields.
measure() {
  local nodes="$1" players="$2" work store pg_db up targets=() ports=()
  work="$(mktemp -d)"
  bench_ledger "$work" nodes postgres
  "$bin" up --demo --data "$work/data" --store "$store" --nodes "$nodes" \
    --first-node-port "$first_port" --gateway-port 8500 --control-port 8580 >"$work/up.log" 2>&1 &
  up=$!
  for i in $(seq 0 $((nodes - 1))); do
    ports+=($((first_port + i)))
    targets+=(--target "http://127.0.0.1:$((first_port + i))")
    bench_wait "http://127.0.0.1:$((first_port + i))/readyz" 150
  done
  sleep 1
  "$bin" loadtest "${targets[@]}" --model closed --players "$players" --think-ms 0 \
    --games dice --no-websockets --duration-secs "$seconds" --quiet \
    --summary-json "$work/summary.json" --check-ledger "$store" >"$work/loadtest.log" 2>&1 &
  # The CPU is sampled inside the load: from its second second to a second before its end.
  local generator=$! node_pids server before after batch
  node_pids="$(pgrep -P "$up" -f ' node ' | tr '\n' ' ')"
  server="$(server_pids)"
  sleep 1
  before="$(usage_now "$node_pids" "$server" "$generator")"
  sleep $((seconds - 2))
  after="$(usage_now "$node_pids" "$server" "$generator")"
  batch="$(bets_per_batch "${ports[@]}")"
  wait "$generator" || true
  local verdict=ok checks
  checks="$(grep '^bank check' "$work/loadtest.log" || true)"
  if [ -z "$checks" ] || grep -qv ': ok$' <<<"$checks"; then verdict="bank checks failed"; fi
  "$bin" integrity --store "$store" >"$work/integrity.log" 2>&1 || verdict="$verdict, integrity failed"
  if [ -f "$work/summary.json" ]; then
    local rate
    rate="$(jq -r '.bets_per_s' "$work/summary.json")"
    printf '%s\t%s\t%s\n' \
      "$(jq -r --arg v "$verdict" '[.bets_per_s, .latency_ms.p50, .latency_ms.p99, .errors, $v] | @tsv' \
        "$work/summary.json")" "$batch" "$(cpu_per_bet "$before" "$after" "$rate" "$server")"
  else
    grep -v '^ ' "$work/up.log" | tail -n 8 >&2
    grep -v '^ ' "$work/loadtest.log" | tail -n 8 >&2
    printf '0\t-\t-\t-\tno summary (see the stack logs)\t-\t-\t-\t-\t-\n'
  fi
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  bench_drop_ledger
  rm -rf "$work"
}

for run in 1 2 3; do
  echo "# run $run: $(date -u +%FT%TZ) on $(nproc) cores, ${CROUPIER_BENCH_STORE:-postgres}, ${seconds}s per measurement"
  echo
  echo "| players | node processes | bets/s | vs 1 node | p50 ms | p99 ms | errors | bank checks, integrity | bets per batch | CPU ms per bet: nodes / server / generator | idle |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---:|"
  for players in $loads; do
    one=""
    for nodes in 1 2 3; do
      # Read once the measurement has ended, its stack stopped and its database dropped.
      result="$(measure "$nodes" "$players")"
      IFS=$'\t' read -r rate p50 p99 errors verdict batch nodes_ms server_ms generator_ms idle <<<"$result"
      one="${one:-$rate}"
      ratio="$(awk -v r="$rate" -v o="$one" 'BEGIN { if (o > 0) printf "%.2fx", r / o; else print "-" }')"
      printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s |\n' "$players" "$nodes" "$rate" "$ratio" \
        "$p50" "$p99" "$errors" "$verdict" "$batch" "$nodes_ms" "$server_ms" "$generator_ms" "$idle"
    done
  done
  echo
done
