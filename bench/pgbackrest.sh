#!/usr/bin/env bash
# pgBackRest against pg_basebackup on the same PostgreSQL ledger, in one run: the full backup
# (`croupier backup snapshot --pg-data`, i.e. `pgbackrest --type=full backup` with zstd, vs
# `pg_basebackup -X stream`, plain), and restore + verify (`croupier backup verify --pg-data`:
# pgbackrest restore into a scratch folder, start, recovery from the archive, every ledger
# invariant; vs copying the base backup into place, starting it and `croupier integrity`).
# Then the RPO under load with continuous WAL archiving: archive_timeout set to 1 s, a real
# node takes a steady bet load on the same ledger while croupier-bench pg-backup-rpo samples
# every 100 ms the data age of what a restore would get back (p50/p99/max), and a
# point-in-time restore to the end of the load (`croupier backup verify --at`) must hold every
# round played and pass every ledger invariant.
# The ledger is filled with real dice rounds (croupier-bench fill-ledger) in a cluster of its
# own (initdb in a temporary folder, as the postgres user when run as root), removed after.
# Usage: bench/pgbackrest.sh [rounds, default 200000] [RPO seconds, default 30] [bets/s, default 200]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-200000}"
rpo_seconds="${2:-30}"
rate="${3:-200}"
archive_timeout_s=1
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p croupier -p croupier-bench --quiet
. bench/lib.sh
bench_needs pgbackrest
bin="$(cd "$target_dir/release" && pwd)"
pgbin="${CROUPIER_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

work="$(mktemp -d /tmp/croupier-bench-pgbackrest.XXXXXX)"
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
port="$(bench_free_port)"
copy_port="$(bench_free_port)"
cleanup() {
  as_pg "$pgbin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  as_pg "$pgbin/pg_ctl" -D "$work/copy" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg "$pgbin/initdb" -D "$work/data" -U postgres --auth=trust >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
max_wal_senders = 5
CONF
pg=(--pg-data "$work/data" --pg-port "$port" --pg-socket "$work"
    --pgbackrest-conf "$work/pgbackrest/croupier.conf" --target "$work/repo")
"$bin/croupier" backup pg-setup "${pg[@]}" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["postgresql_conf"])' >>"$work/data/postgresql.conf"
as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U postgres croupier
url="postgres://postgres@127.0.0.1:$port/croupier"
"$bin/croupier-bench" fill-ledger --store "$url" --rounds "$rounds" 2>&1 | grep -v '^$'
size=$(as_pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d croupier -Atc \
  "SELECT round(pg_database_size('croupier') / 1e6, 1)")
entries=$(as_pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d croupier -Atc "SELECT count(*) FROM journal")
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $("$pgbin/postgres" --version), $(pgbackrest version):"
echo "# $rounds rounds, $entries journal entries, database ${size} MB"

t0=$(now)
RUST_LOG=warn "$bin/croupier" backup snapshot "${pg[@]}" >"$work/snapshot.json"
pgbackrest_backup=$(since "$t0")
repo_mb=$(python3 -c 'import json, sys; b = json.load(open(sys.argv[1]))["backup"]; print(round(b["info"]["repository"]["size"] / 1e6, 1))' "$work/snapshot.json")

t0=$(now)
as_pg "$pgbin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$work/basebackup" -X stream -c fast
basebackup=$(since "$t0")
basebackup_mb=$(du -sm "$work/basebackup" | cut -f1)

t0=$(now)
RUST_LOG=warn "$bin/croupier" backup verify "${pg[@]}" --pg-database croupier --scratch "$work/scratch" >"$work/verify.json"
pgbackrest_restore=$(since "$t0")
rto_ms=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["ok"], r; print(r["rto_ms"])' "$work/verify.json")

t0=$(now)
as_pg cp -a "$work/basebackup" "$work/copy"
as_pg "$pgbin/pg_ctl" -D "$work/copy" -l "$work/copy.log" -w \
  -o "-c port=$copy_port -c archive_mode=off -c unix_socket_directories=$work" start >/dev/null
"$bin/croupier" integrity --store "postgres://postgres@127.0.0.1:$copy_port/croupier" >"$work/integrity.json"
plain_restore=$(since "$t0")

printf '%-34s %12s %12s\n' "" "pgBackRest" "pg_basebackup"
printf '%-34s %11ss %11ss\n' "full backup" "$pgbackrest_backup" "$basebackup"
printf '%-34s %10s MB %10s MB\n' "stored" "$repo_mb" "$basebackup_mb"
printf '%-34s %11ss %11ss\n' "restore + start + every invariant" "$pgbackrest_restore" "$plain_restore"
echo "(pgBackRest's own RTO figure from its report: ${rto_ms} ms)"

echo "# RPO: ${rate} bets/s through a real node on this ledger for ${rpo_seconds}s, archive_timeout = ${archive_timeout_s}s"
as_pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d croupier -q \
  -c "ALTER SYSTEM SET archive_timeout = '${archive_timeout_s}s'" -c "SELECT pg_reload_conf()" >/dev/null
rounds_before=$(as_pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -d croupier -Atc "SELECT count(*) FROM rounds")
"$bin/croupier-bench" pg-backup-rpo --store "$url" --seconds "$rpo_seconds" --rate "$rate" | tee "$work/rpo.txt"
figure() { awk -v k="$1" '$1 == k { print $2 }' "$work/rpo.txt"; }
t0=$(now)
RUST_LOG=warn "$bin/croupier" backup verify "${pg[@]}" --pg-database croupier --scratch "$work/scratch" \
  --at "$(figure end_ms)" >"$work/pitr.json"
pitr=$(since "$t0")
python3 - "$work/pitr.json" "$(figure rounds_at_end)" "$pitr" "$rounds_before" "$(figure rpo_bets_acknowledged)" <<'PY'
import json, sys
report, rounds, seconds = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[3]
before, acknowledged = int(sys.argv[4]), int(sys.argv[5])
got = report["state"]["counts"]["rounds"]
assert report["ok"], report
assert got == rounds, f"the restore holds {got} rounds, the ledger had {rounds} at the end"
assert got - before >= acknowledged, f"{got - before} rounds played, {acknowledged} acknowledged"
print(f"point-in-time restore to the end of the load: {got} rounds, {got - before} of them played "
      f"under load ({acknowledged} acknowledged), every invariant ok, {seconds} s")
PY
