#!/usr/bin/env bash
# One sceau-server instance against two on one PostgreSQL database, under the same load.
#
#   bench/instances.sh [--no-build] [--keep] [-h]
#
# Starts a throwaway PostgreSQL server (initdb in a temporary directory; fsync on, as in
# production) and pebble-challtestsrv (DNS answering 127.0.0.1 for every name). Then, one after
# the other: one sceau-server instance with $CONCURRENCY sceau-bench clients; and two instances
# sharing the database and the data directory (the CA), each with half the clients from its
# own sceau-bench, started together. Prints each bench line, the total throughput, and the
# server CPU per certificate (each bench samples its own instance; the total is weighted by the
# certificates each issued). Both runs share one machine: two instances on its cores show the
# cost of sharing one database, not a scale-out.
#
# Exit status: 0 when every run issued all its orders, 1 otherwise, 2 when something could not
# start. Environment (optional): CONCURRENCY=64, ORDERS=1024, RUN_TIMEOUT=300, SCEAU_SERVER and
# SCEAU_BENCH (binaries, with --no-build), CHALLTESTSRV=pebble-challtestsrv, KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONCURRENCY=${CONCURRENCY:-64}
ORDERS=${ORDERS:-1024}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
CHALLTESTSRV=${CHALLTESTSRV:-pebble-challtestsrv}
KEEP=${KEEP:-0}
BUILD=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { FAILED=1; echo "instances.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PGBIN" ] || die "PostgreSQL is not installed (the README's test command installs it)"
for tool in "$CHALLTESTSRV" curl ss timeout runuser; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

. "$ROOT/bench/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-instances.XXXXXX")
chmod 755 "$WORK"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p sceau-server -p sceau-bench) || die "build failed"
fi
release_dir RELEASE
BENCH=${SCEAU_BENCH:-"$RELEASE/sceau-bench"}
SERVER=${SCEAU_SERVER:-"$RELEASE/sceau-server"}
[ -x "$BENCH" ] && [ -x "$SERVER" ] || die "build sceau-server and sceau-bench first (or drop --no-build)"

# --- PostgreSQL, as the postgres user when root -----------------------------------------------
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port PG_PORT
mkdir "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg "$PGBIN/initdb" -D "$WORK/pg/data" -A trust -U postgres >"$WORK/initdb.log" 2>&1 || die "initdb failed"
setsid bash -c "$(declare -f as_pg); as_pg '$PGBIN/postgres' -D '$WORK/pg/data' -h 127.0.0.1 -p $PG_PORT -k '$WORK/pg' -c max_connections=200" \
    >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres sceau 2>/dev/null && break
    sleep 0.2
done
DB="postgres://postgres@127.0.0.1:$PG_PORT/sceau"

free_port DNS_PORT; free_port DNS_MGMT_PORT
setsid "$CHALLTESTSRV" -dns01 "127.0.0.1:$DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    >"$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] && break; sleep 0.1; done

DATA=$WORK/data
mkdir -m 700 "$DATA"
start() { # NAME PORT HTTP01_PORT: an instance on the shared database and data directory
    setsid "$SERVER" serve --data-dir "$DATA" --database "$DB" --listen "127.0.0.1:$2" \
        --revocation-listen 127.0.0.1:0 --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$3" \
        --eab off --validation-allow 127.0.0.0/8 --limit-accounts-per-address off \
        --limit-orders-per-account off --limit-names-per-account off >>"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
    wait_directory "$1" "https://127.0.0.1:$2/directory" "$DATA/root.pem" "$LAST_PID" "$WORK/$1.log"
}
bench() { # NAME PORT HTTP01_PORT PID CLIENTS ORDERS
    timeout "$RUN_TIMEOUT" "$BENCH" --directory "https://127.0.0.1:$2/directory" \
        --ca-bundle "$DATA/root.pem" --concurrency "$5" --orders "$6" --http-port "$3" \
        --server-pid "$4" --max-seconds $((RUN_TIMEOUT - 30)) >"$WORK/$1.out" 2>"$WORK/$1.err"
}

free_port A_PORT; free_port A_HTTP
start one "$A_PORT" "$A_HTTP"
rc=0
bench one "$A_PORT" "$A_HTTP" "$LAST_PID" "$CONCURRENCY" "$ORDERS" || rc=$?
[ "$rc" = 0 ] || FAILED=1
ONE=$(tail -n 1 "$WORK/one.out")
printf 'one instance   %s\n' "$ONE"
stop "$LAST_PID"

# Chosen now: the first run made thousands of connections from ephemeral ports.
free_port A_PORT; free_port A_HTTP; free_port B_PORT; free_port B_HTTP
start a "$A_PORT" "$A_HTTP"; A_PID=$LAST_PID
start b "$B_PORT" "$B_HTTP"; B_PID=$LAST_PID
half=$((CONCURRENCY / 2))
bench a "$A_PORT" "$A_HTTP" "$A_PID" "$half" $((ORDERS / 2)) & BA=$!
bench b "$B_PORT" "$B_HTTP" "$B_PID" "$half" $((ORDERS / 2)) & BB=$!
wait "$BA" || FAILED=1
wait "$BB" || FAILED=1
A=$(tail -n 1 "$WORK/a.out"); B=$(tail -n 1 "$WORK/b.out")
printf 'instance a     %s\n' "$A"
printf 'instance b     %s\n' "$B"
awk -v one="$(field "$ONE" certs_per_s)" -v onecpu="$(field "$ONE" server_cpu_ms_per_cert)" \
    -v ia="$(field "$A" issued)" -v ib="$(field "$B" issued)" \
    -v ea="$(field "$A" elapsed_s)" -v eb="$(field "$B" elapsed_s)" \
    -v ca="$(field "$A" server_cpu_ms_per_cert)" -v cb="$(field "$B" server_cpu_ms_per_cert)" 'BEGIN {
    e = (ea > eb ? ea : eb)
    printf "summary one instance %s certs/s, %s ms CPU/cert; two instances %.1f certs/s, %.2f ms CPU/cert (%d + %d certificates in %.2f s)\n",
        one, onecpu, (ia + ib) / e, (ca * ia + cb * ib) / (ia + ib), ia, ib, e }'
[ "$FAILED" = 0 ]
