#!/usr/bin/env bash
# What one client address can do to the HTTPS listener of Pebble and of sceau-server, in one run.
#
#   bench/connections.sh [--connections N] [--no-build] [--keep] [-h]
#
# Builds sceau-server and sceau-connbench (release), then starts, one after the other so that
# they never share the CPU: Pebble (memory only), sceau-server with its default limits, and
# sceau-server with its per-address limit raised to N (to measure memory per connection at
# scale). Against each, sceau-connbench opens up to N TLS connections from 127.0.0.1 and sends
# nothing on them, counts those still open after 3 s, reads the server's VmRSS
# (/proc/PID/status) before and while they are held, then times one slow-loris connection
# (a request head that gains one header line per second and never ends; given up after
# LORIS_MAX seconds).
#
# Prints one sceau-connbench line per server, then a summary: idle TLS connections held by one
# address, resident memory per held connection, and how long the slow-loris stayed open.
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped on exit;
# every step is bounded in time. Exit status: 0 when every run completed, 1 when one failed,
# 2 when something could not start.
#
# Environment (all optional):
#   CONNECTIONS=10000        connections each run tries to hold (also --connections)
#   LORIS_MAX=60             seconds before the slow-loris is declared still open
#   START_TIMEOUT=30         seconds for a server to answer its directory
#   BUILD_TIMEOUT=3600       seconds for the release build
#   PEBBLE=pebble            binary to use
#   SCEAU_SERVER, SCEAU_CONNBENCH   binaries to use instead of target/release/ (with --no-build)
#   KEEP=1                   keep the work directory (logs, configs) like --keep
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONNECTIONS=${CONNECTIONS:-10000}
LORIS_MAX=${LORIS_MAX:-60}
START_TIMEOUT=${START_TIMEOUT:-30}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
PEBBLE=${PEBBLE:-pebble}
KEEP=${KEEP:-0}
BUILD=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { FAILED=1; echo "connections.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --connections) CONNECTIONS=${2:-}; shift 2 || die "--connections needs a number" ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$CONNECTIONS" in ''|*[!0-9]*) die "--connections takes a number" ;; esac

for tool in "$PEBBLE" openssl curl ss timeout cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
# Each held connection costs a descriptor here and one in the server.
[ "$(ulimit -Hn)" -gt $((CONNECTIONS + 512)) ] ||
    die "the descriptor limit ($(ulimit -Hn)) is too low for $CONNECTIONS connections"
ulimit -n "$(ulimit -Hn)"

# --- processes and cleanup (bench/lib.sh): each server leads its own process group -----------
. "$ROOT/bench/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-connections.XXXXXX")
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    echo "connections.sh: cargo build --release -p sceau-server -p sceau-bench" >&2
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --quiet -p sceau-server -p sceau-bench) \
        || die "release build failed"
fi
release_dir RELEASE
SCEAU_SERVER=${SCEAU_SERVER:-"$RELEASE/sceau-server"}
CONNBENCH=${SCEAU_CONNBENCH:-"$RELEASE/sceau-connbench"}
[ -x "$SCEAU_SERVER" ] || die "$SCEAU_SERVER is missing (build it or drop --no-build)"
[ -x "$CONNBENCH" ] || die "$CONNBENCH is missing (build it or drop --no-build)"

declare -A LINE
run_connbench() { # NAME ADDR CA PID
    local rc=0
    # Holding, settling, the slow-loris cap and the pauses in between, with room to spare.
    timeout $((LORIS_MAX + 180)) "$CONNBENCH" --addr "$2" --ca-bundle "$3" --server-pid "$4" \
        --connections "$CONNECTIONS" --loris-max-secs "$LORIS_MAX" \
        >"$WORK/$1.out" 2>"$WORK/$1.err" || rc=$?
    LINE[$1]=$(tail -n 1 "$WORK/$1.out")
    if [ "$rc" != 0 ]; then
        FAILED=1
        [ -n "${LINE[$1]}" ] || LINE[$1]="(no result: sceau-connbench exited $rc)"
        sed "s/^/  [$1] /" "$WORK/$1.err" | head -n 12 >&2
    fi
    printf '%-13s %s\n' "$1" "${LINE[$1]}"
}

# --- Pebble ----------------------------------------------------------------------------------
free_port PEBBLE_PORT; free_port PEBBLE_MGMT_PORT; free_port PEBBLE_HTTP_PORT; free_port PEBBLE_TLS_PORT
pebble_files "$WORK" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$PEBBLE_HTTP_PORT" "$PEBBLE_TLS_PORT" ||
    die "openssl failed: $(tail -n 3 "$WORK/openssl.log")"
setsid "$PEBBLE" -config "$WORK/pebble.json" >"$WORK/pebble.log" 2>&1 &
PIDS+=($!)
PEBBLE_PID=$!
wait_directory pebble "https://127.0.0.1:$PEBBLE_PORT/dir" "$WORK/api-ca.pem" "$PEBBLE_PID" "$WORK/pebble.log"
run_connbench pebble "127.0.0.1:$PEBBLE_PORT" "$WORK/api-ca.pem" "$PEBBLE_PID"
stop "$PEBBLE_PID"

# --- sceau-server: default limits, then the per-address limit raised to CONNECTIONS ----------
run_sceau() { # NAME FLAGS...
    local name=$1 port
    shift
    free_port port
    mkdir -m 700 "$WORK/$name"
    setsid "$SCEAU_SERVER" serve --data-dir "$WORK/$name" --listen "127.0.0.1:$port" --revocation-listen 127.0.0.1:0 --eab off \
        "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    local pid=$!
    wait_directory "$name" "https://127.0.0.1:$port/directory" "$WORK/$name/root.pem" "$pid" "$WORK/$name.log"
    run_connbench "$name" "127.0.0.1:$port" "$WORK/$name/root.pem" "$pid"
    stop "$pid"
}
run_sceau sceau
run_sceau sceau-raised --max-connections-per-address "$CONNECTIONS" \
    --max-connections $((CONNECTIONS + 100))

# --- summary ---------------------------------------------------------------------------------
for name in pebble sceau sceau-raised; do
    line=${LINE[$name]:-}
    printf 'summary %-13s held %s of %s idle TLS connections from one address; %s KiB RSS per held connection; slow-loris open %s s\n' \
        "$name" "$(field "$line" held)" "$(field "$line" attempted)" "$(field "$line" per_conn_kib)" \
        "$(field "$line" slowloris_s)"
done
[ "$FAILED" = 0 ]
