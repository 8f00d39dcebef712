# The pieces the bench scripts share: the tools they install, the build, the ledger a stack
# writes (a SQLite file or a scratch PostgreSQL database), a free port and the wait for a
# server to answer. Sourced, not run: `. bench/lib.sh` from the repository's root,
# after `set -euo pipefail`.

# The PostgreSQL server whose scratch databases the stacks write to.
pg_server="${CROUPIER_TEST_PG:-postgres://root@127.0.0.1:5432/postgres}"

# bench_needs TOOL...: installs, in one apt-get, the Debian package of each tool not on the
# PATH (TOOL, or TOOL=PACKAGE when the package is named otherwise).
bench_needs() {
  local spec missing=()
  for spec in "$@"; do
    command -v "${spec%%=*}" >/dev/null || missing+=("${spec#*=}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# bench_croupier [PACKAGE...]: builds the release `croupier` (and the packages named, in the
# same build) and sets `bin` to it.
bench_croupier() {
  local packages=(-p croupier) package
  for package in "$@"; do packages+=(-p "$package"); done
  cargo build --release "${packages[@]}" --quiet
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/croupier"
}

# bench_ledger WORK NAME DEFAULT: the ledger a stack whose data folder is WORK/data writes,
# by CROUPIER_BENCH_STORE (DEFAULT when unset): its SQLite file, or for `postgres` a new
# scratch database of $pg_server named after NAME. Sets `store` (for `--store`) and `pg_db`
# (empty on SQLite); a caller's `local store pg_db` keeps them its own.
bench_ledger() {
  store="$1/data/ledger.db"
  pg_db=""
  if [ "${CROUPIER_BENCH_STORE:-$3}" = postgres ]; then
    pg_db="croupier_bench_$(date +%s)_$2"
    psql "$pg_server" -qc "CREATE DATABASE $pg_db"
    store="${pg_server%/*}/$pg_db"
  fi
}

# bench_drop_ledger: drops `bench_ledger`'s scratch database, if there is one.
bench_drop_ledger() {
  [ -z "$pg_db" ] || psql "$pg_server" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" || true
}

# bench_wait URL [TRIES]: waits until URL answers 2xx, 0.2 s between tries (100 by default);
# gives up quietly, and the measurement that follows says what failed.
bench_wait() {
  local _
  for _ in $(seq "${2:-100}"); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
}

# bench_free_port: a TCP port of 127.0.0.1 free now (the kernel's pick).
bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
