#!/usr/bin/env bash
# Backups against `sqlite3 .backup` on the same store of at least a million rounds, in one run:
# snapshot MB/s (and the ratio), restore + verify time (the baseline: sqlite3 .backup of the
# copy back, then `croupier integrity`), and the RPO (data age of the newest shipped cut) under
# a steady bet load through a real node.
# Usage: bench/backup.sh [rounds, default 1000000] [RPO seconds, default 20] [bets/s, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds="${1:-1000000}"
rpo_seconds="${2:-20}"
rate="${3:-200}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p croupier -p croupier-bench --quiet
bench_needs sqlite3
bin="$target_dir/release"
work="$target_dir/bench-backup"
mkdir -p "$work"
db="$work/ledger.db"

have=0
[ -f "$db" ] && have=$(sqlite3 "$db" "SELECT count(*) FROM rounds" 2>/dev/null || echo 0)
if [ "$have" -lt "$rounds" ]; then
  rm -f "$db" "$db-wal" "$db-shm"
  "$bin/croupier-bench" fill-ledger --db "$db" --rounds "$rounds" 2>&1 | grep -v '^$'
fi
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
key="$work/backup.key"
[ -f "$key" ] || "$bin/croupier" backup keygen --out "$key" >/dev/null
export CROUPIER_BACKUP_KEY_FILE="$key" RUST_LOG=warn

now() { date +%s.%N; }
mb=$(awk -v b="$(stat -c %s "$db")" 'BEGIN { printf "%.1f", b / 1e6 }')
echo "# $(date -u +%FT%TZ) on $(nproc) cores: $(sqlite3 "$db" "SELECT count(*) FROM rounds") rounds, $(sqlite3 "$db" "SELECT count(*) FROM journal") journal entries, ${mb} MB"

rm -f "$work"/sqlite3-copy.db* "$work"/sqlite3-restored.db*
t0=$(now); sqlite3 "$db" ".backup '$work/sqlite3-copy.db'"; t1=$(now)
rm -rf "$work/backups"
"$bin/croupier" backup snapshot --db "$db" --target "$work/backups" >"$work/snapshot.json"
t2=$(now)
stored=$(du -sb "$work/backups" | cut -f1)

t3=$(now)
sqlite3 "$work/sqlite3-copy.db" ".backup '$work/sqlite3-restored.db'"
"$bin/croupier" integrity --db "$work/sqlite3-restored.db" >/dev/null
t4=$(now)
"$bin/croupier" backup verify --target "$work/backups" --scratch "$work" >"$work/verify.json"
t5=$(now)
rto_ms=$(grep -o '"rto_ms": [0-9]*' "$work/verify.json" | grep -o '[0-9]*$')

awk -v mb="$mb" -v s1="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    -v s2="$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b-a}')" \
    -v r1="$(awk -v a="$t3" -v b="$t4" 'BEGIN{print b-a}')" \
    -v r2="$(awk -v a="$t4" -v b="$t5" 'BEGIN{print b-a}')" \
    -v stored="$stored" -v rto="$rto_ms" 'BEGIN {
  printf "| %-48s | %8s | %8s |\n", "", "seconds", "MB/s"
  printf "| %-48s | %8.2f | %8.0f |\n", "sqlite3 .backup (baseline)", s1, mb / s1
  printf "| %-48s | %8.2f | %8.0f |\n", "croupier backup snapshot (zstd, sealed, BLAKE3)", s2, mb / s2
  printf "| %-48s | %8.2f | %8s |\n", "sqlite3 copy back + croupier integrity", r1, "-"
  printf "| %-48s | %8.2f | %8s |\n", "croupier backup verify (restore + all checks)", r2, "-"
  printf "snapshot speed vs sqlite3 .backup: %.2fx; stored %.1f MB (%.1fx smaller than the store)\n", s1 / s2, stored / 1e6, mb * 1e6 / stored
  printf "restore + verify vs baseline: %.2fx (RTO reported by verify: %d ms)\n", r1 / r2, rto
}'
rm -f "$work"/sqlite3-copy.db* "$work"/sqlite3-restored.db*

echo "# RPO: ${rate} bets/s through a real node for ${rpo_seconds}s, shipping every second"
"$bin/croupier-bench" backup-rpo --seconds "$rpo_seconds" --rate "$rate"
