#!/usr/bin/env bash
# OCSP responder throughput: pre-signed GET responses from sceau-server, and the same load on
# OpenSSL's own responder (`openssl ocsp -index … -port`, single-threaded) for comparison.
#
#   bench/ocsp.sh [--seconds N] [--connections N] [--no-build] [--keep] [-h]
#
# Each responder is pinned to core 0 (`taskset -c 0`), wrk to core 1, so the figure is what one
# core answers. sceau-server gets a certificate issued by the `sceau` client first and the
# request is that certificate's SHA-1 CertID without a nonce (RFC 5019's cacheable GET form);
# OpenSSL's responder answers the same request from an index.txt listing the same serial.
# Prints requests/s and latency under wrk for sceau-server (and its /livez, the HTTP stack's
# ceiling), and sequential GETs with a connection each for both responders (OpenSSL's stops
# answering under wrk's concurrent connections), with their ratio. Target (issue 12): >= 20,000
# responses/s for sceau-server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_RUN=10
CONNS=32
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) SECONDS_RUN=${2:-}; shift 2 ;;
        --connections) CONNS=${2:-}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "ocsp.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
for tool in wrk taskset openssl curl pebble-challtestsrv; do
    command -v "$tool" >/dev/null || { echo "ocsp.sh: needs $tool (scripts/install-test-deps.sh)" >&2; exit 2; }
done
[ "$(nproc)" -ge 2 ] || { echo "ocsp.sh: needs 2 cores (server on 0, load on 1)" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
release_dir RELEASE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p sceau-server -p sceau)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-ocsp-bench.XXXXXX")
trap bench_cleanup EXIT

free_port DNS; free_port DNS_MGMT; free_port HTTP01; free_port PORT; free_port REV; free_port REF
setsid pebble-challtestsrv -dns01 "127.0.0.1:$DNS" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$WORK/dns.log" 2>&1 &
PIDS+=($!)
mkdir -m 700 "$WORK/data"
setsid taskset -c 0 "$RELEASE/sceau-server" serve --data-dir "$WORK/data" --listen "127.0.0.1:$PORT" \
    --revocation-listen "127.0.0.1:$REV" --dns-server "127.0.0.1:$DNS" --http01-port "$HTTP01" \
    --eab off --validation-allow 127.0.0.0/8 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
wait_directory sceau-server "https://127.0.0.1:$PORT/directory" "$WORK/data/root.pem" "$SERVER_PID" "$WORK/server.log"

"$RELEASE/sceau" -q --state-dir "$WORK/state" --event-log none issue \
    --server "https://127.0.0.1:$PORT/directory" --ca-bundle "$WORK/data/root.pem" --agree-tos \
    --http-port "$HTTP01" -d bench.test >"$WORK/issue.log" 2>&1 \
    || { FAILED=1; echo "ocsp.sh: issuance failed: $(tail -n 3 "$WORK/issue.log")" >&2; exit 1; }
chain=$(find "$WORK/state" -name '*.pem' -newer "$WORK/data/root.pem" | xargs grep -l 'BEGIN CERTIFICATE' | head -n 1)
[ -n "$chain" ] || { FAILED=1; echo "ocsp.sh: no certificate in $WORK/state" >&2; exit 1; }
awk 'n==0{print} /END CERTIFICATE/{n++}' "$chain" >"$WORK/leaf.pem"
awk '/BEGIN CERTIFICATE/{n++} n==2{print}' "$chain" >"$WORK/issuer.pem"

openssl ocsp -issuer "$WORK/issuer.pem" -cert "$WORK/leaf.pem" -no_nonce -reqout "$WORK/req.der" >/dev/null 2>&1
path=$(base64 -w0 "$WORK/req.der" | sed 's/+/%2B/g; s,/,%2F,g; s/=/%3D/g')
URL="http://127.0.0.1:$REV/ocsp/$path"
# The job pre-signs within a second of issuance; wait for the answer to be good.
for _ in $(seq 50); do
    curl -fsS -o "$WORK/resp.der" "$URL" 2>/dev/null && openssl ocsp -respin "$WORK/resp.der" \
        -issuer "$WORK/issuer.pem" -cert "$WORK/leaf.pem" -CAfile "$WORK/data/root.pem" 2>/dev/null \
        | grep -q ': good' && break
    sleep 0.2
done

run_wrk() { # NAME URL [WRK ARGS...]
    local name=$1 url=$2
    shift 2
    echo "==> $name: wrk -t1 -c$CONNS -d${SECONDS_RUN}s $* on core 1"
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" --latency "$@" "$url" | tee "$WORK/$name.wrk"
}
run_wrk sceau-server "$URL"
# The same listener answering its liveness probe: the HTTP stack's own ceiling on this core.
run_wrk sceau-livez "http://127.0.0.1:$REV/livez"
# One request after the other, a new connection each (one curl process on core 1): the only
# load OpenSSL's responder takes (below), measured the same way on both.
curl_rate() { # NAME URL
    local i start end
    for i in $(seq 2000); do printf 'url = "%s"\noutput = "/dev/null"\n' "$2"; done >"$WORK/curl.cfg"
    start=$(date +%s.%N)
    taskset -c 1 curl -fsS -H "Connection: close" -K "$WORK/curl.cfg"
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN{ printf "%.0f", 2000 / (e - s) }' >"$WORK/$1.curl"
    echo "==> $1: 2000 sequential GETs, a connection each: $(cat "$WORK/$1.curl")/s"
}
curl_rate sceau-server-seq "$URL"

# OpenSSL's responder on the same serial (its own responder key: clients would need -VAfile).
serial=$(openssl x509 -in "$WORK/leaf.pem" -noout -serial | sed 's/serial=//')
expiry=$(date -u -d "$(openssl x509 -in "$WORK/leaf.pem" -noout -enddate | sed 's/notAfter=//')" +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t%s\tunknown\t/CN=bench.test\n' "$expiry" "$serial" >"$WORK/index.txt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=reference" -days 2 \
    -keyout "$WORK/ref.key" -out "$WORK/ref.pem" >/dev/null 2>&1
setsid taskset -c 0 openssl ocsp -index "$WORK/index.txt" -port "$REF" -rsigner "$WORK/ref.pem" \
    -rkey "$WORK/ref.key" -CA "$WORK/issuer.pem" >"$WORK/openssl-ocsp.log" 2>&1 &
PIDS+=($!)
REF_URL="http://127.0.0.1:$REF/$path"
# OpenSSL 3.0's responder serves one connection at a time and under wrk's concurrent
# connections stops answering (it reads EOF on one connection forever): it is measured with
# sequential requests only.
for _ in $(seq 50); do curl -fsS -H "Connection: close" -o /dev/null "$REF_URL" 2>/dev/null && break; sleep 0.1; done
curl_rate openssl-ocsp-seq "$REF_URL"

rate() { sed -n 's/^Requests\/sec: *//p' "$WORK/$1.wrk"; }
ours=$(rate sceau-server)
seq_ours=$(cat "$WORK/sceau-server-seq.curl"); seq_theirs=$(cat "$WORK/openssl-ocsp-seq.curl")
printf '\nsummary: sceau-server %s responses/s under wrk (its /livez %s/s); sequential with a connection each: sceau-server %s/s, openssl ocsp %s/s, ratio %s (target >= 20000/s for sceau-server under wrk)\n' \
    "$ours" "$(rate sceau-livez)" "$seq_ours" "$seq_theirs" "$(awk -v a="$seq_ours" -v b="$seq_theirs" 'BEGIN{ if (b > 0) printf "%.1f", a / b; else print "n/a" }')"
