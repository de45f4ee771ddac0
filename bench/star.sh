#!/usr/bin/env bash
# STAR renewals at scale (RFC 8739): N active series with a one-hour lifetime on SQLite, their
# next certificates falling due while sceau-bench keeps ordinary issuances coming; in the same
# run, the same ordinary load on the same server without renewals is the reference.
#
#   bench/star.sh [--series 10000] [--lifetime 3600] [--spread 600] [--concurrency 64]
#                 [--no-build] [--keep] [-h]
#
# 1. sceau-server (default SQLite storage, fresh data directory) serves sceau-bench's ordinary
#    http-01 issuances at --concurrency clients: the reference throughput.
# 2. The server stops; sceau-prefill adds N series (each its own P-256 key and name, first
#    certificate issued) whose next certificates fall due evenly over --spread seconds from
#    30 s on. N one-hour series renew N times an hour in steady state; --spread 600 makes the
#    same N renewals come six times faster.
# 3. The server restarts on that database and sceau-bench runs the same ordinary load for the
#    span in which the series fall due (reference throughput x spread orders).
# 4. Lateness of a renewal = when its certificate was stored (the certificate.issued audit row,
#    nanoseconds) minus when it was due (its notBefore, RFC 8739 §3.5: nominal date − adjust).
#    "On time" is before the §3.3 limit: published by half of the current certificate's
#    lifetime, that is within lifetime/6 of falling due. One renewed certificate is checked by
#    openssl against the server's root, with the series' name.
# Output: both bench lines, one `star` line (series, renewed, lateness p50/p99/max, on time),
# one `load` line (ordinary throughput with renewals / without), the server's CPU in the
# renewal window (normal and STAR certificates signed, CPU seconds, per certificate) and its
# peak resident memory. Exit status 0 when every series was renewed on time and every order
# issued, 1 otherwise, 2 when something could not start.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
SERIES=10000
LIFETIME=3600
SPREAD=600
CONCURRENCY=64
DUE_IN=30
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --series) SERIES=${2:-}; shift 2 ;;
    --lifetime) LIFETIME=${2:-}; shift 2 ;;
    --spread) SPREAD=${2:-}; shift 2 ;;
    --concurrency) CONCURRENCY=${2:-}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "star.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "star.sh: $*" >&2; FAILED=1; exit 2; }
case "$SERIES$LIFETIME$SPREAD$CONCURRENCY" in *[!0-9]* | '') die "options take whole numbers" ;; esac
[ "$LIFETIME" -ge 3600 ] || die "--lifetime is at least 3600 s (the server's default --star-min-lifetime)"
[ "$SPREAD" -ge 60 ] || die "--spread is at least 60 s"
for tool in pebble-challtestsrv openssl curl python3 ss timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

release_dir RELEASE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p sceau-server -p sceau-bench) || die "build failed"
fi
SERVER="$RELEASE/sceau-server"
BENCH="$RELEASE/sceau-bench"
PREFILL="$RELEASE/sceau-prefill"
[ -x "$SERVER" ] && [ -x "$BENCH" ] && [ -x "$PREFILL" ] || die "release binaries missing (drop --no-build)"

WORK=$(mktemp -d /tmp/sceau-star.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
DATA="$WORK/data"
free_port DNS_PORT; free_port DNS_MGMT_PORT; free_port HTTP01_PORT; free_port PORT

# Every name resolves to 127.0.0.1 (ordinary orders are validated over http-01).
start_challtestsrv "$DNS_PORT" "$DNS_MGMT_PORT" "$WORK/challtestsrv.log"

"$SERVER" ca init --data-dir "$DATA" >"$WORK/init.out" 2>&1 || die "ca init: $(tail -n 2 "$WORK/init.out")"
DIRECTORY="https://127.0.0.1:$PORT/directory"
start_server() { # LOG
    SCEAU_LOG=info setsid "$SERVER" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" \
        --revocation-listen 127.0.0.1:0 --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" \
        --eab off --validation-allow 127.0.0.0/8 --limit-accounts-per-address off \
        --limit-orders-per-account off --limit-names-per-account off \
        --log-format json >"$1.out" 2>"$1" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_directory sceau-server "$DIRECTORY" "$DATA/root.pem" "$SERVER_PID" "$1"
}
bench() { # NAME ORDERS MAX_SECONDS
    local rc=0
    timeout $(($3 + 120)) "$BENCH" --directory "$DIRECTORY" --ca-bundle "$DATA/root.pem" \
        --concurrency "$CONCURRENCY" --orders "$2" --http-port "$HTTP01_PORT" \
        --server-pid "$SERVER_PID" --max-seconds "$3" >"$WORK/$1.out" 2>"$WORK/$1.err" || rc=$?
    BENCH_LINE=$(tail -n 1 "$WORK/$1.out")
    if [ "$rc" != 0 ]; then
        FAILED=1
        sed "s/^/  [$1] /" "$WORK/$1.err" | head -n 12 >&2
    fi
    printf '%-9s %s\n' "$1" "${BENCH_LINE:-(no result: sceau-bench exited $rc)}"
}

# ---- 1. reference: ordinary issuances, no series ----
start_server "$WORK/server-ref.log"
bench reference $((CONCURRENCY * 200)) 300
REF_LINE=$BENCH_LINE
REF_CPS=$(field "$REF_LINE" certs_per_s)
[ -n "$REF_CPS" ] || die "the reference run gave no throughput"
stop "$SERVER_PID"

# ---- 2. the series ----
"$PREFILL" --database "sqlite://$DATA/sceau.db" --star "$SERIES" --star-lifetime "$LIFETIME" \
    --star-due-in "$DUE_IN" --star-spread "$SPREAD" >"$WORK/prefill.out" 2>"$WORK/prefill.err" \
    || die "sceau-prefill: $(tail -n 2 "$WORK/prefill.err")"
PREFILL_LINE=$(tail -n 1 "$WORK/prefill.out")
FIRST_DUE=$(field "$PREFILL_LINE" star_due_first)
LAST_DUE=$(field "$PREFILL_LINE" star_due_last)
echo "prefill   $PREFILL_LINE"

# ---- 3. the same load while the series fall due ----
start_server "$WORK/server-star.log"
sleep $((FIRST_DUE > $(date +%s) ? FIRST_DUE - $(date +%s) : 0))
CPU0=$(group_cpu "$SERVER_PID")
T0=$(date +%s)
ORDERS=$(awk -v c="$REF_CPS" -v s="$SPREAD" 'BEGIN { n = int(c * s); print (n < 200 ? 200 : n) }')
bench renewals "$ORDERS" $((SPREAD * 3))
STAR_LINE=$BENCH_LINE
# Renewals still due (the load may have ended first): up to lifetime/6 after the last one.
LIMIT_S=$((LIFETIME / 6))
while [ "$(date +%s)" -lt $((LAST_DUE + LIMIT_S)) ]; do
    left=$(python3 - "$DATA/sceau.db" "$LAST_DUE" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
print(db.execute("SELECT count(*) FROM orders WHERE star_due IS NOT NULL AND star_due <= ?",
                 (int(sys.argv[2]),)).fetchone()[0])
PYEOF
)
    [ "$left" = 0 ] && break
    sleep 2
done
CPU1=$(group_cpu "$SERVER_PID")
T1=$(date +%s)
stop "$SERVER_PID"

# ---- 4. lateness, checked certificate, figures ----
REPORT=$(python3 - "$DATA/sceau.db" "$FIRST_DUE" "$LIFETIME" "$SERIES" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
first, lifetime, series = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = db.execute(
    """SELECT CAST(substr(a.id, 1, 20) AS INTEGER) / 1000000 - c.not_before * 1000, c.id
       FROM audit a JOIN certificates c ON c.serial = json_extract(a.detail, '$.serial')
       JOIN orders o ON o.id = c.order_id
       WHERE a.event = 'certificate.issued' AND o.star_end IS NOT NULL AND c.not_before >= ?""",
    (first,)).fetchall()
late = sorted(r[0] for r in rows)
pick = lambda q: late[min(len(late) - 1, int(q * len(late)))] if late else -1
limit_ms = lifetime * 1000 // 6
on_time = sum(1 for l in late if l < limit_ms)
refused = db.execute("SELECT count(*) FROM orders WHERE star_end IS NOT NULL AND status = 'invalid'").fetchone()[0]
print(f"series={series} renewed={len(late)} on_time={on_time} refused={refused} "
      f"late_p50_ms={pick(0.5)} late_p99_ms={pick(0.99)} late_max_ms={late[-1] if late else -1} "
      f"limit_ms={limit_ms} sample={rows[len(rows) // 2][1] if rows else ''}")
PYEOF
) || die "cannot read the renewals from the database"
SAMPLE=$(field "$REPORT" sample)
RENEWED=$(field "$REPORT" renewed)
ON_TIME=$(field "$REPORT" on_time)
echo "star      ${REPORT% sample=*}"
if [ -n "$SAMPLE" ]; then
    python3 - "$DATA/sceau.db" "$SAMPLE" >"$WORK/sample.pem" <<'PYEOF'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT chain_pem FROM certificates WHERE id = ?", (sys.argv[2],)).fetchone()[0], end="")
PYEOF
    if openssl verify -CAfile "$DATA/root.pem" -untrusted "$WORK/sample.pem" "$WORK/sample.pem" >"$WORK/verify.out" 2>&1; then
        echo "checked   $(openssl x509 -in "$WORK/sample.pem" -noout -ext subjectAltName | tail -n 1 | tr -d ' ') verifies against the server's root; $(openssl x509 -in "$WORK/sample.pem" -noout -startdate -enddate | tr '\n' ' ')"
    else
        echo "checked   a renewed certificate does NOT verify: $(tail -n 1 "$WORK/verify.out")"
        FAILED=1
    fi
fi
awk -v r="$REF_CPS" -v s="$(field "$STAR_LINE" certs_per_s)" 'BEGIN {
    if (r > 0 && s != "") printf "load      ordinary certs_per_s with renewals / without: %.2f (%s / %s)\n", s / r, s, r }'
NORMAL=$(field "$STAR_LINE" issued)
awk -v c0="$CPU0" -v c1="$CPU1" -v n="${NORMAL:-0}" -v s="${RENEWED:-0}" -v t="$((T1 - T0))" \
    -v ref="$(field "$REF_LINE" server_cpu_ms_per_cert)" 'BEGIN {
    total = n + s; cpu = c1 - c0
    printf "cpu       server in the renewal window (%d s): %.1f s for %d ordinary + %d STAR certificates = %.2f ms per certificate (reference run: %s ms)\n",
        t, cpu, n, s, (total > 0 ? cpu * 1000 / total : 0), ref }'
echo "memory    server peak RSS: $(field "$REF_LINE" rss_peak_mib) MiB without renewals, $(field "$STAR_LINE" rss_peak_mib) MiB with them"
[ "$RENEWED" = "$SERIES" ] && [ "$ON_TIME" = "$SERIES" ] || FAILED=1
[ "$FAILED" = 0 ]
