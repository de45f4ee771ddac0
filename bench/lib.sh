# Sourced by the bench scripts.
#
# free_port VAR sets VAR to a port on which nothing listens or connects (TCP or UDP) and that
# this script has not handed out before.
TAKEN=" "
free_port() { # VAR
    local p
    for _ in $(seq 500); do
        p=$((20000 + RANDOM % 40000))
        case "$TAKEN" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htuan "sport = :$p" 2>/dev/null)" ]; then
            TAKEN+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    if declare -F die >/dev/null; then die "no free port found"; fi
    echo "$(basename "$0"): no free port found" >&2
    exit 2
}

# pebble_files DIR API_PORT MGMT_PORT HTTP01_PORT TLS_PORT writes what Pebble needs to serve its
# API over HTTPS on 127.0.0.1 (it has no plain-HTTP mode): a throwaway CA (DIR/api-ca.pem, the
# bundle clients trust), a certificate for 127.0.0.1 signed by it, and DIR/pebble.json. openssl's
# output goes to DIR/openssl.log; the status is openssl's.
pebble_files() {
    local dir=$1
    (
        cd "$dir"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
            -subj /CN=sceau-bench-ca -keyout api-ca.key -out api-ca.pem
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
            -keyout api.key -out api.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >api.ext
        openssl x509 -req -in api.csr -CA api-ca.pem -CAkey api-ca.key -CAcreateserial -days 2 \
            -extfile api.ext -out api.pem
    ) >"$dir/openssl.log" 2>&1 || return
    cat >"$dir/pebble.json" <<EOF
{"pebble": {
  "listenAddress": "127.0.0.1:$2",
  "managementListenAddress": "127.0.0.1:$3",
  "certificate": "$dir/api.pem",
  "privateKey": "$dir/api.key",
  "httpPort": $4,
  "tlsPort": $5,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
EOF
}

# release_dir VAR sets VAR to this workspace's cargo release directory (target/release unless
# CARGO_TARGET_DIR or a cargo config puts it elsewhere).
release_dir() { # VAR
    local root target
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    target=$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
        | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    printf -v "$1" '%s' "${target:-$root/target}/release"
}

# Process groups. A script starts each server under setsid, so that the server leads its own
# process group (its PID is the group id, and the PID a bench samples) and stopping the group
# stops whatever the server started; it appends that PID to PIDS. `stop PID` stops one group
# and forgets it; `bench_cleanup`, the script's EXIT trap, stops the others and removes WORK
# unless KEEP=1 or a step set FAILED=1 (then it says where WORK is kept).
PIDS=()
FAILED=0
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ] || [ "$FAILED" = 1 ]; then
        echo "$(basename "$0"): logs and configs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

stop() { # PID: TERM, up to 5 s, then KILL
    local pid=$1 keep=() p
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

fail_start() { # NAME LOG
    FAILED=1
    echo "$(basename "$0"): $1 did not start; last lines of $2:" >&2
    tail -n 20 "$2" >&2 || true
    exit 2
}

# wait_directory NAME URL CA PID LOG waits up to START_TIMEOUT seconds (default 30) for the
# ACME directory at URL to answer over HTTPS trusting CA; exits through fail_start when process
# PID dies first or the time runs out.
wait_directory() { # NAME URL CA PID LOG
    local deadline=$((SECONDS + ${START_TIMEOUT:-30}))
    while [ $SECONDS -lt "$deadline" ]; do
        kill -0 "$4" 2>/dev/null || fail_start "$1" "$5"
        if [ -s "$3" ] && curl -fsS --max-time 2 --cacert "$3" -o /dev/null "$2" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    fail_start "$1 (no answer on $2 within ${START_TIMEOUT:-30}s)" "$5"
}

# field LINE NAME prints the value of NAME=VALUE in a bench result line.
field() { # LINE NAME
    sed -n "s/.*\<$2=\([^ ]*\).*/\1/p" <<<"$1"
}

# softhsm_token DIR LABEL makes a throwaway SoftHSM2 token LABEL: its configuration
# (DIR/softhsm2.conf, exported as SOFTHSM2_CONF) and token directory (DIR/tokens) in DIR, a
# random PIN in DIR/pin (0600, for a URI's pin-source) and a random SO PIN that is not kept.
softhsm_token() { # DIR LABEL
    local pin so_pin
    mkdir -p "$1/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$1/tokens" >"$1/softhsm2.conf"
    export SOFTHSM2_CONF=$1/softhsm2.conf
    pin=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ' | cut -c1-12)
    so_pin=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ' | cut -c1-12)
    (umask 077 && printf '%s\n' "$pin" >"$1/pin")
    # softhsm2-util takes the PINs only as arguments; they are this throwaway token's.
    softhsm2-util --init-token --free --label "$2" --pin "$pin" --so-pin "$so_pin" >/dev/null
}

# start_challtestsrv DNS_PORT MGMT_PORT LOG starts pebble-challtestsrv as a DNS server on
# 127.0.0.1:DNS_PORT answering 127.0.0.1 for every name (no AAAA), and waits until it listens.
start_challtestsrv() { # DNS_PORT MGMT_PORT LOG
    setsid pebble-challtestsrv -dns01 "127.0.0.1:$1" -http01 "" -https01 "" -tlsalpn01 "" \
        -management "127.0.0.1:$2" -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$3" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do [ -n "$(ss -Hlun "sport = :$1")" ] && break; sleep 0.1; done
    [ -n "$(ss -Hlun "sport = :$1")" ] || fail_start pebble-challtestsrv "$3"
}

# group_cpu PGID... prints the CPU seconds (user + system) of every process in these process
# groups (a server and its signing process, say).
group_cpu() { # PGID...
    local g p ticks=0
    for g in "$@"; do
        for p in $(pgrep -g "$g"); do
            ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
        done
    done
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
