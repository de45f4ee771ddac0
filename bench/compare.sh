#!/usr/bin/env bash
# Pebble against sceau-server under the same sceau-bench load, in one command.
#
#   bench/compare.sh [--only pebble|sceau] [--prefill N] [--no-build] [--keep] [-h]
#
# Starts pebble-challtestsrv (DNS answering 127.0.0.1 for every name), then Pebble
# (memory only, PEBBLE_VA_NOSLEEP=1) and sceau-server (default SQLite storage, fresh data dir),
# one after the other so they never share the CPU, and runs sceau-bench against each at every
# concurrency in $CONCURRENCIES. Prints one bench line per run (throughput, latency, CPU per
# certificate of server and bench, memory), the sceau/Pebble throughput ratio per concurrency,
# sceau-server's peak resident memory at the highest concurrency, and whether the targets of
# issue 5 are met (3x Pebble at 8 clients, 5x and a lower p99 at 64, >= 0.80 after --prefill).
#
# --prefill N: afterwards, stop sceau-server, add N synthetic issuances to its database with
# sceau-prefill (each with its order, authorization, challenges and audit events; 1,000,000
# take about 6 minutes and 7 GB), restart it on that database, run the highest concurrency
# again and print its throughput relative to the empty database.
#
# Everything listens on 127.0.0.1 on free ports; every process started here is stopped on exit;
# every step is bounded in time. Exit status: 0 when every run issued all its orders and the
# memory stayed under $MEM_LIMIT_MIB, 1 otherwise, 2 when something could not start.
#
# Environment (all optional):
#   CONCURRENCIES="8 64"     virtual clients per run
#   ORDERS_PER_CLIENT=16     orders per run = max(MIN_ORDERS, concurrency * ORDERS_PER_CLIENT)
#   MIN_ORDERS=200
#   RUN_TIMEOUT=300          seconds, per bench run (sceau-bench --max-seconds is 30 s less)
#   START_TIMEOUT=30         seconds for a server to answer its directory
#   BUILD_TIMEOUT=3600       seconds for the release build
#   MEM_LIMIT_MIB=200
#   SCEAU_GUARD=0            1: also give sceau-server the --pebble-workaround client pacing
#   PEBBLE=pebble CHALLTESTSRV=pebble-challtestsrv   binaries to use
#   SCEAU_SERVER, SCEAU_BENCH  binaries to use instead of target/release/ (with --no-build)
#   KEEP=1                   keep the work directory (logs, configs) like --keep
#   SCEAU_INIT="CMD"         run `CMD DATA_DIR` before sceau-server first starts (e.g. a script
#                            that runs `sceau-server ca init --issuing-key pkcs11:…` on SoftHSM)
#   SCEAU_ARGS="…"           extra `sceau-server serve` flags (word-split)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONCURRENCIES=${CONCURRENCIES:-"8 64"}
ORDERS_PER_CLIENT=${ORDERS_PER_CLIENT:-16}
MIN_ORDERS=${MIN_ORDERS:-200}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
START_TIMEOUT=${START_TIMEOUT:-30}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
MEM_LIMIT_MIB=${MEM_LIMIT_MIB:-200}
SCEAU_GUARD=${SCEAU_GUARD:-0}
PEBBLE=${PEBBLE:-pebble}
CHALLTESTSRV=${CHALLTESTSRV:-pebble-challtestsrv}
KEEP=${KEEP:-0}
SCEAU_INIT=${SCEAU_INIT:-}
read -r -a SCEAU_EXTRA <<<"${SCEAU_ARGS:-}"
ONLY=""
BUILD=1
PREFILL=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { FAILED=1; echo "compare.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=${2:-}; shift 2 || die "--only needs pebble or sceau" ;;
        --no-build) BUILD=0; shift ;;
        --prefill) PREFILL=${2:-}; shift 2 || die "--prefill needs a number" ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$ONLY" in ""|pebble|sceau) ;; *) die "--only takes pebble or sceau" ;; esac
case "$PREFILL" in ''|*[!0-9]*) die "--prefill takes a number of certificates" ;; esac

for tool in "$PEBBLE" "$CHALLTESTSRV" openssl curl ss timeout cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# --- processes and cleanup (bench/lib.sh): each server leads its own process group -----------
. "$ROOT/bench/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-compare.XXXXXX")
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# --- build -----------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
    packages=(-p sceau-bench)
    [ "$ONLY" = pebble ] || packages+=(-p sceau-server)
    echo "compare.sh: cargo build --release ${packages[*]}" >&2
    (cd "$ROOT" && timeout "$BUILD_TIMEOUT" cargo build --release --quiet "${packages[@]}") \
        || die "release build failed"
fi
release_dir RELEASE
BENCH=${SCEAU_BENCH:-"$RELEASE/sceau-bench"}
PREFILL_BIN=${SCEAU_PREFILL:-"$RELEASE/sceau-prefill"}
SCEAU_SERVER=${SCEAU_SERVER:-"$RELEASE/sceau-server"}
[ -x "$BENCH" ] || die "$BENCH is missing (build it or drop --no-build)"
if [ "$ONLY" != pebble ]; then [ -x "$SCEAU_SERVER" ] || die "$SCEAU_SERVER is missing"; fi
if [ "$PREFILL" -gt 0 ]; then [ -x "$PREFILL_BIN" ] || die "$PREFILL_BIN is missing"; fi

free_port DNS_PORT; free_port DNS_MGMT_PORT; free_port HTTP01_PORT
free_port PEBBLE_PORT; free_port PEBBLE_MGMT_PORT; free_port PEBBLE_TLS_PORT; free_port SCEAU_PORT

# --- DNS for both CAs: every name resolves to 127.0.0.1, no AAAA ------------------------------
setsid "$CHALLTESTSRV" -dns01 "127.0.0.1:$DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    >"$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)
CTS_PID=$!
for _ in $(seq 50); do
    [ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] && break
    kill -0 "$CTS_PID" 2>/dev/null || fail_start pebble-challtestsrv "$WORK/challtestsrv.log"
    sleep 0.1
done
[ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] || fail_start pebble-challtestsrv "$WORK/challtestsrv.log"

declare -A LINE
run_bench() { # NAME CONCURRENCY DIRECTORY CA SERVER_PID [EXTRA...]
    local name=$1 c=$2 dir=$3 ca=$4 pid=$5 orders rc=0
    shift 5
    orders=$((c * ORDERS_PER_CLIENT))
    [ "$orders" -ge "$MIN_ORDERS" ] || orders=$MIN_ORDERS
    timeout "$RUN_TIMEOUT" "$BENCH" --directory "$dir" --ca-bundle "$ca" --concurrency "$c" \
        --orders "$orders" --http-port "$HTTP01_PORT" --server-pid "$pid" \
        --max-seconds $((RUN_TIMEOUT > 60 ? RUN_TIMEOUT - 30 : RUN_TIMEOUT)) "$@" \
        >"$WORK/$name-$c.out" 2>"$WORK/$name-$c.err" || rc=$?
    LINE[$name-$c]=$(tail -n 1 "$WORK/$name-$c.out")
    if [ "$rc" != 0 ]; then
        FAILED=1
        [ -n "${LINE[$name-$c]}" ] || LINE[$name-$c]="(no result: sceau-bench exited $rc)"
        sed "s/^/  [$name c=$c] /" "$WORK/$name-$c.err" | head -n 12 >&2
    fi
    printf '%-6s c=%-3s %s\n' "$name" "$c" "${LINE[$name-$c]}"
}

# --- Pebble ----------------------------------------------------------------------------------
if [ "$ONLY" != sceau ]; then
    pebble_files "$WORK" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$HTTP01_PORT" "$PEBBLE_TLS_PORT" ||
        die "openssl failed: $(tail -n 3 "$WORK/openssl.log")"
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
        setsid "$PEBBLE" -config "$WORK/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" >"$WORK/pebble.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_PID=$!
    PEBBLE_DIR="https://127.0.0.1:$PEBBLE_PORT/dir"
    wait_directory pebble "$PEBBLE_DIR" "$WORK/api-ca.pem" "$PEBBLE_PID" "$WORK/pebble.log"
    for c in $CONCURRENCIES; do
        # Pebble 2.4 deadlocks when a newOrder and an authorization fetch overlap under load.
        run_bench pebble "$c" "$PEBBLE_DIR" "$WORK/api-ca.pem" "$PEBBLE_PID" --pebble-workaround
    done
    stop "$PEBBLE_PID"
fi

# --- sceau-server ----------------------------------------------------------------------------
if [ "$ONLY" != pebble ]; then
    mkdir -m 700 "$WORK/sceau"
    if [ -n "$SCEAU_INIT" ]; then
        $SCEAU_INIT "$WORK/sceau" >"$WORK/sceau-init.log" 2>&1 ||
            die "SCEAU_INIT failed: $(tail -n 3 "$WORK/sceau-init.log")"
    fi
    # Every bench client is a new account from 127.0.0.1: the per-address account limit would
    # stop the second concurrency level.
    start_sceau() { # LOG
        setsid "$SCEAU_SERVER" serve --data-dir "$WORK/sceau" --listen "127.0.0.1:$SCEAU_PORT" --revocation-listen 127.0.0.1:0 \
            --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" --eab off \
            --validation-allow 127.0.0.0/8 --limit-accounts-per-address off \
            ${SCEAU_EXTRA[@]+"${SCEAU_EXTRA[@]}"} >"$1" 2>&1 &
        PIDS+=($!)
        SCEAU_PID=$!
        SCEAU_DIR="https://127.0.0.1:$SCEAU_PORT/directory"
        wait_directory sceau-server "$SCEAU_DIR" "$WORK/sceau/root.pem" "$SCEAU_PID" "$1"
    }
    start_sceau "$WORK/sceau-server.log"
    guard=()
    [ "$SCEAU_GUARD" = 1 ] && guard=(--pebble-workaround)
    for c in $CONCURRENCIES; do
        run_bench sceau "$c" "$SCEAU_DIR" "$WORK/sceau/root.pem" "$SCEAU_PID" "${guard[@]}"
    done
    stop "$SCEAU_PID"
    if [ "$PREFILL" -gt 0 ]; then
        top=$(tr ' ' '\n' <<<"$CONCURRENCIES" | sort -n | tail -n 1)
        echo "compare.sh: adding $PREFILL synthetic certificates to sceau-server's database" >&2
        "$PREFILL_BIN" --database "sqlite://$WORK/sceau/sceau.db" --certificates "$PREFILL" \
            >"$WORK/prefill.out" 2>"$WORK/prefill.err" || die "sceau-prefill failed: $(tail -n 3 "$WORK/prefill.err")"
        printf '%-6s %s\n' prefill "$(tail -n 1 "$WORK/prefill.out")"
        start_sceau "$WORK/sceau-server-prefilled.log"
        run_bench sceau-full "$top" "$SCEAU_DIR" "$WORK/sceau/root.pem" "$SCEAU_PID" "${guard[@]}"
        stop "$SCEAU_PID"
    fi
fi

# --- summary ---------------------------------------------------------------------------------
if [ -z "$ONLY" ]; then
    for c in $CONCURRENCIES; do
        p=$(field "${LINE[pebble-$c]}" certs_per_s)
        s=$(field "${LINE[sceau-$c]}" certs_per_s)
        if [ -n "$p" ] && [ -n "$s" ]; then
            # The issue's targets: 3x Pebble at 8 clients, 5x at 64 (informational: a benchmark
            # figure moves with the machine, so it does not decide the exit status).
            t=""
            case "$c" in 8) t=3 ;; 64) t=5 ;; esac
            awk -v c="$c" -v p="$p" -v s="$s" -v t="$t" 'BEGIN {
                if (p <= 0) { printf "ratio  c=%-3s undefined: pebble issued nothing\n", c; exit }
                r = s / p
                printf "ratio  c=%-3s sceau/pebble certs_per_s = %.2f (%s / %s)", c, r, s, p
                if (t != "") printf " (target >= %d: %s)", t, (r >= t ? "met" : "NOT met")
                printf "\n" }'
        fi
        p=$(field "${LINE[pebble-$c]}" p99_ms)
        s=$(field "${LINE[sceau-$c]}" p99_ms)
        if [ "$c" = 64 ] && [ -n "$p" ] && [ -n "$s" ]; then
            awk -v c="$c" -v p="$p" -v s="$s" 'BEGIN {
                printf "p99    c=%-3s sceau %s ms, pebble %s ms (target below Pebble'"'"'s: %s)\n", c, s, p,
                    (s + 0 < p + 0 ? "met" : "NOT met") }'
        fi
    done
fi
if [ "$PREFILL" -gt 0 ] && [ "$ONLY" != pebble ]; then
    e=$(field "${LINE[sceau-$top]:-}" certs_per_s)
    f=$(field "${LINE[sceau-full-$top]:-}" certs_per_s)
    if [ -n "$e" ] && [ -n "$f" ]; then
        awk -v c="$top" -v e="$e" -v f="$f" -v n="$PREFILL" 'BEGIN {
            printf "prefill c=%-3s with %d more certificates stored: %.2f of the empty-database throughput (%s / %s) (target >= 0.80: %s)\n",
                c, n, f / e, f, e, (f / e >= 0.8 ? "met" : "NOT met") }'
    fi
fi
if [ "$ONLY" != pebble ]; then
    top=$(tr ' ' '\n' <<<"$CONCURRENCIES" | sort -n | tail -n 1)
    rss=$(field "${LINE[sceau-$top]:-}" rss_peak_mib)
    if [ -z "$rss" ]; then
        echo "memory sceau-server peak RSS at c=$top: unknown"
        FAILED=1
    elif awk -v r="$rss" -v l="$MEM_LIMIT_MIB" 'BEGIN { exit !(r < l) }'; then
        echo "memory sceau-server peak RSS at c=$top: $rss MiB (< $MEM_LIMIT_MIB MiB: ok)"
    else
        echo "memory sceau-server peak RSS at c=$top: $rss MiB (limit $MEM_LIMIT_MIB MiB: OVER)"
        FAILED=1
    fi
fi
[ "$FAILED" = 0 ]
