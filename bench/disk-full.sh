#!/usr/bin/env bash
# What sceau-server logs during a disk-full episode under load.
#
# Puts a fresh sceau-server's data directory on a 64 MiB tmpfs, drives it with sceau-bench
# (full http-01 issuances, every name resolving to 127.0.0.1 through pebble-challtestsrv),
# fills the tmpfs for --seconds, then frees it and checks that issuance resumes. Prints one line:
#   error_lines=… rollback_failed=… warn_lines=… log_lines=… issued_after=… seconds=…
# counted over the server's log (JSON lines) from the moment the disk is full until it is freed
# (issued_after: certificates issued in the 5 s after the space came back).
#
# Needs root (mount), pebble-challtestsrv, and the two binaries:
#   cargo build -p sceau-server -p sceau-bench
#   sudo bench/disk-full.sh [--server BIN] [--bench BIN] [--seconds 20] [--concurrency 16]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SERVER="$ROOT/target/debug/sceau-server"
BENCH="$ROOT/target/debug/sceau-bench"
SECONDS_FULL=20
CONCURRENCY=16
while [ $# -gt 0 ]; do
    case "$1" in
    --server) SERVER=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    --seconds) SECONDS_FULL=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "disk-full.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() { echo "disk-full.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root to mount a tmpfs"
[ -x "$SERVER" ] || die "$SERVER is missing (cargo build -p sceau-server)"
[ -x "$BENCH" ] || die "$BENCH is missing (cargo build -p sceau-bench)"
CHALLTESTSRV=$(command -v pebble-challtestsrv) || die "pebble-challtestsrv is missing"

WORK=$(mktemp -d /tmp/sceau-disk-full.XXXXXX)
DISK="$WORK/disk"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    umount -l "$DISK" 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "disk-full.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir "$DISK"
mount -t tmpfs -o size=64m tmpfs "$DISK"

free_port DNS_PORT; free_port DNS_MGMT_PORT; free_port HTTP01_PORT; free_port PORT
"$CHALLTESTSRV" -dns01 "127.0.0.1:$DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    >"$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)

extra=()
help=$("$SERVER" serve --help 2>/dev/null || true)
# Servers that check validation targets refuse loopback unless told.
if grep -q -- --validation-allow <<<"$help"; then
    extra+=(--validation-allow 127.0.0.0/8)
fi
# CRLs and OCSP on a port of the kernel's choosing, where the server has that listener.
if grep -q -- --revocation-listen <<<"$help"; then
    extra+=(--revocation-listen 127.0.0.1:0)
fi
# The load is one address with a few accounts: rate limits would answer it before storage does.
for limit in nonces-per-address accounts-per-address orders-per-account names-per-account \
    pending-authzs-per-account; do
    if grep -q -- "--limit-$limit" <<<"$help"; then extra+=("--limit-$limit" off); fi
done
SCEAU_LOG=info "$SERVER" serve --data-dir "$DISK/data" --listen "127.0.0.1:$PORT" \
    --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" --eab off --log-format json \
    "${extra[@]}" >"$WORK/server.out" 2>"$WORK/server.log" &
PIDS+=($!)
for _ in $(seq 300); do
    grep -q "sceau-server is ready" "$WORK/server.out" 2>/dev/null && break
    sleep 0.1
done
grep -q "sceau-server is ready" "$WORK/server.out" || die "server did not start: $(tail -n 5 "$WORK/server.log")"

run_bench() { # SECONDS OUT
    "$BENCH" --directory "https://127.0.0.1:$PORT/directory" --ca-bundle "$DISK/data/root.pem" \
        --concurrency "$CONCURRENCY" --orders 100000000 --http-port "$HTTP01_PORT" \
        --max-seconds "$1" --order-timeout-s 5 --request-timeout-s 5 >"$2.out" 2>"$2.err" || true
}

# Accounts are made before the disk fills; then the load runs through the whole episode.
run_bench $((SECONDS_FULL + 4)) "$WORK/during" &
BENCH_PID=$!
PIDS+=($BENCH_PID)
sleep 2
before=$(wc -l <"$WORK/server.log")
dd if=/dev/zero of="$DISK/filler" bs=1M status=none 2>/dev/null || true
sleep "$SECONDS_FULL"
tail -n +"$((before + 1))" "$WORK/server.log" >"$WORK/during.log"
rm -f "$DISK/filler"
wait "$BENCH_PID" || true
run_bench 5 "$WORK/after"

count() { grep -c -- "$1" "$WORK/during.log" || true; }
issued_after=$(sed -n 's/.*issued=\([0-9]*\).*/\1/p' "$WORK/after.out" | tail -n 1)
echo "error_lines=$(count '"level":"ERROR"') rollback_failed=$(count 'rollback failed')" \
    "warn_lines=$(count '"level":"WARN"') log_lines=$(count '')" \
    "issued_after=${issued_after:-0} seconds=$SECONDS_FULL"
