#!/usr/bin/env bash
# Installs what Sceau's test suite runs: the real ACME clients and servers of the
# interoperability suite, a DNS server and its update tools, openssl, SoftHSM, a JDK with
# Maven (Bouncy Castle for a CMP CA), Chromium with playwright-core, promtool, and cargo-nextest. Idempotent: does nothing when everything is present, and only runs
# `apt-get update` when a package is missing. Debian/Ubuntu only (apt).
set -euo pipefail

packages=(
  # ACME: reference server and the clients of the interoperability suite
  pebble certbot lego dehydrated uacme
  # DNS: authoritative server (knotd, knotc), knsupdate/kdig, nsupdate/dig
  knot knot-dnsutils bind9-dnsutils
  # certificate checks, HSM tests (opensc: pkcs11-tool), database inspection, HTTP probes
  openssl softhsm2 opensc sqlite3 curl ca-certificates
  # the PostgreSQL storage backend is tested against a real server
  postgresql
  # OCSP stapling by a real TLS server (tests/ocsp_stapling.rs); HTTP load for bench/ocsp.sh
  nginx wrk
  # systemd-analyze verify checks the dist/ units (tests/units.rs); haproxy fronts two
  # instances in the failover test (tests/failover.rs)
  systemd haproxy
  # python3: helper scripts; procps: kill(1) for process-group clean-up;
  # util-linux: unshare(1) for uacme's private trust store
  python3 procps util-linux
  # ip(8): network namespaces for the multi-perspective route-hijack test (tests/perspectives.rs)
  iproute2
  # building the workspace (aws-lc-rs compiles C)
  build-essential pkg-config
  # the Bouncy Castle CMP CA of the RA tests (sceau-testkit/java/cmp-ca): javac, and Maven to
  # fetch Bouncy Castle from Maven Central
  maven openjdk-17-jdk-headless
  # the web console's browser tests (crates/sceau-interop/console): Debian's Chromium, driven
  # by playwright-core from npm on Node.js; promtool (prometheus) checks /metrics
  chromium prometheus
  # certutil: the passkey test's Chromium profile trusts the server's root through NSS
  libnss3-tools
  # the SMTP server that receives the scheduled reports (tests/reports.rs), with STARTTLS
  python3-aiosmtpd
)
# Node.js with npm usually comes with the machine (NodeSource's nodejs bundles npm, and Debian's
# npm package would conflict with it); Debian's are the fallback.
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "install-test-deps: need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: missing packages (${missing[*]}) and no apt-get here" >&2
    exit 1
  fi
  echo "install-test-deps: installing ${missing[*]}"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "install-test-deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# Bouncy Castle for the CMP CA, into the local Maven repository, so the tests resolve it offline.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! (cd "$ROOT/crates/sceau-testkit/java/cmp-ca" &&
      mvn -q -B dependency:build-classpath -Dmdep.outputFile=/dev/null); then
  echo "install-test-deps: Maven could not fetch Bouncy Castle (org.bouncycastle:bcpkix-jdk18on)" >&2
  exit 1
fi
# acme4j for sceau-interop's STAR client test (tests/acme4j.rs), the same way.
if ! (cd "$ROOT/crates/sceau-interop/acme4j" &&
      mvn -q -B dependency:build-classpath -Dmdep.outputFile=/dev/null); then
  echo "install-test-deps: Maven could not fetch acme4j (org.shredzone.acme4j:acme4j-client)" >&2
  exit 1
fi

# playwright-core (pinned in package.json) for the console's browser tests; Chromium is Debian's.
if [ ! -d "$ROOT/crates/sceau-interop/console/node_modules/playwright-core" ]; then
  echo "install-test-deps: installing playwright-core from npm"
  (cd "$ROOT/crates/sceau-interop/console" && npm install --no-audit --no-fund --loglevel=error)
fi

# Fail here, with a clear message, rather than in the middle of the tests.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
for tool in pebble certbot lego dehydrated uacme knotd knotc knsupdate kdig nsupdate \
            openssl softhsm2-util pkcs11-tool sqlite3 curl python3 kill unshare java javac keytool mvn \
            chromium node npm promtool certutil; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-test-deps: $tool still missing after installation" >&2
    exit 1
  fi
done
echo "install-test-deps: all test dependencies present"
