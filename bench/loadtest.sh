#!/usr/bin/env bash
# The load generator against wrk, then the whole stack's peak, in one run on one `croupier up`:
#  0. the disk's flush latency (`croupier-bench disk`), which every acknowledged bet waits for;
#  1. requests per CPU-second of `croupier loadtest` (closed model, 64 players, GET
#     /api/v1/lobby, one thread) against wrk (one thread, 64 connections, the same GET) on
#     the same node;
#  2. the peak bets per second the stack (3 nodes, gateway, control plane) holds with
#     p99 < 50 ms and errors < 0.1%: open model through the gateway, every game (blackjack
#     played to the end), the rate stepped up until a step fails, then one step between.
#     Each step also counts the nodes' store commits (a batch's write, commit and flush)
#     that took over 51.2 ms during it: a stall of the disk or the database under the load,
#     which the idle check of section 0 cannot see.
# The generator runs on the same 2 cores as the stack. Usage: bench/loadtest.sh [seconds]
# CROUPIER_BENCH_STORE=postgres runs the stack on a scratch database of the PostgreSQL server
# at CROUPIER_TEST_PG (default: the local one) instead of the SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-10}"
bench_needs wrk jq curl
bench_croupier croupier-bench
work="$(mktemp -d)"
bench_ledger "$work" stack sqlite
"$bin" up --demo --data "$work/data" --store "$store" --first-node-port 7301 --gateway-port 8300 \
  --control-port 8380 >"$work/up.log" 2>&1 &
up_pid=$!
cleanup() {
  kill -TERM "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
  bench_drop_ledger
  rm -rf "$work"
}
trap cleanup EXIT
bench_wait http://127.0.0.1:8301/readyz
sleep 1
node=http://127.0.0.1:7301
gateway=http://127.0.0.1:8300

# User + system CPU seconds of a command (from the shell's `times` for its children).
cpu_of() {
  local out="$1"; shift
  ( "$@" >"$out" 2>&1; times ) | tail -1 |
    awk '{ split($1, u, "m"); split($2, s, "m"); printf "%.3f", u[1]*60 + u[2] + s[1]*60 + s[2] }'
}

echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), ${seconds}s per measurement"
echo
echo "## 0. The disk: how long a small write takes to become durable (the stack idle)"
echo
echo "Every acknowledged bet waits for such a flush (SQLite's WAL fsync, PostgreSQL's WAL flush):"
echo "a step whose p99 is made by a few slow seconds may be the disk's, not the stack's. Under"
echo "the load, section 2 counts the nodes' store commits over 51.2 ms in each step."
echo
"${bin%/*}/croupier-bench" disk --folder "$work/data" --seconds "$seconds"
echo
echo "## 1. Generator efficiency: GET /api/v1/lobby on one node, 64 connections"
token="$(curl -sf -X POST -H 'content-type: application/json' -d '{"player":"bench-wrk"}' \
  "$node/api/v1/sessions" | jq -r .token)"
wrk_cpu="$(cpu_of "$work/wrk.txt" wrk -t1 -c64 -d"${seconds}s" -H "Authorization: Bearer $token" "$node/api/v1/lobby")"
wrk_requests="$(awk '/requests in/ { print $1 }' "$work/wrk.txt")"
wrk_errors="$(awk '/Non-2xx/ { print $5 } END { }' "$work/wrk.txt")"
lt_cpu="$(cpu_of "$work/lt.txt" "$bin" loadtest --target "$node" --model closed --scenario lobby \
  --players 64 --no-websockets --threads 1 --duration-secs "$seconds" --quiet --summary-json "$work/lt.json")"
lt_requests="$(jq .requests "$work/lt.json")"
lt_errors="$(jq .errors "$work/lt.json")"
echo
echo "| generator | requests | requests/s | errors | CPU s | requests per CPU-second |"
echo "|---|---:|---:|---:|---:|---:|"
awk -v r="$wrk_requests" -v c="$wrk_cpu" -v s="$seconds" -v e="${wrk_errors:-0}" \
  'BEGIN { printf "| wrk | %d | %.0f | %d | %.2f | %.0f |\n", r, r/s, e, c, r/c }'
awk -v r="$lt_requests" -v c="$lt_cpu" -v s="$seconds" -v e="$lt_errors" \
  'BEGIN { printf "| croupier loadtest | %d | %.0f | %d | %.2f | %.0f |\n", r, r/s, e, c, r/c }'
awk -v a="$lt_requests" -v b="$lt_cpu" -v c="$wrk_requests" -v d="$wrk_cpu" \
  'BEGIN { printf "\nrequests per CPU-second, croupier loadtest / wrk: %.2fx\n", (a/b)/(c/d) }'

echo
echo "## 2. Peak bets/s of the whole stack with p99 < 50 ms (open model, every game)"
echo
echo "| target bets/s | players | achieved bets/s | requests/s | p50 ms | p99 ms | errors | generator CPU s | store commits over 51.2 ms | verdict |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
# The nodes' store commits so far, as two numbers: all of them, and those over 51.2 ms; from
# each node's `croupier_store_commit_seconds` histogram (its bounds double from 0.05 ms).
store_commits() {
  local i
  for i in 0 1 2; do curl -sf "http://127.0.0.1:$((7301 + i))/metrics" || true; done |
    awk '/^croupier_store_commit_seconds_count / { all += $2 }
         /^croupier_store_commit_seconds_bucket\{le="0.0512"\} / { fast += $2 }
         END { printf "%d %d\n", all, all - fast }'
}
step() {
  local rate="$1" players=$(( $1 / 5 > 50 ? $1 / 5 : 50 )) out="$work/step-$1.json"
  local before after slow
  read -r -a before <<<"$(store_commits)"
  if "$bin" loadtest --target "$gateway" --rate "$rate" --players "$players" --ramp-up-secs 2 \
      --duration-secs "$seconds" --source-addresses 16 --threads 1 --quiet --summary-json "$out" \
      --threshold 'p99<50ms' --threshold 'errors<0.1%' >/dev/null 2>&1; then
    verdict=pass
  else
    verdict=fail
  fi
  read -r -a after <<<"$(store_commits)"
  slow="$((after[1] - before[1])) of $((after[0] - before[0]))"
  jq -r --arg v "$verdict" --arg r "$rate" --arg p "$players" --arg slow "$slow" \
    '"| \($r) | \($p) | \(.bets_per_s|floor) | \(.rps|floor) | \(.latency_ms.p50*100|floor/100) | \(.latency_ms.p99*100|floor/100) | \(.errors) | \(.cpu_seconds*100|floor/100) | \($slow) | \($v) |"' "$out"
  local achieved; achieved="$(jq '.bets_per_s|floor' "$out")"
  if [ "$verdict" = pass ] && [ "$achieved" -gt "$peak" ]; then peak="$achieved"; fi
  [ "$verdict" = pass ]
}
peak=0
last_pass=0
first_fail=0
for rate in 100 200 400 600 800 1000 1200 1600 2000 2400 3000 3600 4200 5000; do
  if step "$rate"; then last_pass="$rate"; else first_fail="$rate"; break; fi
done
if [ "$first_fail" -gt 0 ] && [ $(( first_fail - last_pass )) -gt 100 ]; then
  step $(( (last_pass + first_fail) / 2 )) || true
fi
echo
echo "peak: ${peak} bets/s with p99 < 50 ms and errors < 0.1% (generator on the same cores)"
echo "ledger (${CROUPIER_BENCH_STORE:-sqlite}) integrity after all runs: $("$bin" integrity --store "$store" | jq -r 'if .ok then "ok (\(.entries) entries)" else "VIOLATED" end')"
