#!/usr/bin/env bash
# bench/compare.sh with sceau-server's issuing key on a SoftHSM2 token: the throughput and CPU
# per certificate of issuance through PKCS#11, beside Pebble in the same run.
#
#   bench/compare-hsm.sh [any bench/compare.sh argument]
#
# Makes a SoftHSM2 configuration, token directory and token in a temporary directory (removed
# on exit; the PIN is random, in a 0600 file the URI names), then runs bench/compare.sh with
# SCEAU_INIT running `sceau-server ca init --issuing-key pkcs11:…` on its fresh data directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
MODULE=/usr/lib/softhsm/libsofthsm2.so
command -v softhsm2-util >/dev/null || { echo "compare-hsm.sh: softhsm2-util is not installed (Debian softhsm2)" >&2; exit 2; }
[ -e "$MODULE" ] || { echo "compare-hsm.sh: $MODULE is missing (Debian softhsm2)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-compare-hsm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
softhsm_token "$WORK" sceau-bench

release_dir RELEASE
SERVER=${SCEAU_SERVER:-$RELEASE/sceau-server}
cat > "$WORK/init.sh" <<INIT
#!/bin/sh
exec "$SERVER" ca init --data-dir "\$1" \
    --issuing-key "pkcs11:token=sceau-bench;object=issuing?module-path=$MODULE&pin-source=file:$WORK/pin"
INIT
chmod +x "$WORK/init.sh"
SCEAU_INIT="$WORK/init.sh" "$ROOT/bench/compare.sh" "$@"
