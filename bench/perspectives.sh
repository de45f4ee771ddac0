#!/usr/bin/env bash
# Multi-perspective validation (R28): what three remote perspectives cost, in one run.
#
#   bench/perspectives.sh [--orders-1 100] [--orders-64 3200] [--no-build] [--keep] [-h]
#
# Two sceau-server primaries, one after the other (never sharing the CPU), on fresh data
# directories with default SQLite storage: the first validates alone, the second asks three
# `sceau-server validator` processes on loopback (mutual TLS, a validation CA made here by
# openssl, default quorum 2 of 3). Every resolver is pebble-challtestsrv (every name is
# 127.0.0.1). Each primary gets sceau-bench at 1 client (latency: one issuance with one
# authorization, so the p50 difference is the added latency per authorization) and at 64
# clients (throughput). Polls are every 10 ms at least so that poll waits do not hide the
# difference. The validators run on the same two cores as the primary here; in a deployment
# they are on other hosts, so their CPU is reported apart.
# Output: the four bench lines, `latency` (p50 and p99 added per authorization), `throughput`
# (ratio at 64 clients) and `validators` (their CPU per certificate). Exit status 0 when every
# order was issued, 1 otherwise, 2 when something could not start.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
ORDERS_1=100
ORDERS_64=3200
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --orders-1) ORDERS_1=${2:-}; shift 2 ;;
    --orders-64) ORDERS_64=${2:-}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "perspectives.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "perspectives.sh: $*" >&2; FAILED=1; exit 2; }
case "$ORDERS_1$ORDERS_64" in *[!0-9]* | '') die "options take whole numbers" ;; esac
for tool in pebble-challtestsrv openssl curl ss timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

release_dir RELEASE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p sceau-server -p sceau-bench) || die "build failed"
fi
SERVER="$RELEASE/sceau-server"
BENCH="$RELEASE/sceau-bench"
[ -x "$SERVER" ] && [ -x "$BENCH" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/sceau-perspectives.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
free_port DNS_PORT; free_port DNS_MGMT_PORT; free_port HTTP01_PORT

start_challtestsrv "$DNS_PORT" "$DNS_MGMT_PORT" "$WORK/challtestsrv.log"

# ---- the validation CA, three validators' certificates and the primary's ----
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bench validation CA" -keyout ca.key -out ca.pem
    leaf() { # NAME EXT
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
            -keyout "$1.key" -out "$1.csr"
        printf '%s\n' "$2" >"$1.ext"
        openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile "$1.ext" -out "$1.pem"
    }
    for v in dc1 dc2 dc3; do leaf "$v" "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth"; done
    leaf primary "extendedKeyUsage=clientAuth"
    chmod 600 ./*.key
) >"$WORK/openssl.log" 2>&1 || die "openssl: $(tail -n 3 "$WORK/openssl.log")"

VPIDS=()
REMOTES=""
for v in dc1 dc2 dc3; do
    free_port VPORT
    SCEAU_LOG=warn setsid "$SERVER" validator --name "$v" --listen "127.0.0.1:$VPORT" \
        --tls-ca "$WORK/ca.pem" --tls-cert "$WORK/$v.pem" --tls-key "$WORK/$v.key" \
        --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" \
        --validation-allow 127.0.0.0/8 >"$WORK/$v.out" 2>"$WORK/$v.log" &
    PIDS+=($!)
    VPIDS+=($!)
    for _ in $(seq 100); do grep -q "is ready" "$WORK/$v.out" 2>/dev/null && break; sleep 0.1; done
    grep -q "is ready" "$WORK/$v.out" || fail_start "validator $v" "$WORK/$v.log"
    REMOTES+="[[perspectives.remote]]
name = \"$v\"
url = \"https://127.0.0.1:$VPORT\"
"
done
cat >"$WORK/perspectives.toml" <<EOF
[perspectives]
tls_ca = "$WORK/ca.pem"
tls_cert = "$WORK/primary.pem"
tls_key = "$WORK/primary.key"
$REMOTES
EOF
: >"$WORK/alone.toml"


declare -A LINE
run_primary() { # NAME CONFIG
    local name=$1 c orders rc port pid v0 v1
    free_port port
    SCEAU_LOG=warn setsid "$SERVER" serve --data-dir "$WORK/$name" --listen "127.0.0.1:$port" \
        --revocation-listen 127.0.0.1:0 --dns-server "127.0.0.1:$DNS_PORT" \
        --http01-port "$HTTP01_PORT" --eab off --validation-allow 127.0.0.0/8 \
        --limit-accounts-per-address off --limit-orders-per-account off \
        --limit-names-per-account off --config "$2" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    pid=$!
    PIDS+=("$pid")
    wait_directory "$name" "https://127.0.0.1:$port/directory" "$WORK/$name/root.pem" "$pid" "$WORK/$name.log"
    for c in 1 64; do
        orders=$([ "$c" = 1 ] && echo "$ORDERS_1" || echo "$ORDERS_64")
        v0=$(group_cpu "${VPIDS[@]}")
        rc=0
        timeout 600 "$BENCH" --directory "https://127.0.0.1:$port/directory" \
            --ca-bundle "$WORK/$name/root.pem" --concurrency "$c" --orders "$orders" \
            --http-port "$HTTP01_PORT" --server-pid "$pid" --poll-min-ms 10 --max-seconds 540 \
            >"$WORK/$name-$c.out" 2>"$WORK/$name-$c.err" || rc=$?
        v1=$(group_cpu "${VPIDS[@]}")
        LINE[$name-$c]=$(tail -n 1 "$WORK/$name-$c.out")
        LINE[$name-$c-vcpu]=$(awk -v a="$v0" -v b="$v1" 'BEGIN { printf "%.2f", b - a }')
        if [ "$rc" != 0 ]; then
            FAILED=1
            sed "s/^/  [$name c=$c] /" "$WORK/$name-$c.err" | head -n 12 >&2
        fi
        printf '%-7s c=%-3s %s\n' "$name" "$c" "${LINE[$name-$c]:-(no result: sceau-bench exited $rc)}"
    done
    stop "$pid"
}

run_primary alone "$WORK/alone.toml"
run_primary remote "$WORK/perspectives.toml"

awk -v a50="$(field "${LINE[alone-1]}" p50_ms)" -v b50="$(field "${LINE[remote-1]}" p50_ms)" \
    -v a99="$(field "${LINE[alone-1]}" p99_ms)" -v b99="$(field "${LINE[remote-1]}" p99_ms)" 'BEGIN {
    printf "latency    one issuance with one authorization at 1 client: p50 %s -> %s ms (+%d ms), p99 %s -> %s ms (+%d ms) with 3 remote perspectives\n",
        a50, b50, b50 - a50, a99, b99, b99 - a99 }'
awk -v a="$(field "${LINE[alone-64]}" certs_per_s)" -v b="$(field "${LINE[remote-64]}" certs_per_s)" 'BEGIN {
    if (a > 0) printf "throughput at 64 clients: %s certs/s alone, %s with 3 remote perspectives (%.2f)\n", a, b, b / a }'
awk -v cpu="${LINE[remote-64-vcpu]}" -v n="$(field "${LINE[remote-64]}" issued)" \
    -v s="$(field "${LINE[remote-64]}" server_cpu_ms_per_cert)" -v s0="$(field "${LINE[alone-64]}" server_cpu_ms_per_cert)" 'BEGIN {
    if (n > 0) printf "validators the three together: %.2f ms CPU per certificate at 64 clients (primary: %s ms alone, %s ms with them)\n", cpu * 1000 / n, s0, s }'
[ "$FAILED" = 0 ]
