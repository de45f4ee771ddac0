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
