#!/usr/bin/env bash
# CRL generation for many revoked certificates: sceau-server's CRL job against OpenSSL's own
# `openssl ca -gencrl` on the same number of revoked certificates, in the same run.
#
#   bench/crl.sh [--revoked 1000000] [--shards 16] [--no-build] [--keep] [-h]
#
# sceau: a fresh data directory (`sceau-server ca init`), N revoked certificates of its issuer
# spread over the shards (sceau-prefill, not timed), then `sceau-server serve`, whose CRL job
# signs every shard at start; the job's own log line gives the time from reading the database
# to the last committed CRL, and /proc gives the peak resident memory of the server and of its
# signing process. One shard is then fetched over HTTP and its entries counted by openssl.
# openssl: a CA made with `openssl req -x509`, an index.txt of the same N revoked entries, and
# `openssl ca -gencrl` (one CRL: OpenSSL has no shards), timed with its peak memory.
# Output: one line per side and `limits_met=yes|no` for the issue's targets (sceau under 10 s
# and 200 MiB per process). Exit status 0 only when every figure was measured.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
N=1000000
SHARDS=16
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --revoked) N=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "crl.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
die() { echo "crl.sh: $*" >&2; FAILED=1; exit 2; }
case "$N$SHARDS" in *[!0-9]*) die "--revoked and --shards take numbers" ;; esac

release_dir RELEASE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p sceau-server -p sceau-bench) || die "build failed"
fi
SERVER="$RELEASE/sceau-server"
PREFILL="$RELEASE/sceau-prefill"
[ -x "$SERVER" ] && [ -x "$PREFILL" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/sceau-crl.XXXXXX)
trap bench_cleanup EXIT
DATA="$WORK/data"

# ---- sceau ----
"$SERVER" ca init --data-dir "$DATA" >"$WORK/init.out" 2>&1 || die "ca init: $(tail -n 2 "$WORK/init.out")"
ISSUER=$("$SERVER" ca show --data-dir "$DATA" --json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["issuers"][0]["id"])')
"$PREFILL" --database "sqlite://$DATA/sceau.db" --revoked "$N" --issuer "$ISSUER" \
    --shards "$SHARDS" >"$WORK/prefill.out" 2>"$WORK/prefill.err" \
    || die "sceau-prefill: $(tail -n 2 "$WORK/prefill.err")"

free_port PORT
SCEAU_LOG=${SCEAU_LOG:-info} setsid "$SERVER" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
    --revocation-listen 127.0.0.1:0 --eab off --crl-shards "$SHARDS" --log-format json \
    >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 1200); do
    grep -q '"CRLs signed"' "$WORK/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "sceau-server exited: $(tail -n 3 "$WORK/server.log")"
    sleep 0.1
done
LINE=$(grep '"CRLs signed"' "$WORK/server.log" | head -n 1) || die "no CRL run in 120 s"
field() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" <<<"$LINE"; }
SIGNED=$(field signed)
ENTRIES=$(field entries)
ELAPSED_MS=$(field elapsed_ms)
hwm() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }
SERVER_MIB=$(hwm "$SERVER_PID")
SIGNER_PID=$(pgrep -P "$SERVER_PID" | head -n 1 || true)
SIGNER_MIB=$([ -n "$SIGNER_PID" ] && hwm "$SIGNER_PID" || echo "?")
REV_URL=$(sed -n 's/^ *revocation: *\([^ ]*\).*/\1/p' "$WORK/server.out" | head -n 1)
SHARD_ENTRIES=$(curl -sf "$REV_URL/crl/$ISSUER/0.crl" \
    | openssl crl -inform DER -noout -text | grep -c 'Serial Number:' || true)
printf 'sceau   revoked=%s shards=%s signed=%s entries=%s elapsed_s=%.2f server_peak_mib=%s signer_peak_mib=%s shard0_entries_by_openssl=%s\n' \
    "$N" "$SHARDS" "$SIGNED" "$ENTRIES" "$(echo "$ELAPSED_MS / 1000" | bc -l)" \
    "$SERVER_MIB" "$SIGNER_MIB" "$SHARD_ENTRIES"
stop "$SERVER_PID"

# ---- openssl ca -gencrl ----
OSSL="$WORK/openssl"
mkdir -p "$OSSL"
(
    cd "$OSSL"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=bench-ca -keyout ca.key -out ca.pem
    cat >ca.cnf <<EOF
[ca]
default_ca = bench
[bench]
database = $OSSL/index.txt
certificate = $OSSL/ca.pem
private_key = $OSSL/ca.key
crlnumber = $OSSL/crlnumber
default_md = sha256
default_crl_hours = 24
EOF
    echo 1000 >crlnumber
    awk -v n="$N" 'BEGIN {
        split("unspecified keyCompromise affiliationChanged superseded cessationOfOperation", r, " ");
        for (i = 0; i < n; i++) printf "R\t370101000000Z\t261201000000Z,%s\t%032X\tunknown\t/CN=c%d\n", r[i % 5 + 1], i + 4096, i
    }' >index.txt
) >"$WORK/openssl-setup.log" 2>&1 || die "openssl setup: $(tail -n 2 "$WORK/openssl-setup.log")"
read -r OSSL_S OSSL_KIB < <(python3 - "$OSSL" <<'EOF'
import resource, subprocess, sys, time
d = sys.argv[1]
t = time.monotonic()
subprocess.run(["openssl", "ca", "-gencrl", "-config", d + "/ca.cnf", "-out", d + "/crl.pem"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.monotonic() - t:.2f}", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
EOF
) || die "openssl ca -gencrl failed"
OSSL_ENTRIES=$(openssl crl -in "$OSSL/crl.pem" -noout -text | grep -c 'Serial Number:' || true)
printf 'openssl revoked=%s crls=1 entries=%s elapsed_s=%s peak_mib=%.1f\n' \
    "$N" "$OSSL_ENTRIES" "$OSSL_S" "$(echo "$OSSL_KIB / 1024" | bc -l)"

MET=no
if [ "$ENTRIES" = "$N" ] && [ "$ELAPSED_MS" -lt 10000 ] \
    && awk -v a="$SERVER_MIB" -v b="$SIGNER_MIB" 'BEGIN { exit !(a < 200 && b < 200) }'; then
    MET=yes
fi
echo "limits_met=$MET (all $N entries, under 10 s, each process under 200 MiB)"
