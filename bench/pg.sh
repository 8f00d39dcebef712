#!/usr/bin/env bash
# The PostgreSQL store against pgbench running the same dice bet as one transaction per bet
# (the ledger's own schema and rows, the chain head locked per bet) and against the SQLite
# store, with 1, 8 and 64 players; then 1, 2 and 3 nodes (stores) sharing the database.
# Three runs back to back (report the worst). Every measurement uses a scratch database of
# the server at CROUPIER_TEST_PG (default: the local one). Usage: bench/pg.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
seconds="${1:-10}"
bench_needs pgbench=postgresql-contrib
cargo build --release -p croupier-bench --quiet
for run in 1 2 3; do
  echo "# run $run: $(date -u +%FT%TZ) on $(nproc) cores, ${seconds}s per measurement, $(pgbench --version)"
  "${CARGO_TARGET_DIR:-$PWD/target}"/release/croupier-bench pg --server "$pg_server" --seconds "$seconds" 2>/dev/null
  echo
done
