#!/usr/bin/env bash
# Registration-authority mode against dedicated mode, under the same sceau-bench load.
#
#   bench/ra.sh [--only dedicated|command|cmp|acme] [--no-build] [--keep] [-h]
#
# Runs sceau-server four ways, one after the other so they never share the CPU: dedicated (its
# own CA, the baseline), then in RA mode in front of each upstream: `command` (a script around
# a real `openssl ca`), `cmp` (OpenSSL's CMP server, `openssl cmp -port`, with password MAC;
# it hands out one fixed certificate, so every order is for one name, every CSR certifies one
# key, and each of $CMP_RUNS single issuances gets a fresh server: latency only; then
# `cmp-bc`, a CMP CA on Bouncy Castle's CMP implementation that signs every request, from
# crates/sceau-testkit/java/cmp-ca, built with Maven and javac: the CMP throughput), `acme`
# (Pebble with PEBBLE_VA_ALWAYS_VALID=1, the RA's account trusted). For each:
# one client ($ORDERS_ONE orders, the added latency of one issuance), then $CONCURRENCY
# clients (the throughput). sceau-bench's server_cpu_ms_per_cert is sceau-server's own CPU
# (front end and signing service, not the upstream: Pebble and the mock are other processes,
# each `openssl ca` is gone before it is sampled), the figure the RA must keep at or under
# dedicated mode's. CPU per certificate grows as load falls, so for each upstream that sets a
# lower pace (command, acme) dedicated mode runs again at that upstream's measured rate
# (sceau-bench --rate): the like-for-like comparison.
#
# Prints one bench line per run, then per mode: the median latency at one client and what RA
# mode adds to dedicated mode's, the throughput at $CONCURRENCY clients, and the server CPU per
# certificate beside dedicated mode's at the same rate. Everything listens on 127.0.0.1 on free ports; every process started here is
# stopped on exit. Exit status: 0 when every run issued all its orders, 1 otherwise, 2 when
# something could not start.
#
# Environment (all optional): CONCURRENCY=64, ORDERS_ONE=100, ORDERS_MANY=1024,
# RUN_TIMEOUT=300, START_TIMEOUT=30, SCEAU_SERVER and SCEAU_BENCH (binaries, with --no-build),
# PEBBLE=pebble, CHALLTESTSRV=pebble-challtestsrv, KEEP=1 (like --keep), PIN=1 (sceau-server
# and its children on CPU 0; sceau-bench, the upstream CA and the DNS server on CPU 1: the
# server's CPU per certificate without the upstream competing for its core, as when the PKI is
# another machine; needs two CPUs), PACED=0 (skip dedicated mode at each upstream's rate),
# CMP_MAC_ITERATIONS=N (the RA's `[ra.cmp] mac_iterations`; default: the server's, 10000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONCURRENCY=${CONCURRENCY:-64}
ORDERS_ONE=${ORDERS_ONE:-100}
ORDERS_MANY=${ORDERS_MANY:-1024}
CMP_RUNS=${CMP_RUNS:-9}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
PEBBLE=${PEBBLE:-pebble}
CHALLTESTSRV=${CHALLTESTSRV:-pebble-challtestsrv}
KEEP=${KEEP:-0}
PIN=${PIN:-0}
PACED=${PACED:-1}
CMP_MAC_ITERATIONS=${CMP_MAC_ITERATIONS:-}
ONLY=""
BUILD=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { FAILED=1; echo "ra.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --only) ONLY=${2:-}; shift 2 || die "--only needs a mode" ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
case "$ONLY" in ""|dedicated|command|cmp|acme) ;; *) die "--only takes dedicated, command, cmp or acme" ;; esac
for tool in "$PEBBLE" "$CHALLTESTSRV" openssl curl ss timeout flock java javac mvn; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

# ON_SERVER / ON_OTHER prefix the commands that start the server / everything else (PIN=1).
ON_SERVER=(); ON_OTHER=(); UPSTREAM_ARGV=""
if [ "$PIN" = 1 ]; then
    command -v taskset >/dev/null || die "PIN=1 needs taskset (util-linux)"
    [ "$(nproc)" -ge 2 ] || die "PIN=1 needs two CPUs"
    ON_SERVER=(taskset -c 0); ON_OTHER=(taskset -c 1)
    UPSTREAM_ARGV="\"$(command -v taskset)\", \"-c\", \"1\", "

fi

. "$ROOT/bench/lib.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-ra-bench.XXXXXX")
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

if [ "$BUILD" = 1 ]; then
    echo "ra.sh: cargo build --release -p sceau-server -p sceau-bench" >&2
    (cd "$ROOT" && cargo build --release --quiet -p sceau-server -p sceau-bench) || die "build failed"
fi
release_dir RELEASE
BENCH=${SCEAU_BENCH:-"$RELEASE/sceau-bench"}
SERVER=${SCEAU_SERVER:-"$RELEASE/sceau-server"}
[ -x "$BENCH" ] && [ -x "$SERVER" ] || die "build sceau-server and sceau-bench first (or drop --no-build)"

free_port DNS_PORT; free_port DNS_MGMT_PORT; free_port HTTP01_PORT; free_port SCEAU_PORT

setsid "${ON_OTHER[@]}" "$CHALLTESTSRV" -dns01 "127.0.0.1:$DNS_PORT" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$DNS_MGMT_PORT" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    >"$WORK/challtestsrv.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] && break; sleep 0.1; done
[ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] || fail_start pebble-challtestsrv "$WORK/challtestsrv.log"

# --- the existing PKI: root, issuing CA (openssl ca), the RA's HTTPS certificate -------------
PKI=$WORK/pki
mkdir -p "$PKI/newcerts"
(
    cd "$PKI"
    : >index.txt
    echo 1000 >serial
    cat >ca.cnf <<EOF
[ ca ]
default_ca = pki
[ pki ]
dir = $PKI
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir/newcerts
certificate = \$dir/issuing.pem
private_key = \$dir/issuing.key
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[ any ]
commonName = supplied
[ issuing_ext ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ root_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    printf '[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\nsubjectAltName = %s\n' \
        "DNS:localhost, IP:127.0.0.1" >tls.ext
    printf '[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\nsubjectAltName = %s\n' \
        "DNS:cmp.bench.test" >cmp.ext
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=Bench Upstream Root" -keyout root.key -out root.pem \
        -config ca.cnf -extensions root_ext
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=Bench Upstream Issuing" -keyout issuing.key -out issuing.csr
    openssl x509 -req -in issuing.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 \
        -extfile ca.cnf -extensions issuing_ext -out issuing.pem
    for leaf in tls:localhost cmp:cmp.bench.test; do
        cn=${leaf#*:}; leaf=${leaf%%:*}
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$cn" \
            -keyout "$leaf.key" -out "$leaf.csr"
        openssl ca -batch -notext -config ca.cnf -extfile "$leaf.ext" -extensions ext -days 20 \
            -in "$leaf.csr" -out "$leaf-leaf.pem"
    done
    cat tls-leaf.pem issuing.pem >tls.pem
    # The mock's extraCerts: the issuing CA; a PKCS#8 key for the bench's fixed CSR key.
    openssl pkcs8 -topk8 -nocrypt -in cmp.key -out cmp.p8
    chmod 600 ./*.key
) >"$WORK/openssl.log" 2>&1 || die "openssl failed: $(tail -n 3 "$WORK/openssl.log")"

cat >"$PKI/sign.sh" <<'EOF'
#!/bin/sh
# The command upstream: openssl ca for the CSR on stdin, the names from SCEAU_*.
set -e
pki="$1"
work=$(mktemp -d "$pki/req.XXXXXX")
trap 'rm -rf "$work"' EXIT
cat >"$work/req.csr"
san=""
for n in $(echo "$SCEAU_DNS_NAMES" | tr ',' ' '); do san="$san${san:+, }DNS:$n"; done
printf '[ ext ]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\nsubjectAltName = %s\n' "$san" >"$work/ext"
flock "$pki/ca.lock" openssl ca -batch -notext -config "$pki/ca.cnf" -extfile "$work/ext" -extensions ext \
    -subj "/CN=${SCEAU_NAMES%%,*}" -days "$SCEAU_VALIDITY_DAYS" -in "$work/req.csr" -out "$work/leaf.pem" 2>"$work/log"
cat "$work/leaf.pem" "$pki/issuing.pem"
EOF
(umask 077 && printf 'bench cmp secret\n' >"$PKI/cmp-secret")

declare -A LINE
run_bench() { # NAME CONCURRENCY ORDERS CA PID [EXTRA...]
    local name=$1 c=$2 orders=$3 ca=$4 pid=$5 rc=0
    shift 5
    timeout "$RUN_TIMEOUT" "${ON_OTHER[@]}" "$BENCH" --directory "https://127.0.0.1:$SCEAU_PORT/directory" \
        --ca-bundle "$ca" --concurrency "$c" --orders "$orders" --http-port "$HTTP01_PORT" \
        --server-pid "$pid" --max-seconds $((RUN_TIMEOUT - 30)) "$@" \
        >"$WORK/$name-$c.out" 2>"$WORK/$name-$c.err" || rc=$?
    LINE[$name-$c]=$(tail -n 1 "$WORK/$name-$c.out")
    if [ "$rc" != 0 ]; then
        FAILED=1
        [ -n "${LINE[$name-$c]}" ] || LINE[$name-$c]="(no result: sceau-bench exited $rc)"
        sed "s/^/  [$name c=$c] /" "$WORK/$name-$c.err" | head -n 12 >&2
    fi
    printf '%-9s c=%-3s %s\n' "$name" "$c" "${LINE[$name-$c]}"
}

# start_server NAME CA CONFIG DATA: sceau-server (RA mode when CONFIG is not empty) on DATA;
# sets SERVER_PID and, in dedicated mode, CA to its root.
start_server() {
    local name=$1 config=$3 data=$4
    local args=(serve --data-dir "$data" --listen "127.0.0.1:$SCEAU_PORT" --revocation-listen 127.0.0.1:0
        --dns-server "127.0.0.1:$DNS_PORT" --http01-port "$HTTP01_PORT" --eab off
        --validation-allow 127.0.0.0/8 --limit-accounts-per-address off
        --limit-orders-per-account off --limit-names-per-account off)
    [ -n "$config" ] && args+=(--config "$config")
    mkdir -m 700 "$data"
    setsid "${ON_SERVER[@]}" "$SERVER" "${args[@]}" >>"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    SERVER_PID=$!
    CA=$2
    [ -n "$config" ] || CA=$data/root.pem
    wait_directory "$name" "https://127.0.0.1:$SCEAU_PORT/directory" "$CA" "$SERVER_PID" "$WORK/$name.log"
}

# run_mode NAME CA CONFIG [BENCH EXTRA...]: one client, then many, then stop.
run_mode() {
    local name=$1 ca=$2 config=$3
    shift 3
    start_server "$name" "$ca" "$config" "$WORK/data-$name"
    ca=$CA
    local pid=$SERVER_PID
    run_bench "$name" 1 "$ORDERS_ONE" "$ca" "$pid" "$@"
    run_bench "$name" "$CONCURRENCY" "$ORDERS_MANY" "$ca" "$pid" "$@"
    stop "$pid"
}

ra_head() { # ROOTS
    printf '[ra]\nupstream_roots = "%s"\ntls_cert = "%s/tls.pem"\ntls_key = "%s/tls.key"\nattempt_timeout_secs = 60\n' \
        "$1" "$PKI" "$PKI"
}

cmp_toml() { # PORT: the settings of a CMP upstream on 127.0.0.1:PORT, password MAC
    ra_head "$PKI/root.pem"
    printf '[ra.cmp]\nurl = "http://127.0.0.1:%s/pkix/"\nmac_reference = "sceau-ra"\nmac_secret_file = "%s/cmp-secret"\n' "$1" "$PKI"
    [ -z "$CMP_MAC_ITERATIONS" ] || printf 'mac_iterations = %s\n' "$CMP_MAC_ITERATIONS"
}

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

if want dedicated; then run_mode dedicated "" ""; fi

if want command; then
    { ra_head "$PKI/root.pem"
      printf '[ra.command]\nissue = [%s"/bin/sh", "%s/sign.sh", "%s"]\nconcurrency = 2\n' "$UPSTREAM_ARGV" "$PKI" "$PKI"
    } >"$WORK/command.toml"
    run_mode command "$PKI/root.pem" "$WORK/command.toml"
fi

if want cmp; then
    # Chosen now: the runs before made thousands of connections from ephemeral ports.
    free_port CMP_PORT
    setsid "${ON_OTHER[@]}" openssl cmp -port "$CMP_PORT" -srv_ref upstream -srv_secret "pass:bench cmp secret" \
        -rsp_cert "$PKI/cmp-leaf.pem" -rsp_extracerts "$PKI/issuing.pem" -grant_implicitconf \
        >"$WORK/cmp.log" 2>&1 &
    PIDS+=($!)
    CMP_PID=$!
    for _ in $(seq 50); do [ -n "$(ss -Hltn "sport = :$CMP_PORT")" ] && break; sleep 0.1; done
    [ -n "$(ss -Hltn "sport = :$CMP_PORT")" ] || fail_start "openssl cmp" "$WORK/cmp.log"
    cmp_toml "$CMP_PORT" >"$WORK/cmp.toml"
    # OpenSSL's mock answers every request with its one certificate, which a server hands out
    # once: each issuance gets a fresh server (and database), and there is no throughput run.
    p50s=()
    for i in $(seq "$CMP_RUNS"); do
        start_server cmp "$PKI/root.pem" "$WORK/cmp.toml" "$WORK/data-cmp-$i"
        run_bench "cmp-$i" 1 1 "$CA" "$SERVER_PID" --name cmp.bench.test --csr-key "$PKI/cmp.p8" >/dev/null
        p50s+=("$(field "${LINE[cmp-$i-1]}" p50_ms)")
        stop "$SERVER_PID"
    done
    LINE[cmp-1]="p50_ms=$(printf '%s\n' "${p50s[@]}" | sort -n | sed -n "$(( (CMP_RUNS + 1) / 2 ))p") (median of $CMP_RUNS single issuances: ${p50s[*]} ms)"
    printf '%-9s c=%-3s %s\n' cmp 1 "${LINE[cmp-1]}"
    stop "$CMP_PID"

    # Throughput against a CMP CA that signs every request: sceau-testkit/java/cmp-ca, on Bouncy Castle's
    # CMP implementation (what EJBCA builds on), fetched with Maven and compiled with javac.
    CMPCA=$ROOT/crates/sceau-testkit/java/cmp-ca
    (cd "$CMPCA" && mvn -q -B dependency:build-classpath -Dmdep.outputFile="$WORK/cmpca-cp.txt") \
        >"$WORK/cmpca-build.log" 2>&1 || die "mvn (Bouncy Castle for the CMP CA) failed: $(tail -n 3 "$WORK/cmpca-build.log")"
    mkdir "$WORK/cmpca-classes"
    javac -cp "$(cat "$WORK/cmpca-cp.txt")" -d "$WORK/cmpca-classes" "$CMPCA/src/main/java/CmpCa.java" \
        >>"$WORK/cmpca-build.log" 2>&1 || die "javac CmpCa.java failed: $(tail -n 3 "$WORK/cmpca-build.log")"
    free_port CMPCA_PORT
    setsid "${ON_OTHER[@]}" java -cp "$WORK/cmpca-classes:$(cat "$WORK/cmpca-cp.txt")" CmpCa "$CMPCA_PORT" \
        "$PKI/issuing.pem" "$PKI/issuing.key" "$PKI/cmp-secret" >"$WORK/cmpca.log" 2>&1 &
    PIDS+=($!)
    CMPCA_PID=$!
    for _ in $(seq 100); do [ -n "$(ss -Hltn "sport = :$CMPCA_PORT")" ] && break; sleep 0.1; done
    [ -n "$(ss -Hltn "sport = :$CMPCA_PORT")" ] || fail_start "the Bouncy Castle CMP CA" "$WORK/cmpca.log"
    cmp_toml "$CMPCA_PORT" >"$WORK/cmp-bc.toml"
    run_mode cmp-bc "$PKI/root.pem" "$WORK/cmp-bc.toml"
    stop "$CMPCA_PID"
fi

if want acme; then
    free_port PEBBLE_PORT; free_port PEBBLE_MGMT_PORT; free_port PEBBLE_TLS_PORT
    mkdir "$WORK/pebble"
    pebble_files "$WORK/pebble" "$PEBBLE_PORT" "$PEBBLE_MGMT_PORT" "$HTTP01_PORT" "$PEBBLE_TLS_PORT" ||
        die "openssl failed: $(tail -n 3 "$WORK/pebble/openssl.log")"
    sed -i 's/"externalAccountBindingRequired": false/"externalAccountBindingRequired": false,\n  "certificateValidityPeriod": 2592000/' "$WORK/pebble/pebble.json"
    PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
        setsid "${ON_OTHER[@]}" "$PEBBLE" -config "$WORK/pebble/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" \
        >"$WORK/pebble.log" 2>&1 &
    PIDS+=($!)
    PEBBLE_PID=$!
    wait_directory pebble "https://127.0.0.1:$PEBBLE_PORT/dir" "$WORK/pebble/api-ca.pem" "$PEBBLE_PID" "$WORK/pebble.log"
    curl -fsS --cacert "$WORK/pebble/api-ca.pem" -o "$WORK/pebble/root.pem" \
        "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" || die "cannot fetch Pebble's root"
    { ra_head "$WORK/pebble/root.pem"
      printf 'accept_client_auth = true\n[ra.acme]\ndirectory = "https://127.0.0.1:%s/dir"\ntls_roots = "%s"\naccount_key_file = "%s/ra-account.pem"\nchallenges = "trusted"\nconcurrency = 1\n' \
          "$PEBBLE_PORT" "$WORK/pebble/api-ca.pem" "$WORK"
    } >"$WORK/acme.toml"
    run_mode acme "$PKI/root.pem" "$WORK/acme.toml"
    stop "$PEBBLE_PID"
fi

# --- dedicated mode at each upstream's rate ----------------------------------------------------
# CPU per certificate falls as load rises (more requests share each wake-up and each commit):
# an upstream that issues slowly makes the server idle, and its CPU per certificate is then
# compared with dedicated mode's at that same rate, paced by sceau-bench --rate.
for m in command cmp-bc acme; do
    [ "$PACED" = 1 ] && [ -n "${LINE[$m-$CONCURRENCY]:-}" ] || continue
    rate=$(field "${LINE[$m-$CONCURRENCY]}" certs_per_s)
    [ -n "$rate" ] || continue
    orders=$(awk -v r="$rate" 'BEGIN { n = int(r * 10); print (n < 64 ? 64 : n) }')
    start_server "dedicated-at-$m" "" "" "$WORK/data-dedicated-at-$m"
    run_bench "at-$m" "$CONCURRENCY" "$orders" "$CA" "$SERVER_PID" --rate "$rate"
    stop "$SERVER_PID"
done

# --- summary ---------------------------------------------------------------------------------
base=$(field "${LINE[dedicated-1]:-}" p50_ms)
for m in dedicated command cmp cmp-bc acme; do
    [ -n "${LINE[$m-1]:-}" ] || continue
    p50=$(field "${LINE[$m-1]}" p50_ms)
    tput=$(field "${LINE[$m-$CONCURRENCY]:-}" certs_per_s)
    cpu=$(field "${LINE[$m-$CONCURRENCY]:-}" server_cpu_ms_per_cert)
    added=""
    [ -n "$base" ] && [ "$m" != dedicated ] && added=" (RA adds $((p50 - base)) ms)"
    if [ "$m" = cmp ]; then
        printf 'summary %-9s one client p50 %s ms%s; no throughput run (the mock has one certificate)\n' \
            "$m" "$p50" "$added"
        continue
    fi
    paced=""
    [ -n "${LINE[at-$m-$CONCURRENCY]:-}" ] &&
        paced="; dedicated at that rate $(field "${LINE[at-$m-$CONCURRENCY]}" server_cpu_ms_per_cert) ms/cert"
    printf 'summary %-9s one client p50 %s ms%s; c=%s %s certs/s; server CPU %s ms/cert%s\n' \
        "$m" "$p50" "$added" "$CONCURRENCY" "${tput:-?}" "${cpu:-?}" "$paced"
done
[ "$FAILED" = 0 ]
