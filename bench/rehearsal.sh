#!/usr/bin/env bash
# Rehearsal of a data-centre fault on one machine (issue 19, item 5). Four network namespaces
# stand in for four machines on one switch (a bridge, 10.77.0.0/24):
#
#   cr-h1 10.77.0.11   node-1, gateway-1        cr-h3 10.77.0.13   node-3
#   cr-h2 10.77.0.12   node-2, gateway-2        cr-db 10.77.0.20   PostgreSQL (its own cluster)
#
# The nodes share the ledger on cr-db; each gateway balances over all three nodes. Two load
# generators (from the root namespace, as players would come from outside) play through
# gateway-1 and gateway-2 at once. At CUT seconds, host cr-h3 loses its network (its link
# goes down: packets to it vanish, no refusal — a switch port or a machine gone); at RESTORE
# seconds it comes back. The gateways must eject node-3 and move its players, the players
# keep playing, and the bank checks (the ledger against every acknowledged bet of each
# generator) must pass: no money lost, none made up, nothing settled twice.
#
# Needs root (ip netns) and PostgreSQL's server binaries (Debian's postgresql package);
# everything it makes — namespaces, bridge, processes, the cluster's folder — is removed on
# exit, however it exits. Bounded: every wait has a deadline.
# Usage: bench/rehearsal.sh [seconds=30] [bets-per-second-per-gateway=60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
rate="${2:-60}"
cut_at=$((seconds / 3))
restore_at=$((2 * seconds / 3))
[ "$(id -u)" -eq 0 ] || { echo "run as root: it makes network namespaces" >&2; exit 1; }
pg_bin="${CROUPIER_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
[ -x "$pg_bin/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
. bench/lib.sh
bench_needs jq curl bc
cargo build --release -p croupier --quiet
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/croupier"

work="$(mktemp -d /tmp/croupier-rehearsal.XXXXXX)"
chmod 0755 "$work"
token="rehearsal-ops-token-$(od -An -tx8 -N16 /dev/urandom | tr -d ' \n')"
export CROUPIER_OPS_TOKEN="$token"
hosts=(cr-h1 cr-h2 cr-h3 cr-db)
declare -A address=([cr-h1]=10.77.0.11 [cr-h2]=10.77.0.12 [cr-h3]=10.77.0.13 [cr-db]=10.77.0.20)
pids=()

cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null; done
  [ -d "$work/pg" ] && ip netns exec cr-db runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  for host in "${hosts[@]}"; do
    ip netns del "$host" 2>/dev/null
    ip link del "v-$host" 2>/dev/null # at once: a namespace may outlive its deletion a while
  done
  ip link del crbr0 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Within DEADLINE seconds, until the command succeeds.
wait_until() {
  local deadline=$(($(date +%s) + $1)) what="$2"
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $what" >&2; exit 1; }
    sleep 0.2
  done
}

# The switch, and one cable per machine (after what an interrupted run may have left).
for host in "${hosts[@]}"; do ip link del "v-$host" 2>/dev/null || true; done
ip link add crbr0 type bridge
ip addr add 10.77.0.1/24 dev crbr0
ip link set crbr0 up
for host in "${hosts[@]}"; do
  ip netns add "$host"
  ip link add "v-$host" type veth peer name eth0 netns "$host"
  ip link set "v-$host" master crbr0 up
  ip netns exec "$host" ip addr add "${address[$host]}/24" dev eth0
  ip netns exec "$host" ip link set eth0 up
  ip netns exec "$host" ip link set lo up
done
on() { local host="$1"; shift; ip netns exec "$host" "$@"; }

# PostgreSQL on its own machine: a cluster of its own (initdb as the postgres user).
mkdir "$work/pg" && chown postgres: "$work/pg"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg" -U postgres -A trust >/dev/null
echo "host all all 10.77.0.0/24 trust" >>"$work/pg/pg_hba.conf"
on cr-db runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-c listen_addresses=10.77.0.20 -p 5432 -c unix_socket_directories=$work/pg -c max_connections=200" start >/dev/null
"$pg_bin/createdb" -h 10.77.0.20 -U postgres croupier
store="postgres://postgres@10.77.0.20:5432/croupier"

start() { # host name command…
  local host="$1" name="$2"
  shift 2
  mkdir -p "$work/$name"
  # Not through a shell function: `ip netns exec` execs croupier, so $! is croupier itself.
  ip netns exec "$host" "$bin" "$@" --data "$work/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
}
for n in 1 2 3; do
  host="cr-h$n"
  start "$host" "node-$n" node --listen "${address[$host]}:7001" --store "$store" --node-id "node-$n" --demo
done
nodes=(--node node-1=http://10.77.0.11:7001 --node node-2=http://10.77.0.12:7001 --node node-3=http://10.77.0.13:7001)
for n in 1 2; do
  host="cr-h$n"
  start "$host" "gateway-$n" gateway --listen "${address[$host]}:8000" --admin-listen "${address[$host]}:8001" "${nodes[@]}"
done
for n in 1 2 3; do wait_until 60 "node-$n" curl -sf "http://10.77.0.1$n:7001/readyz"; done
admin_nodes() { curl -sf -m 2 -H "Authorization: Bearer $token" "http://10.77.0.1$1:8001/admin/nodes"; }
eligible() { # every gateway routes to all three nodes
  for g in 1 2; do
    admin_nodes "$g" | jq -e '[.nodes[] | select(.eligible)] | length == 3' >/dev/null || return 1
  done
}
wait_until 30 "the gateways to route to every node" eligible

echo "# rehearsal $(date -u +%FT%TZ) on $(nproc) cores: ${seconds}s, ${rate} bets/s per gateway, cr-h3 cut at ${cut_at}s, back at ${restore_at}s"
load=(loadtest --rate "$rate" --players 40 --duration-secs "$seconds" --check-ledger "$store" --quiet)
"$bin" "${load[@]}" --target http://10.77.0.11:8000 --summary-json "$work/load-1.json" >"$work/load-1.out" 2>&1 &
load_1=$!
sleep 1.5 # the generators name their players after the second they start
"$bin" "${load[@]}" --target http://10.77.0.12:8000 --summary-json "$work/load-2.json" >"$work/load-2.out" 2>&1 &
load_2=$!
pids+=("$load_1" "$load_2")
started=$(date +%s.%N)
sleep "$cut_at"
on cr-h3 ip link set eth0 down
cut=$(date +%s.%N)
echo "cut: cr-h3's link is down"
ejected() { # neither gateway sends new work to node-3
  for g in 1 2; do
    admin_nodes "$g" | jq -e '.nodes[] | select(.name == "node-3") | .eligible == false' >/dev/null || return 1
  done
}
wait_until 20 "node-3's ejection" ejected
printf 'node-3 out of both gateways %.2f s after the cut\n' "$(echo "$(date +%s.%N) - $cut" | bc)"
sleep "$(echo "$restore_at - ($(date +%s.%N) - $started)" | bc | sed 's/^-.*/0/')"
on cr-h3 ip link set eth0 up
restored=$(date +%s.%N)
echo "restore: cr-h3's link is up"
wait_until 30 "node-3 back in both gateways" eligible
printf 'node-3 back in both gateways %.2f s after the restore\n' "$(echo "$(date +%s.%N) - $restored" | bc)"

failed=0
for g in 1 2; do
  pid_var="load_$g"
  wait "${!pid_var}" || failed=1
  echo "== players through gateway-$g"
  cat "$work/load-$g.out"
done
[ "$failed" -eq 0 ] || { echo "a load generator or its bank check FAILED" >&2; exit 1; }
echo "rehearsal passed: players kept playing through the cut, the bank checks hold"
