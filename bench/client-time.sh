#!/usr/bin/env bash
# Wall time of one certificate issuance (http-01) by `sceau issue` and by lego, against a local
# sceau-server and against Pebble, measured with hyperfine.
#
#   bench/client-time.sh [--no-build] [--runs N]
#
# Each timed run starts from an empty client state (a new account, a new key, a new name), so it
# covers what a first `sceau issue` on a machine does: directory, nonce, account, order,
# challenge, finalize, download, files written. Both CAs resolve every name to 127.0.0.1
# through pebble-challtestsrv; Pebble runs with PEBBLE_VA_NOSLEEP=1 (no artificial delay).
# Prints hyperfine's summary per client and CA. Everything listens on free 127.0.0.1 ports and
# is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/bench/lib.sh"
RUNS=10
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --runs) RUNS=${2:-}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "client-time.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in pebble pebble-challtestsrv lego hyperfine openssl curl ss; do
    command -v "$tool" >/dev/null || { echo "client-time.sh: $tool is not installed" >&2; exit 2; }
done

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p sceau-server -p sceau)
fi
release_dir RELEASE
SCEAU=$RELEASE/sceau
SERVER=$RELEASE/sceau-server

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-client-time.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_url() { # URL CA
    for _ in $(seq 150); do
        [ -s "$2" ] && curl -fsS --max-time 2 --cacert "$2" -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "client-time.sh: $1 did not answer; logs in $WORK" >&2
    exit 2
}

free_port DNS; free_port DNS_MGMT; free_port HTTP01; free_port SCEAU_PORT
free_port PEBBLE_PORT; free_port PEBBLE_MGMT; free_port PEBBLE_TLS
setsid pebble-challtestsrv -dns01 "127.0.0.1:$DNS" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$WORK/dns.log" 2>&1 &
PIDS+=($!)

mkdir -m 700 "$WORK/sceau-data"
setsid "$SERVER" serve --data-dir "$WORK/sceau-data" --listen "127.0.0.1:$SCEAU_PORT" --revocation-listen 127.0.0.1:0 \
    --dns-server "127.0.0.1:$DNS" --http01-port "$HTTP01" --eab off \
    --validation-allow 127.0.0.0/8 --limit-accounts-per-address off >"$WORK/sceau-server.log" 2>&1 &
PIDS+=($!)

pebble_files "$WORK" "$PEBBLE_PORT" "$PEBBLE_MGMT" "$HTTP01" "$PEBBLE_TLS" || {
    echo "client-time.sh: openssl failed: $(tail -n 3 "$WORK/openssl.log")" >&2
    exit 2
}
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 setsid pebble -config "$WORK/pebble.json" \
    -dnsserver "127.0.0.1:$DNS" >"$WORK/pebble.log" 2>&1 &
PIDS+=($!)

SCEAU_DIR="https://127.0.0.1:$SCEAU_PORT/directory"
PEBBLE_DIR="https://127.0.0.1:$PEBBLE_PORT/dir"
wait_url "$SCEAU_DIR" "$WORK/sceau-data/root.pem"
wait_url "$PEBBLE_DIR" "$WORK/api-ca.pem"

# One new name per run: a counter file, bumped by hyperfine's --prepare.
echo 0 >"$WORK/n"
prepare="rm -rf $WORK/state; echo \$((\$(cat $WORK/n) + 1)) >$WORK/n"
name="\$(cat $WORK/n).\$\$.client-time.test"
run() { # LABEL DIRECTORY CA
    hyperfine --style basic --runs "$RUNS" --warmup 1 --prepare "$prepare" \
        -n "sceau issue -> $1" \
        "$SCEAU -q --state-dir $WORK/state --event-log none issue --server $2 --ca-bundle $3 --agree-tos --http-port $HTTP01 -d s$name" \
        -n "lego run -> $1" \
        "LEGO_CA_CERTIFICATES=$3 lego --server $2 --accept-tos --email ops@example.org --path $WORK/state --http --http.port 127.0.0.1:$HTTP01 --domains l$name run >/dev/null 2>&1"
}
run sceau-server "$SCEAU_DIR" "$WORK/sceau-data/root.pem"
run pebble "$PEBBLE_DIR" "$WORK/api-ca.pem"
