#!/usr/bin/env bash
# Fleet mode (issue 18): N agents' certificates renewed by one `sceau manager`, against a local
# sceau-server, with dns-01 by RFC 2136 + TSIG to knot; and, as the peer in the same run, the
# same number of renewals by standalone clients that each hold the DNS key.
#
#   bench/fleet.sh [--agents 1000] [--peer-certs 1000] [--concurrency 64] [--no-build] [--keep] [-h]
#
# Set-up: knotd authoritative for test. (every name under fleet.test is 127.0.0.1, updates signed by a TSIG
# key made here), sceau-server on fresh SQLite with rate limits off, validating through knot, and
# a manager (`sceau manager init` + `serve`, SQLite, default batch of 100, gather 2 s). The
# driver, sceau-fleetbench, enrols the agents over HTTPS and runs them in-process (each with its
# own directory, client certificate and fresh key per issuance); after one first issuance of
# everyone it marks every certificate due, lets every agent send its CSR, waits for the manager
# to obtain them all, and lets every agent install. DNS UPDATE messages are counted in knot's
# own log for both sides. Output: the driver's key=value lines. Exit status 0 when every
# certificate was renewed with a new key, 1 otherwise, 2 when something could not start.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
AGENTS=1000
PEER=1000
CONC=64
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --agents) AGENTS=${2:-}; shift 2 ;;
    --peer-certs) PEER=${2:-}; shift 2 ;;
    --concurrency) CONC=${2:-}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fleet.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "fleet.sh: $*" >&2; FAILED=1; exit 2; }
case "$AGENTS$PEER$CONC" in *[!0-9]* | '') die "options take whole numbers" ;; esac
for tool in knotd openssl sqlite3 ss timeout; do
    command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install knot openssl sqlite3 iproute2)"
done

release_dir RELEASE
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p sceau-server -p sceau -p sceau-bench) || die "build failed"
fi
SERVER="$RELEASE/sceau-server"
SCEAU="$RELEASE/sceau"
DRIVER="$RELEASE/sceau-fleetbench"
for b in "$SERVER" "$SCEAU" "$DRIVER"; do [ -x "$b" ] || die "$b missing (drop --no-build)"; done

WORK=$(mktemp -d /tmp/sceau-fleet.XXXXXX)
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
free_port DNS_PORT; free_port ACME_PORT; free_port MGR_PORT

# ---- knot, authoritative for fleet.test, updates with a TSIG key ----
mkdir -p "$WORK/knot/zones" "$WORK/knot/run" "$WORK/knot/storage"
SECRET=$(openssl rand -base64 32)
(umask 077 && printf 'key "fleet-key" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' "$SECRET" >"$WORK/tsig.key")
# The zone is test. (names under fleet.test.): the CA's CAA lookups climb to it.
cat >"$WORK/knot/zones/test.db" <<EOF
\$ORIGIN test.
\$TTL 60
@ SOA ns.test. hostmaster.test. 1 3600 600 86400 1
@ NS ns.test.
ns A 127.0.0.1
*.fleet A 127.0.0.1
EOF
(umask 077 && cat >"$WORK/knot/knot.conf" <<EOF
server:
    rundir: "$WORK/knot/run"
    listen: 127.0.0.1@$DNS_PORT
database:
    storage: "$WORK/knot/storage"
log:
  - target: stderr
    any: info
key:
  - id: fleet-key
    algorithm: hmac-sha256
    secret: $SECRET
acl:
  - id: update
    key: fleet-key
    action: update
zone:
  - domain: test
    storage: "$WORK/knot/zones"
    file: "test.db"
    zonefile-sync: -1
    journal-content: none
    acl: update
EOF
)
setsid knotd -c "$WORK/knot/knot.conf" >"$WORK/knot.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] && break; sleep 0.1; done
[ -n "$(ss -Hlun "sport = :$DNS_PORT")" ] || fail_start knotd "$WORK/knot.log"

# ---- the CA ----
setsid "$SERVER" serve --data-dir "$WORK/ca" --listen "127.0.0.1:$ACME_PORT" \
    --revocation-listen 127.0.0.1:0 --dns-server "127.0.0.1:$DNS_PORT" \
    --validation-allow 127.0.0.0/8 --eab off \
    --limit-orders-per-account off --limit-names-per-account off >"$WORK/ca.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -n "$(ss -Hltn "sport = :$ACME_PORT")" ] && break; sleep 0.1; done
[ -n "$(ss -Hltn "sport = :$ACME_PORT")" ] || fail_start sceau-server "$WORK/ca.log"

# ---- the manager ----
"$SCEAU" manager init --dir "$WORK/manager" --server "https://127.0.0.1:$ACME_PORT/directory" \
    --ca-bundle "$WORK/ca/root.pem" --agree-tos --hostname 127.0.0.1 \
    --listen "127.0.0.1:$MGR_PORT" --dns-server "127.0.0.1:$DNS_PORT" \
    --tsig-key-file "$WORK/tsig.key" --check-server "127.0.0.1:$DNS_PORT" >"$WORK/init.log" 2>&1 \
    || fail_start "sceau manager init" "$WORK/init.log"
# Quicker polling than the default 60 s, so the measured time is the manager's work.
# Every agent of the bench connects from 127.0.0.1, as a fleet behind one NAT would.
sed -i 's/^poll_secs = 60$/poll_secs = 2/; s/^max_connections_per_address = 64$/max_connections_per_address = 4096/' \
    "$WORK/manager/manager.toml"
grep -q '^max_connections_per_address = 4096$' "$WORK/manager/manager.toml" || die "manager.toml has no max_connections_per_address"
setsid "$SCEAU" manager serve --dir "$WORK/manager" >"$WORK/manager.log" 2>&1 &
MGR_PID=$!
PIDS+=($MGR_PID)
for _ in $(seq 100); do [ -n "$(ss -Hltn "sport = :$MGR_PORT")" ] && break; sleep 0.1; done
[ -n "$(ss -Hltn "sport = :$MGR_PORT")" ] || fail_start "sceau manager serve" "$WORK/manager.log"

mkdir -p "$WORK/agents"
# Renewal comes at 2/3 of the lifetime, after the CA's authorizations (30 days) have expired:
# the CA's valid authorizations are aged in its database before the renewal round, so that the
# CA asks for a fresh dns-01 for every name, as it would then.
AGE_AUTHZ="sqlite3 -cmd '.timeout 10000' '$WORK/ca/sceau.db' \"UPDATE authzs SET expires = CAST(strftime('%s','now') AS INTEGER) + 3600 WHERE status = 'valid'\""
if ! "$DRIVER" --manager-dir "$WORK/manager" --manager-url "https://127.0.0.1:$MGR_PORT" \
    --manager-pid "$MGR_PID" --work "$WORK/agents" --agents "$AGENTS" --concurrency "$CONC" \
    --zone fleet.test --dns-log "$WORK/knot.log" --peer-certs "$PEER" \
    --between-rounds "$AGE_AUTHZ" \
    --acme-server "https://127.0.0.1:$ACME_PORT/directory" --acme-ca-bundle "$WORK/ca/root.pem" \
    --dns-server "127.0.0.1:$DNS_PORT" --tsig-key-file "$WORK/tsig.key"; then
    FAILED=1
    exit 1
fi
echo "manager_cpu_total_secs=$(group_cpu "$MGR_PID")"
