#!/usr/bin/env bash
# CA signatures per second with the key on a SoftHSM2 token against the same key kind in a
# file, in one run, through Sceau's own signing path (sceau-signbench): raw signatures of a
# 700-byte message, and whole leaf certificates signed by a CA whose root and issuing keys are
# on the token (or in files).
#
#   bench/pkcs11-sign.sh [--no-build] [--seconds S] [--kinds p256,rsa3072,...]
#
# Makes its own SoftHSM2 configuration, token directory and token in a temporary directory
# (removed on exit); the token's PIN is random and sits in a 0600 file that the URI names
# (pin-source). Prints one line per kind, key location and operation.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
MODULE=/usr/lib/softhsm/libsofthsm2.so
BUILD=1
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) BUILD=0; shift ;;
        --seconds) ARGS+=(--seconds "${2:-}"); shift 2 ;;
        --kinds) ARGS+=(--kinds "${2:-}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "pkcs11-sign.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v softhsm2-util >/dev/null || { echo "pkcs11-sign.sh: softhsm2-util is not installed (Debian softhsm2)" >&2; exit 2; }
[ -e "$MODULE" ] || { echo "pkcs11-sign.sh: $MODULE is missing (Debian softhsm2)" >&2; exit 2; }

if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --quiet -p sceau-bench --bin sceau-signbench)
fi
release_dir RELEASE
BENCH=$RELEASE/sceau-signbench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sceau-pkcs11-sign.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/data"
umask 077
softhsm_token "$WORK" bench

echo "# $(softhsm2-util --version | head -1 | sed 's/^/softhsm2 /'), $(nproc) cores, $(uname -m)"
"$BENCH" --dir "$WORK/data" \
    --pkcs11 "pkcs11:token=bench?module-path=$MODULE&pin-source=file:$WORK/pin" "${ARGS[@]}"
