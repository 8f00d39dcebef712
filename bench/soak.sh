#!/usr/bin/env bash
# Soak: `croupier up` (3 nodes, gateway, control plane with backups) under steady load for a
# long run, sampled every INTERVAL seconds: resident memory and open descriptors of every
# croupier process, bytes in the data folder (ledger + WAL, control.db, backups, logs), and
# bets so far. Prints a table over time, then bytes per million bets and the 30-day
# extrapolation at the measured rate. "Compressed" = a busy rate for a short run: growth per
# bet and per hour are measured, not guessed; what only time shows (daily rotations, backup
# retention, idempotency expiry after 35 days) is bounded by configuration, see
# docs/operations.md.
# Usage: bench/soak.sh [seconds=600] [bets-per-second=100] [interval=30]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-600}"
rate="${2:-100}"
interval="${3:-30}"
bench_needs jq curl bc
bench_croupier
work="$(mktemp -d)"
data="$work/data"
"$bin" up --demo --data "$data" --first-node-port 7401 --gateway-port 8400 --control-port 8480 \
  --backup-verify-every-s 120 >"$work/up.log" 2>&1 &
up_pid=$!
cleanup() {
  kill -TERM "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
bench_wait http://127.0.0.1:8401/readyz 150
bench_wait http://127.0.0.1:8480/readyz 150
sleep 2

# Pids of `croupier up` and its children.
pids() { echo "$up_pid $(pgrep -P "$up_pid" | tr '\n' ' ')"; }
rss_kib() { local t=0; for p in $(pids); do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }
fds() { local t=0; for p in $(pids); do t=$((t + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done; echo "$t"; }
bets() {
  local t=0
  for port in 7401 7402 7403; do
    t=$((t + $(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^croupier_bets_total/ {s+=$2} END {printf "%d", s}')))
  done
  echo "$t"
}
bytes() { du -sb "$1" 2>/dev/null | cut -f1; }
row() {
  printf "| %5d | %9d | %7.1f | %4d | %7.2f | %7.2f | %7.2f | %7.2f | %7.2f |\n" \
    "$1" "$(bets)" "$(echo "$(rss_kib) / 1024" | bc -l)" "$(fds)" \
    "$(echo "$(bytes "$data") / 1048576" | bc -l)" \
    "$(echo "$(cat "$data"/ledger.db* 2>/dev/null | wc -c) / 1048576" | bc -l)" \
    "$(echo "$(bytes "$data/backups") / 1048576" | bc -l)" \
    "$(echo "$(bytes "$data/logs") / 1048576" | bc -l)" \
    "$(echo "$(cat "$data"/control.db* 2>/dev/null | wc -c) / 1048576" | bc -l)"
}

echo "# soak $(date -u +%FT%TZ): ${seconds}s at ${rate} bets/s (open model, every game), $(nproc) cores"
echo
echo "| s | bets | RSS MiB (all) | fds (all) | data MiB | ledger MiB | backups MiB | logs MiB | control.db MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
"$bin" loadtest --target http://127.0.0.1:8400 --rate "$rate" --players 50 --ramp-up-secs 5 \
  --duration-secs "$seconds" --quiet --summary-json "$work/soak.json" >"$work/lt.log" 2>&1 &
lt_pid=$!
start=$(date +%s)
first_ledger=$(cat "$data"/ledger.db* | wc -c)
first_bets=$(bets)
row 0
while kill -0 "$lt_pid" 2>/dev/null; do
  sleep "$interval"
  row $(( $(date +%s) - start ))
done
wait "$lt_pid" || true
elapsed=$(( $(date +%s) - start ))
total_bets=$(( $(bets) - first_bets ))
echo
jq -r '"loadtest: \(.requests) requests, \(.errors) errors, p99 \(.latency_ms.p99) ms"' "$work/soak.json" 2>/dev/null || true
# Stop the stack: the last connection checkpoints the WAL into ledger.db, so its size is the
# ledger itself (the WAL is bounded separately, ~16 MiB).
kill -TERM "$up_pid"; wait "$up_pid" 2>/dev/null || true
ledger_growth=$(( $(cat "$data"/ledger.db* | wc -c) - first_ledger ))
awk -v b="$total_bets" -v g="$ledger_growth" -v s="$elapsed" -v all="$(bytes "$data")" \
  -v backups="$(bytes "$data/backups")" -v logs="$(bytes "$data/logs")" 'BEGIN {
  if (b == 0) { print "no bets"; exit 1 }
  per_m = g / b * 1e6 / 1048576
  printf "ledger.db after checkpoint: %.0f MiB per million bets (journal, rounds, seeds, idempotency)\n", per_m
  printf "backups: %.0f MiB per million bets; logs: %.1f MiB in %d s\n", backups / b * 1e6 / 1048576, logs/1048576, s
  printf "measured %.0f bets/s; 30 days at this rate: %.0f million bets, ledger +%.1f GiB\n", b/s, b/s*86400*30/1e6, per_m*b/s*86400*30/1e6/1024
  printf "whole data folder at the end: %.1f MiB\n", all/1048576
}'
